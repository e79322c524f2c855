"""Test-pulse analysis of CRESST runs: response, stability cut and pulser-model calibration.

The DAQ injects heater pulses of known test-pulse amplitude (TPA, V of the pulser) at stamped
times. Their measured amplitude (the *response*) against time and TPA tracks the detector's
operating point; this module turns it into a stability cut and a calibration, following Cait
(`cait.cuts.testpulse_stability`, `cait.calibration.PulserModel`; M. Stahlberg, TU Wien 2021,
doi:10.34726/hss.2021.45935; CRESST, PRD 100, 102002 (2019)), in our own formulation:

Amplitude
    One estimator for test pulses and particles: the optimum filter (`cryopipe.signal.optimum_filter`)
    built from a *test-pulse template* (the standard event of clean test pulses of one TPA) and
    the channel's noise power spectrum, applied to every record. Heater pulses differ in shape
    from particle pulses, so the particle SEV would be a mismatched filter for them; and the
    pulser model compares particle amplitudes with test-pulse amplitudes, so both must come from
    the same filter. (The particle SEV is the alternative, `template_from="sev"`, for runs with
    too few clean test pulses.)

Band (`local_trend`)
    Per TPA, the response y_i at time t_i is compared with a running robust line through the
    `window` nearest pulses of that TPA (window shifted inward at the run's ends): slope s_i =
    median of the pairwise slopes (Theil-Sen), centre c_i = median_j (y_j - s_i (t_j - t_i)).
    A linear drift leaves no residual, a minority of outliers (a jump) does not move the line.
    sigma = 1.4826 MAD(y - c) over the TPA's pulses. A pulse is stable when |y_i - c_i| <=
    k_sigma * sigma (and its response is finite).

Clean pulses (`clean_pulses`)
    A test pulse piled up with a particle (or hit by a glitch) is no measurement of the response:
    pulses whose optimum-filter chi2 lies above its own running band (same running line, one-sided)
    are left out of the band, the stability and the calibration.

Flat pre-trigger (`pretrigger_drift`, `flat_pretrigger`)
    A test pulse on the tail of an earlier particle pulse sits on a falling baseline, which biases
    its amplitude while its chi2 may stay in band. Its record's drift (least-squares slope of the
    pre-trigger samples [0, pretrigger - N/64) times their number, V) is compared with the running
    robust line of the drifts of its TPA (two-sided: a rising or a falling baseline): pulses beyond
    k_sigma robust sigmas are not clean either.

Stability (`stability`)
    All clean pulses of all TPAs (test and control pulses) in time order t_0 < ... < t_{n-1}. The
    interval (t_j, t_{j+1}) is stable when both its pulses are stable and t_{j+1} - t_j <=
    max_gap; an event is stable when it lies in a stable interval (events before the first or
    after the last pulse are unstable, as in Cait).

Pulser model (`response_curves`, `tpa_equivalent`)
    At an event's time t, the response curve A_k(t) of each calibration TPA T_k is the band
    centre interpolated linearly in time between that TPA's neighbouring pulses (extended
    linearly beyond its first/last pulse). With (T_0, A_0) = (0, 0) and the points sorted by TPA, a particle of
    amplitude a gets TPA_eq = T_s + (a - A_s) (T_{s+1} - T_s) / (A_{s+1} - A_s) on the segment s
    holding a (the first or last segment extended linearly beyond the points). Energy: E = c *
    TPA_eq with c = line_energy / (line position in the TPA_eq spectrum) (`cryopipe.calibrate.lines`).
"""
from __future__ import annotations

import numpy as np

from cryopipe.errors import CryopipeError, InputError
from cryopipe.signal.robust import MAD_TO_SIGMA

__all__ = ["pulse_groups", "local_trend", "clean_pulses", "pretrigger_drift", "flat_pretrigger", "response_band",
           "stability", "unstable_intervals", "response_curves", "tpa_equivalent", "choose_template_tpa",
           "saturated_tpas", "top_widths", "TPA_DECIMALS"]

TPA_DECIMALS = 4  # TPAs equal to 1e-4 V are one setting (the files store float32)


def pulse_groups(tpa) -> tuple[np.ndarray, np.ndarray]:
    """(unique TPA values, group index of each pulse), TPAs rounded to `TPA_DECIMALS`."""
    t = np.round(np.asarray(tpa, dtype=np.float64), TPA_DECIMALS)
    values, index = np.unique(t, return_inverse=True)
    return values, index.reshape(t.shape)


def local_trend(times, values, *, window: int = 9) -> np.ndarray:
    """Running robust line of a series evaluated at its own points.

    For each point i, the `window` nearest points (the window shifted inward at both ends; all
    points if fewer) give the Theil-Sen slope s_i (median of pairwise slopes) and the centre
    c_i = median_j (y_j - s_i (t_j - t_i)). NaN values are ignored.

    Parameters
    ----------
    times : (n,) increasing, s
    values : (n,) e.g. V
    window : points per window (>= 2)

    Returns
    -------
    (n,) centre c_i (NaN where the window has no finite value).
    """
    t = np.asarray(times, dtype=np.float64)
    y = np.asarray(values, dtype=np.float64)
    n = t.size
    if y.shape != t.shape or t.ndim != 1:
        raise InputError(f"times and values must be equal-length 1-d arrays, got {t.shape}, {y.shape}")
    if window < 2:
        raise InputError(f"window must be at least 2 pulses, got {window}")
    if n == 0:
        return np.zeros(0)
    w = min(int(window), n)
    start = np.clip(np.arange(n) - w // 2, 0, n - w)
    idx = start[:, None] + np.arange(w)[None, :]
    tw, yw = t[idx], y[idx]
    a, b = np.triu_indices(w, 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        slopes = (yw[:, b] - yw[:, a]) / (tw[:, b] - tw[:, a])
    slopes[~np.isfinite(slopes)] = np.nan
    with np.errstate(invalid="ignore"), _quiet():
        slope = np.nanmedian(slopes, axis=1) if slopes.shape[1] else np.zeros(n)
        slope = np.where(np.isfinite(slope), slope, 0.0)
        centre = np.nanmedian(yw - slope[:, None] * (tw - t[:, None]), axis=1)
    return centre


class _quiet:
    """Silence numpy's all-NaN-slice warnings inside a block."""

    def __enter__(self):
        import warnings

        self._w = warnings.catch_warnings()
        self._w.__enter__()
        warnings.simplefilter("ignore", RuntimeWarning)

    def __exit__(self, *exc):
        return self._w.__exit__(*exc)


def response_band(times, tpa, response, *, window: int = 9, k_sigma: float = 5.0,
                  min_sigma: float = 0.0) -> dict:
    """Band centre, width and stability of every pulse, per TPA (see module docstring).

    Parameters
    ----------
    times : (n,) s, pulse times (any order)
    tpa : (n,) V, pulser amplitude of each pulse
    response : (n,) measured amplitude of each pulse, V (NaN: invalid record, unstable)
    window : pulses of one TPA in the running robust line
    k_sigma : half-width of the band in robust sigmas
    min_sigma : floor of sigma, V (e.g. the baseline resolution)

    Returns
    -------
    dict of (n,) arrays: centre (V), sigma (V, per TPA), stable (bool).
    """
    t = np.asarray(times, dtype=np.float64)
    y = np.asarray(response, dtype=np.float64)
    values, group = pulse_groups(tpa)
    if not (t.shape == y.shape == group.shape and t.ndim == 1):
        raise InputError(f"times, tpa and response must be equal-length 1-d arrays, got {t.shape}, "
                         f"{group.shape}, {y.shape}")
    if not k_sigma > 0:
        raise InputError(f"k_sigma must be positive, got {k_sigma}")
    centre, sigma = np.full(t.size, np.nan), np.full(t.size, np.nan)
    for g in range(values.size):
        sel, c, _, s = _group_trend(t, y, group, g, window)
        centre[sel], sigma[sel] = c, max(s, float(min_sigma), np.finfo(float).tiny)
    with np.errstate(invalid="ignore"):
        stable = np.isfinite(y) & (np.abs(y - centre) <= k_sigma * sigma)
    return {"centre": centre, "sigma": sigma, "stable": stable}


def _group_trend(t, y, group, g, window):
    """For the pulses of TPA group `g` in time order: their indices, the running robust line of `y`
    (`local_trend`), the residuals y - line, and 1.4826 MAD of the finite residuals (inf below 3)."""
    sel = np.flatnonzero(group == g)
    sel = sel[np.argsort(t[sel], kind="stable")]
    c = local_trend(t[sel], y[sel], window=window)
    res = y[sel] - c
    fin = res[np.isfinite(res)]
    s = MAD_TO_SIGMA * np.median(np.abs(fin - np.median(fin))) if fin.size >= 3 else np.inf
    return sel, c, res, s


def clean_pulses(times, tpa, chi2, *, window: int = 9, k_sigma: float = 5.0) -> np.ndarray:
    """Test pulses fit to measure the response: per TPA, chi2_i <= c_i + k_sigma sigma with c_i the
    running robust line of chi2 (`local_trend`) and sigma = 1.4826 MAD of chi2 - c (one-sided: a
    pile-up or a glitch raises the chi2 of the optimum-filter fit, a clean pulse never does).

    A pile-up pulse is no measurement of the detector's response: it neither makes its interval
    unstable nor enters the calibration. Returns (n,) bool; non-finite chi2 is not clean.
    """
    return _in_running_band(times, tpa, chi2, window=window, k_sigma=k_sigma, two_sided=False)


def _in_running_band(times, tpa, values, *, window: int, k_sigma: float, two_sided: bool) -> np.ndarray:
    """Per TPA: values at most k_sigma robust sigmas above their running robust line (`_group_trend`;
    one-sided: any value below it is inside) or off it either way (two-sided); non-finite values are
    outside."""
    t = np.asarray(times, dtype=np.float64)
    x = np.asarray(values, dtype=np.float64)
    _, group = pulse_groups(tpa)
    ok = np.zeros(t.size, dtype=bool)
    for g in np.unique(group):
        sel, _, res, s = _group_trend(t, x, group, g, window)
        with np.errstate(invalid="ignore"):
            off = np.abs(res) if two_sided else res
            ok[sel] = np.isfinite(res) & (off <= k_sigma * max(s, np.finfo(float).tiny))
    return ok


def pretrigger_drift(traces, pretrigger: int) -> np.ndarray:
    """Baseline drift (V) of each (n, N) record: the least-squares slope of its pre-trigger samples
    [0, pretrigger - N/64) (at least 2) times their number; NaN for records with non-finite samples."""
    x = np.asarray(traces, dtype=np.float64)
    m = max(int(pretrigger) - x.shape[-1] // 64, 2)
    if m > x.shape[-1]:
        raise InputError(f"pretrigger {pretrigger} lies outside the records of {x.shape[-1]} samples")
    i = np.arange(m) - (m - 1) / 2.0
    y = x[..., :m]
    return (y - y.mean(axis=-1, keepdims=True)) @ i / np.sum(i * i) * m


def flat_pretrigger(times, tpa, drift, *, window: int = 9, k_sigma: float = 5.0) -> np.ndarray:
    """Pulses whose pre-trigger drift lies within k_sigma robust sigmas of the running robust line
    of their TPA's drifts (two-sided; see module docstring). Returns (n,) bool; non-finite drift is
    not flat."""
    return _in_running_band(times, tpa, drift, window=window, k_sigma=k_sigma, two_sided=True)


def stability(pulse_times, pulse_stable, event_times, *, max_gap: float | None = None) -> dict:
    """Stable intervals between consecutive pulses and the stability of events by their time.

    Parameters
    ----------
    pulse_times : (n,) s, every test and control pulse (any order)
    pulse_stable : (n,) bool, per pulse (e.g. `response_band`'s, all TPAs together)
    event_times : (m,) s
    max_gap : s; a longer interval between two pulses is unstable (None: no limit)

    Returns
    -------
    dict: order (n,) the time order of the pulses; interval_stable (n,) bool, for the interval
    from each pulse (in the input order) to the next one in time (False for the last);
    event_stable (m,) bool.
    """
    t = np.asarray(pulse_times, dtype=np.float64)
    ok = np.asarray(pulse_stable, dtype=bool)
    ev = np.asarray(event_times, dtype=np.float64)
    if t.shape != ok.shape or t.ndim != 1:
        raise InputError(f"pulse_times and pulse_stable must be equal-length 1-d, got {t.shape}, {ok.shape}")
    order = np.argsort(t, kind="stable")
    ts, oks = t[order], ok[order]
    iv = np.zeros(t.size, dtype=bool)
    if t.size >= 2:
        good = oks[:-1] & oks[1:]
        if max_gap is not None:
            good &= np.diff(ts) <= max_gap
        iv[:-1] = good
    j = np.searchsorted(ts, ev, side="right") - 1
    inside = (j >= 0) & (j < t.size - 1)
    ev_ok = np.zeros(ev.shape, dtype=bool)
    ev_ok[inside] = iv[j[inside]]
    interval = np.zeros(t.size, dtype=bool)
    interval[order] = iv
    return {"order": order, "interval_stable": interval, "event_stable": ev_ok}


def unstable_intervals(pulse_times, interval_stable) -> np.ndarray:
    """Merged unstable time intervals, (k, 2) [start, stop] s, between the first and last pulse."""
    t = np.asarray(pulse_times, dtype=np.float64)
    order = np.argsort(t, kind="stable")
    ts, ok = t[order], np.asarray(interval_stable, dtype=bool)[order][:-1]
    out = []
    for j in np.flatnonzero(~ok):
        if out and out[-1][1] == ts[j]:
            out[-1][1] = ts[j + 1]
        else:
            out.append([ts[j], ts[j + 1]])
    return np.asarray(out, dtype=np.float64).reshape(-1, 2)


def response_curves(pulse_times, pulse_tpa, centre, times, *, use=None) -> tuple[np.ndarray, np.ndarray]:
    """Response of every calibration TPA at the given times.

    Parameters
    ----------
    pulse_times, pulse_tpa, centre : (n,) s, V, V; the pulses' band centres (`response_band`)
    times : (m,) s, where the curves are wanted (e.g. particle times)
    use : (n,) bool, pulses that enter (default all): test pulses below saturation

    Returns
    -------
    (tpas (K,) ascending V, amplitudes (K, m) V): each TPA's centre interpolated linearly in time
    between its neighbouring pulses (constant beyond its first and last pulse).
    """
    t = np.asarray(pulse_times, dtype=np.float64)
    c = np.asarray(centre, dtype=np.float64)
    use = np.ones(t.size, bool) if use is None else np.asarray(use, dtype=bool)
    use = use & np.isfinite(c) & np.isfinite(t)
    values, group = pulse_groups(pulse_tpa)
    at = np.asarray(times, dtype=np.float64)
    tpas, curves = [], []
    for g in range(values.size):
        sel = np.flatnonzero((group == g) & use)
        if sel.size == 0 or values[g] <= 0:
            continue
        sel = sel[np.argsort(t[sel], kind="stable")]
        tpas.append(values[g])
        curves.append(_interp_extend(at, t[sel], c[sel]))
    if not tpas:
        raise CryopipeError("no test pulses for the response curve (every TPA excluded or unstable)")
    return np.asarray(tpas), np.asarray(curves).reshape(len(tpas), at.size)


def _interp_extend(x, xp, fp) -> np.ndarray:
    """Linear interpolation, extended linearly beyond the ends by the first/last segment (the
    drift goes on between a TPA's last pulse and the end of the run)."""
    y = np.interp(x, xp, fp)
    if xp.size >= 2:
        for end, (i, j) in ((x < xp[0], (0, 1)), (x > xp[-1], (-2, -1))):
            if np.any(end) and xp[j] > xp[i]:
                y[end] = fp[i] + (x[end] - xp[i]) * (fp[j] - fp[i]) / (xp[j] - xp[i])
    return y


def tpa_equivalent(amplitudes, tpas, curves) -> np.ndarray:
    """Test-pulse-equivalent amplitude (V of the pulser) of each event (pulser model inversion).

    Parameters
    ----------
    amplitudes : (m,) V, the events' amplitudes (same estimator as the test pulses')
    tpas : (K,) V ascending, the calibration TPAs
    curves : (K, m) V, the response of each TPA at each event's time (`response_curves`)

    Returns
    -------
    (m,) V: piecewise-linear inverse of (0, 0), (T_k, A_k) with the end segments extended; the
    response is made non-decreasing in TPA first (a saturating curve stays invertible).
    """
    a = np.asarray(amplitudes, dtype=np.float64)
    T = np.concatenate([[0.0], np.asarray(tpas, dtype=np.float64)])
    A = np.asarray(curves, dtype=np.float64).reshape(T.size - 1, a.size)
    A = np.maximum.accumulate(np.vstack([np.zeros((1, a.size)), A]), axis=0)
    k = T.size
    s = np.clip(np.sum(A[1:k - 1] < a[None, :], axis=0), 0, k - 2)
    cols = np.arange(a.size)
    a0, a1 = A[s, cols], A[s + 1, cols]
    t0, t1 = T[s], T[s + 1]
    with np.errstate(divide="ignore", invalid="ignore"):
        out = t0 + (a - a0) * (t1 - t0) / (a1 - a0)
    return np.where(a1 > a0, out, np.nan)


#: A TPA's test pulses are saturated when the flat top of their median trace (samples above 95 % of
#: its peak) is wider than SATURATION_WIDENING times, and SATURATION_MIN_EXTRA samples more than,
#: the narrowest top among the TPAs whose median trace stands SATURATION_MIN_SNR above its noise.
SATURATION_WIDENING, SATURATION_MIN_EXTRA, SATURATION_MIN_SNR = 1.5, 3, 100.0


def top_widths(tpa, traces, *, min_pulses: int = 10, max_pulses: int = 200) -> dict[float, tuple[int, float]]:
    """Per TPA with at least `min_pulses` pulses: (samples of its median trace above 95 % of the
    peak over the first-N/8 baseline, peak / noise of that median trace). `traces`: (n, N) V."""
    values, group = pulse_groups(tpa)
    x = np.asarray(traces, dtype=np.float64)
    n8 = max(x.shape[1] // 8, 2)
    out = {}
    for g in range(values.size):
        sel = np.flatnonzero(group == g)[:max_pulses]
        if values[g] <= 0 or sel.size < min_pulses:
            continue
        med = np.median(x[sel], axis=0)
        base = med[:n8]
        med = med - np.median(base)
        noise = MAD_TO_SIGMA * np.median(np.abs(base - np.median(base)))
        peak = float(med.max())
        out[float(values[g])] = (int(np.count_nonzero(med >= 0.95 * peak)), peak / max(noise, 1e-300))
    return out


def saturated_tpas(tpa, traces, *, min_pulses: int = 10) -> dict[float, str]:
    """TPAs whose test pulses saturate the detector (flat top; see SATURATION_WIDENING), each with
    the reason in words. TPAs too small to judge (median trace below SATURATION_MIN_SNR) are not."""
    widths = {v: w for v, (w, snr) in top_widths(tpa, traces, min_pulses=min_pulses).items()
              if snr >= SATURATION_MIN_SNR}
    if len(widths) < 2:
        return {}
    ref_tpa = min(widths, key=lambda v: (widths[v], v))
    ref = widths[ref_tpa]
    return {v: f"flat top {w} samples wide, {ref} at TPA {ref_tpa:g} V" for v, w in widths.items()
            if w > SATURATION_WIDENING * ref and w - ref >= SATURATION_MIN_EXTRA}


def choose_template_tpa(tpa, heights, *, max_amplitude: float | None = None, min_pulses: int = 10,
                        exclude=()) -> float:
    """TPA whose test pulses make the template: the largest TPA with at least `min_pulses` pulses
    whose median height stays below `max_amplitude` (V; None: no limit) and that is not in
    `exclude` (V; e.g. the `saturated_tpas`)."""
    values, group = pulse_groups(tpa)
    h = np.asarray(heights, dtype=np.float64)
    skip = np.round(np.asarray(list(exclude), dtype=np.float64), TPA_DECIMALS)
    best = None
    for g in range(values.size):
        hg = h[group == g]
        if values[g] <= 0 or hg.size < min_pulses or np.any(np.isclose(skip, values[g], rtol=0, atol=1e-9)):
            continue
        if max_amplitude is not None and np.median(hg) >= max_amplitude:
            continue
        best = values[g]
    if best is None:
        raise CryopipeError(f"no TPA with at least {min_pulses} test pulses below {max_amplitude} V for the "
                            "test-pulse template")
    return float(best)
