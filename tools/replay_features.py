"""Replay the feature-derived stages of a finished default run with the current code and compare.

Usage: python tools/replay_features.py RUN_DIR OUT_DIR [--run-config CONFIG_YAML]

RUN_DIR is a run's results directory (e.g. results/sim) made by any version of cryopipe. From its
records.zarr and characterization.zarr this recomputes, with the code on the path, the per-channel
features (features/<ch>.zarr), calibration (calibration/<ch>.zarr), efficiency
(efficiency/<ch>.zarr), the gathered features.zarr (with energy) and labels.zarr (default cuts,
in the workflow's canonical order), writes them under OUT_DIR and prints, per store, identical or
how it differs (`compare_stores.differences`, provenance attrs ignored). The configuration of each
stage is read from the original stores' ``parameters`` attrs. Upstream stages (trigger,
characterization) are not rerun: a refactor of the feature code is checked in isolation.
"""
from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import numpy as np
import xarray as xr

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare_stores import PROVENANCE, _open, differences  # noqa: E402

from cryopipe.cuts.language import DEFAULT_CUTS, apply_cuts  # noqa: E402
from cryopipe.calibrate.energy import add_energy  # noqa: E402
from cryopipe.features.dataset import features_dataset  # noqa: E402
from cryopipe.io.stores import concat_channels  # noqa: E402
from cryopipe.calibrate.stage import calibrate_channel  # noqa: E402
from cryopipe.efficiency.stage import efficiency_channel  # noqa: E402


def _zarr(path) -> xr.Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return xr.open_zarr(path, consolidated=False)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("out_dir", type=Path)
    args = ap.parse_args(argv)
    base, out = args.run_dir, args.out_dir
    bad = 0

    def save(ds: xr.Dataset, rel: str) -> None:
        nonlocal bad
        with warnings.catch_warnings():  # zarr: fixed-width strings have no v3 spec yet
            warnings.simplefilter("ignore")
            ds.to_zarr(out / rel, consolidated=False, mode="w")
        lines = differences(_open(base / rel, PROVENANCE), _open(out / rel, PROVENANCE), 1e-6)
        print(f"{rel}: {'identical' if not lines else 'different'}")
        for line in lines:
            print(line)
        bad += bool(lines)

    char = _zarr(base / "characterization.zarr").load()
    records_all = _zarr(base / "records.zarr")
    feat_params = json.loads(_zarr(base / "features.zarr").attrs.get("parameters", "{}"))
    cuts = json.loads(json.dumps(DEFAULT_CUTS, sort_keys=True))
    calibration = _zarr(base / "calibration.zarr").load() if (base / "calibration.zarr").is_dir() else None
    parts = []
    for ch in [str(c) for c in records_all["channel"].values]:
        records = records_all.sel(channel=[ch])
        ds = features_dataset(records, characterization=char, fit_truncation=feat_params.get("fit_truncation"))
        save(ds, f"features/{ch}.zarr")
        parts.append(ds)
        if (base / "calibration" / f"{ch}.zarr").is_dir():
            cfg = json.loads(_zarr(base / "calibration" / f"{ch}.zarr").attrs["parameters"])
            save(calibrate_channel(ds, char.sel(channel=[ch]), cfg, what=ch), f"calibration/{ch}.zarr")
        if (base / "efficiency" / f"{ch}.zarr").is_dir():
            cfg = json.loads(_zarr(base / "efficiency" / f"{ch}.zarr").attrs["parameters"])
            kev = float(calibration["kev_per_volt"].sel(channel=ch)) if calibration is not None else None
            save(efficiency_channel(records, char, cuts, cfg, kev_per_volt=kev), f"efficiency/{ch}.zarr")
    feats = concat_channels(parts)
    if calibration is not None:
        feats = add_energy(feats, calibration)
    save(feats, "features.zarr")
    if (base / "labels.zarr").is_dir():
        feats["record_kind"] = ("event", np.array([str(k) for k in feats["record_kind"].values]))
        save(apply_cuts(feats, cuts=cuts), "labels.zarr")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
