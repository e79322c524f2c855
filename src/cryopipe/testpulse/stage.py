"""Test-pulse stage: response of every channel to the DAQ's test and control pulses, the
stability cut and the pulser-model calibration (library: `cryopipe.testpulse.channel`, whose maths
is `cryopipe.testpulse.response`); and the test-pulse figures.

What each rule reads, calls and writes: plain config dicts and store paths in; no Snakemake here.
"""
from __future__ import annotations

import json

import numpy as np
import xarray as xr

from cryopipe.errors import CryopipeError
from cryopipe.io.stores import provenance
from cryopipe.testpulse.channel import line_energy_of, testpulse_channel


def has_test_pulses(run_cfg: dict) -> bool:
    """True when a run's raw files hold test pulses (kind "testpulse"): a csmpl run with a
    non-empty test_stamps file, or an rdt run with test-pulse records. Cheap (stamps / rdt headers)."""
    from cryopipe.io.stamps import holds_test_pulses

    if run_cfg.get("simulate"):
        return False
    return holds_test_pulses(run_cfg)


def testpulse_run(records: xr.Dataset, characterization: xr.Dataset, cfg: dict, calibrate_cfg: dict,
                  what: str, *, log=None) -> xr.Dataset:
    """The "testpulse" Dataset of a run (layout in `cryopipe.io.stores.STORES["testpulse"]`).

    Parameters
    ----------
    records : the run's "records" Dataset (lazy is fine; one channel's traces in blocks at a time)
    characterization : its "characterization" Dataset (NPS, SEV per channel)
    cfg : the config's `testpulse` section
    calibrate_cfg : line_energy (keV or None; testpulse.line_energy wins), min_line_events,
        min_significance of `calibrate`
    """
    kind = records["record_kind"].values.astype(str)
    if not np.any(kind == "testpulse"):
        raise CryopipeError(f"{what}: no test-pulse records (the test-pulse stage needs a run with test pulses)")
    channels = [str(c) for c in records["channel"].values]
    per = [testpulse_channel(records, characterization, channel=i, cfg=cfg, calibrate_cfg=calibrate_cfg,
                             what=f"{what}, channel {ch}", log=log)
           for i, ch in enumerate(channels)]
    pulses = per[0]["pulses"]
    n_tpa = max(len(p["calibration_tpa"]) for p in per)
    cal_tpa = np.full((len(channels), n_tpa), np.nan)
    for i, p in enumerate(per):
        cal_tpa[i, : len(p["calibration_tpa"])] = p["calibration_tpa"]

    def stack(key):
        return np.stack([p[key] for p in per])

    def scalar(key):
        return ("channel", np.array([float(p[key]) for p in per]))

    data = {
        "amplitude": (("channel", "event"), stack("amplitude"), {"units": "V"}),
        "tpa_equivalent": (("channel", "event"), stack("tpa_equivalent"), {"units": "V"}),
        "stable": (("channel", "event"), stack("stable")),
        "timestamp": (("event",), records["timestamp"].values.astype(np.float64), {"units": "s"}),
        "tpa": (("event",), records["tpa"].values.astype(np.float32), {"units": "V"}),
        "record_kind": (("event",), kind),
        "pulse_event": (("pulse",), records["event"].values[pulses]),
        "response": (("channel", "pulse"), stack("response"), {"units": "V"}),
        "band_centre": (("channel", "pulse"), stack("band_centre"), {"units": "V"}),
        "band_sigma": (("channel", "pulse"), stack("band_sigma"), {"units": "V"}),
        "pulse_stable": (("channel", "pulse"), stack("pulse_stable")),
        "interval_stable": (("channel", "pulse"), stack("interval_stable")),
        "pulse_clean": (("channel", "pulse"), stack("pulse_clean")),
        "pulse_chi2": (("channel", "pulse"), stack("pulse_chi2")),
        "calibration_tpa": (("channel", "tpa_point"), cal_tpa, {"units": "V"}),
        "template": (("channel", "sample"), stack("template")),
        "template_tpa": scalar("template_tpa"),
        "resolution": scalar("resolution"),
        "of_resolution": scalar("of_resolution"),
    }
    for key in ("kev_per_tpa", "kev_per_tpa_err", "line_position", "line_position_err", "line_sigma",
                "resolution_kev"):
        data[key] = scalar(key)
    if all("energy" in p for p in per):
        data["energy"] = (("channel", "event"), stack("energy"), {"units": "keV"})
    units = {"amplitude": "V", "tpa_equivalent": "V (pulser)", "energy": "keV", "response": "V", "band_centre": "V",
             "band_sigma": "V", "calibration_tpa": "V", "timestamp": "s", "kev_per_tpa": "keV/V",
             "line_position": "V (pulser)", "line_sigma": "V (pulser)", "resolution": "V (pulser)",
             "of_resolution": "V", "template_tpa": "V", "resolution_kev": "keV"}
    attrs = provenance("testpulse", parameters={"testpulse": cfg, "calibrate": calibrate_cfg}, inputs=[],
                       sample_frequency=float(records.attrs["sample_frequency"]),
                       record_length=int(records.attrs["record_length"]), units=json.dumps(units),
                       line_energy=float("nan") if line_energy_of(cfg, calibrate_cfg) is None
                       else float(np.ravel(line_energy_of(cfg, calibrate_cfg))[0]))
    return xr.Dataset(data, coords={"channel": channels, "event": records["event"].values,
                                    "pulse": np.arange(pulses.size), "tpa_point": np.arange(n_tpa)}, attrs=attrs)


def run_testpulse(*, records: str, characterization: str, output: str, run: str, testpulse: dict,
                  calibrate: dict, log) -> None:
    """Rule testpulse: the run's "testpulse" store from its records and characterization stores."""
    from cryopipe.io.stores import load_store, open_store, write_store

    ds = testpulse_run(open_store(records, "records"), load_store(characterization, "characterization"),
                       testpulse, calibrate, what=f"run {run}", log=log)
    ds.attrs["inputs"] = [str(records), str(characterization)]
    write_store(ds, output, "testpulse")


def run_plot_testpulse(*, testpulse: str, response: str, curve: str, run: str, channel: str) -> None:
    """Rule plot_testpulse: response against time (unstable intervals shaded) and the pulser-model
    calibration curve of one channel, as two PNG files."""
    from cryopipe.io.stores import load_store
    from cryopipe.plots import plot_testpulse_calibration, plot_testpulse_response
    from cryopipe.testpulse.channel import figure_data

    d = figure_data(load_store(testpulse, "testpulse"), channel=channel)
    label = f"{run} / {channel}"
    plot_testpulse_response(d["hours"], d["tpa"], d["response"], d["band_centre"], d["band_sigma"], d["clean"],
                            d["pulse_stable"], d["unstable"], response, k_sigma=d["k_sigma"], label=label)
    plot_testpulse_calibration(d["tpas"], d["curves"], d["curve_hours"], curve, tpe=d["tpe"],
                               line_position=d["line_position"], kev_per_tpa=d["kev_per_tpa"], label=label)
