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
                   preprocessed: bool = False, device=None):
    """Acceptance scores in [0, 1] of (..., N) raw records (V), shape (...).

    Records with a NaN or infinite sample get score NaN (and NaN class probabilities): no score,
    never a number; `finite_records` gives the mask, `decide` rejects them.

    Parameters
    ----------
    records : (..., N) float records; downsampled and scaled here batch by batch (unless
        `preprocessed`, then (..., 512) already scaled).
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
            xb = flat[a:a + batch] if preprocessed else preprocess(flat[a:a + batch], LENGTH)
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
    for e0 in range(0, n_ev, event_chunk):
        block = read_values(trace[:, e0:e0 + event_chunk], trace.encoding.get("source", "records"), "records")
        score[:, e0:e0 + event_chunk] = predict_scores(model, block, batch)
    valid = np.isfinite(score)
    decision = decide(score, cutoff)
    if not valid.all():
        logging.getLogger("cryopipe.predict").warning("%s", describe_invalid(valid))
    coords = {k: v for k, v in trace.coords.items() if set(v.dims) <= {"channel", "event"}}
    return xr.Dataset(
        {"score": (("channel", "event"), score), "decision": (("channel", "event"), decision),
         "valid": (("channel", "event"), valid), "event_clean": (("event",), clean_events(decision))},
        coords=coords,
        attrs=provenance("predictions", {"cutoff": cutoff, "batch": batch}, inputs, model=model_name, cutoff=cutoff,
                         n_invalid=int((~valid).sum()), invalid_records=describe_invalid(valid)),
    )
