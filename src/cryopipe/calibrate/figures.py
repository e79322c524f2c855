"""What the calibration figures show, from a run's stores (the drawing: `cryopipe.plots`): the
amplitude spectrum of a channel with its calibration line, the light yield of a phonon + light
module, and the energy dependence of a channel's pulse shape.
"""
from __future__ import annotations

import numpy as np
import xarray as xr


def particle_mask(ds: xr.Dataset) -> np.ndarray:
    """(event,) bool: the records of kind "particle"."""
    return np.array([str(k) for k in ds["record_kind"].values]) == "particle"


def spectrum_data(features: xr.Dataset, *, calibration: xr.Dataset | None = None, channel: str,
                  calibrate_cfg: dict | None = None) -> dict:
    """The particle amplitudes (V) of one channel and, with a `calibration` store, its line fit and
    keV/V.

    The amplitude: the calibration's feature (attr ``amplitude``), else ``of_amplitude_shifted``
    where present, else ``pulse_height``. The line: the same fit as the calibration's
    (`cryopipe.calibrate.lines.find_line` with `calibrate_cfg`'s min_line_events and
    min_significance). Returns dict amplitudes, line (dict or None), kev_per_volt (keV/V or None).
    """
    from cryopipe.calibrate.lines import find_line

    particle = particle_mask(features)
    line = kev = None
    name = "of_amplitude_shifted" if "of_amplitude_shifted" in features else "pulse_height"
    if calibration is not None:
        name = calibration.attrs["amplitude"]
        kev = float(calibration["kev_per_volt"].sel(channel=channel))
    amps = features[name].sel(channel=channel).values[particle]
    if calibration is not None:
        line = find_line(amps, expected=None, min_events=calibrate_cfg["min_line_events"],
                         min_significance=calibrate_cfg["min_significance"], fit_range=5.0)
    return {"amplitudes": amps, "line": line, "kev_per_volt": kev}


def light_yield_data(features: xr.Dataset, labels: xr.Dataset, *, phonon: str) -> dict:
    """Energy (keV) of the `phonon` channel, light yield and the cuts' accepted flag of the phonon
    channel, of every particle record. Returns dict energy, light_yield, accepted."""
    particle = particle_mask(features)
    accepted = labels["accepted"].sel(channel=phonon).values.astype(bool)
    return {"energy": features["energy"].sel(channel=phonon).values[particle],
            "light_yield": features["light_yield"].values[particle], "accepted": accepted[particle]}


def energy_dependence_data(features: xr.Dataset, *, channel: str) -> dict:
    """Pulse height (V), OF amplitude (V) and OF chi2 of one channel's particle records, and the
    record length (samples). Returns dict pulse_height, of_amplitude, of_chi2, n_samples."""
    feats = features.sel(channel=channel)
    particle = particle_mask(feats)
    return {"pulse_height": feats["pulse_height"].values[particle], "of_amplitude": feats["of_amplitude"].values[particle],
            "of_chi2": feats["of_chi2"].values[particle], "n_samples": int(feats.attrs["record_length"])}
