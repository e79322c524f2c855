"""Metrics of the data-cleaning classifiers (CRESST paper, seed 000, section 4 and Table 2).

Definitions (section 4): recall R = TP/T, selectivity S = TN/N, balanced accuracy
BA = (R + S)/2, precision P = TP/(TP + FP), with T (N) the positive (negative) records and a
record accepted when its score >= cutoff. IOR = integral of R(mu) over a region Omega of a pulse
feature mu, IOS likewise for S (see `integral_over_recall`, `integral_over_selectivity`).
Survival rate per event class as in the Cait paper (seed 001, Table 3).
"""
from __future__ import annotations

import numpy as np
from sklearn.metrics import (
    balanced_accuracy_score,
    precision_recall_curve,
    precision_score,
    recall_score,
)

from ..errors import InputError


def _binary(labels, scores, cutoff):
    y = np.asarray(labels, dtype=bool).ravel()
    s = np.asarray(scores, dtype=float).ravel()
    if y.shape != s.shape:
        raise InputError(f"labels and scores: {y.shape} vs {s.shape} entries")
    return y, s >= cutoff


def balanced_accuracy(labels, scores, *, cutoff: float = 0.5) -> float:
    """(recall + selectivity) / 2 of the decisions scores >= `cutoff` against bool `labels`."""
    y, d = _binary(labels, scores, cutoff)
    return float(balanced_accuracy_score(y, d))


def recall(labels, scores, *, cutoff: float = 0.5) -> float:
    """TP / T: share of positive records accepted (0 if no positives)."""
    y, d = _binary(labels, scores, cutoff)
    return float(recall_score(y, d, zero_division=0))


def selectivity(labels, scores, *, cutoff: float = 0.5) -> float:
    """TN / N: share of negative records rejected (0 if no negatives)."""
    y, d = _binary(labels, scores, cutoff)
    return float(recall_score(~y, ~d, zero_division=0))


def precision(labels, scores, *, cutoff: float = 0.5) -> float:
    """TP / (TP + FP): share of accepted records that are positive (0 if none accepted)."""
    y, d = _binary(labels, scores, cutoff)
    return float(precision_score(y, d, zero_division=0))


def cutoff_scan(labels, scores, *, cutoffs=None) -> dict:
    """Recall, selectivity, balanced accuracy and precision at each cutoff (default 0.05..0.95 by 0.05).

    Returns a dict of arrays with keys cutoff, recall, selectivity, balanced_accuracy, precision
    (precision NaN where nothing is accepted).
    """
    y = np.asarray(labels, dtype=bool).ravel()
    s = np.asarray(scores, dtype=float).ravel()
    c = np.round(np.arange(0.05, 0.951, 0.05), 10) if cutoffs is None else np.asarray(cutoffs, dtype=float)
    pos, neg = np.sort(s[y]), np.sort(s[~y])
    tp = pos.size - np.searchsorted(pos, c, side="left")        # positives with score >= c
    fp = neg.size - np.searchsorted(neg, c, side="left")
    with np.errstate(invalid="ignore", divide="ignore"):
        r = tp / pos.size if pos.size else np.zeros(c.size)
        sel = (neg.size - fp) / neg.size if neg.size else np.zeros(c.size)
        prec = np.where(tp + fp > 0, tp / (tp + fp), np.nan)
    return {"cutoff": c, "recall": r, "selectivity": sel, "balanced_accuracy": (r + sel) / 2, "precision": prec}


def precision_recall(labels, scores) -> dict:
    """Precision vs recall over all thresholds (sklearn precision_recall_curve)."""
    p, r, t = precision_recall_curve(np.asarray(labels, dtype=bool).ravel(), np.asarray(scores, dtype=float).ravel())
    return {"precision": p, "recall": r, "cutoff": t}


def binned_rate(values, passed, edges) -> tuple[np.ndarray, np.ndarray]:
    """Share of `passed` (bool) per bin of `values`: (rate per bin, NaN where empty; count per bin)."""
    v = np.asarray(values, dtype=float).ravel()
    p = np.asarray(passed, dtype=bool).ravel()
    n, _ = np.histogram(v, edges)
    k, _ = np.histogram(v[p], edges)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, k / n, np.nan), n


def recall_vs_snr(snr, accepted, *, edges=None) -> dict:
    """Recall of positive (simulated pulse) records per SNR bin.

    snr : pulse height / baseline resolution of each positive record; accepted : its decision.
    edges : bin edges (default 30 log-spaced bins from 1 to 300). Returns edges, centres, recall, counts.
    """
    e = np.geomspace(1, 300, 31) if edges is None else np.asarray(edges, dtype=float)
    r, n = binned_rate(snr, accepted, e)
    return {"edges": e, "centres": np.sqrt(e[:-1] * e[1:]) if e[0] > 0 else (e[:-1] + e[1:]) / 2,
            "recall": r, "counts": n}


def _step_integral(edges, values, lo, hi):
    """Mean of a step function (values on bins `edges`) over [lo, hi] in the same coordinate."""
    e, v = np.asarray(edges, dtype=float), np.asarray(values, dtype=float)
    if e.ndim != 1 or v.shape != (e.size - 1,) or np.any(np.diff(e) <= 0):
        raise InputError(f"edges/values: need increasing edges (K+1,) and values (K,), got {e.shape}, {v.shape}")
    if not (hi > lo) or lo < e[0] - 1e-12 or hi > e[-1] + 1e-12:
        raise InputError(f"integration range [{lo}, {hi}] is not inside the bins [{e[0]}, {e[-1]}]")
    overlap = np.clip(np.minimum(e[1:], hi) - np.maximum(e[:-1], lo), 0, None)
    if np.any(np.isnan(v[overlap > 0])):
        raise InputError("values: empty bins (NaN) inside the integration range; use wider bins or more events")
    return float(np.sum(np.where(overlap > 0, v, 0.0) * overlap) / (hi - lo))


def integral_over_recall(edges, recall_values, *, lo: float = 3.0, hi: float = 300.0, scale: str = "linear") -> float:
    """IOR (CRESST paper, Table 2 and section 4): IOR := integral_Omega R(mu) dmu.

    mu is the SNR and Omega = [3, 300] SNR ("We calculate the IOR for the SNR-range from three
    to three hundred", section 4.2). The integral is divided by the size of Omega so that a
    perfect classifier scores 1 (the paper's Table 2 values are <= 1). R(mu) is the step
    function of the binned recall (`recall_vs_snr`): value `recall_values[i]` on
    [edges[i], edges[i+1]). `scale="log10"` integrates over log10(SNR) instead (equal weight per
    decade; the paper integrates over mu itself, i.e. "linear").
    """
    if scale == "linear":
        return _step_integral(edges, recall_values, lo, hi)
    if scale == "log10":
        return _step_integral(np.log10(edges), recall_values, np.log10(lo), np.log10(hi))
    raise InputError(f"scale: must be 'linear' or 'log10', got {scale!r}")


def ior(snr, accepted, *, edges=None, lo: float = 3.0, hi: float = 300.0, scale: str = "linear") -> float:
    """IOR of positive records with SNR `snr` and decisions `accepted` (bins: default 3..300, 33 log bins)."""
    e = np.geomspace(lo, hi, 34) if edges is None else edges
    return integral_over_recall(e, recall_vs_snr(snr, accepted, edges=e)["recall"], lo=lo, hi=hi, scale=scale)


def selectivity_map(onset_difference, height_ratio, rejected, onset_edges, ratio_edges, *, weights=None) -> dict:
    """Selectivity (share rejected) of pile-up records over (onset difference, height ratio) bins.

    weights : optional per-record weights (> 0): the weighted share per bin, e.g. to reweight the
        test records' first-pulse SNR distribution to another population (importance weights).
    Returns onset_edges, ratio_edges, selectivity (n_onset, n_ratio; NaN in empty bins), counts.
    """
    o = np.asarray(onset_difference, dtype=float).ravel()
    h = np.asarray(height_ratio, dtype=float).ravel()
    r = np.asarray(rejected, dtype=bool).ravel()
    w = np.ones_like(o) if weights is None else np.asarray(weights, dtype=float).ravel()
    if w.shape != o.shape or np.any(~np.isfinite(w) | (w <= 0)):
        raise InputError(f"weights: need one finite weight > 0 per record ({o.size}), got shape {w.shape}")
    n, _, _ = np.histogram2d(o, h, (onset_edges, ratio_edges))
    wn, _, _ = np.histogram2d(o, h, (onset_edges, ratio_edges), weights=w)
    wk, _, _ = np.histogram2d(o[r], h[r], (onset_edges, ratio_edges), weights=w[r])
    with np.errstate(invalid="ignore", divide="ignore"):
        s = np.where(n > 0, wk / wn, np.nan)
    return {"onset_edges": np.asarray(onset_edges, float), "ratio_edges": np.asarray(ratio_edges, float),
            "selectivity": s, "counts": n}


def integral_over_selectivity(onset_edges, ratio_edges, selectivity_values) -> float:
    """IOS (CRESST paper, Table 2): integral of S over the whole (onset difference, height ratio)
    range of the map, divided by its area (a classifier rejecting every pile-up scores 1)."""
    oe, re_ = np.asarray(onset_edges, float), np.asarray(ratio_edges, float)
    s = np.asarray(selectivity_values, dtype=float)
    if s.shape != (oe.size - 1, re_.size - 1):
        raise InputError(f"selectivity: shape {s.shape} does not match the bins {(oe.size - 1, re_.size - 1)}")
    if np.isnan(s).any():
        raise InputError("selectivity: empty bins (NaN) in the map; use wider bins or more events")
    area = np.outer(np.diff(oe), np.diff(re_))
    return float(np.sum(s * area) / area.sum())


def survival_rates(event_class, accepted) -> dict:
    """Per event class: (number survived, number total, survival rate) of the accepted decisions."""
    names = np.array([str(c) for c in np.asarray(event_class).ravel().tolist()])   # also StringDType
    a = np.asarray(accepted, dtype=bool).ravel()
    if names.shape != a.shape:
        raise InputError(f"event_class and accepted: {names.shape} vs {a.shape} entries")
    classes, inv = np.unique(names, return_inverse=True)
    total = np.bincount(inv, minlength=classes.size)
    survived = np.bincount(inv, weights=a, minlength=classes.size).astype(int)
    return {c: (int(s), int(t), s / t) for c, s, t in zip(classes.tolist(), survived, total)}
