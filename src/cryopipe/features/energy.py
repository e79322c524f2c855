"""Feature family "energy": the calibrated amplitude, from a features store and a calibration store."""
from __future__ import annotations

import json

import xarray as xr

UNITS: dict[str, str] = {"energy": "keV", "light_yield": "1"}


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


def add_light_yield(features: xr.Dataset, phonon: str, light: str) -> xr.Dataset:
    """Add `light_yield` (event,): light energy / phonon energy (1), the standard CRESST view of a
    phonon + light module. Needs `energy`; NaN where the phonon energy is not positive."""
    import numpy as np

    from ..errors import InputError

    names = [str(c) for c in features["channel"].values]
    for role, name in (("phonon", phonon), ("light", light)):
        if name not in names:
            raise InputError(f"light_yield: {role} channel {name!r} is not a channel of the run ({', '.join(names)})")
    e_phonon = features["energy"].sel(channel=phonon).values
    e_light = features["energy"].sel(channel=light).values
    with np.errstate(divide="ignore", invalid="ignore"):
        ly = np.where(e_phonon > 0, e_light / e_phonon, np.nan)
    units = json.loads(features.attrs.get("units", "{}"))
    out = features.assign(light_yield=(("event",), ly.astype(np.float32), {"units": UNITS["light_yield"]}))
    out.attrs["units"] = json.dumps({**units, "light_yield": UNITS["light_yield"]})
    return out
