"""Prediction with a trained cleaning classifier: scores, decisions at a cutoff, clean events.

A record is accepted when its score >= cutoff (default 0.5, CRESST paper section 4.1); an event
of a detector module is clean when all its channels are accepted (section 4.3).

A record with a NaN or infinite sample is never scored: its score is NaN ("no score"), it is
flagged ``valid = False`` and it is never accepted (`finite_records`, `describe_invalid`).
"""
from __future__ import annotations

import logging

import numpy as np
import torch
import xarray as xr

from ..errors import InputError
from ..io.stores import provenance, read_values
from ..validity import describe_invalid, finite_records  # noqa: F401 (re-exported)
from .calibration import UNSURE_BAND
from .models import Classifier, embed, scores_from_logits
from .lines import MAX_RUN_SAMPLE
from .preprocess import LENGTH, evenly_spaced, preprocess_run, run_line_frequencies, trigger_window

log = logging.getLogger(__name__)

CUTOFF = 0.5


def model_inputs(records, valid, *, preprocessed: bool = False, pretrigger: int | None = None,
                 batch: int = 4096, lines=None) -> np.ndarray:
    """The network inputs (E, 512) float32 of (..., N) raw records, flattened over the leading axes.

    Each run (the records along the last axis but one; a single record is a run of one) is
    preprocessed as one (`preprocess.preprocess_run`): trigger-window cut, block means, the
    coherent line pickup common to its records removed (`cleaning.lines`), min-max scaling.
    valid : bool per flattened record (`finite_records`); invalid records become zeros and take no
    part in finding the lines. `preprocessed`: the records are (..., 512) inputs already.
    lines : the runs' line frequencies found beforehand on whole runs (`preprocess.run_line_frequencies`),
        one array per run, when `records` is a block of them; None: each run's lines found here.
    """
    x = np.asarray(records)
    n = x.shape[-1]
    if preprocessed:
        return np.where(valid[:, None], x.reshape(-1, n), 0.0).astype(np.float32)
    if x.size == 0:
        return np.zeros((0, LENGTH), np.float32)
    runs = x.reshape(-1, x.shape[-2] if x.ndim >= 2 else 1, n)
    valid_runs = np.asarray(valid, bool).reshape(runs.shape[:2])
    out = []
    if lines is not None and len(lines) != runs.shape[0]:
        raise InputError(f"lines: need one array of line frequencies per run ({runs.shape[0]}), got {len(lines)}")
    for i, (run, ok) in enumerate(zip(runs, valid_runs)):
        if not ok.all():
            run = np.where(ok[:, None], run, 0.0)
        inputs, freqs = preprocess_run(run, length=LENGTH, pretrigger=pretrigger, batch=batch, valid=ok,
                                       lines=None if lines is None else lines[i])
        if freqs.size and lines is None:
            log.info("cleaning: removed line pickup common to the run's %d records at %s cycles per window",
                     run.shape[0], ", ".join(f"{f:.1f}" for f in freqs))
        out.append(inputs)
    return np.concatenate(out) if out else np.zeros((0, LENGTH), np.float32)


def predict_scores(model: Classifier, records, *, batch: int = 4096, accepted=None, with_probabilities: bool = False,
                   preprocessed: bool = False, device=None, pretrigger: int | None = None, lines=None):
    """Acceptance scores in [0, 1] of (..., N) raw records (V), shape (...).

    Records with a NaN or infinite sample get score NaN (and NaN class probabilities): no score,
    never a number; `finite_records` gives the mask, `decide` rejects them.

    Parameters
    ----------
    records : (..., N) float records; made into network inputs here (`model_inputs`: block means
        batch by batch, the run's line pickup removed, min-max scaled) unless `preprocessed`, then
        (..., 512) already scaled.
    pretrigger : trigger sample of the raw records (None: N//4); see `preprocess.trigger_window`.
        The records along the last axis but one are one run: their common line pickup is removed
        (`model_inputs`; `lines`: the runs' line frequencies found beforehand, see there).
    accepted : class indices whose summed softmax probability is the score (multi-class head);
        default the model's `accepted` (set by `load_model` from the checkpoint meta).
    with_probabilities : also return the class probabilities (..., n_classes) (multi-class head).
    """
    x = np.asarray(records)
    if x.ndim == 0 or x.shape[-1] == 0:
        raise InputError(f"records: need (..., N) records, got shape {x.shape}")
    if x.dtype.kind not in "biuf":
        raise InputError(f"records: need real numeric samples, got dtype {x.dtype}")
    lead = x.shape[:-1]
    flat = x.reshape(-1, x.shape[-1])
    valid = finite_records(flat)
    inputs = model_inputs(x, valid, preprocessed=preprocessed, pretrigger=pretrigger, batch=batch, lines=lines)
    accepted = model.accepted if accepted is None else list(accepted)
    device = torch.device(device) if device is not None else next(model.parameters()).device
    model.eval()
    scores = np.empty(flat.shape[0], dtype=np.float32)
    probs = np.empty((flat.shape[0], model.n_classes), dtype=np.float32) if model.n_classes > 1 else None
    with torch.inference_mode():
        for a in range(0, flat.shape[0], batch):
            xb = inputs[a:a + batch]
            s, p = scores_from_logits(model(torch.as_tensor(xb, device=device)),
                                      accepted=accepted)
            scores[a:a + batch] = s.cpu().numpy()
            if probs is not None:
                probs[a:a + batch] = p.cpu().numpy()
    scores[~valid] = np.nan
    if probs is not None:
        probs[~valid] = np.nan
    scores = scores.reshape(lead)
    if with_probabilities:
        return scores, None if probs is None else probs.reshape(*lead, model.n_classes)
    return scores


def predict_logits(model: Classifier, records, *, batch: int = 4096, preprocessed: bool = False,
                   device=None, pretrigger: int | None = None, with_features: bool = False, lines=None):
    """Raw logits (..., n_classes) float32 of (..., N) records; NaN rows for records with NaN/inf samples.

    pretrigger : trigger sample of the raw records (None: N//4); see `preprocess.trigger_window`.
    with_features : also return the penultimate activations (..., D) (`models.embed`), as (logits, features).
    """
    x = np.asarray(records)
    if x.ndim == 0 or x.shape[-1] == 0:
        raise InputError(f"records: need (..., N) records, got shape {x.shape}")
    lead = x.shape[:-1]
    flat = x.reshape(-1, x.shape[-1])
    valid = finite_records(flat)
    inputs = model_inputs(x, valid, preprocessed=preprocessed, pretrigger=pretrigger, batch=batch, lines=lines)
    device = torch.device(device) if device is not None else next(model.parameters()).device
    model.eval()
    out = np.empty((flat.shape[0], model.n_classes), dtype=np.float32)
    feats = None
    with torch.inference_mode():
        for a in range(0, flat.shape[0], batch):
            xt = torch.as_tensor(inputs[a:a + batch], device=device)
            if with_features:
                h, z = embed(model, xt)
                if feats is None:
                    feats = np.empty((flat.shape[0], h.shape[1]), dtype=np.float32)
                feats[a:a + batch] = h.cpu().numpy()
            else:
                z = model(xt)
            out[a:a + batch] = z.cpu().numpy()
    out[~valid] = np.nan
    if not with_features:
        return out.reshape(*lead, model.n_classes)
    if feats is None:
        feats = np.zeros((0, 0), dtype=np.float32)
    feats[~valid] = np.nan
    return out.reshape(*lead, model.n_classes), feats.reshape(*lead, -1)


def is_calibrated(model: Classifier) -> bool:
    """A multi-class model with a fitted temperature (and OOD threshold) in its meta."""
    return model.n_classes > 1 and getattr(model, "temperature", None) is not None


def predict_uncertainty(model: Classifier, records, *, batch: int = 4096, pretrigger: int | None = None,
                        lines=None) -> dict:
    """One forward pass over (..., N) records of a calibrated model (`is_calibrated`): per record the
    score (as `predict_scores`), class_probability (..., C), the calibrated probability, ood_score
    (energy), feature_distance (NaN without a feature density), ood (either above its threshold)
    and unsure (calibrated probability inside `calibration.UNSURE_BAND`)."""
    from scipy.special import softmax

    from .calibration import feature_distance, is_ood

    density = getattr(model, "ood_density", None)
    if density is not None:
        z, h = predict_logits(model, records, batch=batch, pretrigger=pretrigger, with_features=True, lines=lines)
    else:
        z, h = predict_logits(model, records, batch=batch, pretrigger=pretrigger, lines=lines), None
    u = uncertainty_from_logits(z, model.accepted, temperature=model.temperature)
    lead = z.shape[:-1]
    dist = np.full(lead, np.nan, dtype=np.float32)
    if density is not None:
        flat = h.reshape(-1, h.shape[-1])
        ok = np.all(np.isfinite(flat), axis=1)
        d = np.full(flat.shape[0], np.nan)
        if ok.any():
            d[ok] = feature_distance(flat[ok], density)
        dist = d.astype(np.float32).reshape(lead)
    u["feature_distance"] = dist
    u["ood"] = is_ood(u["ood_score"], getattr(model, "ood_threshold", np.inf),
                      distance=dist if density is not None else None,
                      distance_threshold=getattr(model, "ood_feature_threshold", None))
    with np.errstate(invalid="ignore"):
        u["class_probability"] = softmax(z.astype(np.float64), axis=-1).astype(np.float32)
    return u


def uncertainty_from_logits(logits, accepted, *, temperature: float = 1.0, threshold: float | None = None) -> dict:
    """Per record (leading shape of `logits`): score (uncalibrated, as `predict_scores`; the decision
    uses it), probability (temperature-calibrated P(clean)), unsure (probability inside
    `calibration.UNSURE_BAND`), ood_score (energy, higher = less familiar) and, with `threshold`, ood
    (ood_score > threshold). NaN logits give NaN (ood and unsure False)."""
    from .calibration import calibrated_probability, energy, is_unsure

    z = np.asarray(logits, dtype=np.float64)
    lead = z.shape[:-1]
    flat = z.reshape(-1, z.shape[-1])
    s, _ = scores_from_logits(torch.as_tensor(flat.astype(np.float32)), accepted=accepted)
    with np.errstate(invalid="ignore"):
        out = {"score": s.numpy().reshape(lead),
               "probability": calibrated_probability(flat, accepted,
                                                     temperature=temperature).astype(np.float32).reshape(lead),
               "ood_score": energy(flat, temperature=temperature).astype(np.float32).reshape(lead)}
        out["unsure"] = is_unsure(out["probability"])
        if threshold is not None:
            out["ood"] = out["ood_score"] > threshold
    return out


def decide(scores, *, cutoff: float = CUTOFF) -> np.ndarray:
    """Accept (True) records whose score >= `cutoff` (a NaN score, an unscored record, is rejected)."""
    return np.asarray(scores) >= cutoff


def clean_events(decisions, *, channel_axis: int = 0) -> np.ndarray:
    """An event is clean when all its channels are accepted: all() over `channel_axis`."""
    return np.all(np.asarray(decisions, dtype=bool), axis=channel_axis)


#: a run whose share of rejected (or of unfamiliar) records exceeds these gets a warning (log and report)
MOSTLY_REJECTED = 0.8
MOSTLY_OOD = 0.2


def rate_warnings(decision, valid, *, ood=None, what: str = "records", called=None) -> list[str]:
    """Warnings for a run the model mostly rejects (> MOSTLY_REJECTED of the scored records) or
    mostly does not know (> MOSTLY_OOD flagged `ood`): the model may be wrong for this detector.

    called : the model's most probable class name per record (multi-class head), to say what the
        rejected records are taken for; mostly "noise" is what a file of empty baselines gives."""
    decision, valid = np.asarray(decision, bool), np.asarray(valid, bool)
    n = int(valid.sum())
    out = []
    if n == 0:
        return [f"no {what} could be scored"]
    rejected = float(np.mean(~decision[valid]))
    if rejected > MOSTLY_REJECTED:
        taken, advice = "", "check that it suits this detector"
        if called is not None:
            names, counts = np.unique(np.asarray(called)[valid & ~decision], return_counts=True)
            top, share = names[np.argmax(counts)], counts.max() / counts.sum()
            taken = f", {share:.0%} of them as {top}"
            if top == "noise" and share >= 0.5:
                advice = ("as expected for empty baselines (noise triggers); if these are particle records, "
                          "check that the model suits this detector")
        out.append(f"the model rejects {rejected:.0%} of {n} {what}{taken}: {advice} "
                   f"(trigger position, record length, pulse shape) before trusting the cleaned data")
    if ood is not None:
        share = float(np.mean(np.asarray(ood, bool)[valid]))
        if share > MOSTLY_OOD:
            out.append(f"{share:.0%} of {n} {what} are unlike the model's training data (ood): its decisions on "
                       f"them are guesses; train a per-run model or check the records")
    return out


def record_warnings(n_samples: int, constant, *, trained_lengths=None, what: str = "records") -> list[str]:
    """Warnings about the records themselves: records shorter than a quarter of the shortest length
    the model was trained on (`trained_lengths`, samples; the network then sees each sample
    stretched over several of its 512 inputs), and records whose samples are all equal (`constant`,
    bool per record: no noise at all, a dead channel or a read-out stuck at its rail)."""
    out = []
    if trained_lengths:
        shortest = int(min(trained_lengths))
        if int(n_samples) < shortest // 4:
            out.append(f"{what} have {int(n_samples)} samples, far fewer than any the model was trained on "
                       f"({shortest}-{int(max(trained_lengths))}): its decisions on them are untested")
    constant = np.asarray(constant, bool)
    if constant.any():
        first = ", ".join(str(int(i)) for i in np.flatnonzero(constant.ravel())[:5])
        out.append(f"{int(constant.sum())} of {constant.size} {what} are constant (every sample equal; first "
                   f"flat index: {first}): a dead channel or a read-out stuck at its rail? They hold no pulse "
                   f"and no noise to classify")
    return out


def window_duration(n_samples: int, pretrigger: int | None, sample_frequency: float | None) -> float | None:
    """Duration (s) of the part of an `n_samples` record the network sees (`preprocess.trigger_window`
    for the trigger at `pretrigger`, None: N/4), at `sample_frequency` Hz; None without a frequency."""
    if not sample_frequency:
        return None
    window = trigger_window(int(n_samples), pretrigger=pretrigger)
    return (window.stop - window.start) / float(sample_frequency)


def describe_lines(lines, *, window_seconds: float | None = None) -> str:
    """The line pickup removed per channel, e.g. "channel 0: 8.2, 24.6 cycles per 512-sample window;
    channel 1: none"; with `window_seconds` (the duration of the records' window the network sees, s)
    also in Hz, e.g. "8.2, 24.6 cycles per 512-sample window (50, 150 Hz)"."""
    def one(freqs):
        if not len(freqs):
            return "none"
        hz = f" ({', '.join(f'{f / window_seconds:.4g}' for f in freqs)} Hz)" if window_seconds else ""
        return ", ".join(f"{f:.1f}" for f in freqs) + " cycles per 512-sample window" + hz

    return "; ".join(f"channel {c}: {one(freqs)}" for c, freqs in enumerate(lines))


def predictions_dataset(model: Classifier, trace: xr.DataArray, model_name: str, *, cutoff: float = CUTOFF,
                        batch: int = 4096, event_chunk: int = 1024, inputs=None,
                        pretrigger: int | None = None, particle=None,
                        sample_frequency: float | None = None) -> xr.Dataset:
    """A "predictions" store Dataset for a (channel, event, sample) trace, read `event_chunk` events at a time.

    Variables: score, decision, valid (channel, event), event_clean (event); for a calibrated model
    also probability, ood_score, feature_distance and ood (channel, event). Attrs model, cutoff,
    n_invalid, warnings (`rate_warnings`, also logged), line_pickup (`describe_lines`: the coherent
    line pickup found in the whole run per channel and removed before the network, `cleaning.lines`).
    Records with NaN/inf samples have valid False, score NaN and decision False; the attr
    ``invalid_records`` describes them.
    pretrigger : trigger sample of the records (None: N//4); the attr ``pretrigger`` is the one used.
    particle : (event,) bool, the particle records the rate warnings count (None: every record);
        noise triggers and test pulses are rejected by design.
    """
    if tuple(trace.dims) != ("channel", "event", "sample"):
        raise InputError(f"trace: need dims (channel, event, sample), got {tuple(trace.dims)}")
    n_ch, n_ev = trace.shape[:2]
    score = np.empty((n_ch, n_ev), dtype=np.float32)
    calibrated = is_calibrated(model)
    names = ("probability", "ood_score", "feature_distance", "ood", "unsure")
    extra = {k: np.empty((n_ch, n_ev), dtype=bool if k in ("ood", "unsure") else np.float32)
             for k in names} if calibrated else {}
    source = trace.encoding.get("source", "records")
    sample = read_values(trace.isel(event=evenly_spaced(n_ev, MAX_RUN_SAMPLE)), source, kind="records")
    lines = run_line_frequencies(sample, pretrigger=pretrigger)     # per channel, from the whole run
    log = logging.getLogger("cryopipe.predict")
    window_seconds = window_duration(trace.shape[-1], pretrigger, sample_frequency)
    if any(len(freqs) for freqs in lines):
        log.info("%s: line pickup removed: %s", model_name, describe_lines(lines, window_seconds=window_seconds))
    for e0 in range(0, n_ev, event_chunk):
        block = read_values(trace[:, e0:e0 + event_chunk], source, kind="records")
        if calibrated:   # one forward pass: score as predict_scores, plus calibrated probability and OOD
            u = predict_uncertainty(model, block, batch=batch, pretrigger=pretrigger, lines=lines)
            score[:, e0:e0 + event_chunk] = u["score"]
            for k in extra:
                extra[k][:, e0:e0 + event_chunk] = u[k]
        else:
            score[:, e0:e0 + event_chunk] = predict_scores(model, block, batch=batch, pretrigger=pretrigger,
                                                           lines=lines)
    valid = np.isfinite(score)
    decision = decide(score, cutoff=cutoff)
    if not valid.all():
        log.warning("%s", describe_invalid(valid))
    sel = (slice(None), slice(None)) if particle is None else (slice(None), np.asarray(particle, bool))
    ood = extra.get("ood")
    warnings = rate_warnings(decision[sel], valid[sel], ood=None if ood is None else ood[sel],
                             what="records" if particle is None else "particle records")
    for w in warnings:
        log.warning("%s: %s", model_name, w)
    coords = {k: v for k, v in trace.coords.items() if set(v.dims) <= {"channel", "event"}}
    ood_attrs = {}
    if calibrated:
        ood_attrs = {"temperature": float(model.temperature), "ood_score": "energy",
                     "unsure_band": [float(b) for b in UNSURE_BAND],
                     "ood_threshold": float(getattr(model, "ood_threshold", np.nan)),
                     "ood_feature_threshold": float(getattr(model, "ood_feature_threshold", None) or np.nan)}
    return xr.Dataset(
        {"score": (("channel", "event"), score), "decision": (("channel", "event"), decision),
         "valid": (("channel", "event"), valid), "event_clean": (("event",), clean_events(decision)),
         **{k: (("channel", "event"), v) for k, v in extra.items()}},
        coords=coords,
        attrs=provenance("predictions", parameters={"cutoff": cutoff, "batch": batch}, inputs=inputs, model=model_name,
                         cutoff=cutoff,
                         n_invalid=int((~valid).sum()), invalid_records=describe_invalid(valid),
                         line_pickup=describe_lines(lines, window_seconds=window_seconds),
                         warnings=warnings, pretrigger=trace.shape[-1] // 4 if pretrigger is None else int(pretrigger), **ood_attrs),
    )
