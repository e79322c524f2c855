"""Calibration and efficiency stages: amplitude -> energy from a known line, energy in the
features, trigger and cut efficiency from injected SEV pulses.

Stage entry points for the workflow scripts and the CLI: plain config dicts in, Datasets
ready for cryopipe.io.stores out; no Snakemake here.
"""
from __future__ import annotations

import json

import numpy as np
import xarray as xr

from ..io.stores import provenance
from .characterize import _channel_traces, optimum_filter_from


def calibrate_channel(features: xr.Dataset, characterization: xr.Dataset, cfg: dict, what: str) -> xr.Dataset:
    """Amplitude -> energy conversion of one channel from a line of known energy.

    Uses the particle records' `cfg["amplitude"]` feature (default the shift-searched OF amplitude);
    the baseline resolution in keV comes from the channel's measured OF resolution.
    """
    from ..calibrate import calibrate

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


def add_energy(features: xr.Dataset, calibration: xr.Dataset) -> xr.Dataset:
    """Add `energy` (channel, event) keV: the calibrated amplitude the calibration was made from."""
    from ..calibrate import to_energy

    amp = features[calibration.attrs["amplitude"]]
    k = calibration["kev_per_volt"].sel(channel=features["channel"]).values[:, None]
    off = calibration["offset_kev"].sel(channel=features["channel"]).values[:, None]
    energy = to_energy(amp.values, {"kev_per_volt": 1.0, "offset_kev": 0.0}) * k + off
    units = json.loads(features.attrs.get("units", "{}"))
    out = features.assign(energy=(("channel", "event"), energy, {"units": "keV"}))
    out.attrs["units"] = json.dumps({**units, "energy": "keV"})
    return out


def efficiency_channel(records: xr.Dataset, characterization: xr.Dataset, cuts: dict, cfg: dict,
                       kev_per_volt: float | None = None) -> xr.Dataset:
    """Trigger and cut efficiency of one channel: the SEV scaled to amplitudes from 0.5 to
    `max_resolutions` x the resolution, injected onto the run's noise records, triggered as the final
    pass does (shift-searched OF amplitude >= threshold), featured and cut with `cuts`."""
    from ..cuts import apply_cuts, extra_features
    from ..efficiency import efficiency_curve

    ch = str(records["channel"].values[0])
    char = characterization.sel(channel=[ch])
    of = optimum_filter_from(characterization, ch)
    sev, nps = char["sev"].values[0], char["nps"].values[0]
    fs = float(records.attrs["sample_frequency"])
    n = int(records.attrs["record_length"])
    kind = np.array([str(k) for k in records["record_kind"].values])
    noise = _channel_traces(records, kind == "noise", 2000, np.random.default_rng(1))
    threshold = float(char["threshold"].values[0])
    res = float(char["resolution"].values[0])
    amps = np.linspace(0.5, float(cfg["max_resolutions"]), int(cfg["n_amplitudes"])) * res

    def cut(traces, feats):
        extra = extra_features(traces, fs, sev, nps)
        ds = xr.Dataset({k: (("channel", "event"), np.asarray(v)[None]) for k, v in {**feats, **extra}.items()},
                        coords={"channel": [ch]}, attrs={"sample_frequency": fs, "record_length": n})
        ds["record_kind"] = ("event", np.full(len(traces), "particle"))
        return apply_cuts(ds, cuts)["accepted"].values[0]

    curve = efficiency_curve(of, sev, noise, amps, threshold, cut=cut, n_per_amplitude=int(cfg["n_per_amplitude"]),
                             sample_frequency=fs, rng=np.random.default_rng(int(cfg["seed"])),
                             kev_per_volt=kev_per_volt)
    per_channel = {k: ("channel", [float(v)]) for k, v in curve.attrs.items() if k not in ("units", "n_per_amplitude")}
    # amplitudes differ per channel (they scale with its resolution): index the curve by point
    curve = curve.assign_coords(point=("amplitude", np.arange(curve.sizes["amplitude"]))).swap_dims(amplitude="point")
    curve = curve.reset_coords([c for c in ("amplitude", "energy") if c in curve.coords])
    curve = curve.expand_dims(channel=[ch]).transpose("channel", "point").assign(per_channel)
    curve.attrs = provenance("efficiency", cfg, [], units="V", n_per_amplitude=int(cfg["n_per_amplitude"]))
    return curve
