"""Feature family "energy": the calibrated amplitude, from a features store and a calibration store."""
from __future__ import annotations

import json

import xarray as xr
from cryopipe.signal.robust import MAD_TO_SIGMA

UNITS: dict[str, str] = {"energy": "keV", "light_yield": "1"}


def add_energy(features: xr.Dataset, calibration: xr.Dataset) -> xr.Dataset:
    """Add `energy` (channel, event) keV: the calibrated amplitude the calibration was made from
    (its attr ``amplitude`` names the feature), energy = kev_per_volt * amplitude + offset_kev."""
    from cryopipe.calibrate.lines import to_energy

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

    from cryopipe.errors import InputError

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


def electron_band(energy, light_yield, *, bins: int = 12, clip: float = 3.0, min_events: int = 10,
                  iterations: int = 10):
    """The e/gamma band of a light-yield plot: per energy bin, the light yield's centre and width of
    the electron/gamma population (light yield ~1 by the calibration) without the nuclear recoils
    (light yield ~0.1-0.3) or outliers.

    Per log-spaced bin of the positive phonon energies (keV): the median and the robust width
    sigma = 1.4826 * MAD of the light yield, recomputed `iterations` times on the events within
    `clip` sigma of the median (a robust estimate of the main population's mean and standard
    deviation; a minority population further than `clip` sigma does not pull it).

    Parameters
    ----------
    energy : (n,) phonon energies, keV (non-positive or non-finite ones are ignored)
    light_yield : (n,) light yields (1)
    bins : number of log-spaced energy bins between the smallest and largest positive energy
    clip : half-width of the window kept at each iteration, in sigma
    min_events : bins with fewer events in the window get NaN

    Returns
    -------
    dict of (bins,) arrays: ``edges`` (bins + 1,) keV, ``centre`` keV (geometric), ``median`` (1),
    ``sigma`` (1), ``n`` (events in the final window).
    """
    import numpy as np

    e = np.asarray(energy, dtype=np.float64)
    ly = np.asarray(light_yield, dtype=np.float64)
    ok = np.isfinite(e) & np.isfinite(ly) & (e > 0)
    e, ly = e[ok], ly[ok]
    nan = np.full(bins, np.nan)
    if e.size == 0:
        return {"edges": np.full(bins + 1, np.nan), "centre": nan, "median": nan, "sigma": nan.copy(),
                "n": np.zeros(bins, int)}
    edges = np.geomspace(e.min(), e.max() * (1 + 1e-12), bins + 1) if e.max() > e.min() else \
        np.array([e.min() * (1 - 1e-9)] + [e.min() * (1 + 1e-9)] * bins)
    which = np.clip(np.searchsorted(edges, e, side="right") - 1, 0, bins - 1)
    median, sigma, n = nan.copy(), nan.copy(), np.zeros(bins, int)
    for b in range(bins):
        y = ly[which == b]
        keep = np.ones(y.size, bool)
        for _ in range(iterations):
            if keep.sum() < min_events:
                break
            m = np.median(y[keep])
            s = MAD_TO_SIGMA * np.median(np.abs(y[keep] - m))
            new = np.abs(y - m) <= clip * s if s > 0 else y == m
            if (new == keep).all():
                break
            keep = new
        if keep.sum() >= min_events:
            median[b] = np.median(y[keep])
            sigma[b] = MAD_TO_SIGMA * np.median(np.abs(y[keep] - median[b]))
            n[b] = int(keep.sum())
    return {"edges": edges, "centre": np.sqrt(edges[:-1] * edges[1:]), "median": median, "sigma": sigma, "n": n}
