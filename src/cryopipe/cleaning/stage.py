"""Cleaning stage: labelled records simulated from a run's characterisation; training on them.

Stage entry points for the workflow scripts and the CLI: plain config dicts in, Datasets
ready for cryopipe.io.stores out; no Snakemake here.
"""
from __future__ import annotations

import numpy as np
import xarray as xr

from cryopipe.io.stores import provenance


def simulate_run_records(characterization: xr.Dataset, n_per_class: int, seed: int,
                         snr_range=(3.0, 1000.0)) -> xr.Dataset:
    """Labelled records of every event class for each channel of a characterised run (its SEV and
    NPS), concatenated along ``event`` ("simset" store content; channel dim 'detector').

    The simulator puts the trigger at N/4. Where the run's records have it elsewhere (attr
    `pretrigger`, e.g. LJH files), the records are simulated in the window that the cleaning's
    preprocessing cuts out of the real records (`cleaning.preprocess.trigger_window`: the trigger at
    a quarter of it), from the SEV in that window and the NPS (a density, V^2/Hz) interpolated onto
    its frequencies, so that training and prediction see the same time scale.
    """
    from cryopipe.cleaning.preprocess import trigger_window
    from cryopipe.io.stores import record_pretrigger
    from cryopipe.simulate.records import EVENT_CLASSES, simulate_detector_records

    rng = np.random.default_rng(seed)
    fs = float(characterization.attrs["sample_frequency"])
    n = int(characterization.attrs["record_length"])
    window = trigger_window(n, record_pretrigger(characterization))
    length = window.stop - window.start
    parts = []
    for ch in characterization["channel"].values:
        c = characterization.sel(channel=ch)
        sev, nps = np.asarray(c["sev"].values), np.asarray(c["nps"].values)
        if length != n:
            sev = sev[window]
            f_new = np.fft.rfftfreq(length, 1.0 / fs)
            nps = np.interp(f_new, np.fft.rfftfreq(n, 1.0 / fs), nps)
        ds = simulate_detector_records({k: int(n_per_class) for k in EVENT_CLASSES}, sev,
                                       nps, fs, rng, snr_range=tuple(snr_range))
        parts.append(ds.assign(source_channel=("event", np.full(ds.sizes["event"], str(ch)))))
    out = xr.concat(parts, dim="event", combine_attrs="override")
    out = out.assign_coords(event=np.arange(out.sizes["event"]))
    out.attrs = provenance("simset", {"n_per_class": n_per_class, "seed": seed, "snr_range": list(snr_range)}, [],
                           sample_frequency=fs, record_length=length)
    return out


def train_on_simset(path, architecture: str, checkpoint, cfg: dict, progress=None):
    """Train `architecture` on a simset store (90 % train, 10 % validation), multi-class head over
    its event classes (binary score = accepted classes) or a binary head; returns the TrainResult."""
    import sys

    from cryopipe.cleaning.data import SimsetSource, split_events
    from cryopipe.simulate.records import DEFAULT_ACCEPTED, EVENT_CLASSES

    probe = SimsetSource(path)
    train_mask, val_mask = split_events(probe.n_events, (0.9, 0.1), seed=int(cfg["seed"]))
    classes = list(EVENT_CLASSES)
    train = SimsetSource(path, class_names=classes, select=train_mask)
    val = SimsetSource(path, class_names=classes, select=val_mask)
    from cryopipe.cleaning.train import train_model

    n_classes = len(classes) if cfg["multiclass"] else 1
    return train_model(architecture, train, val, checkpoint, epochs=int(cfg["epochs"]),
                       batch_size=int(cfg["batch_size"]), lr=cfg.get("lr"), seed=int(cfg["seed"]),
                       n_classes=n_classes, accepted=sorted(DEFAULT_ACCEPTED) if n_classes > 1 else None,
                       progress=progress or sys.stderr, meta={"trained_on": str(path), "cutoff": 0.5 if cfg["cutoff"] is None else cfg["cutoff"]})
