"""Cleaning stage: labelled records simulated from a run's characterization; training on them.

What each rule reads, calls and writes (simulate_records, train, predict, evaluate,
cleaning_report): plain config dicts and store paths in; no Snakemake here.
"""
from __future__ import annotations

import numpy as np
import xarray as xr

from cryopipe.io.stores import provenance


def simulate_run_records(characterization: xr.Dataset, n_per_class: int, seed: int,
                         *, snr_range=(3.0, 1000.0)) -> xr.Dataset:
    """Labelled records of every event class for each channel of a characterized run (its SEV and
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
    window = trigger_window(n, pretrigger=record_pretrigger(characterization))
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
    out.attrs = provenance("simset", parameters={"n_per_class": n_per_class, "seed": seed,
                                                 "snr_range": list(snr_range)}, inputs=[],
                           sample_frequency=fs, record_length=length)
    return out


def train_on_simset(path, architecture: str, checkpoint, cfg: dict, *, progress=None):
    """Train `architecture` on a simset store (90 % train, 10 % validation), multi-class head over
    its event classes (binary score = accepted classes) or a binary head; returns the TrainResult."""
    import sys

    from cryopipe.cleaning.data import SimsetSource, split_events
    from cryopipe.simulate.records import DEFAULT_ACCEPTED, EVENT_CLASSES

    probe = SimsetSource(path)
    train_mask, val_mask = split_events(probe.n_events, fractions=(0.9, 0.1), seed=int(cfg["seed"]))
    classes = list(EVENT_CLASSES)
    train = SimsetSource(path, class_names=classes, select=train_mask)
    val = SimsetSource(path, class_names=classes, select=val_mask)
    from cryopipe.cleaning.train import train_model

    n_classes = len(classes) if cfg["multiclass"] else 1
    return train_model(architecture, train, val, checkpoint, epochs=int(cfg["epochs"]),
                       batch_size=int(cfg["batch_size"]), lr=cfg.get("lr"), seed=int(cfg["seed"]),
                       n_classes=n_classes, accepted=sorted(DEFAULT_ACCEPTED) if n_classes > 1 else None,
                       progress=progress or sys.stderr, meta={"trained_on": str(path), "cutoff": 0.5 if cfg["cutoff"] is None else cfg["cutoff"]})


TEST_SEED_OFFSET = 1_000_003  # the test set's seed: the train seed + this (disjoint sets)


def run_simulate_records(*, characterization: str, output: str, split: str, simulate: dict, log) -> None:
    """Rule simulate_records: the "simset" store of a run's `split` ("train" or "test": n_per_class or
    n_test_per_class records of every class and channel, disjoint seeds) from its characterization;
    `simulate`: the config's cleaning.simulate section (snr_min, snr_max)."""
    from cryopipe.io.stores import load_store, write_store

    seed = int(simulate["seed"]) + (0 if split == "train" else TEST_SEED_OFFSET)
    n = int(simulate["n_per_class"] if split == "train" else simulate["n_test_per_class"])
    ds = simulate_run_records(load_store(characterization, "characterization"), n, seed,
                              snr_range=(simulate["snr_min"], simulate["snr_max"]))
    ds.attrs["inputs"] = [str(characterization)]
    log.info("%d labelled records (%d per class and channel)", ds.sizes["event"], n)
    write_store(ds, output, "simset")


def run_train(*, simset: str, model: str, curve: str, architecture: str, train: dict, progress: str, log) -> None:
    """Rule train: `architecture` trained on a simset store, the best checkpoint written to `model`
    (its meta beside it), the loss curves to the image `curve`; the per-epoch progress appended to
    the file `progress` (the rule's log). The model's own cutoff (0.5) picks the checkpoint:
    cleaning.cutoff acts in predict."""
    from pathlib import Path

    from cryopipe.cleaning.train import plot_loss_curves

    cfg = {**train, "cutoff": None}
    with open(progress, "a") as stream:
        result = train_on_simset(simset, architecture, Path(model), cfg, progress=stream)
    plot_loss_curves(result.history, curve)
    log.info("best epoch %d (counted from 1), validation balanced accuracy %.4f", result.best_epoch + 1,
             max(result.history.get("val_ba", [float("nan")])))


def run_predict(*, records: str, model: str, output: str, model_name: str, cutoff: float | None, log) -> None:
    """Rule predict: the "predictions" store of model `model` ("universal" or a checkpoint path,
    named `model_name`) on every channel and event of a run's records; `cutoff`: None for the
    model's own."""
    from cryopipe.cleaning.predict import predictions_dataset
    from cryopipe.cleaning.universal import model_cutoff, resolve_model
    from cryopipe.io.stores import open_store, write_store

    net, meta = resolve_model(model)
    recs = open_store(records, "records")
    cut = model_cutoff(meta, cutoff=cutoff)
    pretrigger = recs.attrs.get("pretrigger")      # the records' trigger sample (None: N/4)
    particle = recs["record_kind"].values.astype(str) == "particle"   # what the rate warnings count
    ds = predictions_dataset(net, recs["trace"], model_name, cutoff=cut, inputs=[str(records), str(model)],
                             pretrigger=pretrigger, particle=particle,
                             sample_frequency=recs.attrs.get("sample_frequency"))
    ds = ds.assign(record_kind=recs["record_kind"])
    log.info("model %s: %d of %d events clean (all channels accepted)", model_name,
             int(ds["event_clean"].sum()), ds.sizes["event"])
    write_store(ds, output, "predictions")


def run_evaluate(*, test: str, model: str, output: str, model_name: str, cutoff: float | None, log) -> None:
    """Rule evaluate: metrics, targets table and figures (directory `output`) of model `model`
    ("universal" or a checkpoint path, named `model_name`) on a held-out simset store `test`."""
    from cryopipe.cleaning.evaluate import evaluate_model
    from cryopipe.cleaning.universal import model_cutoff, resolve_model
    from cryopipe.io.stores import load_store

    net, meta = resolve_model(model)
    result = evaluate_model(net, meta, {"detector": load_store(test, "simset")}, output,
                            cutoff=model_cutoff(meta, cutoff=cutoff))
    c = result["classification"]
    log.info("model %s on %s: balanced accuracy %.4f, recall %.4f, precision %.4f", model_name,
             test, c["balanced_accuracy"], c["recall"], c["precision"])


def run_cleaning_report(*, records: str, features: str, labels: str, predictions: str, output: str, run: str,
                        model: str, max_pca_events: int, log) -> None:
    """Rule cleaning_report: amplitude spectra raw / after the cuts / after model `model`, the PCA
    manifold before and after, and summary.json, in the directory `output`."""
    import json
    from pathlib import Path

    from cryopipe.cleaning.calibration import UNSURE_BAND
    from cryopipe.cleaning.report import cleaning_report
    from cryopipe.io.stores import open_store
    from cryopipe.plots import plot_cleaning_spectra, plot_pca_manifold

    rep = cleaning_report(open_store(records, "records"), open_store(features, "features"),
                          open_store(labels, "labels"), open_store(predictions, "predictions"),
                          max_pca_events=max_pca_events)
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    plot_cleaning_spectra(rep["amplitude"], rep["cut_clean"], rep["model_clean"], out / "spectrum.png",
                          channels=rep["channels"], units=rep["units"], model=model, label=run)
    plot_pca_manifold(rep["pca"]["projection"], rep["model_clean"][rep["pca_events"]], out / "pca.png",
                      explained=rep["pca"]["explained_variance_ratio"], model=model, label=run)
    summary = {**rep["summary"], "model": model, "amplitude": rep["amplitude_name"],
               "pca_events": int(len(rep["pca_events"])),
               "pca_explained_variance_ratio": [float(v) for v in rep["pca"]["explained_variance_ratio"]]}
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    s = rep["summary"]
    for w in s.get("warnings", []):
        log.warning("%s on %s: %s", model, run, w)
    log.info("%s on %s: %d particle events, %d pass the cuts, %d the model, %d both (agreement %.3f)",
             model, run, s["events"], s["after_cuts"], s["after_model"], s["after_both"], s["agreement"])
    if "unsure" in s:
        log.info("%s on %s: %d particle events flagged ood (unfamiliar), %d unsure (calibrated P(clean) %g-%g)",
                 model, run, s["unfamiliar"], s["unsure"], *UNSURE_BAND)
