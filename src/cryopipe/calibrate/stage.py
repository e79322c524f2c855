"""Calibration stage: amplitude -> energy from a line of known energy (the energy feature itself is
`cryopipe.calibrate.energy`).

Stage entry points for the workflow scripts and the CLI: plain config dicts in, Datasets
ready for cryopipe.io.stores out; no Snakemake here.
"""
from __future__ import annotations

import json

import numpy as np
import xarray as xr

from cryopipe.io.stores import provenance


def calibrate_channel(features: xr.Dataset, characterization: xr.Dataset, cfg: dict, what: str) -> xr.Dataset:
    """Amplitude -> energy conversion of one channel from a line of known energy.

    Uses the particle records' `cfg["amplitude"]` feature (default the shift-searched OF amplitude);
    the baseline resolution in keV comes from the channel's measured OF resolution.
    """
    from cryopipe.calibrate.lines import calibrate

    kind = np.array([str(k) for k in features["record_kind"].values])
    amp = features[cfg["amplitude"]].isel(channel=0).values[kind == "particle"]
    res = float(characterization["resolution"].isel(channel=0))
    cal = calibrate(amp, cfg["line_energy"], expected=cfg.get("expected"), resolution=res,
                    min_events=int(cfg["min_line_events"]), min_significance=float(cfg["min_significance"]),
                    fit_range=5.0,  # room for the background on both sides of a sparse line
                    what=what)
    ch = features["channel"].values
    scalar = {k: ("channel", [float(np.ravel(cal[k])[0])]) for k in
              ("kev_per_volt", "kev_per_volt_err", "offset_kev", "line_position", "line_position_err",
               "line_sigma", "line_sigma_err", "line_sigma_kev", "resolution", "resolution_kev", "resolution_kev_err")}
    return xr.Dataset(scalar, coords={"channel": ch},
                      attrs=provenance("calibration", cfg, [], line_energy=float(np.ravel(cfg["line_energy"])[0]),
                                       amplitude=cfg["amplitude"],
                                       units=json.dumps({"kev_per_volt": "keV/V", "line_position": "V",
                                                         "resolution": "V", "resolution_kev": "keV"})))
