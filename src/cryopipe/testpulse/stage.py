"""Test-pulse stage: response of every channel to the DAQ's test and control pulses, the
stability cut and the pulser-model calibration (library: `cryopipe.testpulse.response`).

Stage entry points for the workflow scripts and the CLI: plain config dicts in, Datasets
ready for cryopipe.io.stores out; no Snakemake here.
"""
from __future__ import annotations

import json
import logging

import numpy as np
import xarray as xr

from cryopipe.errors import CryopipeError
from cryopipe.io.stores import provenance

PULSE_KINDS = ("testpulse", "controlpulse")


def has_test_pulses(run_cfg: dict) -> bool:
    """True when a run's raw files hold test pulses (kind "testpulse"): a csmpl run with a
    non-empty test_stamps file, or an rdt run with test-pulse records. Cheap (stamps / rdt headers)."""
    from cryopipe.io import cresst

    if run_cfg.get("simulate"):
        return False
    if run_cfg.get("csmpl") and run_cfg.get("test_stamps"):
        tpa = cresst.read_test_stamps(run_cfg["test_stamps"])["tpa"]
    elif run_cfg.get("rdt"):
        tpa = cresst.open_rdt(run_cfg["rdt"], run_cfg.get("par")).tpa
    else:
        return False
    return bool(np.any(cresst.record_kind_from_tpa(np.asarray(tpa)) == "testpulse"))


def line_energy_of(cfg: dict, calibrate_cfg: dict):
    """keV of the line of the TPA-equivalent spectrum: testpulse.line_energy, else
    calibrate.line_energy (None: no energy)."""
    own = cfg.get("line_energy")
    return own if own is not None else calibrate_cfg.get("line_energy")


def _pulse_heights(traces: np.ndarray) -> np.ndarray:
    """Rough heights (V): maximum minus the mean of the first N/8 samples."""
    n = traces.shape[1]
    return traces.max(axis=1) - traces[:, : max(n // 8, 1)].mean(axis=1)


def channel_template(records: xr.Dataset, c: int, sev: np.ndarray, cfg: dict, what: str) -> tuple[np.ndarray, float]:
    """The channel's test-pulse template (max 1, onset at N/4) and the TPA it came from (NaN: the
    particle SEV, ``template_from: sev``, or ``auto`` where too few clean test pulses of one TPA exist)."""
    from cryopipe.characterize.sev_nps import standard_event

    if cfg["template_from"] == "sev":
        return np.asarray(sev, dtype=np.float64), float("nan")
    if cfg["template_from"] == "auto":
        try:
            return channel_template(records, c, sev, {**cfg, "template_from": "testpulse"}, what)
        except CryopipeError as exc:
            logging.getLogger("cryopipe").warning("%s; using the particle standard event as the test-pulse "
                                                  "template", str(exc).split("; set testpulse")[0])
            return np.asarray(sev, dtype=np.float64), float("nan")
    fs = float(records.attrs["sample_frequency"])
    kind = records["record_kind"].values.astype(str)
    tpa = records["tpa"].values.astype(np.float64)
    idx = np.flatnonzero(kind == "testpulse")
    traces = records["trace"].isel(channel=c, event=idx).values.astype(np.float64)
    from cryopipe.testpulse.response import choose_template_tpa, pulse_groups

    chosen = cfg["template_tpa"]
    if chosen is None:
        chosen = choose_template_tpa(tpa[idx], _pulse_heights(traces), cfg["max_amplitude"], int(cfg["min_pulses"]))
    values, group = pulse_groups(tpa[idx])
    match = np.flatnonzero(np.isclose(values, chosen, rtol=0, atol=10.0 ** -3))
    if match.size == 0:
        raise CryopipeError(f"{what}: no test pulses of TPA {chosen:g} V for the template (TPAs: "
                            f"{', '.join(f'{v:g}' for v in values)})")
    sel = group == match[0]
    try:
        template = standard_event(traces[sel][: int(cfg["max_template_pulses"])], fs,
                                  min_pulses=int(cfg["min_pulses"]), what=f"{what}, test pulses of TPA {chosen:g} V")
    except CryopipeError as exc:
        raise CryopipeError(f"{exc}; set testpulse.template_from: sev (or auto) to use the particle "
                            f"standard event") from None
    return template, float(values[match[0]])


def _amplitudes(records: xr.Dataset, c: int, of, max_shift: int, batch: int = 4096):
    """(shift-searched amplitude, fixed-lag amplitude (V), chi2 at the searched lag) of every
    record of channel c."""
    from cryopipe.signal.optimum_filter import of_amplitudes

    n_ev = records.sizes["event"]
    shifted, fixed, chi2 = np.empty(n_ev), np.empty(n_ev), np.empty(n_ev)
    for a in range(0, n_ev, batch):
        x = records["trace"].isel(channel=c, event=slice(a, a + batch)).values.astype(np.float32)
        r = of_amplitudes(of, x, shift_window=(-max_shift, max_shift + 1), search=max_shift > 0)
        fixed[a:a + len(x)] = r["amplitude"]
        shifted[a:a + len(x)] = r["amplitude_shifted"] if max_shift > 0 else r["amplitude"]
        chi2[a:a + len(x)] = r["chi2_shifted"] if max_shift > 0 else r["chi2"]
    return shifted, fixed, chi2


def testpulse_channel(records: xr.Dataset, c: int, characterization: xr.Dataset, cfg: dict, calibrate_cfg: dict,
                      what: str, log=None) -> dict:
    """Everything of one channel (index c into records' channels): template, amplitudes, band,
    stability, pulser-model TPA equivalents and, with a line, energies. Returns a dict of arrays."""
    from cryopipe.testpulse import response as tp
    from cryopipe.calibrate.lines import calibrate
    from cryopipe.signal.optimum_filter import build_optimum_filter, expected_resolution

    ch = str(records["channel"].values[c])
    fs = float(records.attrs["sample_frequency"])
    char = characterization.sel(channel=ch)
    template, template_tpa = channel_template(records, c, char["sev"].values, cfg, what)
    of = build_optimum_filter(template, char["nps"].values, fs, what=what)
    max_shift = int(round(float(cfg["max_shift"]) * fs))
    amp, amp_fixed, chi2 = _amplitudes(records, c, of, max_shift)
    kind = records["record_kind"].values.astype(str)
    tpa = records["tpa"].values.astype(np.float64)
    times = records["timestamp"].values.astype(np.float64)
    pulses = np.flatnonzero(np.isin(kind, PULSE_KINDS))
    window = int(cfg["window"])
    if cfg["k_chi2"] is None:
        clean = np.isfinite(amp[pulses])
    else:
        clean = tp.clean_pulses(times[pulses], tpa[pulses], chi2[pulses], window, float(cfg["k_chi2"]))
    band = {"centre": np.full(pulses.size, np.nan), "sigma": np.full(pulses.size, np.nan),
            "stable": np.zeros(pulses.size, bool)}
    for key, v in tp.response_band(times[pulses][clean], tpa[pulses][clean], amp[pulses][clean], window=window,
                                   k_sigma=float(cfg["k_sigma"]), min_sigma=expected_resolution(of)).items():
        band[key][clean] = v
    stab = tp.stability(times[pulses][clean], band["stable"][clean], times, cfg["max_gap"])
    interval_stable = np.zeros(pulses.size, bool)
    interval_stable[clean] = stab["interval_stable"]
    # calibration TPAs: stable (clean) test pulses, not excluded, median response below saturation
    use = (kind[pulses] == "testpulse") & band["stable"]
    values, group = tp.pulse_groups(tpa[pulses])
    for g, v in enumerate(values):
        ing = group == g
        excluded = any(abs(v - float(x)) < 10.0 ** -tp.TPA_DECIMALS for x in cfg["exclude_tpas"])
        med = np.nanmedian(amp[pulses][ing]) if ing.any() else np.nan
        if excluded or (cfg["max_amplitude"] is not None and not med < float(cfg["max_amplitude"])):
            use &= ~ing
    tpas, curves = tp.response_curves(times[pulses], tpa[pulses], band["centre"], times, use=use)
    tpe = tp.tpa_equivalent(amp, tpas, curves)
    noise = kind == "noise"
    tpe_noise = tp.tpa_equivalent(amp_fixed[noise], tpas, curves[:, noise])
    fin = tpe_noise[np.isfinite(tpe_noise)]  # robust: a noise record may hold a pulse tail
    resolution = float(tp.MAD_TO_SIGMA * np.median(np.abs(fin - np.median(fin)))) if fin.size >= 2 else float("nan")
    out = {"template": template, "template_tpa": template_tpa, "amplitude": amp, "tpa_equivalent": tpe,
           "stable": stab["event_stable"], "pulses": pulses, "response": amp[pulses], "band_centre": band["centre"],
           "band_sigma": band["sigma"], "pulse_stable": band["stable"], "interval_stable": interval_stable,
           "pulse_clean": clean, "pulse_chi2": chi2[pulses],
           "calibration_tpa": tpas, "resolution": resolution, "of_resolution": expected_resolution(of)}
    line = {"kev_per_tpa": np.nan, "kev_per_tpa_err": np.nan, "line_position": np.nan,
            "line_position_err": np.nan, "line_sigma": np.nan, "resolution_kev": np.nan}
    line_energy = line_energy_of(cfg, calibrate_cfg)
    if line_energy is not None:
        sel = (kind == "particle") & stab["event_stable"] & np.isfinite(tpe)
        cal = calibrate(tpe[sel], line_energy, resolution=resolution,
                        min_events=int(calibrate_cfg["min_line_events"]),
                        min_significance=float(calibrate_cfg["min_significance"]), fit_range=5.0,
                        what=f"{what} (test-pulse equivalent amplitudes)")
        line = {"kev_per_tpa": cal["kev_per_volt"], "kev_per_tpa_err": cal["kev_per_volt_err"],
                "line_position": float(cal["line_position"][0]), "line_position_err": float(cal["line_position_err"][0]),
                "line_sigma": float(cal["line_sigma"][0]), "resolution_kev": float(cal["resolution_kev"])}
        out["energy"] = tpe * cal["kev_per_volt"]
    out.update(line)
    if log is not None:
        n_tp = int(np.sum(kind == "testpulse"))
        log.info("channel %s: template from %s; %d test and %d control pulses, %d not clean (chi2), "
                 "%d outside their band; "
                 "%d of %d events stable; calibration TPAs %s; TPE resolution %.3g V; line %.5g +- %.2g V (TPE)",
                 ch, "the SEV" if np.isnan(template_tpa) else f"TPA {template_tpa:g} V", n_tp, len(pulses) - n_tp,
                 int((~clean).sum()), int((clean & ~band["stable"]).sum()), int(stab["event_stable"].sum()), len(times),
                 ", ".join(f"{v:g}" for v in tpas), resolution, line["line_position"], line["line_sigma"])
    return out


def testpulse_run(records: xr.Dataset, characterization: xr.Dataset, cfg: dict, calibrate_cfg: dict,
                  what: str, log=None) -> xr.Dataset:
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
    per = [testpulse_channel(records, i, characterization, cfg, calibrate_cfg, f"{what}, channel {ch}", log)
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
    attrs = provenance("testpulse", {"testpulse": cfg, "calibrate": calibrate_cfg}, [],
                       sample_frequency=float(records.attrs["sample_frequency"]),
                       record_length=int(records.attrs["record_length"]), units=json.dumps(units),
                       line_energy=float("nan") if line_energy_of(cfg, calibrate_cfg) is None
                       else float(np.ravel(line_energy_of(cfg, calibrate_cfg))[0]))
    return xr.Dataset(data, coords={"channel": channels, "event": records["event"].values,
                                    "pulse": np.arange(pulses.size), "tpa_point": np.arange(n_tpa)}, attrs=attrs)
