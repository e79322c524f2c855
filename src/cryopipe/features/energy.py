"""Feature family "energy": the calibrated amplitude, from a features store and a calibration store."""
from __future__ import annotations

import json

import xarray as xr

UNITS: dict[str, str] = {"energy": "keV"}


def add_energy(features: xr.Dataset, calibration: xr.Dataset) -> xr.Dataset:
    """Add `energy` (channel, event) keV: the calibrated amplitude the calibration was made from
    (its attr ``amplitude`` names the feature), energy = kev_per_volt * amplitude + offset_kev."""
    from ..calibrate import to_energy

    amp = features[calibration.attrs["amplitude"]]
    k = calibration["kev_per_volt"].sel(channel=features["channel"]).values[:, None]
    off = calibration["offset_kev"].sel(channel=features["channel"]).values[:, None]
    energy = to_energy(amp.values, {"kev_per_volt": 1.0, "offset_kev": 0.0}) * k + off
    units = json.loads(features.attrs.get("units", "{}"))
    out = features.assign(energy=(("channel", "event"), energy, {"units": UNITS["energy"]}))
    out.attrs["units"] = json.dumps({**units, **UNITS})
    return out
