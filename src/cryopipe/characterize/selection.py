"""The few per-record features the characterization selects clean pulses by (`pulse_features`).

Not stored: heights and times of a lightly smoothed record, in samples, for the standard-event
selection (`cryopipe.characterize.sev_nps.select_clean_pulses`) and the pulse-model fit's starting values.
"""
from __future__ import annotations

import numba
import numpy as np

from cryopipe.errors import InputError
from cryopipe.signal.robust import MAD_TO_SIGMA, as_records

UNITS: dict[str, str] = {"baseline": "V", "baseline_rms": "V", "height": "V", "t_max": "samples",
                         "t_onset": "samples", "rise": "samples", "decay": "samples", "n_edges": "1"}
_FEATURES = tuple(UNITS)


@numba.njit(cache=True)
def _crossing_back(s, start, level):
    """Fractional index where s falls to `level` going backwards from `start` (-1 if never)."""
    for j in range(start, 0, -1):
        if s[j - 1] <= level:
            step = s[j] - s[j - 1]
            return j - (s[j] - level) / step if step > 0 else float(j)   # flat (saturated) record
    return -1.0


@numba.njit(cache=True)
def _crossing_forward(s, start, level):
    """Fractional index where s falls to `level` going forwards from `start` (len(s) if never)."""
    for j in range(start, s.size - 1):
        if s[j + 1] <= level:
            step = s[j] - s[j + 1]
            return j + (s[j] - level) / step if step > 0 else float(j)   # flat (saturated) record
    return float(s.size)


@numba.njit(cache=True)
def _pulse_features(records, n_base, width, k_edge, out):
    n_rec, n = records.shape
    half = width // 2
    for i in range(n_rec):
        x = records[i].astype(np.float64)
        bl = np.mean(x[:n_base])
        out[i, 0] = bl
        out[i, 1] = np.std(x[:n_base])
        cs = np.zeros(n + 1)
        for j in range(n):
            cs[j + 1] = cs[j] + x[j] - bl
        s = np.empty(n)
        for j in range(n):
            a = max(j - half, 0)
            b = min(j - half + width, n)
            s[j] = (cs[b] - cs[a]) / (b - a)
        i_max = np.argmax(s)
        h = s[i_max]
        out[i, 2] = h
        out[i, 3] = i_max
        t10 = _crossing_back(s, i_max, 0.1 * h)
        t90 = _crossing_back(s, i_max, 0.9 * h)
        out[i, 4] = t10
        out[i, 5] = t90 - t10 if t10 >= 0 and t90 >= 0 else np.nan
        out[i, 6] = _crossing_forward(s, i_max, h / np.e) - i_max
        # rising edges: box derivative above k_edge robust sigmas, an edge ends where it turns negative
        d = s[width:] - s[:n - width]
        d_base = d[:max(n_base - width, 8)]
        sigma = MAD_TO_SIGMA * np.median(np.abs(d_base - np.median(d_base)))
        threshold = k_edge * sigma
        edges = 0
        rising = False
        for j in range(d.size):
            if not rising and d[j] > threshold:
                edges += 1
                rising = True
            elif rising and d[j] < 0.0:
                rising = False
        out[i, 7] = edges


def pulse_features(records, *, smooth: int | None = None, k_edge: float = 6.0, batch: int = 1024) -> dict:
    """The few per-record features the SEV selection needs.

    Parameters
    ----------
    records : (n, N) V
    smooth : moving-average width for heights and times, samples (default max(N // 1024, 2))
    k_edge : a rising edge is a box derivative (over `smooth` samples) above k_edge robust sigmas
        of its baseline value

    Returns
    -------
    dict of (n,) float arrays: baseline (V, mean of the first N/8), baseline_rms (V), height (V, of the
    smoothed baseline-subtracted record), t_max, t_onset (10 % crossing before the maximum), rise
    (10-90 %), decay (maximum to 1/e), all in samples, and n_edges (number of rising edges).
    """
    records = as_records(records, min_samples=16)
    n = records.shape[1]
    width = int(smooth) if smooth else max(n // 1024, 2)
    out = np.empty((records.shape[0], len(_FEATURES)))
    for a in range(0, records.shape[0], batch):
        _pulse_features(np.ascontiguousarray(records[a:a + batch]), n // 8, width, float(k_edge),
                        out[a:a + batch])
    return {name: out[:, j] for j, name in enumerate(_FEATURES)}


def small_pulse_widening(records, mask, features: dict, *, trigger: int, min_small: int = 5,
                         min_snr: float = 20.0) -> tuple[float, int]:
    """How much wider at half maximum the clean pulses' (`mask`) mean is than the height-normalised
    mean of the single pulses below half their median height (onset within N/32 of `trigger`, each
    above `min_snr` baseline rms): (ratio, number of small pulses); (nan, n) with fewer than
    `min_small`. A ratio well above 1: the clean pulses' shape is not the small ones' (compressed
    by saturation, or slower when large). `features`: `pulse_features(records)`."""
    x = np.asarray(records, dtype=np.float64)
    n = x.shape[1]
    h = features["height"]
    small = ((features["n_edges"] <= 1) & (np.abs(features["t_onset"] - trigger) <= n // 32)
             & (h > min_snr * features["baseline_rms"]) & (h < 0.5 * np.median(h[mask])))
    if small.sum() < min_small or not mask.any():
        return float("nan"), int(small.sum())

    def half_width(sel, scale):
        m = ((x[sel] - x[sel, : n // 8].mean(axis=1, keepdims=True)) / scale[:, None]).mean(axis=0)
        return np.count_nonzero(m >= 0.5 * m.max())

    return half_width(mask, h[mask]) / max(half_width(small, h[small]), 1), int(small.sum())
