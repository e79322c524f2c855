"""Calibration stage: amplitude -> energy from a line of known energy (the energy feature itself is
`cryopipe.calibrate.energy`).

What each rule reads, calls and writes (the maths: `cryopipe.calibrate.lines`; the figures' data:
`cryopipe.calibrate.figures`): plain config dicts and store paths in; no Snakemake here.
"""
from __future__ import annotations

import json

import numpy as np
import xarray as xr

from cryopipe.io.stores import gather_channel_stores, provenance


def expected_position(expected, features: xr.Dataset):
    """The line hint (V) of the channel of one-channel `features`: `expected` itself, or its entry
    for the channel's name where it is a {channel name: V} mapping (None where it has none)."""
    if isinstance(expected, dict):
        return expected.get(str(features["channel"].values[0]))
    return expected


def calibrate_channel(features: xr.Dataset, characterization: xr.Dataset, cfg: dict, what: str) -> xr.Dataset:
    """Amplitude -> energy conversion of one channel from a line of known energy.

    Uses the particle records' `cfg["amplitude"]` feature (default the shift-searched OF amplitude);
    the baseline resolution in keV comes from the channel's measured OF resolution.
    """
    from cryopipe.calibrate.lines import calibrate

    kind = np.array([str(k) for k in features["record_kind"].values])
    amp = features[cfg["amplitude"]].isel(channel=0).values[kind == "particle"]
    res = float(characterization["resolution"].isel(channel=0))
    cal = calibrate(amp, cfg["line_energy"], expected=expected_position(cfg.get("expected"), features), resolution=res,
                    min_events=int(cfg["min_line_events"]), min_significance=float(cfg["min_significance"]),
                    fit_range=5.0,  # room for the background on both sides of a sparse line
                    what=what)
    ch = features["channel"].values
    scalar = {k: ("channel", [float(np.ravel(cal[k])[0])]) for k in
              ("kev_per_volt", "kev_per_volt_err", "offset_kev", "line_position", "line_position_err",
               "line_sigma", "line_sigma_err", "line_sigma_kev", "resolution", "resolution_kev", "resolution_kev_err")}
    return xr.Dataset(scalar, coords={"channel": ch},
                      attrs=provenance("calibration", parameters=cfg, inputs=[],
                                       line_energy=float(np.ravel(cfg["line_energy"])[0]),
                                       amplitude=cfg["amplitude"],
                                       units=json.dumps({"kev_per_volt": "keV/V", "line_position": "V",
                                                         "resolution": "V", "resolution_kev": "keV"})))


def run_calibrate_channel(*, features: str, characterization: str, output: str, run: str, channel: str,
                          params: dict, log) -> None:
    """Rule calibrate_channel: the channel's "calibration" store (`calibrate_channel`) from its
    features store and the run's characterization."""
    from cryopipe.io.stores import load_store, write_store

    feats = load_store(features, "features")
    char = load_store(characterization, "characterization").sel(channel=[channel])
    ds = calibrate_channel(feats, char, params, what=f"run {run}, channel {channel}")
    ds.attrs["inputs"] = [str(features), str(characterization)]
    c = ds.isel(channel=0)
    log.info("channel %s: line at %.4g V -> %.4g keV/V; baseline resolution %.3g keV", channel,
             c.line_position, c.kev_per_volt, c.resolution_kev)
    write_store(ds, output, "calibration")


def run_calibrate(*, parts: list, output: str, log) -> None:
    """Rule calibrate: the run's "calibration" store, its channels' stores gathered."""
    ds = gather_channel_stores(parts, output, "calibration")
    log.info("calibration of %d channels", ds.sizes["channel"])


def run_plot_spectrum(*, features: str, calibration: str | None, output: str, run: str, channel: str,
                      calibrate: dict) -> None:
    """Rule plot_spectrum: amplitude spectrum of one channel with the calibration line fit (where
    the run is calibrated: `calibration` a store path, else None), as a PNG file."""
    from cryopipe.calibrate.figures import spectrum_data
    from cryopipe.io.stores import load_store
    from cryopipe.plots import plot_amplitude_spectrum

    cal = load_store(calibration, "calibration") if calibration else None
    d = spectrum_data(load_store(features, "features"), calibration=cal, channel=channel, calibrate_cfg=calibrate)
    plot_amplitude_spectrum(d["amplitudes"], output, line=d["line"], kev_per_volt=d["kev_per_volt"],
                            label=f"{run} / {channel}")


def run_plot_light_yield(*, features: str, labels: str, output: str, run: str, phonon: str) -> None:
    """Rule plot_light_yield: light yield against the energy of the `phonon` channel, the events the
    cuts accept marked, as a PNG file."""
    from cryopipe.calibrate.figures import light_yield_data
    from cryopipe.io.stores import load_store
    from cryopipe.plots import plot_light_yield

    d = light_yield_data(load_store(features, "features"), load_store(labels, "labels"), phonon=phonon)
    plot_light_yield(d["energy"], d["light_yield"], d["accepted"], output, label=run)


def run_plot_energy_dependence(*, features: str, output: str, run: str, channel: str) -> None:
    """Rule plot_energy_dependence: OF amplitude linearity and OF chi2 against amplitude of one
    channel, as a PNG file."""
    from cryopipe.calibrate.figures import energy_dependence_data
    from cryopipe.io.stores import load_store
    from cryopipe.plots import plot_energy_dependence

    d = energy_dependence_data(load_store(features, "features"), channel=channel)
    plot_energy_dependence(d["pulse_height"], d["of_amplitude"], d["of_chi2"], output, n_samples=d["n_samples"],
                           label=f"{run} / {channel}")
