"""The evaluation protocol: which simulated sets test a cleaning model and which may select it.

A model's checkpoint and cutoff are chosen on a *selection* set, never on a *test* set, so that the
test figures cannot flatter it:

- test sets: the independent generator (`cleaning.independent_sim`) and our own simulator
  (`testsets.random_detector`, detector mode), each drawn with the seeds of `TEST_SEEDS`; the real
  file ``regress_chan3.ljh`` (`EVALUATION_ONLY_FILES`) is a test file too;
- selection sets: the independent generator drawn with other seeds (`SELECTION_SEEDS` or any seed
  not in `TEST_SEEDS`), or a held-out part of the training simulation (`selection_set_from_arrays`).

`select_checkpoint` picks (checkpoint, cutoff) with the best mean balanced accuracy over the
selection set's detectors among those whose mean pile-up survival is <= `MAX_PILEUP_SURVIVAL`; it
refuses a set whose role is "test" or whose seed is a test seed.

For a training script (about 10 s for the default selection set on 2 cores)::

    from cryopipe.cleaning import protocol
    sel = protocol.independent_set(protocol.SELECTION_SEEDS["independent"][0], n_detectors=8, n_per_class=50,
                                   role="selection")
    best = protocol.select_checkpoint({"epoch 10": model_a, "epoch 20": model_b}, sel)
    meta["cutoff"], meta["selection_set"] = best["cutoff"], f"{best['set']}: {best['rule']}"

A set (`EvalSet`) holds per detector the records downsampled to 512 block means (what every model
sees first when the trigger sits at N/4, as in both generators), their event classes, labels and SNR.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import InputError
from . import metrics

#: generator -> seeds of the test sets reported by ``python -m cryopipe.cleaning.evaluate`` (two seeds)
TEST_SEEDS = {"independent": (1001, 1011), "own": (1002, 1012)}
#: default seeds of the selection sets (never a test seed)
SELECTION_SEEDS = {"independent": (5001,), "own": (5002,)}
#: real files for evaluation only: never train, tune, select or pick a cutoff on them
EVALUATION_ONLY_FILES = ("regress_chan3.ljh",)
MAX_PILEUP_SURVIVAL = 0.05
CUTOFFS = tuple(np.round(np.arange(0.2, 0.81, 0.05), 2))
#: the accepted classes of both generators
ACCEPTED = ("event_pulse", "carrier_event", "tail_event")


@dataclass
class EvalSet:
    """Labelled records of several detectors for evaluation or selection.

    Attributes
    ----------
    name : what it is (e.g. "independent seed 5001")
    role : "selection" or "test"
    generator : "independent", "own" or "held-out"
    seed : the generator's seed (None for arrays)
    detectors : list of dicts with records ((n, 512) float32 block means, or raw (n, N)), event_class
        (n,) str, label (n,) bool, snr (n,) float (0 where no particle pulse), `info` (detector
        parameters) and, for the generators, `detector` (what was drawn: the generator's detector dict;
        own: `random_detector`'s, with its `saturation` in V or None), to simulate more of the same detector
    """

    name: str
    role: str
    generator: str
    seed: int | None
    detectors: list = field(default_factory=list)


def _check_role(role):
    if role not in ("selection", "test"):
        raise InputError(f"role: 'selection' or 'test', got {role!r}")


def is_test_seed(generator: str, seed) -> bool:
    """True if `seed` is one of the test seeds of `generator`."""
    return seed is not None and int(seed) in TEST_SEEDS.get(generator, ())


def independent_set(seed: int, *, n_detectors: int = 24, n_per_class: int = 100, role: str = "test",
                    snr_range=(3.0, 1000.0)) -> EvalSet:
    """`n_detectors` detectors of the independent generator (`independent_sim`), seeded.

    A "selection" set with a test seed is refused (InputError)."""
    from . import independent_sim as ind
    from .preprocess import downsample

    _check_role(role)
    if role == "selection" and is_test_seed("independent", seed):
        raise InputError(f"seed {seed} is a test seed of the independent generator {TEST_SEEDS['independent']}; "
                         "select on another seed")
    rng = np.random.default_rng(seed)
    out = EvalSet(f"independent seed {seed}", role, "independent", int(seed))
    for _ in range(int(n_detectors)):
        det = ind.draw_detector(rng)
        d = ind.simulate(det, {c: n_per_class for c in ind.CLASSES}, rng, snr_range=snr_range)
        info = {"record_length": det["record_length"], "sample_frequency": det["sample_frequency"],
                "tau_n_ms": det["pulse"]["tau_n"], "tau_in_ms": det["pulse"]["tau_in"],
                "tau_t_ms": det["pulse"]["tau_t"], "saturation_over_sigma": det["saturation_over_sigma"]}
        out.detectors.append({"records": downsample(d["records"]), "event_class": d["event_class"].astype(str),
                              "label": d["label"], "snr": d["snr"], "saturated": d["saturated"], "info": info,
                              "pileup_visible": d["pileup_visible"], "detector": det})
    return out


def own_set(seed: int, *, n_detectors: int = 20, n_per_class: int = 100, record_length: int = 4096,
            role: str = "test") -> EvalSet:
    """`n_detectors` random detectors of our simulator (detector mode, every class; half of them
    saturating at 50-3000 sigma_OF), seeded. A "selection" set with a test seed is refused."""
    from ..simulate.records import EVENT_CLASSES
    from .evaluate import _flat
    from .testsets import detector_set, random_detector

    _check_role(role)
    if role == "selection" and is_test_seed("own", seed):
        raise InputError(f"seed {seed} is a test seed of our simulator {TEST_SEEDS['own']}; select on another seed")
    rng = np.random.default_rng(seed)
    out = EvalSet(f"own simulator seed {seed}", role, "own", int(seed))
    for i in range(int(n_detectors)):
        det = random_detector(rng, record_length=record_length)
        sat = det["resolution"] * float(np.exp(rng.uniform(np.log(50), np.log(3000)))) if i % 2 else None
        ds = detector_set({c: n_per_class for c in EVENT_CLASSES}, det, rng, saturation=sat)
        cls = _flat(ds, "event_class").astype(str)
        saturated = np.zeros(cls.size, bool) if sat is None else _flat(ds, "pulse_height") > 0.8 * sat
        out.detectors.append({"records": ds["trace"].values[0], "event_class": cls,
                              "label": _flat(ds, "label").astype(bool), "snr": _flat(ds, "snr").astype(float),
                              "saturated": saturated, "pileup_visible": np.ones(cls.size, bool),
                              "info": {"record_length": int(record_length), "sample_frequency": det["sample_frequency"],
                                       "tau_n_ms": det["tau_n"] * 1e3, "tau_in_ms": det["tau_in"] * 1e3,
                                       "tau_t_ms": det["tau_t"] * 1e3, "resolution_mV": det["resolution"] * 1e3,
                                       "saturation_mV": None if sat is None else sat * 1e3},
                              "detector": {**det, "saturation": sat}})
    return out


def selection_set_from_arrays(records, event_class, label, *, snr=None, name: str = "held-out") -> EvalSet:
    """A selection set of one 'detector' from arrays, e.g. a held-out part of the training simulation.

    records : (n, N) raw or (n, 512) block-mean records; event_class (n,) str; label (n,) bool;
    snr (n,) (0 where no particle pulse; default zeros).
    """
    x = np.asarray(records)
    n = x.shape[0] if x.ndim == 2 else -1
    cls, lab = np.asarray(event_class).astype(str), np.asarray(label, bool)
    if n < 1 or cls.shape != (n,) or lab.shape != (n,):
        raise InputError(f"selection set: need records (n, N) with n classes and labels; got {x.shape}, "
                         f"{cls.shape}, {lab.shape}")
    s = np.zeros(n) if snr is None else np.asarray(snr, float)
    return EvalSet(name, "selection", "held-out", None,
                   [{"records": x, "event_class": cls, "label": lab, "snr": s, "saturated": np.zeros(n, bool),
                     "info": {}}])


def score_set(model, evalset: EvalSet, *, batch: int = 4096) -> list[dict]:
    """Per detector: the model's score (n,) and, for a calibrated model, the OOD and unsure flags (n,)
    (else None)."""
    from .evaluate import _score_with_uncertainty

    out = []
    for d in evalset.detectors:
        score, u = _score_with_uncertainty(model, d["records"], batch)
        out.append({"score": np.asarray(score, float), "ood": None if u is None else np.asarray(u["ood"], bool),
                    "unsure": None if u is None else np.asarray(u["unsure"], bool)})
    return out


def balanced_accuracy_at(label, score, cutoff, *, keep=None) -> float:
    """BA of the decisions score >= cutoff against `label` over the records `keep` (bool; default all);
    NaN when a class is missing. BA = (TP/T + TN/N) / 2."""
    y = np.asarray(label, bool)
    d = np.asarray(score, float) >= cutoff
    if keep is not None:
        y, d = y[keep], d[keep]
    if not y.any() or y.all():
        return float("nan")
    return float(0.5 * (np.mean(d[y]) + np.mean(~d[~y])))


def set_figures(evalset: EvalSet, scores: list[dict], cutoff: float, *, min_snr: float = 10.0) -> list[dict]:
    """Per detector: balanced_accuracy (all records), balanced_accuracy_snr_ge_10 (records with
    SNR >= `min_snr` or without a particle pulse, SNR 0), pulse_snr_ge_10 (event_pulse survival at
    SNR >= `min_snr`), survival of every class (``survival <class>``), the survival of the visible
    pile-ups (``survival pile_up (visible)``, label rule 2; a detector's `pileup_visible`, all pile-ups
    where it has none: our simulator draws only visible ones), n_records; with flags ood_fraction,
    unsure_fraction and unsure_share_of_wrong (the wrong decisions flagged unsure)."""
    rows = []
    for d, s in zip(evalset.detectors, scores):
        keep = s["score"] >= cutoff
        cls, snr = d["event_class"], np.asarray(d["snr"], float)
        hi = (snr >= min_snr) | (snr == 0)
        pulses = (cls == "event_pulse") & (snr >= min_snr)
        row = {"balanced_accuracy": balanced_accuracy_at(d["label"], s["score"], cutoff),
               "balanced_accuracy_snr_ge_10": balanced_accuracy_at(d["label"], s["score"], cutoff, keep=hi),
               "pulse_snr_ge_10": float(keep[pulses].mean()) if pulses.any() else float("nan"),
               "n_records": int(cls.size)}
        for c, (_, _, rate) in metrics.survival_rates(cls, keep).items():
            row[f"survival {c}"] = float(rate)
        visible = (cls == "pile_up") & np.asarray(d.get("pileup_visible", np.ones(cls.size, bool)), bool)
        if visible.any():
            row["survival pile_up (visible)"] = float(keep[visible].mean())
        if s.get("ood") is not None:
            row["ood_fraction"] = float(np.mean(s["ood"]))
        if s.get("unsure") is not None:
            wrong = keep != np.asarray(d["label"], bool)
            row["unsure_fraction"] = float(np.mean(s["unsure"]))
            row["unsure_share_of_wrong"] = float(np.mean(s["unsure"][wrong])) if wrong.any() else float("nan")
        rows.append(row)
    return rows


def select_checkpoint(candidates: dict, evalset: EvalSet, *, cutoffs=CUTOFFS,
                      max_pileup_survival: float = MAX_PILEUP_SURVIVAL, batch: int = 4096) -> dict:
    """Choose the checkpoint and cutoff on a selection set (never a test set).

    Parameters
    ----------
    candidates : name -> model (a `Classifier`) or name -> list of per-detector score dicts (`score_set`)
    evalset : a set of role "selection" (`independent_set(..., role="selection")`, `own_set`, or
        `selection_set_from_arrays`)
    cutoffs : the cutoffs tried
    max_pileup_survival : constraint on the mean pile-up survival over detectors

    Returns
    -------
    dict: checkpoint, cutoff, balanced_accuracy (mean over detectors), pileup_survival, set (name),
    rule (text), and table (one row per candidate and cutoff).
    """
    if not isinstance(evalset, EvalSet):
        raise InputError("select_checkpoint: the selection set must be an EvalSet")
    if evalset.role != "selection" or is_test_seed(evalset.generator, evalset.seed):
        raise InputError(f"select_checkpoint: {evalset.name!r} is a test set; select on a selection set "
                         f"(independent generator seeds other than {TEST_SEEDS['independent']}, "
                         "or a held-out part of the training simulation)")
    if not candidates:
        raise InputError("select_checkpoint: no candidates")
    table = []
    for name, cand in candidates.items():
        scores = cand if isinstance(cand, list) else score_set(cand, evalset, batch=batch)
        for c in cutoffs:
            rows = set_figures(evalset, scores, float(c))
            ba = float(np.nanmean([r["balanced_accuracy"] for r in rows]))
            pile = [r.get("survival pile_up", np.nan) for r in rows]
            pile = float(np.nanmean(pile)) if np.isfinite(pile).any() else float("nan")
            table.append({"checkpoint": name, "cutoff": float(c), "balanced_accuracy": ba, "pileup_survival": pile})
    ok = [r for r in table if not (r["pileup_survival"] > max_pileup_survival)]
    best = max(ok or table, key=lambda r: r["balanced_accuracy"])
    rule = (f"max mean BA over detectors with mean pile-up survival <= {max_pileup_survival}"
            + ("" if ok else " (no candidate met the constraint: max BA)"))
    return {**best, "set": evalset.name, "rule": rule, "table": table}
