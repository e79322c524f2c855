"""Evaluation of a cleaning model on simulated test sets: scoring and metrics; the command line.

The module is split by job (issue 22): making the test sets (`cleaning.testsets`), scoring (here),
tables and plots (`cleaning.eval_output`), the issue-19 protocol and its command line
(`cleaning.protocol`, `cleaning.evaluate_cli`; ``python -m cryopipe.cleaning.evaluate``). The
names of the other modules are re-exported here, so ``from cryopipe.cleaning.evaluate import ...``
keeps working.

`evaluate_model(model, meta, test_sets, out_dir)` computes, for the decisions score >= cutoff:
- balanced accuracy, recall, precision and their scan over cutoffs, over all records of the sets
  holding more than one event class ("mixed" sets), and per set;
- recall vs SNR of event_pulse records (all sets) and IOR over SNR 3-300 (linear in SNR, as the
  paper; the log10-SNR variant is reported too);
- selectivity of two-pulse pile-ups over (onset difference / record length, height ratio) and IOS;
- survival rate per event class (mixed sets);
- the targets table `TARGETS` with pass/fail, as markdown and CSV, and figures (matplotlib, Agg).
"""
from __future__ import annotations

import time
import warnings
from pathlib import Path

import numpy as np
import torch
import xarray as xr

from . import metrics
from .eval_output import plot_all, write_tables  # noqa: F401
from .predict import CUTOFF, predict_scores
from .testsets import (  # noqa: F401 (re-exported)
    PILEUP_MIN_SEPARATION,
    PILEUP_RATIO,
    SIMSET_CHUNK,
    SNR_RANGE,
    _concat,
    _in_chunks,
    _second_onsets,
    build_test_sets,
    compact,
    detector_set,
    pileup_pairs,
    random_detector,
    universal_set,
)
from ..errors import InputError

#: name -> (comparison, threshold). Survival targets apply per class: accepted classes (event_pulse,
#: carrier_event, tail_event) >= 98 %, pile_up <= 4 %, every other (artifact) class <= 1 %.
TARGETS = {
    "balanced_accuracy": (">=", 0.97),
    "ior": (">=", 0.995),
    "ios": (">=", 0.98),
    "survival_accepted": (">=", 0.98),
    "survival_pile_up": ("<=", 0.04),
    "survival_artifact": ("<=", 0.01),
}
ONSET_SPAN = (1 / 64 - 1 / 4, 15 / 16 - 1 / 4)  # second onset in [N/64, 15N/16): difference / N
RATIO_EDGES = np.array([0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0])


# ------------------------------------------------------------------------------ evaluation

def score_sets(model, test_sets: dict[str, xr.Dataset], *, batch: int = 4096) -> dict[str, np.ndarray]:
    """Acceptance scores (channel, event) of every set."""
    return {name: predict_scores(model, ds["trace"].values, batch=batch) for name, ds in test_sets.items()}


def _flat(ds, name):
    v = ds[name]
    if "channel" not in v.dims:
        v = v.expand_dims(channel=ds.sizes["channel"])
    return np.asarray(v.transpose("channel", "event").values).ravel()


def classification(labels, scores, cutoff) -> dict:
    """BA, recall, selectivity, precision at `cutoff` and the cutoff scan of bool `labels`."""
    with warnings.catch_warnings():           # sets of one class (pulses, pile-ups): sklearn warns, values are defined
        warnings.simplefilter("ignore", UserWarning)
        return _classification(labels, scores, cutoff)


def _classification(labels, scores, cutoff):
    return {"balanced_accuracy": metrics.balanced_accuracy(labels, scores, cutoff=cutoff),
            "recall": metrics.recall(labels, scores, cutoff=cutoff),
            "selectivity": metrics.selectivity(labels, scores, cutoff=cutoff),
            "precision": metrics.precision(labels, scores, cutoff=cutoff), "n_records": int(np.size(labels)),
            "scan": metrics.cutoff_scan(labels, scores), "pr_curve": metrics.precision_recall(labels, scores)}


def snr_recall(snr, accepted, *, lo=SNR_RANGE[0], hi=SNR_RANGE[1], n_bins: int = 33) -> dict:
    """Recall vs SNR on log bins over [lo, hi] and IOR (linear in SNR as the paper, and log10).

    IOR is NaN if a bin inside [lo, hi] is empty.
    """
    edges = np.geomspace(lo, hi, n_bins + 1)
    curve = metrics.recall_vs_snr(snr, accepted, edges=edges)
    out = {"curve": curve, "n_records": int(np.sum(curve["counts"]))}
    for scale in ("linear", "log10"):
        try:
            out[f"ior_{scale}"] = metrics.integral_over_recall(edges, curve["recall"], lo=lo, hi=hi, scale=scale)
        except InputError:
            out[f"ior_{scale}"] = float("nan")
    return out


def pileup_selectivity(onset_difference, height_ratio, rejected, snr=None, onset_bins: int = 24,
                       ratio_edges=RATIO_EDGES) -> dict:
    """Selectivity map over (onset difference / N, height ratio) and IOS over the whole map (NaN if a bin is empty).

    The CRESST protocol (seed 000, section 4.2) simulates pile-ups "with PHs between zero and three
    hundred SNR", the population whose recall IOR integrates linearly in SNR. The test pile-ups draw
    the first pulse's SNR log-uniformly (more low-SNR records); with `snr` given (all > 0), "ios" and
    the map reweight every record by its SNR (importance weights: log-uniform -> uniform in SNR), and
    "ios_log_snr" keeps the log-uniform population (a harder figure, dominated by SNR < 30).
    """
    onset_edges = np.linspace(*ONSET_SPAN, onset_bins + 1)
    snr = None if snr is None else np.asarray(snr, dtype=float).ravel()
    weights = snr if snr is not None and snr.size and np.all(np.isfinite(snr) & (snr > 0)) else None
    out = {"n_records": int(np.size(rejected)),
           "selectivity": float(np.mean(rejected)) if np.size(rejected) else float("nan"),
           "snr_weighted": weights is not None}
    for key, w in (("", weights), ("_log_snr", None)):
        m = metrics.selectivity_map(onset_difference, height_ratio, rejected, onset_edges, ratio_edges, weights=w)
        try:
            ios = metrics.integral_over_selectivity(onset_edges, ratio_edges, m["selectivity"])
        except InputError:
            ios = float("nan")
        out[f"map{key}"], out[f"ios{key}"] = m, ios
    return out


def target_rows(result: dict, accepted_classes) -> list[dict]:
    """One row per target: name, value, comparison, threshold, passed."""
    rows = []

    def add(name, value, key):
        op, thr = TARGETS[key]
        ok = bool(np.isfinite(value) and (value >= thr if op == ">=" else value <= thr))
        rows.append({"target": name, "value": float(value), "comparison": op, "threshold": thr, "passed": ok})

    add("balanced_accuracy", result["classification"]["balanced_accuracy"], "balanced_accuracy")
    add("IOR (SNR 3-300)", result["snr"]["ior_linear"], "ior")
    add("IOS (two-pulse pile-ups, SNR 3-300)", result["pileup"]["ios"], "ios")
    for cls, (_, _, rate) in sorted(result["survival"].items()):
        key = ("survival_accepted" if cls in accepted_classes else "survival_pile_up" if cls == "pile_up"
               else "survival_artifact")
        add(f"survival {cls}", rate, key)
    return rows


def evaluate_model(model, meta: dict, test_sets: dict[str, xr.Dataset], out_dir, *, cutoff: float | None = None,
                   batch: int = 4096, onset_bins: int = 24, ratio_edges=RATIO_EDGES) -> dict:
    """Evaluate `model` on `test_sets` (name -> simset Dataset); write figures and tables to `out_dir`.

    Parameters
    ----------
    meta : the checkpoint meta (its "cutoff" is the default cutoff, else 0.5)
    test_sets : simset Datasets; sets holding one event class only (pulses, pile-ups) enter the
        SNR / selectivity metrics but not BA and survival; sets with variables onset_difference and
        height_ratio (`pileup_pairs`) make the selectivity map.
    out_dir : folder for ba_vs_cutoff.png, precision_recall.png, recall_vs_snr.png, selectivity_map.png,
        survival.png, targets.md, targets.csv, metrics_per_set.csv, metrics.json

    Returns
    -------
    dict with cutoff, classification (combined mixed sets), per_set, snr, pileup, survival
    (class -> (survived, total, rate)), targets (rows), all_passed, and throughput (records/s of
    scoring every set, n_scored records).
    """
    if not test_sets:
        raise InputError("test_sets: need at least one simset Dataset")
    cutoff = float(cutoff if cutoff is not None else meta.get("cutoff", CUTOFF))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    scores = score_sets(model, test_sets, batch=batch)
    n_scored = sum(v.size for v in scores.values())
    throughput = n_scored / max(time.perf_counter() - t0, 1e-9)
    per_set, mixed, snr, acc_snr, pile = {}, [], [], [], []
    for name, ds in test_sets.items():
        s, lab = scores[name].ravel(), _flat(ds, "label").astype(bool)
        cls = _flat(ds, "event_class").astype(str)
        per_set[name] = {k: v for k, v in classification(lab, s, cutoff).items() if k not in ("scan", "pr_curve")}
        per_set[name]["survival"] = metrics.survival_rates(cls, s >= cutoff)
        if np.unique(cls).size > 1:
            mixed.append((lab, s, cls))
        pulses = cls == "event_pulse"
        snr.append(_flat(ds, "snr")[pulses])
        acc_snr.append(s[pulses] >= cutoff)
        if "height_ratio" in ds:
            pile.append((_flat(ds, "onset_difference"), _flat(ds, "height_ratio"), s < cutoff, _flat(ds, "snr")))
    if not mixed:
        raise InputError("test_sets: need at least one set with more than one event class")
    lab, s, cls = (np.concatenate(v) for v in zip(*mixed))
    accepted_classes = sorted(set(cls[lab]))
    result = {
        "cutoff": cutoff, "sets": list(test_sets), "classification": classification(lab, s, cutoff),
        "per_set": per_set, "snr": snr_recall(np.concatenate(snr), np.concatenate(acc_snr)),
        "pileup": pileup_selectivity(*(np.concatenate(v) for v in zip(*pile)), onset_bins=onset_bins,
                                     ratio_edges=ratio_edges) if pile
        else {"ios": float("nan"), "ios_log_snr": float("nan"), "n_records": 0, "map": None,
              "selectivity": float("nan")},
        "survival": metrics.survival_rates(cls, s >= cutoff), "accepted_classes": accepted_classes,
        "throughput": throughput, "n_scored": n_scored, "torch_threads": torch.get_num_threads(),
    }
    result["targets"] = target_rows(result, accepted_classes)
    result["all_passed"] = all(r["passed"] for r in result["targets"])
    write_tables(result, out, meta)
    plot_all(result, out)
    return result


# ------------------------------------------------------------------------------ per-SNR survival

SNR_TABLE_EDGES = (3.0, 5.0, 10.0, 30.0, 100.0, 300.0, 1000.0)


def snr_table(event_class, snr, score, cutoff, *, edges=SNR_TABLE_EDGES,
              classes=("event_pulse", "carrier_event", "tail_event", "pile_up")) -> dict:
    """Survival per class and SNR bin (pooled over detectors): class -> list of (lo, hi, survived, total)."""
    event_class = np.asarray(event_class).astype(str)
    keep = np.asarray(score) >= cutoff
    snr = np.asarray(snr, float)
    out = {}
    for cls in classes:
        rows = []
        for lo, hi in zip(edges[:-1], edges[1:]):
            m = (event_class == cls) & (snr >= lo) & (snr < hi if hi < edges[-1] else snr <= hi)
            rows.append((lo, hi, int(keep[m].sum()), int(m.sum())))
        out[cls] = rows
    return out


def _score_with_uncertainty(model, records, batch):
    """Scores, and for a calibrated model (meta temperature) also the OOD flags and calibrated probabilities."""
    if getattr(model, "temperature", None) is None or model.n_classes == 1:
        return predict_scores(model, records, batch=batch), None
    from .predict import predict_logits, uncertainty_from_logits

    u = uncertainty_from_logits(predict_logits(model, records, batch=batch), model.accepted,
                                temperature=model.temperature,
                                threshold=getattr(model, "ood_threshold", np.inf))
    return u["score"], u


if __name__ == "__main__":  # `python -m cryopipe.cleaning.evaluate`: the command line of evaluate_cli
    from cryopipe.cleaning.evaluate_cli import main as _main

    _main()
