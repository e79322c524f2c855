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
from .models import Classifier, scores_from_logits
from .preprocess import LENGTH, preprocess

CUTOFF = 0.5


def predict_scores(model: Classifier, records, batch: int = 4096, accepted=None, with_probabilities: bool = False,
                   preprocessed: bool = False, device=None, pretrigger: int | None = None):
    """Acceptance scores in [0, 1] of (..., N) raw records (V), shape (...).

    Records with a NaN or infinite sample get score NaN (and NaN class probabilities): no score,
    never a number; `finite_records` gives the mask, `decide` rejects them.

    Parameters
    ----------
    records : (..., N) float records; downsampled and scaled here batch by batch (unless
        `preprocessed`, then (..., 512) already scaled).
    pretrigger : trigger sample of the raw records (None: N//4); see `preprocess.trigger_window`.
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
    if not valid.all():
        flat = np.where(valid[:, None], flat, 0.0)
    accepted = model.accepted if accepted is None else list(accepted)
    device = torch.device(device) if device is not None else next(model.parameters()).device
    model.eval()
    scores = np.empty(flat.shape[0], dtype=np.float32)
    probs = np.empty((flat.shape[0], model.n_classes), dtype=np.float32) if model.n_classes > 1 else None
    with torch.inference_mode():
        for a in range(0, flat.shape[0], batch):
            xb = flat[a:a + batch] if preprocessed else preprocess(flat[a:a + batch], LENGTH, pretrigger)
            s, p = scores_from_logits(model(torch.as_tensor(np.asarray(xb, np.float32), device=device)), accepted)
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


def predict_logits(model: Classifier, records, batch: int = 4096, preprocessed: bool = False,
                   device=None, pretrigger: int | None = None) -> np.ndarray:
    """Raw logits (..., n_classes) float32 of (..., N) records; NaN rows for records with NaN/inf samples.

    pretrigger : trigger sample of the raw records (None: N//4); see `preprocess.trigger_window`.
    """
    x = np.asarray(records)
    if x.ndim == 0 or x.shape[-1] == 0:
        raise InputError(f"records: need (..., N) records, got shape {x.shape}")
    lead = x.shape[:-1]
    flat = x.reshape(-1, x.shape[-1])
    valid = finite_records(flat)
    if not valid.all():
        flat = np.where(valid[:, None], flat, 0.0)
    device = torch.device(device) if device is not None else next(model.parameters()).device
    model.eval()
    out = np.empty((flat.shape[0], model.n_classes), dtype=np.float32)
    with torch.inference_mode():
        for a in range(0, flat.shape[0], batch):
            xb = flat[a:a + batch] if preprocessed else preprocess(flat[a:a + batch], LENGTH, pretrigger)
            out[a:a + batch] = model(torch.as_tensor(np.asarray(xb, np.float32), device=device)).cpu().numpy()
    out[~valid] = np.nan
    return out.reshape(*lead, model.n_classes)


def uncertainty_from_logits(logits, accepted, temperature: float = 1.0, threshold: float | None = None) -> dict:
    """Per record (leading shape of `logits`): score (uncalibrated, as `predict_scores`; the decision
    uses it), probability (temperature-calibrated P(clean)), ood_score (energy, higher = less familiar)
    and, with `threshold`, ood (ood_score > threshold). NaN logits give NaN (ood False)."""
    from .calibration import calibrated_probability, energy

    z = np.asarray(logits, dtype=np.float64)
    lead = z.shape[:-1]
    flat = z.reshape(-1, z.shape[-1])
    s, _ = scores_from_logits(torch.as_tensor(flat.astype(np.float32)), accepted)
    with np.errstate(invalid="ignore"):
        out = {"score": s.numpy().reshape(lead),
               "probability": calibrated_probability(flat, accepted, temperature).astype(np.float32).reshape(lead),
               "ood_score": energy(flat, temperature).astype(np.float32).reshape(lead)}
        if threshold is not None:
            out["ood"] = out["ood_score"] > threshold
    return out


def decide(scores, cutoff: float = CUTOFF) -> np.ndarray:
    """Accept (True) records whose score >= `cutoff` (a NaN score, an unscored record, is rejected)."""
    return np.asarray(scores) >= cutoff


def clean_events(decisions, channel_axis: int = 0) -> np.ndarray:
    """An event is clean when all its channels are accepted: all() over `channel_axis`."""
    return np.all(np.asarray(decisions, dtype=bool), axis=channel_axis)


def predictions_dataset(model: Classifier, trace: xr.DataArray, model_name: str, cutoff: float = CUTOFF,
                        batch: int = 4096, event_chunk: int = 1024, inputs=None) -> xr.Dataset:
    """A "predictions" store Dataset for a (channel, event, sample) trace, read `event_chunk` events at a time.

    Variables: score, decision, valid (channel, event), event_clean (event); attrs model, cutoff,
    n_invalid. Records with NaN/inf samples have valid False, score NaN and decision False; the
    attr ``invalid_records`` describes them (`describe_invalid`, empty if none).
    """
    if tuple(trace.dims) != ("channel", "event", "sample"):
        raise InputError(f"trace: need dims (channel, event, sample), got {tuple(trace.dims)}")
    n_ch, n_ev = trace.shape[:2]
    score = np.empty((n_ch, n_ev), dtype=np.float32)
    calibrated = getattr(model, "temperature", None) is not None and model.n_classes > 1
    extra = {k: np.empty((n_ch, n_ev), dtype=np.float32) for k in ("probability", "ood_score")} if calibrated else {}
    for e0 in range(0, n_ev, event_chunk):
        block = read_values(trace[:, e0:e0 + event_chunk], trace.encoding.get("source", "records"), "records")
        if calibrated:   # one forward pass: score as predict_scores, plus calibrated probability and OOD score
            u = uncertainty_from_logits(predict_logits(model, block, batch), model.accepted, model.temperature)
            score[:, e0:e0 + event_chunk] = u["score"]
            for k in extra:
                extra[k][:, e0:e0 + event_chunk] = u[k]
        else:
            score[:, e0:e0 + event_chunk] = predict_scores(model, block, batch)
    valid = np.isfinite(score)
    decision = decide(score, cutoff)
    if not valid.all():
        logging.getLogger("cryopipe.predict").warning("%s", describe_invalid(valid))
    coords = {k: v for k, v in trace.coords.items() if set(v.dims) <= {"channel", "event"}}
    return xr.Dataset(
        {"score": (("channel", "event"), score), "decision": (("channel", "event"), decision),
         "valid": (("channel", "event"), valid), "event_clean": (("event",), clean_events(decision)),
         **{k: (("channel", "event"), v) for k, v in extra.items()}},
        coords=coords,
        attrs=provenance("predictions", {"cutoff": cutoff, "batch": batch}, inputs, model=model_name, cutoff=cutoff,
                         n_invalid=int((~valid).sum()), invalid_records=describe_invalid(valid),
                         **({"temperature": float(model.temperature), "ood_score": "energy",
                             "ood_threshold": float(getattr(model, "ood_threshold", np.nan))} if calibrated else {})),
    )
