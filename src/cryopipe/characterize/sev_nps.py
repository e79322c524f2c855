"""Detector characterization: noise power spectrum (NPS), standard event (SEV), pulse-model fit.

Record conventions: (n, N) float records in V, trigger (pulse onset) at N/4 (or the records'
pretrigger, where a function takes `trigger`/`onset`), baseline = mean of
the first N/8 samples. PSD convention as cryopipe.signal.spectra: one-sided V^2/Hz at the rfft
frequencies, sum(psd) * fs / N = variance.
"""
from __future__ import annotations

import numpy as np
import scipy.fft
import scipy.optimize
import scipy.signal

from cryopipe.errors import CryopipeError, InputError
from cryopipe.characterize.selection import pulse_features
from cryopipe.signal.robust import as_records, robust_band
from cryopipe.signal.pulses import proebst_pulse

__all__ = ["clean_noise_mask", "noise_power_spectrum", "pulse_features", "select_clean_pulses",
           "standard_event", "fit_pulse_model"]

# ---------------------------------------------------------------------------------------------
# noise power spectrum


def _cubic_residual_rms(x: np.ndarray) -> np.ndarray:
    """rms (V) of each record's residual to its least-squares cubic polynomial."""
    t = np.linspace(-1.0, 1.0, x.shape[1])
    design = np.vander(t, 4)
    projector = np.linalg.pinv(design)          # (4, N)
    coef = x @ projector.T                      # (n, 4)
    resid = x - coef @ design.T
    return np.sqrt(np.mean(resid ** 2, axis=1))


def clean_noise_mask(records, *, k: float = 4.0, percentile: float | None = None, batch: int = 1024,
                     what: str = "noise records") -> np.ndarray:
    """Mask of noise records fit for the NPS (no pulses, spikes, jumps).

    A record is kept if the rms of its residual to a cubic polynomial fit is at most
    median + k * 1.4826 * MAD over all records (or at most the `percentile`-th percentile when
    given, 0-100, as Cait's ``calc_nps(percentile=...)``), its max - min excursion is at most
    median + k * 1.4826 * MAD, and all its samples are finite.

    Parameters
    ----------
    records : (n, N) V
    k : band half-width in robust standard deviations
    percentile : keep this lowest percentage of residual rms instead of the MAD band
    """
    records = as_records(records, what=what, min_samples=16)
    n = records.shape[0]
    rms = np.empty(n)
    excursion = np.empty(n)
    finite = np.empty(n, dtype=bool)
    for a in range(0, n, batch):
        x = np.asarray(records[a:a + batch], dtype=np.float64)
        finite[a:a + batch] = np.all(np.isfinite(x), axis=1)
        x = np.where(np.isfinite(x), x, 0.0)
        rms[a:a + batch] = _cubic_residual_rms(x)
        excursion[a:a + batch] = np.ptp(x, axis=1)
    if not finite.any():
        return finite
    if percentile is None:
        rms_max = robust_band(rms[finite], k)[1]
    else:
        rms_max = np.percentile(rms[finite], percentile)
    exc_max = robust_band(excursion[finite], k)[1]
    return finite & (rms <= rms_max) & (excursion <= exc_max)


def noise_power_spectrum(records, sample_frequency: float, *, window: str = "boxcar", clean: bool = True,
                         k: float = 4.0, percentile: float | None = None, min_records: int = 20,
                         what: str = "noise records", batch: int = 512) -> np.ndarray:
    """Mean one-sided noise power spectrum (V^2/Hz) at the rfft frequencies, shape (N//2+1,).

    Each (clean) record has its mean subtracted, is multiplied by `window` w and transformed:
    PSD_k = c_k |rfft(w x)_k|^2 / (fs sum(w^2)), c_k = 2 for 0 < k < N/2, else 1 (this is
    scipy.signal.periodogram, scaling="density"). With window="boxcar", sum(psd) * fs / N equals the
    record variance exactly; with "hann" in expectation for stationary noise.

    The default is the rectangular window because the optimum filter is applied to unwindowed
    records: its weights need E|rfft(x)_k|^2 = N fs PSD_k / c_k, which only the rectangular
    periodogram estimates without bias (leakage included). Hann shows the underlying spectrum with
    less leakage, but after the mean subtraction it underestimates bin 1 by ~25 % on 1/f noise,
    which made the expected OF resolution 2.5 % too optimistic in a test at N = 2048.

    Parameters
    ----------
    records : (n, N) V
    sample_frequency : Hz
    window : scipy.signal window name
    clean : reject outlying records first (`clean_noise_mask` with `k`, `percentile`)
    min_records : fewer usable records raise CryopipeError
    what : name of the run/channel for error messages
    """
    records = as_records(records, what=what, min_samples=16)
    if clean:
        use = np.flatnonzero(clean_noise_mask(records, k=k, percentile=percentile, what=what))
    else:
        use = np.flatnonzero(np.all(np.isfinite(records), axis=1))
    if use.size < max(min_records, 1):
        raise CryopipeError(f"{what}: {use.size} clean noise records of {records.shape[0]}, need at least "
                            f"{min_records} for a noise power spectrum (a longer stream, more trigger.noise_records, "
                            f"or a lower characterize.min_noise_records)")
    total = np.zeros(records.shape[1] // 2 + 1)
    for a in range(0, use.size, batch):
        x = np.asarray(records[use[a:a + batch]], dtype=np.float64)
        _, p = scipy.signal.periodogram(x, fs=sample_frequency, window=window, detrend="constant",
                                        scaling="density", axis=-1)
        total += p.sum(axis=0)
    return total / use.size


def pretrigger_noise_spectrum(records, sample_frequency: float, pretrigger: int, *, record_length: int | None = None,
                              guard: int | None = None, min_records: int = 20,
                              what: str = "pre-trigger regions") -> np.ndarray:
    """One-sided NPS (V^2/Hz) at the rfft frequencies of `record_length` samples, from the pre-trigger
    regions of triggered records (for runs without noise records, e.g. LJH files without a noise file).

    The first ``pretrigger - guard`` samples of each record (guard default pretrigger // 16, so
    that no pulse rise enters) give periodograms as in `noise_power_spectrum` (outlying regions,
    e.g. tails of earlier pulses, rejected); the mean spectrum, a density, is interpolated linearly
    in frequency onto the finer grid of the whole record, and held at its first bin's value below
    fs / (pretrigger - guard), where it cannot see. Lines narrower than that are smeared, and noise
    that keeps rising below it is underestimated: the expected OF resolution reads 8 % better than
    the records show on pure white + 1/f noise, 2 % on NIST regress_chan1 (a power law extrapolated
    from the first bins read 3 % worse there). With a noise file the NPS is better.
    """
    records = as_records(records, what=what, min_samples=16)
    n = records.shape[1] if record_length is None else int(record_length)
    guard = max(int(pretrigger) // 16, 1) if guard is None else int(guard)
    m = int(pretrigger) - guard
    if m < 16:
        raise CryopipeError(f"{what}: pre-trigger region of {m} samples is too short for a noise spectrum")
    short = noise_power_spectrum(records[:, :m], sample_frequency, min_records=min_records, what=what)
    f_short = np.fft.rfftfreq(m, 1.0 / sample_frequency)
    f_long = np.fft.rfftfreq(n, 1.0 / sample_frequency)
    out = np.interp(f_long, f_short[1:], short[1:])     # DC of the short grid carries no noise power
    out[0] = 0.0
    return out


# ---------------------------------------------------------------------------------------------
# pulse features and selection

def _shift_rows(x: np.ndarray, lags: np.ndarray) -> np.ndarray:
    """Shift each row left by its lag (samples; a pulse lag samples late moves to time 0), edge padded."""
    idx = np.clip(np.arange(x.shape[1])[None, :] + lags[:, None], 0, x.shape[1] - 1)
    return np.take_along_axis(x, idx, axis=1)


def _align_to(x: np.ndarray, reference: np.ndarray, max_lag: int) -> np.ndarray:
    """Integer lag (samples) of each row relative to `reference` by cross-correlation (|lag| <= max_lag)."""
    n = x.shape[1]
    ref_fft = np.conj(scipy.fft.rfft(reference - reference.mean()))
    cc = scipy.fft.irfft(scipy.fft.rfft(x - x.mean(axis=1, keepdims=True), axis=1) * ref_fft, n=n, axis=1)
    lags = np.arange(-max_lag, max_lag + 1)
    return lags[np.argmax(cc[:, lags % n], axis=1)]


def _baseline_subtracted(records: np.ndarray, index: np.ndarray) -> np.ndarray:
    x = np.asarray(records[index], dtype=np.float64)
    return x - x[:, :x.shape[1] // 8].mean(axis=1, keepdims=True)


def _reference_shape(x: np.ndarray, heights: np.ndarray, cap: int = 1000) -> np.ndarray:
    """Median of the height-normalised records (robust preliminary template)."""
    return np.median(x[:cap] / heights[:cap, None], axis=0)


def _aligned_fit(records, index, reference, max_lag, batch=256):
    """Align the records to `reference`, fit a * reference; return lags, amplitudes, residual rms."""
    lags = np.empty(index.size, dtype=np.int64)
    amp = np.empty(index.size)
    rms = np.empty(index.size)
    norm = reference @ reference
    for a in range(0, index.size, batch):
        x = _baseline_subtracted(records, index[a:a + batch])
        lag = _align_to(x, reference, max_lag)
        x = _shift_rows(x, lag)
        amp_b = x @ reference / norm
        lags[a:a + batch], amp[a:a + batch] = lag, amp_b
        rms[a:a + batch] = np.sqrt(np.mean((x - amp_b[:, None] * reference) ** 2, axis=1))
    return lags, amp, rms


def select_clean_pulses(records, sample_frequency: float, *, k: float = 3.0, height_range=None,
                        min_snr: float = 10.0, onset_tolerance: int | None = None, max_shift: int | None = None,
                        smooth: int | None = None, k_edge: float = 6.0, residual_cut: bool = True,
                        features: dict | None = None, trigger: int | None = None) -> np.ndarray:
    """Mask of clean single pulses for the standard event.

    Candidates: finite records with at most one detected rising edge (a low-SNR pulse may show
    none), 10 % onset within `onset_tolerance`
    of N/4, height above `min_snr` baseline rms and inside `height_range` (V) if given. Of the
    candidates, height, rise and decay time must lie within median +- k * 1.4826 * MAD (height only
    when `height_range` is None), and, with `residual_cut`, the rms residual to a scaled, aligned
    preliminary template (median of the candidates) must be at most median + k * 1.4826 * MAD.

    Parameters
    ----------
    records : (n, N) V
    sample_frequency : Hz (times here are in samples; kept for a uniform signature)
    onset_tolerance : samples, default N // 32
    max_shift : largest alignment lag, samples, default N // 32
    features : precomputed `pulse_features(records, smooth, k_edge)` output
    trigger : sample of the trigger in the records (default N // 4; LJH records: their pretrigger)
    """
    records = as_records(records, what="pulse records", min_samples=16)
    n_rec, n = records.shape
    if not sample_frequency > 0:
        raise InputError(f"sample_frequency must be positive, got {sample_frequency}")
    f = pulse_features(records, smooth=smooth, k_edge=k_edge) if features is None else features
    tol = n // 32 if onset_tolerance is None else onset_tolerance
    finite = np.all(np.isfinite(records), axis=1)
    trig = n // 4 if trigger is None else int(trigger)
    ok = (finite & (f["n_edges"] <= 1) & (np.abs(f["t_onset"] - trig) <= tol)
          & (f["height"] > min_snr * f["baseline_rms"]))
    if height_range is not None:
        ok &= (f["height"] >= height_range[0]) & (f["height"] <= height_range[1])
        band_features = ("rise", "decay")
    else:
        band_features = ("height", "rise", "decay")
    if not ok.any():
        return ok
    for name in band_features:
        lo, hi = robust_band(f[name][ok], k, floor=1.0 if name != "height" else 0.0)
        ok &= (f[name] >= lo) & (f[name] <= hi)
    index = np.flatnonzero(ok)
    if residual_cut and index.size >= 3:
        ref = _reference_shape(_baseline_subtracted(records, index[:1000]), f["height"][index[:1000]])
        _, amp, rms = _aligned_fit(records, index, ref, n // 32 if max_shift is None else max_shift)
        keep = (amp > 0) & (rms <= robust_band(rms, k)[1])
        ok[index[~keep]] = False
    return ok


def _onset_index(sev: np.ndarray) -> int:
    """Last sample before the rise of a max-1 template: going back from the maximum, the first
    sample at or below 3 baseline rms (at least 1e-3)."""
    n = sev.size
    level = max(3.0 * np.std(sev[:n // 8]), 1e-3)
    i_max = int(np.argmax(sev))
    below = np.flatnonzero(sev[:i_max + 1] <= level)
    return int(below[-1]) if below.size else 0


def standard_event(records, sample_frequency: float, *, mask=None, method: str = "mean",
                   onset_fraction: float | None = 0.25, max_shift: int | None = None, min_pulses: int = 10,
                   what: str = "pulse records", onset: int | None = None, **selection) -> np.ndarray:
    """Standard event (normalised pulse shape) from pulse records.

    Clean pulses (`mask`, default `select_clean_pulses(records, sample_frequency, **selection)`) are
    baseline-subtracted, aligned to a preliminary template by cross-correlation (integer lags up to
    `max_shift`, default N // 32), scaled by their least-squares amplitude a_i and combined:
    "mean" gives sum a_i x_i / sum a_i^2 (the least-squares shape), "median" the median of x_i / a_i.
    The result is baseline-subtracted (first N/8), scaled to a maximum of 1 and, unless
    `onset_fraction` is None, shifted so that its onset sits at int(N * onset_fraction) (or at sample
    `onset` where given: the records' trigger, e.g. an LJH file's pretrigger).

    Returns
    -------
    (N,) float64 template, V/V.
    """
    records = as_records(records, what=what, min_samples=16)
    n_rec, n = records.shape
    if mask is None:
        mask = select_clean_pulses(records, sample_frequency, **selection)
    index = np.flatnonzero(np.asarray(mask, dtype=bool))
    if index.size < max(min_pulses, 1):
        raise CryopipeError(f"{what}: {index.size} clean pulses of {n_rec} records, need at least "
                            f"{min_pulses} for a standard event (a longer stream, or a lower characterize.min_pulses "
                            f"or characterize.min_pulse_snr)")
    first = _baseline_subtracted(records, index[:1000])
    heights = first.max(axis=1)
    if np.any(heights <= 0):
        raise CryopipeError(f"{what}: {int(np.sum(heights <= 0))} selected records have no positive pulse")
    ref = _reference_shape(first, heights)
    max_lag = n // 32 if max_shift is None else max_shift
    lags, amp, _ = _aligned_fit(records, index, ref, max_lag)
    if method == "mean":
        acc = np.zeros(n)
        for a in range(0, index.size, 256):
            x = _shift_rows(_baseline_subtracted(records, index[a:a + 256]), lags[a:a + 256])
            acc += amp[a:a + 256] @ x
        sev = acc / np.sum(amp ** 2)
    elif method == "median":
        x = _shift_rows(_baseline_subtracted(records, index), lags)
        sev = np.median(x / amp[:, None], axis=0)
    else:
        raise InputError(f"standard_event method must be 'mean' or 'median', got {method!r}")
    sev -= sev[:n // 8].mean()
    peak = sev.max()
    if not (np.isfinite(peak) and peak > 0):
        raise CryopipeError(f"{what}: standard event has no positive maximum")
    sev /= peak
    if onset is not None or onset_fraction is not None:
        delay = _onset_index(sev) - (int(onset) if onset is not None else int(n * onset_fraction))
        sev = _shift_rows(sev[None, :], np.array([delay]))[0]
    return sev


# ---------------------------------------------------------------------------------------------
# pulse model fit


def _exp_basis(t: np.ndarray, t0: float, taus) -> np.ndarray:
    """(N, 3) columns exp(-(t - t0)/tau) for t > t0, else 0."""
    dt = t - t0
    on = dt > 0
    return np.where(on[:, None], np.exp(-np.where(on, dt, 0.0)[:, None] / np.asarray(taus)[None, :]), 0.0)


def _linear_coefficients(basis: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Least-squares c (3,) with sum(c) = 0 for y ~ basis @ c (the model vanishes at the onset)."""
    reduced = basis[:, :2] - basis[:, 2:3]
    c12, *_ = np.linalg.lstsq(reduced, y, rcond=None)
    return np.array([c12[0], c12[1], -c12[0] - c12[1]])


def _start_values(sev: np.ndarray, fs: float) -> tuple[float, float, float]:
    """Onset (s), rise and decay time scales (s) of a template, from its crossings."""
    f = pulse_features(sev[None, :], smooth=1)
    onset = _onset_index(sev) / fs
    rise = f["rise"][0] / 2.2 if np.isfinite(f["rise"][0]) and f["rise"][0] > 0 else 1.0
    decay = f["decay"][0] if np.isfinite(f["decay"][0]) and f["decay"][0] > 0 else sev.size / 10
    return onset, max(rise, 0.5) / fs, max(decay, 1.0) / fs


def fit_pulse_model(sev, sample_frequency: float, *, starts=None, agree: int = 3) -> dict:
    """Least-squares fit of the Proebst pulse model to a standard event.

    The model is a sum of three exponentials exp(-(t - t0)/tau_i) with coefficients summing to 0;
    the fit varies t0 and the log time constants (scipy.optimize.least_squares) and solves the
    amplitudes linearly (variable projection), from several starting points built from the
    template's rise and decay times (stopping once `agree` of them reach the same minimum). The
    time constants are then identified in the natural order tau_in < tau_n < tau_t (rise,
    non-thermal decay, thermal decay), which fixes An = -c_in, At = c_t.

    With An = At the tau_n terms cancel (the model is An (exp(-t/tau_t) - exp(-t/tau_in))) and
    tau_n is not identifiable: the fit then returns one of the equivalent parameter sets.

    Parameters
    ----------
    sev : (N,) template
    sample_frequency : Hz
    starts : optional iterable of (tau_1, tau_2, tau_3) starting time constants, s
    agree : stop once this many starts have reached the best cost (relative 1e-6)

    Returns
    -------
    dict with t0 (s, from the first sample), An, At, tau_n, tau_in, tau_t (s), "params" (Cait order
    t0, An, At, tau_n, tau_in, tau_t), "model" (N,) and "rms" (rms residual, units of sev).
    """
    y = np.asarray(sev, dtype=np.float64)
    if y.ndim != 1 or y.size < 16 or not np.all(np.isfinite(y)):
        raise InputError(f"standard event must be a finite 1-d array of >= 16 samples, got shape {y.shape}")
    fs = float(sample_frequency)
    n = y.size
    t = np.arange(n) / fs
    onset, rise, decay = _start_values(y, fs)
    if starts is None:
        starts = [(rise * r, decay * a, decay * b) for r in (1.0, 0.5, 2.0)
                  for a, b in ((0.7, 3.0), (0.3, 1.5), (1.0, 10.0))]
    tau_lo, tau_hi = 0.2 / fs, 20.0 * n / fs

    def residual(p):
        basis = _exp_basis(t, p[0], np.exp(p[1:]))
        return basis @ _linear_coefficients(basis, y) - y

    lower = [max(onset - n / (8 * fs), 0.0)] + [np.log(tau_lo)] * 3
    upper = [min(onset + n / (8 * fs), t[-1])] + [np.log(tau_hi)] * 3
    best, n_agree = None, 0
    same_cost = 1e-12 * float(y @ y)
    for taus in starts:
        p0 = np.concatenate([[onset], np.log(np.clip(taus, tau_lo * 1.01, tau_hi / 1.01))])
        p0[0] = np.clip(p0[0], lower[0], upper[0])
        res = scipy.optimize.least_squares(residual, p0, bounds=(lower, upper), x_scale=[1.0 / fs, 1.0, 1.0, 1.0],
                                           diff_step=1e-6, xtol=1e-12, ftol=1e-12, gtol=1e-12)
        if best is not None and abs(res.cost - best.cost) <= 1e-6 * best.cost + same_cost:
            n_agree += 1
        elif best is None or res.cost < best.cost:
            best, n_agree = res, 1
        if n_agree >= agree:
            break
    t0, taus = best.x[0], np.exp(best.x[1:])
    c = _linear_coefficients(_exp_basis(t, t0, taus), y)
    order = np.argsort(taus)
    tau_in, tau_n, tau_t = taus[order]
    c_in, _, c_t = c[order]
    params = (float(t0), float(-c_in), float(c_t), float(tau_n), float(tau_in), float(tau_t))
    model = proebst_pulse(t, *params)
    return {"t0": params[0], "An": params[1], "At": params[2], "tau_n": params[3], "tau_in": params[4],
            "tau_t": params[5], "params": params, "model": model,
            "rms": float(np.sqrt(np.mean((model - y) ** 2)))}
