"""An independently written test generator of labelled records, used ONLY for testing cleaning models.

Written from the papers' descriptions (Cait paper Box 1, Fig. 1, Table 1; CRESST data-cleaning paper
section 3), sharing no sampling or rendering code with `cryopipe.simulate` (the training simulator):
its own pulse model, noise synthesis, saturation curve, class templates and parameter ranges, so that
a model that has learned our simulator rather than "what a pulse looks like" shows it here.

Conventions (deliberately different from `cryopipe.simulate`):
- A *detector* (`draw_detector`) is fixed for a whole set, as a real measurement: sample frequency
  (10, 25 or 50 kHz), record length (4096-16384), a particle pulse shape and a carrier pulse shape in
  the original Proebst form, A_n (e^-t/tau_n - e^-t/tau_in) + A_t (e^-t/tau_t - e^-t/tau_n) (the thermal
  component rises with tau_n), times in ms; one noise spectrum (white + 1/f^alpha, Butterworth low-pass)
  plus deterministic mains harmonics (50 Hz multiples, random phases), a cubic baseline drift (scaled by
  the detector key `drift_scale`, default 1, for ablations), a Richards-curve saturation (Q, nu free;
  slope 1 at 0), ADC rounding to a 16-bit +-10 V digitiser, and sigma_OF (V) between 0.5 and 10 mV.
- Noise: white Gaussian samples shaped in the frequency domain by sqrt(PSD shape), scaled so that the
  optimum-filter resolution of the particle template (closed form over the same discrete spectrum,
  DC free: sigma^-2 = sum_{0<k<N/2} 2 |S_k|^2 / P_k) is the drawn sigma_OF.
- SNR = pulse height (V, before saturation) / sigma_OF, drawn log-uniformly (issue 5's sets: 3-1000).

Classes (names of `cryopipe.simulate.records.EVENT_CLASSES`; accepted: event_pulse, carrier_event,
tail_event). Per record the truth holds snr (height of the record's main particle pulse / sigma_OF, also for
early_or_late_trigger and pile_up; 0 where the record has none), saturated (the unsaturated peak exceeds 80 % of the
ceiling) and the detector parameters.

Visible pile-up (issue 19's label rule 2, the same numbers as the training simulator's
`cryopipe.simulate.classes`, checked equal by a test): this generator draws its pile-ups its own way
(extra pulses >= max(5, SNR/10) sigma_OF, onsets >= N/64 apart) and does not redraw them, but it
reports per record `pileup_visible`: every pulse adds >= `PILEUP_MIN_SNR` sigma_OF at its peak through
the saturation curve (noise-free signal; the peak taken at the window end where it lies beyond) and
any two onsets are >= `PILEUP_MIN_RISES` onset-to-peak times of the particle pulse apart. The target
"pile-up survival (visible pile-up)" counts only those; True for every other class.
"""
from __future__ import annotations

import numpy as np

CLASSES = ("event_pulse", "carrier_event", "tail_event", "noise", "spike", "squid_jump", "reset",
           "decaying_baseline", "temperature_rise", "pile_up", "early_or_late_trigger",
           "decaying_baseline_with_event_pulse")
ACCEPTED = ("event_pulse", "carrier_event", "tail_event")
ADC_STEP = 20.0 / 2 ** 16          # V
SNR_RANGE = (3.0, 1000.0)
#: smallest height (sigma_OF) every pulse of a visible pile-up adds at its peak (label rule 2)
PILEUP_MIN_SNR = 5.0
#: smallest onset distance of a visible pile-up, in onset-to-peak times of the particle pulse (label rule 2)
PILEUP_MIN_RISES = 1.5


def _logu(rng, lo, hi, size=None):
    return np.exp(rng.uniform(np.log(lo), np.log(hi), size))


def proebst(t_ms, t0, an, at, tau_n, tau_in, tau_t):
    """Original Proebst pulse (1995) on a time grid (ms), zero before t0."""
    d = np.maximum(np.asarray(t_ms) - t0, 0.0)
    v = an * (np.exp(-d / tau_n) - np.exp(-d / tau_in)) + at * (np.exp(-d / tau_t) - np.exp(-d / tau_n))
    return np.where(np.asarray(t_ms) > t0, v, 0.0)


def _shape(rng, duration_ms, fast=None):
    """Proebst parameters with peak 1 (an, at, tau_n, tau_in, tau_t) for a detector of this window;
    `fast`: the particle shape, for a carrier shape 2-8 times faster (never decaying within less than
    two of the 512 samples a model sees: such a pulse is a spike to any 512-sample classifier)."""
    floor = duration_ms / 256
    for _ in range(100):
        if fast is not None:
            tau_n = max(fast["tau_n"] / _logu(rng, 2.0, 8.0), floor)
        else:
            tau_n = _logu(rng, max(0.3, floor), max(0.31, floor * 1.01, duration_ms / 8))
        tau_in = tau_n * _logu(rng, 0.005, 0.9)
        tau_t = min(tau_n * _logu(rng, 1.2, 40.0), duration_ms / 2)
        if tau_t <= tau_n * 1.05:
            tau_t = tau_n * 1.05
        share = rng.uniform(0.0, 1.0)   # A_t / (A_n + A_t)
        grid = np.linspace(0.0, 10 * tau_t, 20001)
        v = proebst(grid, 0.0, 1.0 - share, share, tau_n, tau_in, tau_t)
        peak = v.max()
        if peak > 1e-3:
            return {"an": (1 - share) / peak, "at": share / peak, "tau_n": tau_n, "tau_in": tau_in, "tau_t": tau_t,
                    "t_peak": float(grid[np.argmax(v)])}
    raise RuntimeError("no valid pulse shape")


def richards(x, ceiling, q, nu):
    """Richards (generalised logistic) saturation with f(0) = 0, f'(0) = 1, f(inf) = ceiling."""
    b = nu * (1 + q) ** (1 / nu + 1) * (1 - (1 + q) ** (-1 / nu)) / (q * ceiling)
    k = nu * (1 + q) ** (1 / nu + 1) / (q * b)
    with np.errstate(over="ignore"):
        return k * ((1 + q * np.exp(-b * x)) ** (-1 / nu) - (1 + q) ** (-1 / nu))


def _saturate(det: dict, y):
    """The detector's saturation of a TES signal y (V): Richards curve above 0, none below or without a ceiling."""
    if not np.isfinite(det["ceiling"]):
        return y
    return np.where(y > 0, richards(y, det["ceiling"], det["sat_q"], det["sat_nu"]), y)


def draw_detector(rng: np.random.Generator) -> dict:
    """A random virtual detector (see module doc); all parameters in a plain dict."""
    fs = float(rng.choice([10e3, 25e3, 50e3]))
    n = int(rng.choice([4096, 8192, 16384]))
    duration = n / fs * 1e3
    det = {"sample_frequency": fs, "record_length": n, "duration_ms": duration,
           "pulse": _shape(rng, duration), "carrier": None,
           "alpha": rng.uniform(0.5, 2.0), "corner_hz": _logu(rng, 1.0, 300.0),
           "lowpass_hz": _logu(rng, 0.05, 0.9) * fs / 2 if rng.random() < 0.6 else np.inf,
           "lowpass_order": int(rng.integers(1, 3)),
           "mains": rng.uniform(0.0, 1.0, 3) * (rng.random() < 0.5),   # amplitudes / sigma_BL at 50, 150, 250 Hz
           "sigma_of": _logu(rng, 0.5e-3, 10e-3),
           "saturation_over_sigma": _logu(rng, 20.0, 3000.0) if rng.random() < 0.6 else np.inf,
           "sat_q": _logu(rng, 0.2, 5.0), "sat_nu": _logu(rng, 0.3, 3.0),
           "jitter_ms": min(20.0, duration / 32)}
    det["carrier"] = _shape(rng, duration, fast=det["pulse"])
    f = np.fft.rfftfreq(n, 1 / fs)
    with np.errstate(divide="ignore"):
        psd = 1.0 + (det["corner_hz"] / np.where(f > 0, f, np.inf)) ** det["alpha"]
    psd /= 1.0 + (f / det["lowpass_hz"]) ** (2 * det["lowpass_order"])
    psd[0] = 0.0
    t = (np.arange(n) - n // 4) / fs * 1e3
    p = det["pulse"]
    s = np.fft.rfft(proebst(t, 0.0, p["an"], p["at"], p["tau_n"], p["tau_in"], p["tau_t"]))
    inner = slice(1, n // 2)
    info_unit = np.sum(2 * np.abs(s[inner]) ** 2 / (psd[inner] * n))   # per unit-variance white-time-noise
    # noise = irfft(sqrt(c psd) * rfft(white)); E|X_k|^2 = c psd_k n; sigma_OF^-2 = sum 2|S_k|^2/(c psd_k n)
    c = info_unit * det["sigma_of"] ** 2
    det["psd_scale"] = np.sqrt(c * psd)
    det["sigma_bl"] = float(np.sqrt(np.sum(c * psd[1:] * np.where(np.arange(1, psd.size) == n // 2, 1, 2)) / n))
    det["ceiling"] = max(det["saturation_over_sigma"] * det["sigma_of"], 20 * det["sigma_bl"])
    return det


def _noise(rng, det, m):
    n = det["record_length"]
    w = rng.standard_normal((m, n))
    x = np.fft.irfft(np.fft.rfft(w, axis=1) * det["psd_scale"], n=n, axis=1)
    t = np.arange(n) / det["sample_frequency"]
    for j, a in enumerate(det["mains"]):
        if a > 0:
            x += a * det["sigma_bl"] * np.sin(2 * np.pi * 50 * (2 * j + 1) * t + rng.uniform(0, 2 * np.pi, (m, 1)))
    u = np.linspace(-1, 1, n)
    coef = rng.normal(0.0, 0.5 * det["sigma_bl"] * det.get("drift_scale", 1.0), (m, 4))
    return x + coef @ np.vstack([np.ones(n), u, u ** 2, u ** 3])


def _pulse(det, which, t_ms, t0, height):
    p = det[which]
    return height * proebst(t_ms, t0, p["an"], p["at"], p["tau_n"], p["tau_in"], p["tau_t"])


def _step(t_ms, t0, h, width_ms):
    """A step of height h at t0 reached linearly over width_ms (h > 0) or exponentially (h < 0)."""
    d = np.asarray(t_ms) - t0
    if h > 0:
        return h * np.clip(d / max(width_ms, 1e-6), 0.0, 1.0)
    return np.where(d > 0, h * (1 - np.exp(-np.maximum(d, 0) / max(width_ms, 1e-6))), 0.0)


def pileup_visibility(det: dict, onsets_ms, heights_v) -> tuple[float, float]:
    """(smallest visible height / sigma_OF, smallest onset distance / onset-to-peak time) of the
    particle pulses at `onsets_ms` (ms, trigger at 0) with unsaturated heights `heights_v` (V):
    each pulse's visible height is what it adds at its peak (or the window end) through this
    detector's saturation, noise-free: sat(all pulses) - sat(all others)."""
    on = np.asarray(onsets_ms, float)
    hv = np.asarray(heights_v, float)
    n, fs = det["record_length"], det["sample_frequency"]
    p = det["pulse"]
    t_end = (n - 1 - n // 4) / fs * 1e3
    tp = np.minimum(on + p["t_peak"], t_end)                        # (k,) where each pulse is judged
    comp = np.array([_pulse(det, "pulse", tp, o, h) for o, h in zip(on, hv)])   # comp[j, i]: pulse j at tp[i]
    total = comp.sum(axis=0)
    added = _saturate(det, total) - _saturate(det, total - np.diag(comp))
    gaps = np.diff(np.sort(on))
    sep = float(gaps.min() / p["t_peak"]) if gaps.size else np.inf
    return float(added.min() / det["sigma_of"]), sep


def simulate(det: dict, n_per_class: dict, rng: np.random.Generator, *, snr_range=SNR_RANGE) -> dict:
    """Records of one detector: dict with records (E, N) float32 V, event_class (E,), label (E,),
    snr (E,), saturated (E,), slow (E,: particle pulse decays slower than a quarter window),
    pileup_visible (E,: label rule 2, see the module doc; True for other classes)."""
    n, fs = det["record_length"], det["sample_frequency"]
    t = (np.arange(n) - n // 4) / fs * 1e3     # ms, trigger at 0
    dur = det["duration_ms"]
    sig, sbl = det["sigma_of"], det["sigma_bl"]
    rows, classes, snrs, sat, visible = [], [], [], [], []
    for cls in CLASSES:
        m = int(n_per_class.get(cls, 0))
        if m == 0:
            continue
        x = _noise(rng, det, m)
        clean = np.zeros((m, n))          # pre-saturation signal
        post = np.zeros((m, n))           # read-out effects after the TES (spikes, SQUID jumps, resets)
        snr = np.zeros(m)
        vis = np.ones(m, bool)
        for i in range(m):
            t0 = rng.uniform(-det["jitter_ms"], det["jitter_ms"])
            h = _logu(rng, *snr_range) * sig
            reset_drop = cls == "reset" and rng.random() < 0.5
            if cls in ("event_pulse", "tail_event", "decaying_baseline_with_event_pulse") or reset_drop:
                clean[i] += _pulse(det, "pulse", t, t0, h)
                snr[i] = h / sig
            if cls == "carrier_event":
                clean[i] += _pulse(det, "carrier", t, t0, h)
                snr[i] = h / sig
            if cls == "tail_event":
                p = det["pulse"]
                frac = rng.uniform(0.15, 0.4)
                if rng.random() < 0.5:    # persistent step (feedback / reabsorption), rising with the pulse
                    clean[i] += _step(t, t0, frac * h, 2 * max(p["tau_in"], p["tau_n"]))
                else:                     # slowly decaying extra component
                    slow = p["tau_t"] * _logu(rng, 3.0, 30.0)
                    clean[i] += frac * h * proebst(t, t0, 1.0, 0.0, slow, p["tau_n"], 1.0) / max(
                        proebst(np.linspace(0, 10 * slow, 4001), 0, 1.0, 0.0, slow, p["tau_n"], 1.0).max(), 1e-9)
            if cls == "reset":
                p = det["pulse"]
                if reset_drop:            # the pulse drives the SQUID over: baseline drops after onset
                    clean[i] += _step(t, t0 + p["tau_in"], -rng.uniform(0.3, 0.9) * h,
                                      2 * min(p["tau_in"], p["tau_n"]))
                else:                     # a reset to a higher baseline, no pulse
                    post[i] += _step(t, rng.uniform(-dur / 8, dur / 2), _logu(rng, 300, 5000) * sbl,
                                     rng.uniform(0.0, 0.05))
            if cls == "spike":
                w = rng.uniform(0.0, min(0.5, dur / 1024))   # ms: at most half a 512-sample bin
                tp = rng.uniform(-dur / 5, 0.65 * dur)
                post[i] += np.where((t >= tp) & (t <= tp + w), rng.choice([-1, 1]) * _logu(rng, 10, 1000) * sbl, 0.0)
                if not np.any((t >= tp) & (t <= tp + w)):
                    post[i, np.searchsorted(t, tp)] += rng.choice([-1, 1]) * _logu(rng, 10, 1000) * sbl
            if cls == "squid_jump":
                post[i] += _step(t, rng.uniform(-dur / 8, dur / 2), rng.choice([-1, 1]) * _logu(rng, 5, 500) * sbl,
                                 rng.uniform(0.05, 1.0))
            if cls in ("decaying_baseline", "decaying_baseline_with_event_pulse"):
                p = det["pulse"]
                start = -dur / 4
                back = p["t_peak"] + rng.uniform(0.1, 2.0) * p["tau_t"]
                one = _pulse(det, "pulse", np.array([start]), start - back, 1.0)[0]
                clean[i] += _pulse(det, "pulse", t, start - back, _logu(rng, 10, 1000) * sbl / max(one, 1e-3))
            if cls == "temperature_rise":
                ts = rng.uniform(-dur / 4, dur / 4)
                clean[i] += np.maximum(t - ts, 0) / (0.75 * dur - ts) * _logu(rng, 10, 300) * sbl
            if cls == "pile_up":
                k = int(rng.choice([2, 3, 4, 5], p=[0.4, 0.3, 0.2, 0.1]))
                clean[i] += _pulse(det, "pulse", t, t0, h)
                snr[i] = h / sig
                placed, heights = [t0], [h]
                while len(placed) < k:
                    tp = rng.uniform(-dur / 4, 0.65 * dur)
                    if min(abs(tp - q) for q in placed) < dur / 64:
                        continue
                    placed.append(tp)
                    heights.append(_logu(rng, max(5.0, 0.1 * h / sig), 3 * h / sig) * sig)
                    clean[i] += _pulse(det, "pulse", t, tp, heights[-1])
                low, sep = pileup_visibility(det, placed, heights)
                vis[i] = low >= PILEUP_MIN_SNR and sep >= PILEUP_MIN_RISES
            if cls == "early_or_late_trigger":
                tp = (rng.uniform(-dur / 4 + dur / 64, -dur / 8) if rng.random() < 0.5
                      else rng.uniform(dur / 8, dur / 2))
                clean[i] += _pulse(det, "pulse", t, tp, h)
                snr[i] = h / sig
        peak = clean.max(axis=1)
        y = _saturate(det, x + clean)
        y = np.round((y + post) / ADC_STEP) * ADC_STEP
        rows.append(y.astype(np.float32))
        classes += [cls] * m
        snrs.append(snr)
        visible.append(vis)
        sat.append(np.isfinite(det["ceiling"]) & (peak > 0.8 * det["ceiling"]) & (snr > 0))
    classes = np.array(classes)
    p = det["pulse"]
    return {"records": np.concatenate(rows), "event_class": classes, "label": np.isin(classes, ACCEPTED),
            "snr": np.concatenate(snrs), "saturated": np.concatenate(sat),
            "slow": np.full(len(classes), p["tau_t"] > dur / 4 or p["tau_in"] > dur / 100),
            "pileup_visible": np.concatenate(visible)}
