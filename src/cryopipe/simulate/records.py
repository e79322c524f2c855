"""Labelled simulated records of every event class of Cait's Box 1, for training and testing data cleaning.

A record is: class template(s) (`classes.py`) + Gaussian noise of a given one-sided power spectrum
(Carrettoni-Cremonesi, the convention of `cryopipe.simulate.noise`) + a slow quadratic drift, passed
through a TES saturation curve (generalised logistic, slope 1 at 0, ceiling never exceeded), then
read-out effects added after the TES (SQUID jumps and resets, digitiser spikes), then ADC rounding
to a multiple of the ADC step. The baseline sits at 0 V.

Two modes:
- detector mode (`simulate_detector_records`): one characterized detector (SEV, NPS, fs).
- universal mode (`simulate_universal_records`): pulse shape, noise spectrum, resolution, saturation,
  ADC step and sample frequency drawn anew for every record.

Pulse heights are set in units of the optimum-filter resolution sigma_OF of the record's detector
(SNR = height / sigma_OF, `cryopipe.signal.optimum_filter.expected_resolutions`); artefact amplitudes in units of the baseline noise rms
sigma_BL.

Labels follow the rules of `classes` (module docstring there; issue 19), in both modes and for the
default and WIDE ranges and options: accepted onsets (N/4 +- onset_jitter N) and early/late onsets
(>= N/8 from N/4) stay >= N/32 apart after a training shift of up to `classes.MAX_ACCEPTED_SHIFT` N
(N/32, 16 of 512 bins) each; every pile-up pulse is >= 5 sigma_OF high (also through the TES
saturation) and >= 1.5 onset-to-peak times from the others; tail components fall to <= 1/2 of
their maximum within the window, steps (squid_jump, reset) are flat; carriers fall to 1/e over
>= 2 of 512 bins. (Detector mode has no fallback for a pile-up that its fixed ceiling still hides
after `classes.PILEUP_REDRAWS` redraws; none seen in the tests at a ceiling of 86 sigma_OF.)

Records are returned shuffled (seeded) by default; `shuffle=False` keeps class blocks in
the order of `EVENT_CLASSES`. Everything is reproducible from the numpy Generator passed in, for any
number of worker threads (noise is drawn per fixed block of records from seeds taken from it).
"""
from __future__ import annotations

import math
import os
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import scipy.fft
import xarray as xr
from numba import njit

from ..errors import InputError
from ..io.stores import provenance
from .classes import (
    CLASS_BUILDERS,
    KIND_EXP,
    KIND_TABLE,
    MAX_PULSES,
    ClassOptions,
    ModelShape,
    TableShape,
    build_plan,
    log_uniform,
)
from cryopipe.signal.optimum_filter import expected_resolutions
from ..signal.spectra import positive_frequency_share
from ..signal.robust import check_sev_nps
from .saturation import saturation_curve

EVENT_CLASSES: tuple[str, ...] = tuple(CLASS_BUILDERS)
#: Classes labelled accepted (clean) by default, as in the seeds: a particle pulse at the trigger
#: position. decaying_baseline_with_event_pulse is rejected by default (its pulse height cannot be
#: reconstructed with standard methods; Cait's test set counts it as an artefact).
DEFAULT_ACCEPTED: frozenset[str] = frozenset({"event_pulse", "carrier_event", "tail_event"})
BLOCK = 256  # records per noise block (fixes the random streams, independent of worker count)


# ---------------------------------------------------------------------------------------------
# public helpers
# ---------------------------------------------------------------------------------------------

def accepted_set(accepted) -> frozenset:
    """Class names labelled accepted, from a set of names or a mapping name -> bool."""
    names = {c for c, ok in accepted.items() if ok} if isinstance(accepted, Mapping) else set(accepted)
    unknown = names - set(EVENT_CLASSES)
    if unknown:
        raise InputError(f"accepted: unknown event classes {sorted(unknown)}; known: {list(EVENT_CLASSES)}")
    return frozenset(names)


# ---------------------------------------------------------------------------------------------
# rendering kernel: noise in, finished record out
# ---------------------------------------------------------------------------------------------

@njit(cache=True, nogil=True)
def _add_pulse(buf, row, amp, sev, tail_tau):
    """Add amp * pulse(row) to buf (float64, N). row: kind, onset, then shape columns (classes.py)."""
    n = buf.size
    onset = row[1]
    if row[0] == KIND_TABLE:
        c0 = float(sev.size // 4)
        last = sev.size - 1
        scale = row[2]
        first = min(max(0, int(math.floor(onset - c0 / scale)) + 1), n)
        tail = min(max(first, int(math.ceil(onset + (last - c0) / scale))), n)
        if scale == 1.0:  # a shifted SEV: constant interpolation weights, contiguous (vectorised) loop
            shift = c0 - onset
            j0 = int(math.floor(first + shift))
            f = first + shift - j0
            w0, w1 = amp * (1.0 - f), amp * f
            for i in range(first, min(tail, last - j0 + first)):
                buf[i] += w0 * sev[j0 + i - first] + w1 * sev[j0 + i - first + 1]
            first = max(first, min(tail, last - j0 + first))
        for i in range(first, tail):
            pos = c0 + (i - onset) * scale
            j = min(int(pos), last - 1)
            f = pos - j
            buf[i] += amp * (sev[j] + (sev[j + 1] - sev[j]) * f)
        if tail < n:
            v = amp * sev[last] * math.exp(-(c0 + (tail - onset) * scale - last) / tail_tau)
            r = math.exp(-scale / tail_tau)
            for i in range(tail, n):
                buf[i] += v
                v *= r
    elif row[0] == KIND_EXP:
        start = max(0, int(math.ceil(onset)))
        if start >= n:
            return
        dt = start - onset
        e1, e2, e3 = math.exp(-dt / row[2]), math.exp(-dt / row[3]), math.exp(-dt / row[4])
        r1, r2, r3 = math.exp(-1.0 / row[2]), math.exp(-1.0 / row[3]), math.exp(-1.0 / row[4])
        c1, c2, c3 = amp * row[5], amp * row[6], amp * row[7]
        for i in range(start, n):
            buf[i] += c1 * e1 + c2 * e2 + c3 * e3
            e1 *= r1
            e2 *= r2
            e3 *= r3


SMALL_Y = 0.2  # |y| max(1, 1/nu) below which the saturation curve is evaluated by its series (rel. err < 1e-10)


@njit(cache=True, nogil=True)
def _saturate(buf, tmp, ceiling, nu):
    """buf <- saturation_curve(buf, ceiling, nu), never above ceiling (tmp: scratch of buf's size).

    f = K q expm1(L), L = (ln 2 - softplus(-y)) / nu = (y/2 - ln cosh(y/2)) / nu, y = B x: a branch-free
    (vectorised) series for all samples first, the exact form where |y| max(1, 1/nu) >= SMALL_Y.
    """
    q = 2.0 ** (-1.0 / nu)
    k = ceiling / (1.0 - q)
    b = nu * 2.0 ** (1.0 / nu + 1.0) / k
    kq = k * q
    inv_nu = 1.0 / nu
    for i in range(buf.size):
        y = b * buf[i]
        y2 = y * y
        lncosh = y2 * (1.0 / 8.0 + y2 * (-1.0 / 192.0 + y2 * (1.0 / 2880.0 - y2 * (17.0 / 645120.0))))
        el = (0.5 * y - lncosh) * inv_nu
        tmp[i] = kq * el * (1.0 + el * (1 / 2 + el * (1 / 6 + el * (1 / 24 + el * (1 / 120 + el * (
            1 / 720 + el * (1 / 5040 + el / 40320)))))))
    ln2 = math.log(2.0)
    big = max(1.0, inv_nu)
    for i in range(buf.size):
        y = b * buf[i]
        if abs(y) * big >= SMALL_Y:
            softplus = max(-y, 0.0) + math.log1p(math.exp(-abs(y)))
            tmp[i] = kq * math.expm1((ln2 - softplus) * inv_nu)
        buf[i] = min(tmp[i], ceiling)


@njit(cache=True, nogil=True)
def _render(noise, out, sev, tail_tau, pulses, amps, drift, ramp, step_pos, step, spike_pos, spike_width,
            spike, ceiling, nu, adc_step):
    """out[r] = ADC(readout(saturate(noise + drift + ramp + pulses))) for each record r (see module doc).

    Volts throughout; ceiling <= 0 or inf: no saturation; adc_step <= 0: no rounding.
    """
    n_rec, n = noise.shape
    buf = np.empty(n)
    tmp = np.empty(n)
    ramp_x = np.arange(n) / n
    u1 = 2.0 * ramp_x - 1.0
    u2 = u1 * u1 - 1.0 / 3.0
    for r in range(n_rec):
        row = noise[r]
        d1, d2, slope = drift[r, 0], drift[r, 1], ramp[r]
        for i in range(n):
            buf[i] = row[i] + d1 * u1[i] + d2 * u2[i] + slope * ramp_x[i]
        for p in range(pulses.shape[1]):
            if pulses[r, p, 0] != 0 and amps[r, p] != 0:
                _add_pulse(buf, pulses[r, p], amps[r, p], sev, tail_tau)
        if ceiling[r] > 0.0 and np.isfinite(ceiling[r]):
            _saturate(buf, tmp, ceiling[r], nu[r])
        h = step[r]
        for i in range(step_pos[r], n):
            buf[i] += h
        h = spike[r]
        for i in range(spike_pos[r], min(spike_pos[r] + spike_width[r], n)):
            buf[i] += h
        a = adc_step[r]
        dst = out[r]
        cap = ceiling[r] if step[r] == 0.0 and spike[r] == 0.0 and ceiling[r] > 0.0 else np.inf
        if a > 0.0:
            inv = 1.0 / a
            for i in range(n):
                dst[i] = min(np.floor(buf[i] * inv + 0.5) * a, cap)
        else:
            for i in range(n):
                dst[i] = buf[i]


@njit(cache=True, nogil=True)
def _render_templates(out, pulses, sev, tail_tau):
    """out[r] = the single pulse pulses[r] with amplitude 1 (for spectra of per-record templates)."""
    buf = np.empty(out.shape[1])
    for r in range(out.shape[0]):
        buf[:] = 0.0
        _add_pulse(buf, pulses[r], 1.0, sev, tail_tau)
        out[r] = buf


# ---------------------------------------------------------------------------------------------
# noise
# ---------------------------------------------------------------------------------------------

def _spectral_scale(psd, n_samples, sample_frequency) -> np.ndarray:
    """Per-bin scale of unit complex normals giving E|X_k|^2 = N fs PSD_k w_k (signal.spectra.noise_from_psd)."""
    fs = np.asarray(sample_frequency, dtype=np.float64)[..., None]
    weights = positive_frequency_share(n_samples)
    weights = np.where(weights == 1.0, weights, weights / 2.0) * n_samples
    return np.sqrt((np.asarray(psd) * (fs * weights)).astype(np.float32))


def draw_noise(scale, n_samples, gen: np.random.Generator, n_records: int) -> np.ndarray:
    """Float32 noise records (n_records, n_samples) from per-bin scales (`_spectral_scale`), one irfft.

    Same statistics as `cryopipe.signal.spectra.noise_from_psd` (Carrettoni-Cremonesi), in float32 for speed.
    """
    n_f = n_samples // 2 + 1
    z = gen.standard_normal((n_records, 2 * n_f), dtype=np.float32).view(np.complex64)
    z *= scale
    z[:, 0] = z[:, 0].real
    if n_samples % 2 == 0:
        z[:, -1] = z[:, -1].real
    return scipy.fft.irfft(z, n=n_samples, axis=-1, workers=1)


# ---------------------------------------------------------------------------------------------
# assembly
# ---------------------------------------------------------------------------------------------

def _class_array(n_per_class: dict) -> np.ndarray:
    if not isinstance(n_per_class, Mapping) or not n_per_class:
        raise InputError("n_per_class: need a non-empty mapping event class -> number of records")
    unknown = set(n_per_class) - set(EVENT_CLASSES)
    if unknown:
        raise InputError(f"n_per_class: unknown event classes {sorted(unknown)}; known: {list(EVENT_CLASSES)}")
    counts = [int(n_per_class.get(c, 0)) for c in EVENT_CLASSES]
    if min(counts) < 0 or sum(counts) == 0:
        raise InputError("n_per_class: counts must be >= 0 and not all zero")
    return np.repeat(np.array(EVENT_CLASSES, dtype=object), counts).astype(str)


def _n_workers(workers):
    from ..runner import thread_limit

    return max(1, int(workers if workers is not None else thread_limit() or min(os.cpu_count() or 1, 8)))


def _run_blocks(n_records, block_fn, seeds, workers):
    blocks = [(a, min(a + BLOCK, n_records)) for a in range(0, n_records, BLOCK)]
    jobs = [(a, b, s) for (a, b), s in zip(blocks, seeds)]
    if workers == 1:
        for job in jobs:
            block_fn(*job)
        return
    with ThreadPoolExecutor(workers) as pool:
        for _ in pool.map(lambda job: block_fn(*job), jobs):
            pass


def _block_seeds(rng, n_records):
    return rng.integers(0, 2**63, size=-(-n_records // BLOCK), dtype=np.int64)


def _amplitudes(plan, sl, sigma_of, sigma_bl):
    return plan.a_of[sl] * sigma_of[:, None] + plan.a_bl[sl] * sigma_bl[:, None]


def _render_block(plan, sl, noise, out, sev, tail_tau, sigma_of, sigma_bl, ceiling, nu, adc_step):
    """Turn the plan rows `sl` (noise units) into volts and render them onto `noise` into `out`."""
    _render(noise, out, sev, tail_tau, plan.pulses[sl], _amplitudes(plan, sl, sigma_of, sigma_bl),
            plan.drift[sl] * sigma_bl[:, None], plan.ramp[sl] * sigma_bl, plan.step_pos[sl],
            plan.step[sl] * sigma_bl, plan.spike_pos[sl], plan.spike_width[sl], plan.spike[sl] * sigma_bl,
            ceiling, nu, adc_step)


def _check_detector_inputs(sev, nps, sample_frequency):
    sev, nps = check_sev_nps(sev, nps, sample_frequency, what="detector", min_samples=64)
    peak = sev.max()
    if peak <= 0:
        raise InputError("sev: has no positive maximum")
    return sev / peak, nps


def simulate_detector_records(n_per_class: dict, sev, nps, sample_frequency: float, rng: np.random.Generator, *,
                              snr_range=(3.0, 1000.0), resolution: float | None = None,
                              saturation: float | None = None, saturation_nu: float = 1.0,
                              adc_step: float | None = None, accepted=DEFAULT_ACCEPTED, shuffle: bool = True,
                              options: ClassOptions | None = None, channel: str = "detector",
                              workers: int | None = None) -> xr.Dataset:
    """Labelled records of one characterized detector (store kind "simset").

    Parameters
    ----------
    n_per_class : event class -> number of records (classes from EVENT_CLASSES)
    sev : (N,) standard event, normalised here to max 1, onset at N/4
    nps : (N//2+1,) one-sided noise power spectrum, V^2/Hz
    sample_frequency : Hz
    rng : numpy Generator (all randomness comes from it)
    snr_range : pulse heights / sigma_OF, drawn log-uniformly
    resolution : V; if given, the NPS is scaled so that sigma_OF equals it (else sigma_OF from SEV and NPS)
    saturation : ceiling of the TES saturation curve above baseline, V (None: no saturation)
    saturation_nu : asymmetry of the generalised logistic (`saturation_curve`)
    adc_step : V per ADC count (None: no rounding); the ceiling is rounded down to a multiple of it
    accepted : classes labelled accepted (set of names or mapping name -> bool)
    shuffle : seeded random record order (else class blocks in EVENT_CLASSES order)
    options : class shape knobs (`classes.ClassOptions`); its snr_range is replaced by `snr_range`
    workers : threads (default: CPU count, at most 8); results do not depend on it
    """
    sev, nps = _check_detector_inputs(sev, nps, sample_frequency)
    n = sev.size
    fs = float(sample_frequency)
    sigma = float(expected_resolutions(sev, nps, fs))
    if resolution is not None:
        if resolution <= 0:
            raise InputError(f"resolution: must be > 0 V, got {resolution}")
        nps = nps * (resolution / sigma) ** 2
        sigma = float(resolution)
    sigma_bl = float(np.sqrt(np.sum(nps[1:]) * fs / n))
    opts = _options(options, snr_range)
    classes = _class_array(n_per_class)
    shape = TableShape(sev)
    ceiling = float(_effective_ceiling(saturation, adc_step))
    plan = build_plan(classes, shape, rng, opts, n, ceiling=ceiling / sigma, nu=float(saturation_nu))
    classes = _maybe_shuffle(plan, classes, rng, shuffle)
    n_rec = len(classes)
    adc = float(adc_step or 0.0)
    scale = _spectral_scale(nps, n, fs)
    out = np.empty((n_rec, n), dtype=np.float32)
    seeds = _block_seeds(rng, n_rec)

    def block(a, b, seed):
        gen = np.random.Generator(np.random.SFC64(seed))
        noise = draw_noise(scale, n, gen, b - a)
        m = b - a
        _render_block(plan, slice(a, b), noise, out[a:b], shape.sev, shape.tail_tau, np.full(m, sigma),
                      np.full(m, sigma_bl), np.full(m, ceiling), np.full(m, float(saturation_nu)), np.full(m, adc))

    _run_blocks(n_rec, block, seeds, _n_workers(workers))
    per_record = {"resolution": np.full(n_rec, sigma), "baseline_rms": np.full(n_rec, sigma_bl),
                  "saturation": np.full(n_rec, ceiling), "adc_step": np.full(n_rec, adc)}
    params = {"mode": "detector", "n_per_class": dict(n_per_class), "snr_range": list(snr_range),
              "resolution": sigma, "saturation": saturation, "saturation_nu": saturation_nu, "adc_step": adc_step,
              "accepted": sorted(accepted_set(accepted)), "shuffle": shuffle, "options": vars(opts)}
    return simset_dataset(out, classes, plan, per_record, accepted, fs, params, channel=channel,
                          time=(np.arange(n) - n // 4) / fs)


def _options(options, snr_range):
    opts = ClassOptions(**vars(options)) if options is not None else ClassOptions()
    lo, hi = snr_range
    if not 0 < lo <= hi:
        raise InputError(f"snr_range: need 0 < lo <= hi, got {snr_range}")
    opts.snr_range = (float(lo), float(hi))
    return opts


def _maybe_shuffle(plan, classes, rng, shuffle):
    if not shuffle:
        return classes
    order = rng.permutation(len(classes))
    plan.permute(order)
    return classes[order]


def _effective_ceiling(saturation, adc_step):
    if saturation is None or not np.isfinite(saturation):
        return np.inf
    if saturation <= 0:
        raise InputError(f"saturation: ceiling must be > 0 V, got {saturation}")
    if adc_step:
        if adc_step <= 0:
            raise InputError(f"adc_step: must be > 0 V, got {adc_step}")
        return _float32_floor(np.floor(saturation / adc_step) * adc_step)
    return _float32_floor(saturation)


def _float32_floor(x):
    """Largest float32-representable values <= x (so that float32 traces never exceed a float64 ceiling)."""
    x = np.asarray(x, dtype=np.float64)
    x32 = x.astype(np.float32)
    return np.where(x32 > x, np.nextafter(x32, np.float32(-np.inf)), x32).astype(np.float64)


# ---------------------------------------------------------------------------------------------
# universal mode
# ---------------------------------------------------------------------------------------------

UNIVERSAL_RANGES = {
    "sample_frequency": (10e3, 50e3),     # Hz, log-uniform
    "tau_n": (0.3e-3, 30e-3),             # s, capped at record duration / 12
    "tau_in": (10e-6, 2e-3),              # s, capped at tau_n / 3
    "tau_t_over_tau_n": (1.5, 10.0),      # tau_t capped at record duration / 6
    "at_over_an": (0.1, 3.0),
    "resolution": (5e-5, 5e-3),           # V (sigma_OF)
    "one_over_f_corner": (0.5, 500.0),    # Hz where 1/f equals the white level
    "one_over_f_exponent": (0.7, 1.5),    # uniform
    "n_lines": (0, 4),                    # integers
    "line_height": (3.0, 300.0),          # peak / white level
    "line_width": (1.0, 10.0),            # frequency bins
    "saturation_probability": 0.7,
    "saturation": (50.0, 5000.0),         # ceiling / sigma_OF
    "saturation_nu": (0.5, 2.0),
    "adc_step": (0.02, 1.0),              # / sigma_BL
    # wide physics (issue 15): share of records drawn from the wide distribution below (0: off)
    "wide_probability": 0.0,
    "wide_tau_t": (0.004, 0.5),           # thermal decay / record duration, log-uniform (~2.6-300 ms at 0.65 s)
    "wide_tau_min": 0.3,                  # samples: shortest rise / non-thermal time
    "wide_one_over_f_corner": (0.5, 5000.0),
    "wide_one_over_f_exponent": (0.5, 2.0),
    "wide_lowpass_probability": 0.5,
    "wide_lowpass": (0.01, 0.5),          # first-order low-pass corner / Nyquist frequency, log-uniform
    "wide_saturation": (10.0, 5000.0),    # ceiling / sigma_OF
    "wide_saturation_nu": (0.3, 3.0),
}

#: The wide universal distribution (issue 15): `ranges` and class `options` overrides for
#: `simulate_universal_records`; ranges at least as wide as Cait's public parameter sampler:
#: tau_t up to half the window (exponential(40 ms) in Cait), tau_in and tau_n uniformly or
#: log-uniformly up to 0.9 tau_t in either order (Cait flips An's sign), any An/At split, saturation
#: from ceiling 10 sigma_OF (hard flat tops) to none, 1/f^0.5-2 noise with low-pass and lines.
WIDE_RANGES = {"wide_probability": 1.0}


def _draw_detectors(rng, n_rec, n, sample_frequency, ranges):
    """Per-record detector parameters (dict of (n_rec,) arrays; times in s, frequencies in Hz)."""
    r = ranges
    if sample_frequency is None:
        fs = log_uniform(rng, *r["sample_frequency"], n_rec)
    elif np.ndim(sample_frequency) == 1 and len(sample_frequency) == 2:
        fs = log_uniform(rng, *sample_frequency, n_rec)
    else:
        fs = np.full(n_rec, float(sample_frequency))
    if np.any(fs <= 0):
        raise InputError(f"sample_frequency: must be > 0 Hz, got {sample_frequency}")
    duration = n / fs
    tau_n = log_uniform(rng, r["tau_n"][0], np.maximum(np.minimum(r["tau_n"][1], duration / 12), r["tau_n"][0]),
                        n_rec)
    tau_in = log_uniform(rng, np.minimum(r["tau_in"][0], tau_n / 3), np.minimum(r["tau_in"][1], tau_n / 3), n_rec)
    tau_t = np.minimum(tau_n * log_uniform(rng, *r["tau_t_over_tau_n"], n_rec), np.maximum(duration / 6, tau_n * 1.1))
    n_lines = rng.integers(r["n_lines"][0], r["n_lines"][1] + 1, n_rec)
    harmonic = rng.integers(1, 11, (n_rec, r["n_lines"][1])) * 50.0
    free = rng.uniform(10.0, fs[:, None] / 2.5, (n_rec, r["n_lines"][1]))
    saturated = rng.random(n_rec) < r["saturation_probability"]
    out = {
        "sample_frequency": fs, "tau_n": tau_n, "tau_in": tau_in, "tau_t": tau_t,
        "at_over_an": log_uniform(rng, *r["at_over_an"], n_rec),
        "resolution": log_uniform(rng, *r["resolution"], n_rec),
        "one_over_f_corner": log_uniform(rng, *r["one_over_f_corner"], n_rec),
        "one_over_f_exponent": rng.uniform(*r["one_over_f_exponent"], n_rec),
        "n_lines": n_lines,
        "line_frequency": np.where(rng.random((n_rec, r["n_lines"][1])) < 0.5, harmonic, free),
        "line_height": log_uniform(rng, *r["line_height"], (n_rec, r["n_lines"][1])),
        "line_width": log_uniform(rng, *r["line_width"], (n_rec, r["n_lines"][1])) * fs[:, None] / n,
        "saturation_units": np.where(saturated, log_uniform(rng, *r["saturation"], n_rec), np.inf),
        "saturation_nu": log_uniform(rng, *r["saturation_nu"], n_rec),
        "adc_units": log_uniform(rng, *r["adc_step"], n_rec),
    }
    if r["wide_probability"] > 0:
        _draw_wide(rng, out, r, duration, n_rec)
    return out


def _draw_wide(rng, det, r, duration, n_rec):
    """Replace the detector parameters of a random share of records by wide ones (in place)."""
    wide = rng.random(n_rec) < r["wide_probability"]
    fs = det["sample_frequency"]
    tmin = r["wide_tau_min"] / fs
    tau_t = np.maximum(duration * log_uniform(rng, *r["wide_tau_t"], n_rec), 3 * tmin)

    def upto(hi):
        u = np.where(rng.random(n_rec) < 0.5, rng.uniform(tmin, hi), log_uniform(rng, tmin, hi, n_rec))
        return np.maximum(u, tmin)

    tau_n, tau_in = upto(0.9 * tau_t), upto(0.9 * tau_t)
    close = np.abs(np.log(tau_n / tau_in)) < 0.1
    tau_in = np.where(close, tau_in * 0.8, tau_in)
    share = rng.uniform(0.02, 1.0, n_rec)
    lowpass = np.where(rng.random(n_rec) < r["wide_lowpass_probability"],
                       log_uniform(rng, *r["wide_lowpass"], n_rec) * fs / 2, np.inf)
    sat = np.where(rng.random(n_rec) < r["saturation_probability"], log_uniform(rng, *r["wide_saturation"], n_rec),
                   np.inf)
    new = {"tau_t": tau_t, "tau_n": tau_n, "tau_in": tau_in, "at_over_an": share,
           "one_over_f_corner": log_uniform(rng, *r["wide_one_over_f_corner"], n_rec),
           "one_over_f_exponent": rng.uniform(*r["wide_one_over_f_exponent"], n_rec),
           "saturation_units": sat, "saturation_nu": log_uniform(rng, *r["wide_saturation_nu"], n_rec)}
    for k, v in new.items():
        det[k] = np.where(wide, v, det[k])
    det["an_sign"] = np.where(wide & (det["tau_n"] < det["tau_in"]), -1.0, 1.0)
    det["lowpass"] = np.where(wide, lowpass, np.inf)
    det["wide"] = wide.astype(float)


def _record_psds(det, sl, n):
    """Unit-white-level PSDs (b, N//2+1) of records `sl`: white + 1/f + Lorentzian lines.

    The formula of `noise.psd_model`, batched over per-record parameters (psd_model takes scalars).
    """
    b = len(det["sample_frequency"][sl])
    out = np.empty((b, n // 2 + 1), dtype=np.float32)
    _psd_rows(out, n, det["sample_frequency"][sl], det["one_over_f_corner"][sl], det["one_over_f_exponent"][sl],
              det["n_lines"][sl], det["line_frequency"][sl], det["line_width"][sl], det["line_height"][sl])
    if "lowpass" in det:
        fc = det["lowpass"][sl]
        f = np.arange(n // 2 + 1)[None, :] * (det["sample_frequency"][sl] / n)[:, None]
        out *= (1.0 / (1.0 + (f / fc[:, None]) ** 2)).astype(np.float32)
    return out


@njit(cache=True, nogil=True)
def _psd_rows(out, n, fs, corner, exponent, n_lines, line_f, line_w, line_h):
    log_k = np.log(np.arange(1, out.shape[1]))
    for r in range(out.shape[0]):
        df = fs[r] / n
        log_c = math.log(corner[r] / df)
        row = out[r]
        row[0] = 0.0
        for k in range(1, row.size):
            row[k] = 1.0 + math.exp(exponent[r] * (log_c - log_k[k - 1]))
        for j in range(n_lines[r]):
            f0, half, h = line_f[r, j] / df, 0.5 * line_w[r, j] / df, line_h[r, j]
            for k in range(1, row.size):
                x = (k - f0) / half
                row[k] += h / (1.0 + x * x)


def simulate_universal_records(n_per_class: dict, record_length: int, rng: np.random.Generator, *,
                               sample_frequency=None, snr_range=(1.0, 3000.0), ranges: dict | None = None,
                               accepted=DEFAULT_ACCEPTED, shuffle: bool = True,
                               options: ClassOptions | None = None, channel: str = "detector",
                               workers: int | None = None) -> xr.Dataset:
    """Labelled records, each from its own random detector (store kind "simset").

    Per record: sample frequency, Proebst time constants, noise spectrum (white + 1/f + lines), sigma_OF,
    saturation (ceiling, asymmetry; none with probability 1 - saturation_probability) and ADC step are
    drawn from `ranges` (defaults UNIVERSAL_RANGES); all are returned as (channel, event) variables.

    Parameters
    ----------
    n_per_class : event class -> number of records
    record_length : N, samples (one per set; 4096-32768 in the seeds)
    rng : numpy Generator
    sample_frequency : None (log-uniform over ranges["sample_frequency"]), a (lo, hi) pair, or a fixed Hz
    snr_range : pulse heights / sigma_OF, log-uniform
    ranges : overrides of UNIVERSAL_RANGES entries
    accepted, shuffle, options, channel, workers : as in `simulate_detector_records`
    """
    n = int(record_length)
    if n < 256:
        raise InputError(f"record_length: need >= 256 samples, got {record_length}")
    unknown = set(ranges or {}) - set(UNIVERSAL_RANGES)
    if unknown:
        raise InputError(f"ranges: unknown parameters {sorted(unknown)}; known: {list(UNIVERSAL_RANGES)}")
    rr = {**UNIVERSAL_RANGES, **(ranges or {})}
    opts = _options(options, snr_range)
    classes = _class_array(n_per_class)
    n_rec = len(classes)
    det = _draw_detectors(rng, n_rec, n, sample_frequency, rr)
    fs = det["sample_frequency"]
    shape = ModelShape(det["tau_n"] * fs, det["tau_in"] * fs, det["tau_t"] * fs, det["at_over_an"], det.get("an_sign"))
    plan = build_plan(classes, shape, rng, opts, n, ceiling=det["saturation_units"], nu=det["saturation_nu"])
    det["saturation_units"][plan.hidden] = np.inf   # pile-ups still hidden by saturation: an unsaturated detector
    template = shape.entries(np.arange(n_rec), "main", rng, opts)
    template[:, 1] = n // 4
    if shuffle:
        order = rng.permutation(n_rec)
        plan.permute(order)
        classes = classes[order]
        det = {k: v[order] for k, v in det.items()}
        template = template[order]
        fs = det["sample_frequency"]
    out = np.empty((n_rec, n), dtype=np.float32)
    sigma_bl = np.empty(n_rec)
    ceiling = np.empty(n_rec)
    adc = np.empty(n_rec)
    seeds = _block_seeds(rng, n_rec)
    dummy_sev = np.zeros(4)

    def block(a, b, seed):
        gen = np.random.Generator(np.random.SFC64(seed))
        sl = slice(a, b)
        psd = _record_psds(det, sl, n)
        tpl = np.empty((b - a, n), dtype=np.float32)
        _render_templates(tpl, template[sl], dummy_sev, 1.0)
        psd *= (det["resolution"][sl] / expected_resolutions(tpl, psd, fs[sl]))[:, None] ** 2
        sigma_bl[sl] = np.sqrt(np.sum(psd[:, 1:], axis=1) * fs[sl] / n)
        adc[sl] = det["adc_units"][sl] * sigma_bl[sl]
        ceiling[sl] = _float32_floor(np.floor(det["saturation_units"][sl] * det["resolution"][sl] / adc[sl]) * adc[sl])
        noise = draw_noise(_spectral_scale(psd, n, fs[sl]), n, gen, b - a)
        _render_block(plan, sl, noise, out[a:b], dummy_sev, 1.0, det["resolution"][sl], sigma_bl[sl],
                      ceiling[sl], det["saturation_nu"][sl], adc[sl])

    _run_blocks(n_rec, block, seeds, _n_workers(workers))
    per_record = {"resolution": det["resolution"], "baseline_rms": sigma_bl, "saturation": ceiling,
                  "adc_step": adc, "saturation_nu": det["saturation_nu"], "sample_frequency": fs,
                  "tau_n": det["tau_n"], "tau_in": det["tau_in"], "tau_t": det["tau_t"],
                  "at_over_an": det["at_over_an"], "one_over_f_corner": det["one_over_f_corner"],
                  "one_over_f_exponent": det["one_over_f_exponent"], "n_lines": det["n_lines"].astype(float)}
    if "wide" in det:
        per_record.update(wide=det["wide"], lowpass=det["lowpass"], an_sign=det["an_sign"])
    params = {"mode": "universal", "n_per_class": dict(n_per_class), "snr_range": list(snr_range),
              "sample_frequency": sample_frequency, "ranges": rr, "accepted": sorted(accepted_set(accepted)),
              "shuffle": shuffle, "options": vars(opts)}
    return simset_dataset(out, classes, plan, per_record, accepted, "per_record", params, channel=channel,
                          record_fs=fs)


# ---------------------------------------------------------------------------------------------
# the store
# ---------------------------------------------------------------------------------------------

def simset_dataset(traces, event_class, plan, per_record: dict, accepted, sample_frequency, parameters: dict, *,
                   channel: str = "detector", time=None, record_fs=None) -> xr.Dataset:
    """Build the "simset" store Dataset from rendered records, their classes, plan and per-record values.

    Truth variables ((channel, event) unless noted): pulse_height (V, main pulse, 0 where none), snr
    (pulse_height / resolution), onset (s relative to N/4, NaN where no main pulse), n_pulses (particle
    pulses with onset inside the window), pulse_onsets / pulse_heights (channel, event, pulse): every
    particle pulse (including the one before the window of a decaying baseline) sorted by onset, NaN / 0
    padded. `per_record` values become (channel, event) float variables (resolution and baseline_rms in V).
    `sample_frequency` is the attr (Hz, or "per_record" in universal mode, then see the variable).
    """
    traces = np.asarray(traces, dtype=np.float32)
    n_rec, n = traces.shape
    fs = np.broadcast_to(np.asarray(record_fs if record_fs is not None else sample_frequency, float), (n_rec,))
    amps = _amplitudes(plan, slice(None), np.asarray(per_record["resolution"], float),
                       np.asarray(per_record["baseline_rms"], float))
    onset_s = (plan.pulses[:, :, 1] - n // 4) / fs[:, None]
    has_main = plan.main >= 0
    main = np.where(has_main, plan.main, 0)[:, None]
    height = np.where(has_main, np.take_along_axis(amps, main, axis=1)[:, 0], 0.0)
    onset = np.where(has_main, np.take_along_axis(onset_s, main, axis=1)[:, 0], np.nan)
    order = np.argsort(np.where(plan.physical, onset_s, np.inf), axis=1, kind="stable")
    phys = np.take_along_axis(plan.physical, order, axis=1)
    pulse_onsets = np.where(phys, np.take_along_axis(onset_s, order, axis=1), np.nan)
    pulse_heights = np.where(phys, np.take_along_axis(amps, order, axis=1), 0.0)
    n_pulses = np.sum(plan.physical & (plan.pulses[:, :, 1] >= 0), axis=1)
    ok = accepted_set(accepted)
    ce = ("channel", "event")
    data = {
        "trace": (("channel", "event", "sample"), traces[None]),
        "event_class": ("event", np.asarray(event_class, dtype=str)),
        "label": (ce, np.isin(event_class, list(ok))[None]),
        "pulse_height": (ce, height[None].astype(np.float32)),
        "snr": (ce, (height / np.asarray(per_record["resolution"], float))[None].astype(np.float32)),
        "onset": (ce, onset[None]),
        "n_pulses": (ce, n_pulses[None].astype(np.int64)),
        "pulse_onsets": (("channel", "event", "pulse"), pulse_onsets[None]),
        "pulse_heights": (("channel", "event", "pulse"), pulse_heights[None].astype(np.float32)),
    }
    for name, value in per_record.items():
        data[name] = (ce, np.broadcast_to(np.asarray(value, float), (n_rec,))[None].copy())
    coords = {"channel": [channel], "event": np.arange(n_rec), "pulse": np.arange(MAX_PULSES)}
    if time is not None:
        coords["time"] = ("sample", np.asarray(time, dtype=np.float64))
    attrs = provenance("simset", parameters=parameters, inputs=[], sample_frequency=sample_frequency,
                       record_length=n, units="V (trace, pulse_height, resolution), s (onset)",
                       classes=list(EVENT_CLASSES), accepted_classes=sorted(ok))
    return xr.Dataset(data, coords=coords, attrs=attrs)
