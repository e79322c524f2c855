"""Hand labels of a run's events (written by ``cryopipe view``) and a model's evaluation on them.

The hand-labels store ``results/<run>/hand_labels.zarr`` is not a pipeline store: no rule writes or
reads it; the viewer appends to it and ``cryopipe evaluate-hand-labels`` reads it. It is an
append-only log, one entry per labelling act, along the dimension ``entry``:

``event`` (entry) int
    the event coordinate of the run's records/features stores
``label`` (entry) str
    one of the 13 event classes of Cait's Box 1 (`BOX1_CLASSES`)
``channel`` (entry) str
    the channel the label is about, or ``"all"`` (the whole event: every channel)
``time`` (entry) str
    when it was labelled, ISO 8601 UTC (``2026-11-25T17:03:12Z``)

attrs: ``store_kind`` = "hand_labels", ``schema_version``, ``cryopipe_version``, ``classes``.
The latest entry of an (event, channel) pair is its label (`current_hand_labels`); relabelling an
event therefore just appends.

A label counts as *accepted* (a clean particle pulse at the trigger) for the classes of
`ACCEPTED_CLASSES`, as in the simulation's default labels; `evaluate_hand_labels` compares a
model's decisions (from a predictions store, or from scoring the labelled records with a model)
with these accepted/rejected labels, and per class gives the survival fraction.
"""
from __future__ import annotations

import datetime as _dt
from pathlib import Path

import numpy as np
import xarray as xr

from .. import __version__
from ..errors import InputError, StoreError
from ..io.stores import atomic_directory

#: The 13 event classes of Cait's Box 1 (the same names and order as cryopipe.simulate.records.EVENT_CLASSES;
#: kept here so that the analysis does not import the simulator; a test checks they are equal).
BOX1_CLASSES: tuple[str, ...] = (
    "event_pulse", "noise", "decaying_baseline", "temperature_rise", "spike", "squid_jump", "reset",
    "carrier_event", "tail_event", "decaying_baseline_with_event_pulse", "decaying_baseline_with_tail_event",
    "pile_up", "early_or_late_trigger",
)
#: Classes labelled accepted (clean): a particle pulse at the trigger position (= simulate.records.DEFAULT_ACCEPTED).
ACCEPTED_CLASSES: frozenset[str] = frozenset({"event_pulse", "carrier_event", "tail_event"})
ALL_CHANNELS = "all"
STORE_KIND = "hand_labels"
SCHEMA_VERSION = 1
VARIABLES = ("event", "label", "channel", "time")


def now_utc() -> str:
    """The current time, ISO 8601 UTC to the second."""
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def empty_hand_labels() -> xr.Dataset:
    """A hand-labels Dataset with no entries."""
    return _dataset([], [], [], [])


def _dataset(event, label, channel, time) -> xr.Dataset:
    return xr.Dataset(
        {"event": (("entry",), np.asarray(event, dtype=np.int64)),
         "label": (("entry",), np.asarray(label, dtype=str).astype("U64")),
         "channel": (("entry",), np.asarray(channel, dtype=str).astype("U64")),
         "time": (("entry",), np.asarray(time, dtype=str).astype("U32"))},
        attrs={"cryopipe_version": __version__, "store_kind": STORE_KIND, "schema_version": SCHEMA_VERSION,
               "classes": list(BOX1_CLASSES)})


def validate_hand_labels(ds: xr.Dataset, *, where: str = "hand labels") -> xr.Dataset:
    """Check the layout (see module docstring); StoreError naming `where` and the problems."""
    problems = []
    for name in VARIABLES:
        if name not in ds.variables:
            problems.append(f"missing variable {name!r}")
        elif tuple(ds[name].dims) != ("entry",):
            problems.append(f"{name!r} has dims {tuple(ds[name].dims)}, expected ('entry',)")
    if ds.attrs.get("store_kind") != STORE_KIND:
        problems.append(f"store_kind is {ds.attrs.get('store_kind')!r}, expected {STORE_KIND!r}")
    if not problems:
        unknown = sorted(set(np.asarray(ds["label"].values).astype(str).tolist()) - set(BOX1_CLASSES))
        if unknown:
            problems.append(f"unknown labels {unknown}")
    if problems:
        raise StoreError(f"{where}: not a valid hand-labels store: " + "; ".join(problems))
    return ds


def read_hand_labels(path: str | Path, *, missing_ok: bool = True) -> xr.Dataset:
    """Load a hand-labels store (in memory); an empty one if it does not exist and `missing_ok`."""
    path = Path(path)
    if not path.exists():
        if missing_ok:
            return empty_hand_labels()
        raise StoreError(f"{path}: no hand labels yet; label events first in `cryopipe view {path.parent}` "
                         f"(hand labels: give selected events a class)")
    try:
        ds = xr.open_zarr(path, consolidated=False).load()
    except Exception as exc:
        raise StoreError(f"{path}: cannot read the hand-labels store ({type(exc).__name__}: {exc})") from None
    for name in ("label", "channel", "time"):
        if name in ds.variables:
            ds[name] = (ds[name].dims, np.array([str(v) for v in ds[name].values], dtype=str).astype("U64"))
    return validate_hand_labels(ds, where=str(path))


def append_hand_labels(path: str | Path, events, label: str, *, channel: str = ALL_CHANNELS,
                       time: str | None = None) -> xr.Dataset:
    """Append one label for each of `events` to the store at `path` (created if missing), atomically.

    Parameters
    ----------
    events : event coordinates (ints) of the run
    label : one of BOX1_CLASSES
    channel : a channel name, or "all" for the whole event
    time : ISO 8601 time of labelling (default: now, UTC)

    Returns the whole store after the append (in memory).
    """
    if label not in BOX1_CLASSES:
        raise InputError(f"label: {label!r} is not a Box-1 class; known: {list(BOX1_CLASSES)}")
    events = np.atleast_1d(np.asarray(events, dtype=np.int64))
    path = Path(path)
    old = read_hand_labels(path)
    stamp = time or now_utc()
    new = _dataset(events, [label] * events.size, [str(channel)] * events.size, [stamp] * events.size)
    ds = _dataset(np.concatenate([old["event"].values, new["event"].values]),
                  np.concatenate([old["label"].values.astype(str), new["label"].values]),
                  np.concatenate([old["channel"].values.astype(str), new["channel"].values]),
                  np.concatenate([old["time"].values.astype(str), new["time"].values]))
    _write(ds, path)
    return ds


def _write(ds: xr.Dataset, path: Path) -> None:
    out = ds.copy()
    for name in ("label", "channel", "time"):
        out[name] = (out[name].dims, np.asarray(out[name].values, dtype=object))
    with atomic_directory(path) as tmp:
        out.to_zarr(tmp, mode="w", consolidated=False)


def current_hand_labels(ds: xr.Dataset) -> dict[tuple[int, str], str]:
    """(event, channel) -> label of the latest entry for that pair."""
    out = {}
    for e, c, lab in zip(ds["event"].values.tolist(), ds["channel"].values.tolist(), ds["label"].values.tolist()):
        out[(int(e), str(c))] = str(lab)
    return out


def event_hand_labels(ds: xr.Dataset) -> dict[int, str]:
    """event -> latest label of the whole event (channel "all") or, failing that, of any channel."""
    out, whole = {}, {}
    for (e, c), lab in current_hand_labels(ds).items():
        (whole if c == ALL_CHANNELS else out)[e] = lab
    out.update(whole)
    return out


def _metrics(accepted_truth: np.ndarray, decision: np.ndarray, labels: np.ndarray) -> dict:
    t, d = np.asarray(accepted_truth, bool), np.asarray(decision, bool)
    tp, fn = int(np.sum(t & d)), int(np.sum(t & ~d))
    fp, tn = int(np.sum(~t & d)), int(np.sum(~t & ~d))
    rec = tp / (tp + fn) if tp + fn else float("nan")
    sel = tn / (tn + fp) if tn + fp else float("nan")
    parts = [v for v in (rec, sel) if np.isfinite(v)]
    survival = {}
    for c in sorted(set(labels.tolist())):
        m = labels == c
        survival[c] = {"survived": int(d[m].sum()), "total": int(m.sum()), "rate": float(d[m].mean())}
    return {"n": int(t.size), "true_accept": tp, "false_reject": fn, "false_accept": fp, "true_reject": tn,
            "accuracy": float((tp + tn) / t.size) if t.size else float("nan"),
            "recall": rec, "selectivity": sel,
            "balanced_accuracy": float(np.mean(parts)) if parts else float("nan"),
            "survival": survival}


def labelled_pairs(hand: xr.Dataset, events, channels) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Rows of the current hand labels that refer to the run: (event positions, channel positions or -1
    for the whole event, labels). Entries naming unknown events or channels are dropped."""
    pos = {int(e): i for i, e in enumerate(np.asarray(events).tolist())}
    chans = {str(c): i for i, c in enumerate(np.asarray(channels).tolist())}
    ev, ch, lab = [], [], []
    for (e, c), label in current_hand_labels(hand).items():
        if e not in pos or (c != ALL_CHANNELS and c not in chans):
            continue
        ev.append(pos[e])
        ch.append(-1 if c == ALL_CHANNELS else chans[c])
        lab.append(label)
    return np.asarray(ev, dtype=np.int64), np.asarray(ch, dtype=np.int64), lab


def evaluate_hand_labels(hand: xr.Dataset, predictions: xr.Dataset) -> dict:
    """Compare a predictions store's decisions with the hand labels of the same run.

    A whole-event label (channel "all") is compared with ``event_clean`` (all channels accepted), a
    channel's label with that channel's ``decision``. Truth: accepted if the label is in
    ACCEPTED_CLASSES.

    Returns
    -------
    dict: n, true_accept, false_reject, false_accept, true_reject, accuracy, recall (accepted kept),
    selectivity (rejected removed), balanced_accuracy, survival {class: {survived, total, rate}},
    and model (the predictions' model attr).
    """
    events = predictions["event"].values if "event" in predictions.coords else np.arange(predictions.sizes["event"])
    channels = (predictions["channel"].values if "channel" in predictions.coords
                else np.arange(predictions.sizes["channel"]).astype(str))
    ev, ch, lab = labelled_pairs(hand, events, channels)
    if ev.size == 0:
        raise InputError("no hand label refers to an event of these predictions")
    decision = np.asarray(predictions["decision"].values, bool)
    clean = np.asarray(predictions["event_clean"].values, bool)
    d = np.where(ch < 0, clean[ev], decision[np.maximum(ch, 0), ev])
    labels = np.asarray(lab)
    out = _metrics(np.isin(labels, list(ACCEPTED_CLASSES)), d, labels)
    out["model"] = str(predictions.attrs.get("model", "?"))
    return out


def evaluate_model_on_hand_labels(hand: xr.Dataset, records: xr.Dataset, *, model_spec: str = "universal",
                                  cutoff: float | None = None, batch: int = 1024) -> dict:
    """Score the hand-labelled records of a run with a model (``"universal"`` or a checkpoint path) and
    compare with the hand labels (metrics as `evaluate_hand_labels`; with a multi-class model also
    ``class_accuracy``: how often the most probable class is the hand label).

    Only the labelled records are read and scored, so this is quick on a large run.
    """
    from .predict import predict_scores
    from .universal import model_cutoff, resolve_model

    model, meta = resolve_model(model_spec)
    cut = model_cutoff(meta, cutoff=cutoff)
    events = records["event"].values if "event" in records.coords else np.arange(records.sizes["event"])
    ev, ch, lab = labelled_pairs(hand, events, records["channel"].values if "channel" in records.coords
                                 else np.arange(records.sizes["channel"]).astype(str))
    if ev.size == 0:
        raise InputError("no hand label refers to an event of these records")
    uniq = np.unique(ev)
    trace = np.asarray(records["trace"][:, uniq].values)                       # (channel, k, sample)
    scores, probs = predict_scores(model, trace, batch=batch, with_probabilities=True)  # (channel, k)
    where = np.searchsorted(uniq, ev)
    decision = scores >= cut
    d = np.where(ch < 0, decision[:, where].all(axis=0), decision[np.maximum(ch, 0), where])
    labels = np.asarray(lab)
    out = _metrics(np.isin(labels, list(ACCEPTED_CLASSES)), d, labels)
    out["model"] = str(meta.get("name", model_spec))
    out["cutoff"] = cut
    names = meta.get("class_names")
    if isinstance(names, str):  # older metas keep the list as its repr
        names = [s.strip(" '\"") for s in names.strip("[]").split(",")]
    if probs is not None and names and len(names) == probs.shape[-1]:
        # whole-event labels: the class of the channel with the least accepted score (the "worst" channel)
        worst = np.argmin(scores[:, where], axis=0)
        c_idx = np.where(ch < 0, worst, ch)
        pred = np.asarray(names)[np.argmax(probs[c_idx, where], axis=-1)]
        out["class_accuracy"] = float(np.mean(pred == labels))
        out["predicted_class"] = pred.tolist()
    return out


def format_report(result: dict) -> str:
    """A short text table of an evaluation result."""
    lines = [f"model {result.get('model')}: {result['n']} hand-labelled records",
             f"  accuracy {result['accuracy']:.3f}  balanced accuracy {result['balanced_accuracy']:.3f}  "
             f"recall {result['recall']:.3f}  selectivity {result['selectivity']:.3f}",
             f"  accepted kept {result['true_accept']}, accepted lost {result['false_reject']}, "
             f"rejected kept {result['false_accept']}, rejected removed {result['true_reject']}"]
    if "class_accuracy" in result:
        lines.append(f"  class accuracy (most probable class = hand label) {result['class_accuracy']:.3f}")
    lines.append("  survival per hand class:")
    for c, s in result["survival"].items():
        lines.append(f"    {c:38s} {s['survived']:6d} / {s['total']:<6d} {s['rate']:.3f}")
    return "\n".join(lines)


def _subset(hand: xr.Dataset, events) -> xr.Dataset:
    keep = np.isin(hand["event"].values, np.asarray(list(events), dtype=np.int64))
    return hand.isel(entry=np.nonzero(keep)[0])


#: meta entries of a model that describe its own weights' calibration and validation: not carried
#: over to a fine-tuned copy
STALE_AFTER_FINE_TUNING = ("temperature", "ood_score", "ood_threshold", "ood_quantile", "ood_feature_threshold",
                           "nll_uncalibrated", "nll_calibrated", "n_calibration_records", "cutoff", "cutoff_rule",
                           "val_balanced_accuracy", "val_balanced_accuracy_at_cutoff",
                           "val_pile_up_survival_at_cutoff")


def fine_tune_on_hand_labels(hand: xr.Dataset, records: xr.Dataset, output: str | Path,
                             *, model_spec: str = "universal", epochs: int = 10, lr: float = 1e-4,
                             batch_size: int = 32, holdout: float = 0.3, seed: int = 0) -> dict:
    """Fine-tune a model on the run's own hand-labelled records and compare it with the original on
    held-out hand labels (the loop from looking to training).

    The labelled events are split (seeded) into a training part and a held-out part (`holdout`). Each
    hand label gives its record(s) a target: a channel's label that channel's record, a whole-event
    label every channel's record of the event. A multi-class model learns the class (cross-entropy
    over its class names), a binary one accepted/rejected (ACCEPTED_CLASSES). All weights are trained
    with Adam at `lr` for `epochs` passes. The result is saved as a checkpoint at `output` (.pt + .json,
    usable wherever a model path is taken, e.g. ``cryopipe predict --model``).

    Returns {"checkpoint", "n_train_records", "n_holdout_events", "before", "after"} with before/after
    the `evaluate_model_on_hand_labels` results of the original and the tuned model on the held-out labels.
    """
    import torch

    from .preprocess import LENGTH, preprocess
    from .train import save_model
    from .universal import resolve_model

    model, meta = resolve_model(model_spec)
    events = records["event"].values if "event" in records.coords else np.arange(records.sizes["event"])
    channels = records["channel"].values if "channel" in records.coords else np.arange(records.sizes["channel"])
    ev, ch, lab = labelled_pairs(hand, events, channels)
    uniq = np.unique(ev)
    if uniq.size < 4:
        raise InputError(f"fine-tuning needs hand labels of at least 4 events, got {uniq.size}")
    rng = np.random.default_rng(seed)
    n_hold = max(1, int(round(holdout * uniq.size))) if holdout > 0 else 0
    held = set(rng.permutation(uniq)[:n_hold].tolist())
    trace = np.asarray(records["trace"][:, uniq].values)               # (channel, k, sample)
    where = np.searchsorted(uniq, ev)
    n_ch = trace.shape[0]
    names = meta.get("class_names")
    if isinstance(names, str):
        names = [s.strip(" '\"") for s in names.strip("[]").split(",")]
    x, y = [], []
    for e, w, c, label in zip(ev, where, ch, lab):
        if e in held:
            continue
        for cc in (range(n_ch) if c < 0 else [c]):
            x.append(trace[cc, w])
            y.append(names.index(label) if model.n_classes > 1 else float(label in ACCEPTED_CLASSES))
    if not x:
        raise InputError("no hand-labelled record left for training after the hold-out split")
    if model.n_classes > 1 and (not names or len(names) != model.n_classes):
        raise InputError("the model's meta has no class names matching its outputs")
    xs = torch.as_tensor(preprocess(np.asarray(x), length=LENGTH), dtype=torch.float32)
    ys = torch.as_tensor(np.asarray(y), dtype=torch.long if model.n_classes > 1 else torch.float32)
    torch.manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    loss_fn = torch.nn.CrossEntropyLoss() if model.n_classes > 1 else torch.nn.BCEWithLogitsLoss()
    model.train()
    for _ in range(int(epochs)):
        order = torch.randperm(xs.shape[0])
        for a in range(0, xs.shape[0], batch_size):
            idx = order[a:a + batch_size]
            out = model(xs[idx])
            loss = loss_fn(out if model.n_classes > 1 else out[..., 0], ys[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    # the original's temperature, OOD thresholds and operating point were fitted to the original
    # weights: the tuned model carries none of them (it is uncalibrated: no ood / unsure flags)
    kept = {k: v for k, v in meta.items() if k not in STALE_AFTER_FINE_TUNING}
    tuned = dict(kept, name=f"{meta.get('name', 'model')}_hand_tuned", fine_tuned_from=str(model_spec),
                 fine_tune={"epochs": int(epochs), "lr": lr, "records": len(x), "seed": seed})
    path = save_model(output, model, tuned)
    out = {"checkpoint": str(path), "n_train_records": len(x), "n_holdout_events": len(held)}
    if held:
        hold = _subset(hand, held)
        out["before"] = evaluate_model_on_hand_labels(hold, records, model_spec=model_spec)
        out["after"] = evaluate_model_on_hand_labels(hold, records, model_spec=str(path))
    return out
