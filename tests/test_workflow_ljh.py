"""LJH runs through the workflow (Snakemake): a stream of back-to-back records is triggered like
csmpl, and the log says which mode was used; a record-based run reaches labels and predictions with
every record, and the viewer's data layer and `cryopipe inspect` read it."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from ljh_util import write_pulse_ljh
from workflow_util import snakemake, write_config

FS = 100_000.0


@pytest.mark.slow
def test_ljh_stream_is_triggered_and_records_run_to_predictions(tmp_path):
    # a stream: 1200 back-to-back records of 1024 samples, a pulse at sample 256 of every 8th record
    n_rec, n = 1200, 1024
    rng = np.random.default_rng(12)
    heights = np.where(np.arange(n_rec) % 8 == 3, rng.uniform(300, 3000, n_rec), 0.0)
    stream_path, heights, frames = write_pulse_ljh(tmp_path / "stream.ljh", n_records=n_rec, n=n, presamples=256,
                                                   fs=FS, heights=heights, back_to_back=True, seed=12)
    # records: pulses at Presamples = N/2, with a noise file
    rec_path, _, _ = write_pulse_ljh(tmp_path / "rec.ljh", n_records=120, n=n, presamples=512, fs=FS, seed=13,
                                     version="2.1.0")
    noise_path, _, _ = write_pulse_ljh(tmp_path / "noise.ljh", n_records=60, n=n, presamples=512, fs=FS, seed=14,
                                       version="2.1.0", pulses=False)
    cfg = {"results": str(tmp_path / "results"),
           "runs": {"lstream": {"ljh": str(stream_path), "calibrate": {"line_energy": None}},
                    "lrec": {"ljh": str(rec_path), "noise_ljh": str(noise_path), "calibrate": {"line_energy": None}}},
           "trigger": {"noise_records": 60},
           "efficiency": {"enabled": False},
           "cleaning": {"models": ["universal"]}}
    config = write_config(tmp_path / "cfg.yaml", cfg)
    res = tmp_path / "results"
    snakemake(tmp_path, config, f"{res}/lstream/features.zarr", f"{res}/lrec/labels.zarr",
              f"{res}/lrec/predictions/universal.zarr")
    # the stream: triggered by cryopipe, one particle record per pulse, trigger near the pulse onset
    log = "".join(p.read_text() for p in (res / "lstream" / "logs").glob("records.log"))
    assert "back to back: read as one continuous stream" in log
    recs = xr.open_zarr(res / "lstream" / "records.zarr", consolidated=False)
    part = recs["trigger_sample"].values[recs["record_kind"].values == "particle"]
    true_onsets = (frames - frames[0] + 256)[heights > 0]
    # every pulse is found, at its onset (extra triggers near the threshold are not checked here:
    # see the report of issue 20 on the first pass's noise records)
    nearest = np.min(np.abs(true_onsets[:, None] - part[None, :]), axis=1)
    assert np.all(nearest < 30)
    # the records: every record in labels and predictions, read (not triggered) as the log says
    log = (res / "lrec" / "logs" / "read_records.log").read_text()
    assert "read as triggered records" in log
    labels = xr.open_zarr(res / "lrec" / "labels.zarr", consolidated=False)
    pred = xr.open_zarr(res / "lrec" / "predictions" / "universal.zarr", consolidated=False)
    assert labels.sizes["event"] == pred.sizes["event"] == 180
    from cryopipe.view.data import RunData

    view = RunData(res / "lrec")
    assert view.time_axis()[0] == pytest.approx(-512 / FS)
    from cryopipe.cli import main

    assert main(argv=["inspect", str(res / "lrec" / "records.zarr")]) == 0
