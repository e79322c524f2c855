"""What cleaning does to a run: amplitude spectra (raw, after cuts, after a model) and the PCA manifold.

The CRESST seed (section 4.3) shows the data manifold of a detector's records with a PCA before and
after the model, and compares a pulse-height spectrum cleaned with classical cuts with one cleaned
by the model. Here a module's event is one point: its channels preprocessed as the models see them
(`preprocess`: 512 block means, min-max scaled) and concatenated, projected on the first principal
components of all particle events (scikit-learn PCA). Only particle records enter (noise triggers
are no events of the spectrum).
"""
from __future__ import annotations

import numpy as np
import xarray as xr
from sklearn.decomposition import PCA

from cryopipe.cuts.language import record_kinds
from ..errors import InputError
from .preprocess import preprocess

#: Amplitude variables of a features store, preferred first: calibrated energy (keV), the OF
#: amplitude with time-shift search (V), the pulse height (V).
AMPLITUDE_VARIABLES = ("energy", "of_amplitude_shifted", "of_amplitude", "pulse_height")
MAX_PCA_EVENTS = 20_000
EVENTS_PER_BLOCK = 4096


def amplitude_variable(features: xr.Dataset) -> str:
    """Name of the amplitude variable of `features` used for the spectra (see AMPLITUDE_VARIABLES)."""
    for name in AMPLITUDE_VARIABLES:
        if name in features:
            return name
    raise InputError(f"features store has none of {AMPLITUDE_VARIABLES} to make a spectrum of")


def particle_events(records: xr.Dataset) -> np.ndarray:
    """Indices of the particle records (record_kind 'particle'; every event if the store has no kinds)."""
    return np.flatnonzero(record_kinds(records, records.sizes["event"]) == "particle")


def module_vectors(trace: xr.DataArray, events: np.ndarray) -> np.ndarray:
    """(len(events), channels * 512) float32: each channel of the chosen events preprocessed, concatenated.

    Reads `trace` (channel, event, sample) in blocks of EVENTS_PER_BLOCK events.
    """
    out = []
    for a in range(0, len(events), EVENTS_PER_BLOCK):
        block = np.asarray(trace.isel(event=events[a:a + EVENTS_PER_BLOCK]).values, dtype=np.float32)
        x = preprocess(block)                                        # (channel, event, 512)
        out.append(np.moveaxis(x, 0, 1).reshape(x.shape[1], -1))
    if not out:
        return np.zeros((0, trace.sizes["channel"] * 512), dtype=np.float32)
    return np.concatenate(out)


def pca_manifold(vectors: np.ndarray, *, n_components: int = 2, seed: int = 0) -> dict:
    """PCA of module vectors (events, features): projection (events, n_components) and explained variance ratio."""
    vectors = np.asarray(vectors, dtype=np.float64)
    if vectors.ndim != 2 or vectors.shape[0] <= n_components:
        raise InputError(f"PCA manifold: need more than {n_components} events, got {vectors.shape[0]}")
    pca = PCA(n_components=n_components, random_state=seed)
    projection = pca.fit_transform(vectors)
    return {"projection": projection, "explained_variance_ratio": pca.explained_variance_ratio_}


def cleaning_summary(cut_clean: np.ndarray, model_clean: np.ndarray) -> dict:
    """Counts of particle events kept by the cuts, by the model, by both, and the agreement fraction."""
    cut_clean, model_clean = np.asarray(cut_clean, bool), np.asarray(model_clean, bool)
    n = int(cut_clean.size)
    return {"events": n, "after_cuts": int(cut_clean.sum()), "after_model": int(model_clean.sum()),
            "after_both": int((cut_clean & model_clean).sum()),
            "agreement": float(np.mean(cut_clean == model_clean)) if n else float("nan")}


def cleaning_report(records: xr.Dataset, features: xr.Dataset, labels: xr.Dataset, predictions: xr.Dataset,
                    *, max_pca_events: int = MAX_PCA_EVENTS, seed: int = 0) -> dict:
    """Everything the cleaning figures need, for the particle events of one run.

    Returns amplitude (channel, event) and its variable name and units, channel names, cut_clean
    (event: every channel passes the cuts), model_clean (event: the model's event_clean), pca (see
    `pca_manifold`, on at most `max_pca_events` events drawn at random) with pca_events (their
    positions among the particle events) and summary (`cleaning_summary`).
    """
    n = records.sizes["event"]
    for name, ds in (("features", features), ("labels", labels), ("predictions", predictions)):
        if ds.sizes.get("event") != n:
            raise InputError(f"{name} store has {ds.sizes.get('event')} events, the records store {n}")
    events = particle_events(records)
    name = amplitude_variable(features)
    amplitude = np.asarray(features[name].isel(event=events).values, dtype=np.float64)
    cut_clean = np.asarray(labels["accepted"].isel(event=events).values, bool).all(axis=0)
    model_clean = np.asarray(predictions["event_clean"].isel(event=events).values, bool)
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(len(events), min(len(events), max_pca_events), replace=False))
    pca = pca_manifold(module_vectors(records["trace"], events[chosen]), seed=seed)
    summary = cleaning_summary(cut_clean, model_clean)
    summary.update(unfamiliar_summary(predictions, events))
    return {"amplitude": amplitude, "amplitude_name": name, "units": features[name].attrs.get("units", ""),
            "channels": [str(c) for c in records["channel"].values], "cut_clean": cut_clean,
            "model_clean": model_clean, "pca": pca, "pca_events": chosen, "summary": summary}


def unfamiliar_summary(predictions: xr.Dataset, events) -> dict:
    """Particle events the model has not learned (issue 15): some channel flagged `ood` (energy or
    feature distance above its threshold); those it decides unsure (some channel `unsure`, where the
    store has it); and the predictions' rate warnings (mostly rejected or
    mostly unfamiliar, `predict.rate_warnings`). Empty for an uncalibrated model without warnings."""
    thr = predictions.attrs.get("ood_threshold")
    warnings = {"warnings": list(np.atleast_1d(predictions.attrs.get("warnings", [])))}
    if "ood" in predictions:          # energy or feature distance above its threshold (issue 19)
        ood = np.asarray(predictions["ood"].isel(event=events).values, dtype=bool)
    elif "ood_score" in predictions and thr is not None and np.isfinite(thr):
        ood = np.asarray(predictions["ood_score"].isel(event=events).values, dtype=np.float64) > float(thr)
    else:
        return warnings if warnings["warnings"] else {}
    flagged = ood.any(axis=0)
    n = int(flagged.size)
    out = {"unfamiliar": int(flagged.sum()), "unfamiliar_fraction": float(flagged.mean()) if n else float("nan"),
           "ood_threshold": float(thr), **warnings}
    if "unsure" in predictions:       # calibrated P(clean) in calibration.UNSURE_BAND on some channel
        unsure = np.asarray(predictions["unsure"].isel(event=events).values, dtype=bool).any(axis=0)
        out.update(unsure=int(unsure.sum()), unsure_fraction=float(unsure.mean()) if n else float("nan"))
    return out
