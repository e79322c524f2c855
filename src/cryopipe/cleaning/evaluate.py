"""Evaluation of a cleaning model on simulated test sets: metrics, targets table and figures.

Test sets are "simset" Datasets (`cryopipe.simulate.records`) of detectors not used in training:
universal sets of a new seed, detector-mode sets of random SEV/NPS (`random_detector`), pulse sets
(event_pulse only, SNR 3-300, for recall vs SNR and IOR) and two-pulse pile-up sets
(`pileup_pairs`, for the selectivity map and IOS; the CRESST paper's simulation, seed 000 section 4.2:
first pulse at N/4, second anywhere in the window). Sets are stored downsampled to 512 samples
(`compact`): the models downsample every record to 512 block means, so the scores are identical.

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

import csv
import json
import time
import warnings
from pathlib import Path

import numpy as np
import scipy.fft
import torch
import xarray as xr

from . import metrics
from .predict import CUTOFF, predict_scores
from .preprocess import LENGTH, downsample
from ..errors import InputError
from ..simulate.noise import psd_model
from ..signal.pulses import pulse_template
from ..simulate.records import (
    EVENT_CLASSES,
    simulate_detector_records,
    simulate_universal_records,
)

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
SNR_RANGE = (3.0, 300.0)                       # IOR range (CRESST paper section 4.2)
PILEUP_RATIO = (0.05, 1.0)                     # second / first pulse height (the simulator's pileup_min_ratio)
PILEUP_MIN_SEPARATION = 1 / 128                # |onset difference| >= this fraction of N (simulator's pile_up)
ONSET_SPAN = (1 / 64 - 1 / 4, 15 / 16 - 1 / 4)  # second onset in [N/64, 15N/16): difference / N
RATIO_EDGES = np.array([0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0])
SIMSET_CHUNK = 10_000                          # records simulated at a time before `compact`


# ------------------------------------------------------------------------------ test sets

def compact(ds: xr.Dataset, length: int = LENGTH) -> xr.Dataset:
    """The set with its traces downsampled to `length` block means (what every model sees first)."""
    out = ds.drop_vars([n for n, v in ds.variables.items() if "sample" in v.dims and n != "trace"])
    trace = downsample(ds["trace"].values, length)
    return out.assign(trace=(("channel", "event", "sample"), trace)).assign_attrs(
        downsampled_from=int(ds.sizes["sample"]))


def _concat(parts: list[xr.Dataset]) -> xr.Dataset:
    ds = xr.concat(parts, dim="event", data_vars="minimal", coords="minimal", compat="override",
                   combine_attrs="override", join="override")
    return ds.assign_coords(event=np.arange(ds.sizes["event"]))


def _in_chunks(n_per_class: dict, make, rng: np.random.Generator) -> xr.Dataset:
    """Simulate `n_per_class` in pieces of about SIMSET_CHUNK records (each `compact`ed), concatenated."""
    total = sum(n_per_class.values())
    pieces = max(1, -(-total // SIMSET_CHUNK))
    parts = []
    for p in range(pieces):
        counts = {c: k // pieces + (p < k % pieces) for c, k in n_per_class.items()}
        counts = {c: k for c, k in counts.items() if k}
        if counts:
            parts.append(compact(make(counts, np.random.default_rng(rng.integers(2**63)))))
    return _concat(parts)


def random_detector(rng: np.random.Generator, record_length: int = 4096,
                    sample_frequency: float | None = None) -> dict:
    """A random detector: SEV (Proebst model, max 1, onset N/4), NPS (white + 1/f + lines, V^2/Hz), fs (Hz).

    Time constants are drawn as fractions of the record duration, so any record length gives a
    plausible window; resolution (sigma_OF) log-uniform in [0.1, 5] mV.
    """
    n = int(record_length)
    fs = float(sample_frequency or np.exp(rng.uniform(np.log(10e3), np.log(50e3))))
    duration = n / fs
    tau_n = duration * np.exp(rng.uniform(np.log(1 / 200), np.log(1 / 15)))
    tau_in = tau_n * np.exp(rng.uniform(np.log(1 / 30), np.log(1 / 4)))
    tau_t = tau_n * rng.uniform(1.5, 6.0)
    sev = pulse_template(n, fs, tau_n, tau_in, tau_t, at_over_an=float(rng.uniform(0.1, 2.0)))
    freqs = scipy.fft.rfftfreq(n, 1 / fs)
    lines = tuple((50.0 * k, 2 * fs / n, 1e-11 * rng.uniform(1, 100)) for k in rng.integers(1, 8, rng.integers(0, 4)))
    nps = psd_model(freqs, 1e-12, 1e-12 * np.exp(rng.uniform(0, np.log(500))), 1.0, lines, rng.uniform(0.7, 1.5))
    return {"sev": sev, "nps": nps, "sample_frequency": fs, "resolution": float(np.exp(rng.uniform(np.log(1e-4),
                                                                                                 np.log(5e-3)))),
            "tau_n": tau_n, "tau_in": tau_in, "tau_t": tau_t}


def detector_set(n_per_class: dict, detector: dict, rng: np.random.Generator, snr_range=(3.0, 1000.0),
                 **kwargs) -> xr.Dataset:
    """Detector-mode simset of `detector` (`random_detector`), compacted, simulated in chunks."""
    def make(counts, gen):
        return simulate_detector_records(counts, detector["sev"], detector["nps"], detector["sample_frequency"], gen,
                                         resolution=detector["resolution"], snr_range=snr_range, **kwargs)
    return _in_chunks(dict(n_per_class), make, rng)


def universal_set(n_per_class: dict, record_length: int, rng: np.random.Generator, snr_range=(3.0, 1000.0),
                  **kwargs) -> xr.Dataset:
    """Universal-mode simset (every record its own detector), compacted, simulated in chunks."""
    def make(counts, gen):
        return simulate_universal_records(counts, record_length, gen, snr_range=snr_range, **kwargs)
    return _in_chunks(dict(n_per_class), make, rng)


def pileup_pairs(n: int, detector: dict, rng: np.random.Generator, snr_range=SNR_RANGE, ratio_range=PILEUP_RATIO,
                 min_separation: float = PILEUP_MIN_SEPARATION) -> xr.Dataset:
    """Two-pulse pile-ups: a simulated event_pulse record (onset N/4 +- N/64, SNR log-uniform in
    `snr_range`) plus a second SEV pulse, height ratio r = h2/h1 log-uniform in
    [max(r_lo, 3/SNR1), r_hi] (the simulator's pile_up rule), onset anywhere in [N/64, 15N/16) at least
    `min_separation` * N from the first. No saturation (pulses add linearly).

    Returns a compacted simset (event_class 'pile_up', label False) with the extra variables
    onset_difference ((onset2 - onset1) / N) and height_ratio (channel, event), and n_pulses = 2.
    """
    sev, fs = detector["sev"], detector["sample_frequency"]
    n_samples = sev.size
    parts, left = [], int(n)
    grid = np.arange(n_samples, dtype=np.float64)
    while left > 0:
        m = min(left, SIMSET_CHUNK)
        gen = np.random.default_rng(rng.integers(2**63))
        ds = simulate_detector_records({"event_pulse": m}, sev, detector["nps"], fs, gen,
                                       resolution=detector["resolution"], snr_range=snr_range)
        onset1 = ds["onset"].values[0] * fs + n_samples // 4                       # samples
        snr1 = ds["snr"].values[0].astype(float)
        lo = np.clip(np.maximum(ratio_range[0], SNR_RANGE[0] / snr1), None, ratio_range[1])
        ratio = np.exp(gen.uniform(np.log(lo), np.log(ratio_range[1])))
        onset2 = _second_onsets(gen, onset1, n_samples, min_separation)
        h2 = ratio * ds["pulse_height"].values[0]
        trace = ds["trace"].values[0].astype(np.float64)
        sev_onset = n_samples // 4                                                    # as the simulator's SEV
        for i in range(m):
            trace[i] += h2[i] * np.interp(grid - onset2[i] + sev_onset, grid, sev, left=0.0, right=sev[-1])
        ds["trace"] = (("channel", "event", "sample"), trace[None].astype(np.float32))
        ds["event_class"] = ("event", np.full(m, "pile_up"))
        ds["label"] = (("channel", "event"), np.zeros((1, m), dtype=bool))
        ds["n_pulses"] = (("channel", "event"), np.full((1, m), 2, dtype=np.int64))
        ds["onset_difference"] = (("channel", "event"), ((onset2 - onset1) / n_samples)[None])
        ds["height_ratio"] = (("channel", "event"), ratio[None])
        parts.append(compact(ds))
        left -= m
    return _concat(parts)


def _second_onsets(rng, onset1, n_samples, min_separation):
    """Onsets (samples) uniform in [N/64, 15N/16) excluding |onset - onset1| < min_separation N."""
    lo, hi, gap = n_samples / 64, n_samples * 15 / 16, min_separation * n_samples
    a0, a1 = onset1 - gap, onset1 + gap                    # excluded interval
    left_len = np.clip(a0 - lo, 0, None)
    u = rng.uniform(0, 1, onset1.size) * (left_len + np.clip(hi - a1, 0, None))
    return np.where(u < left_len, lo + u, a1 + (u - left_len))


def build_test_sets(n_per_class: int, n_pulses: int, n_pileups: int, record_length: int = 4096,
                    seed: int = 1000) -> dict[str, xr.Dataset]:
    """The standard test sets: universal (seed), two random detectors (all classes), pulses and
    two-pulse pile-ups split over the two detectors. Sizes: records per class per mixed set,
    total pulses, total pile-ups."""
    rng = np.random.default_rng(seed)
    every = {c: int(n_per_class) for c in EVENT_CLASSES}
    sets = {"universal": universal_set(every, record_length, rng)}
    for name in ("a", "b"):
        det = random_detector(rng, record_length)
        sets[f"detector_{name}"] = detector_set(every, det, rng)
        sets[f"pulses_{name}"] = detector_set({"event_pulse": n_pulses // 2}, det, rng, snr_range=SNR_RANGE)
        sets[f"pileups_{name}"] = pileup_pairs(n_pileups // 2, det, rng)
    return sets


# ------------------------------------------------------------------------------ evaluation

def score_sets(model, test_sets: dict[str, xr.Dataset], batch: int = 4096) -> dict[str, np.ndarray]:
    """Acceptance scores (channel, event) of every set."""
    return {name: predict_scores(model, ds["trace"].values, batch) for name, ds in test_sets.items()}


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
    return {"balanced_accuracy": metrics.balanced_accuracy(labels, scores, cutoff),
            "recall": metrics.recall(labels, scores, cutoff),
            "selectivity": metrics.selectivity(labels, scores, cutoff),
            "precision": metrics.precision(labels, scores, cutoff), "n_records": int(np.size(labels)),
            "scan": metrics.cutoff_scan(labels, scores), "pr_curve": metrics.precision_recall(labels, scores)}


def snr_recall(snr, accepted, lo=SNR_RANGE[0], hi=SNR_RANGE[1], n_bins: int = 33) -> dict:
    """Recall vs SNR on log bins over [lo, hi] and IOR (linear in SNR as the paper, and log10).

    IOR is NaN if a bin inside [lo, hi] is empty.
    """
    edges = np.geomspace(lo, hi, n_bins + 1)
    curve = metrics.recall_vs_snr(snr, accepted, edges)
    out = {"curve": curve, "n_records": int(np.sum(curve["counts"]))}
    for scale in ("linear", "log10"):
        try:
            out[f"ior_{scale}"] = metrics.integral_over_recall(edges, curve["recall"], lo, hi, scale)
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
        m = metrics.selectivity_map(onset_difference, height_ratio, rejected, onset_edges, ratio_edges, w)
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


def evaluate_model(model, meta: dict, test_sets: dict[str, xr.Dataset], out_dir, cutoff: float | None = None,
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
    scores = score_sets(model, test_sets, batch)
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



# ------------------------------------------------------------------------------ generalisation (issue 15)

#: Targets on many random detectors (issue 15); they apply to the mean over detectors.
#: key -> (comparison, threshold); survival keys are per event class.
GENERALISATION_TARGETS = {
    "balanced_accuracy": (">=", 0.97),
    "pulse_snr_ge_10": (">=", 0.98),
    "saturated_pulse_snr_ge_10": (">=", 0.98),
    "survival tail_event": (">=", 0.97),
    "survival carrier_event": (">=", 0.97),
    "survival pile_up": ("<=", 0.05),
    "survival spike": ("<=", 0.01),
    "survival squid_jump": ("<=", 0.01),
    "survival reset": ("<=", 0.01),
    "survival decaying_baseline": ("<=", 0.01),
    "survival noise": ("<=", 0.01),
}
SNR_TABLE_EDGES = (3.0, 5.0, 10.0, 30.0, 100.0, 300.0, 1000.0)


def detector_metrics(event_class, label, snr, saturated, score, cutoff) -> dict:
    """Per-detector figures: BA (particle pulse vs rest), pulse survival at SNR >= 10 (all and
    saturated), survival per class (NaN where a class or subset is empty)."""
    event_class = np.asarray(event_class).astype(str)
    keep = np.asarray(score) >= cutoff
    label = np.asarray(label, bool)
    out = {"balanced_accuracy": metrics.balanced_accuracy(label, np.asarray(score), cutoff)
           if label.any() and (~label).any() else float("nan"), "n_records": int(label.size)}
    pulses = (event_class == "event_pulse") & (np.asarray(snr) >= 10)
    sat = pulses & np.asarray(saturated, bool)
    out["pulse_snr_ge_10"] = float(keep[pulses].mean()) if pulses.any() else float("nan")
    out["saturated_pulse_snr_ge_10"] = float(keep[sat].mean()) if sat.any() else float("nan")
    out["n_saturated_pulses"] = int(sat.sum())
    for cls, (_, _, rate) in metrics.survival_rates(event_class, keep).items():
        out[f"survival {cls}"] = float(rate)
    return out


def summarise_detectors(per_detector: list[dict], targets: dict = GENERALISATION_TARGETS) -> list[dict]:
    """Mean, standard deviation and worst detector of every target figure, with pass/fail on the mean."""
    rows = []
    for key, (op, thr) in targets.items():
        v = np.array([d.get(key, np.nan) for d in per_detector], dtype=float)
        ok = np.isfinite(v)
        if not ok.any():
            continue
        worst_i = int(np.nanargmin(v) if op == ">=" else np.nanargmax(v))
        mean = float(np.mean(v[ok]))
        rows.append({"target": key, "mean": mean, "std": float(np.std(v[ok])), "worst": float(v[worst_i]),
                     "worst_detector": worst_i, "n_detectors": int(ok.sum()), "comparison": op, "threshold": thr,
                     "passed": bool(mean >= thr if op == ">=" else mean <= thr)})
    return rows


def snr_table(event_class, snr, score, cutoff, edges=SNR_TABLE_EDGES,
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
        return predict_scores(model, records, batch), None
    from .predict import predict_logits, uncertainty_from_logits

    u = uncertainty_from_logits(predict_logits(model, records, batch), model.accepted, model.temperature,
                                getattr(model, "ood_threshold", np.inf))
    return u["score"], u


def _uncertainty_metrics(m: dict, u, label, score, cutoff) -> None:
    """OOD flag rate, its rate among wrong decisions, and the calibration (NLL, Brier) of P(clean)."""
    if u is None:
        return
    wrong = (np.asarray(score) >= cutoff) != np.asarray(label, bool)
    p = np.clip(u["probability"].astype(float), 1e-7, 1 - 1e-7)
    y = np.asarray(label, float)
    m["ood_fraction"] = float(np.mean(u["ood"]))
    m["ood_fraction_of_errors"] = float(np.mean(u["ood"][wrong])) if wrong.any() else float("nan")
    m["ood_fraction_of_correct"] = float(np.mean(u["ood"][~wrong])) if (~wrong).any() else float("nan")
    m["binary_nll_calibrated"] = float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))
    m["brier_calibrated"] = float(np.mean((p - y) ** 2))


def independent_evaluation(model, cutoff: float, n_detectors: int = 24, n_per_class: int = 100, seed: int = 2000,
                           snr_range=(3.0, 1000.0), batch: int = 4096) -> dict:
    """The model on `n_detectors` virtual detectors of the independent test generator
    (`cleaning.independent_sim`, shares no code with the training simulator): per-detector figures,
    mean / spread / worst (`summarise_detectors`) and the pooled per-SNR survival table."""
    from . import independent_sim as ind

    rng = np.random.default_rng(seed)
    per, pooled = [], []
    for _ in range(int(n_detectors)):
        det = ind.draw_detector(rng)
        d = ind.simulate(det, {c: n_per_class for c in ind.CLASSES}, rng, snr_range)
        score, u = _score_with_uncertainty(model, d["records"], batch)
        m = detector_metrics(d["event_class"], d["label"], d["snr"], d["saturated"], score, cutoff)
        _uncertainty_metrics(m, u, d["label"], score, cutoff)
        m.update(record_length=det["record_length"], sample_frequency=det["sample_frequency"],
                 tau_n_ms=det["pulse"]["tau_n"], tau_in_ms=det["pulse"]["tau_in"], tau_t_ms=det["pulse"]["tau_t"],
                 saturation_over_sigma=det["saturation_over_sigma"])
        per.append(m)
        pooled.append((d["event_class"], d["snr"], score))
    cls, snr, score = (np.concatenate(v) for v in zip(*pooled))
    return {"generator": "independent", "cutoff": cutoff, "per_detector": per, "summary": summarise_detectors(per),
            "snr_table": snr_table(cls, snr, score, cutoff), "seed": seed, "n_per_class": n_per_class}


def own_detectors_evaluation(model, cutoff: float, n_detectors: int = 20, n_per_class: int = 100,
                             record_length: int = 4096, seed: int = 3000, batch: int = 4096) -> dict:
    """The model on `n_detectors` random detectors of our own simulator (`random_detector`, half of
    them saturating at 50-3000 sigma_OF), every class: the same figures as `independent_evaluation`."""
    rng = np.random.default_rng(seed)
    per, pooled = [], []
    for i in range(int(n_detectors)):
        det = random_detector(rng, record_length)
        sat = det["resolution"] * float(np.exp(rng.uniform(np.log(50), np.log(3000)))) if i % 2 else None
        ds = detector_set({c: n_per_class for c in EVENT_CLASSES}, det, rng, saturation=sat)
        score, u = _score_with_uncertainty(model, ds["trace"].values[0], batch)
        cls, snr = _flat(ds, "event_class").astype(str), _flat(ds, "snr")
        saturated = np.zeros(cls.size, bool) if sat is None else _flat(ds, "pulse_height") > 0.8 * sat
        per.append(detector_metrics(cls, _flat(ds, "label"), snr, saturated, score, cutoff))
        _uncertainty_metrics(per[-1], u, _flat(ds, "label"), score, cutoff)
        pooled.append((cls, snr, score))
    cls, snr, score = (np.concatenate(v) for v in zip(*pooled))
    return {"generator": "own", "cutoff": cutoff, "per_detector": per, "summary": summarise_detectors(per),
            "snr_table": snr_table(cls, snr, score, cutoff), "seed": seed, "n_per_class": n_per_class}


def generalisation_markdown(result: dict, title: str) -> str:
    """Markdown of a many-detector evaluation: targets (mean, std, worst) and the per-SNR table."""
    lines = [f"## {title}", "", f"{len(result['per_detector'])} detectors, {result['n_per_class']} records per "
             f"class each, seed {result['seed']}, cutoff {result['cutoff']}. Targets apply to the mean.", "",
             "| figure | mean | std | worst (detector) | goal | pass |", "|---|---|---|---|---|---|"]
    for r in result["summary"]:
        lines.append(f"| {r['target']} | {r['mean']:.4f} | {r['std']:.4f} | {r['worst']:.4f} ({r['worst_detector']}) "
                     f"| {r['comparison']} {r['threshold']} | {'yes' if r['passed'] else 'NO'} |")
    unc = [k for k in ("ood_fraction", "ood_fraction_of_errors", "ood_fraction_of_correct", "binary_nll_calibrated",
                       "brier_calibrated") if any(k in d for d in result["per_detector"])]
    if unc:
        lines += ["", "Uncertainty (mean over detectors): " + ", ".join(
            f"{k} {np.nanmean([d.get(k, np.nan) for d in result['per_detector']]):.4f}" for k in unc) + "."]
    lines += ["", "Survival per SNR bin (pooled):", "",
              "| class | " + " | ".join(f"{lo:g}-{hi:g}" for lo, hi, _, _ in next(iter(result['snr_table'].values())))
              + " |", "|---|" + "---|" * len(next(iter(result['snr_table'].values())))]
    for cls, rows in result["snr_table"].items():
        lines.append(f"| {cls} | " + " | ".join(f"{s / t:.3f} ({t})" if t else "-" for _, _, s, t in rows) + " |")
    return "\n".join(lines) + "\n"


def write_generalisation(results: list[tuple[str, dict]], out: Path) -> str:
    """generalisation.md and generalisation.json in `out`; returns the markdown."""
    out.mkdir(parents=True, exist_ok=True)
    text = "# Generalisation over many detectors\n\n" + "\n".join(generalisation_markdown(r, t) for t, r in results)
    (out / "generalisation.md").write_text(text)
    (out / "generalisation.json").write_text(json.dumps({t: r for t, r in results}, indent=1, default=float))
    return text

# ------------------------------------------------------------------------------ output

def write_tables(result: dict, out: Path, meta: dict) -> None:
    """targets.csv, targets.md, metrics_per_set.csv and metrics.json (scalars) in `out`."""
    rows = result["targets"]
    with open(out / "targets.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    c = result["classification"]
    lines = [f"# Cleaning model evaluation ({meta.get('name', meta.get('model', 'model'))}, cutoff {result['cutoff']})",
             "", f"Sets: {', '.join(result['sets'])}. Mixed-set records: {c['n_records']}; "
             f"SNR-curve pulses: {result['snr']['n_records']}; two-pulse pile-ups: {result['pileup']['n_records']}.",
             f"Recall {c['recall']:.4f}, selectivity {c['selectivity']:.4f}, precision {c['precision']:.4f}; "
             f"IOR over log10 SNR {result['snr']['ior_log10']:.4f}. IOS with the first pulse's SNR "
             f"log-uniform in 3-300 instead of uniform: {result['pileup']['ios_log_snr']:.4f}.",
             f"Prediction throughput {result['throughput']:,.0f} records/s ({result['n_scored']} records, "
             f"{result['torch_threads']} torch thread(s)).", "",
             "| target | value | goal | pass |", "|---|---|---|---|"]
    lines += [f"| {r['target']} | {r['value']:.4f} | {r['comparison']} {r['threshold']} | "
              f"{'yes' if r['passed'] else 'NO'} |" for r in rows]
    (out / "targets.md").write_text("\n".join(lines) + "\n")
    with open(out / "metrics_per_set.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["set", "n_records", "balanced_accuracy", "recall", "selectivity", "precision"])
        for name, m in result["per_set"].items():
            w.writerow([name, m["n_records"], m["balanced_accuracy"], m["recall"], m["selectivity"], m["precision"]])
    scalars = {"cutoff": result["cutoff"], "all_passed": result["all_passed"], "targets": rows,
               **{k: c[k] for k in ("balanced_accuracy", "recall", "selectivity", "precision", "n_records")},
               "ior_linear": result["snr"]["ior_linear"], "ior_log10": result["snr"]["ior_log10"],
               "ios": result["pileup"]["ios"], "ios_log_snr": result["pileup"]["ios_log_snr"],
               "survival": result["survival"],
               "throughput_records_per_s": result["throughput"]}
    (out / "metrics.json").write_text(json.dumps(scalars, indent=1, default=float))


def plot_all(result: dict, out: Path) -> list[Path]:
    """The evaluation figures (PNG) in `out`; returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []

    def save(fig, name):
        fig.savefig(out / name, dpi=110)
        plt.close(fig)
        paths.append(out / name)

    c = result["classification"]
    fig, ax = plt.subplots(figsize=(5, 3.6), constrained_layout=True)
    ax.plot(c["scan"]["cutoff"], c["scan"]["balanced_accuracy"], "o-", label="balanced accuracy")
    ax.plot(c["scan"]["cutoff"], c["scan"]["recall"], ".--", label="recall")
    ax.plot(c["scan"]["cutoff"], c["scan"]["selectivity"], ".--", label="selectivity")
    ax.axvline(result["cutoff"], color="grey", lw=0.8)
    ax.set(xlabel="cutoff", ylabel="metric")
    ax.legend()
    save(fig, "ba_vs_cutoff.png")

    fig, ax = plt.subplots(figsize=(5, 3.6), constrained_layout=True)
    ax.plot(c["pr_curve"]["recall"], c["pr_curve"]["precision"])
    ax.plot(c["recall"], c["precision"], "o", label=f"cutoff {result['cutoff']}")
    ax.set(xlabel="recall", ylabel="precision")
    ax.legend()
    save(fig, "precision_recall.png")

    curve = result["snr"]["curve"]
    fig, ax = plt.subplots(figsize=(5, 3.6), constrained_layout=True)
    ax.step(curve["edges"][:-1], curve["recall"], where="post")
    ax.axvline(5, color="grey", ls="--", lw=0.8)
    ax.set(xscale="log", xlabel="SNR (pulse height / sigma_OF)", ylabel="recall",
           title=f"IOR {result['snr']['ior_linear']:.4f}")
    save(fig, "recall_vs_snr.png")

    fig, ax = plt.subplots(figsize=(5.5, 3.8), constrained_layout=True)
    m = result["pileup"]["map"]
    if m is not None:
        mesh = ax.pcolormesh(m["onset_edges"], m["ratio_edges"], m["selectivity"].T, vmin=0, vmax=1)
        fig.colorbar(mesh, ax=ax, label="selectivity")
    ax.set(xlabel="onset difference / record length", ylabel="height ratio (second / first)",
           title=f"IOS {result['pileup']['ios']:.4f}")
    save(fig, "selectivity_map.png")

    names = sorted(result["survival"])
    fig, ax = plt.subplots(figsize=(6, 4), constrained_layout=True)
    ax.barh(names, [result["survival"][n][2] for n in names],
            color=["tab:green" if n in result["accepted_classes"] else "tab:red" for n in names])
    ax.set(xlabel="survival rate", xscale="symlog", xlim=(0, 1))
    ax.set_xscale("symlog", linthresh=0.01)
    save(fig, "survival.png")
    return paths


def main(argv=None) -> dict:
    """``python -m cryopipe.cleaning.evaluate``: the issue-19 protocol (`cleaning.evaluate_cli`): independent
    generator and our simulator (two test seeds each) and the NIST real-data figures; ``--standard`` adds
    the CRESST-style standard test sets (recall vs SNR, IOR, IOS; slow at default sizes)."""
    import argparse

    from . import evaluate_cli
    from .universal import resolve_model

    ap = argparse.ArgumentParser(prog="python -m cryopipe.cleaning.evaluate", description=main.__doc__)
    evaluate_cli.add_arguments(ap)
    ap.add_argument("--standard", action="store_true", help="also the standard test sets (tens of minutes)")
    ap.add_argument("--skip-standard", action="store_true", help="(default now; kept for old command lines)")
    ap.add_argument("--n-per-class", type=int, default=2000, help="standard: records per class in each mixed set")
    ap.add_argument("--pulses", type=int, default=50_000, help="standard: event_pulse records (SNR 3-300)")
    ap.add_argument("--pileups", type=int, default=50_000, help="standard: two-pulse pile-ups")
    ap.add_argument("--seed", type=int, default=1000, help="standard: seed of the standard test sets")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    result = evaluate_cli.run(args.model, args.run_model, args.cut_labels, args.nist_dir, args.hand_labels, args.quick,
                              cutoff=args.cutoff, independent_detectors=args.independent_detectors,
                              own_detectors=args.own_detectors, per_class=args.detector_per_class,
                              record_length=args.record_length, out=args.out)
    print(result["markdown"])
    if not args.standard or args.skip_standard:
        return result
    t0 = time.perf_counter()
    model, meta = resolve_model(args.model)
    cutoff = float(args.cutoff if args.cutoff is not None else meta.get("cutoff", CUTOFF))
    sets = build_test_sets(args.n_per_class, args.pulses, args.pileups, args.record_length, args.seed)
    t1 = time.perf_counter()
    result["standard"] = evaluate_model(model, meta, sets, args.out, cutoff=cutoff)
    print((Path(args.out) / "targets.md").read_text())
    print(f"simulated {sum(s.sizes['event'] for s in sets.values())} records in {t1 - t0:.0f} s, "
          f"evaluated in {time.perf_counter() - t1:.0f} s; figures and tables in {args.out}")
    return result


if __name__ == "__main__":
    main()
