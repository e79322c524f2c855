"""One channel of a run with test pulses: its test-pulse template, the optimum-filter amplitude of
every record, the response band, the stability cut and the pulser-model calibration (the maths of
each step: `cryopipe.testpulse.response`).

Records as in the "records" store: an xarray Dataset (channel, event, sample) of traces in V with
``record_kind``, ``tpa`` (V of the pulser) and ``timestamp`` (s) per event.
"""
from __future__ import annotations

import logging

import numpy as np
import xarray as xr

from cryopipe.errors import CryopipeError
from cryopipe.signal.robust import mad_sigma

PULSE_KINDS = ("testpulse", "controlpulse")


def line_energy_of(cfg: dict, calibrate_cfg: dict):
    """keV of the line of the TPA-equivalent spectrum: testpulse.line_energy, else
    calibrate.line_energy (None: no energy)."""
    own = cfg.get("line_energy")
    return own if own is not None else calibrate_cfg.get("line_energy")


def pulse_heights(traces: np.ndarray) -> np.ndarray:
    """Rough heights (V): maximum minus the mean of the first N/8 samples."""
    n = traces.shape[1]
    return traces.max(axis=1) - traces[:, : max(n // 8, 1)].mean(axis=1)


def channel_template(records: xr.Dataset, *, channel: int, sev: np.ndarray, cfg: dict,
                     what: str) -> tuple[np.ndarray, float]:
    """The test-pulse template of channel index `channel` (max 1; aligned as the particle SEV,
    `cryopipe.characterize.channel.sev_alignment`) and the TPA (V) it
    came from (NaN: the particle SEV, ``template_from: sev``, or ``auto`` where too few clean test
    pulses of one TPA exist). `cfg`: the config's `testpulse` section; `what` names the channel in errors."""
    from cryopipe.characterize.channel import sev_alignment
    from cryopipe.characterize.sev_nps import standard_event

    if cfg["template_from"] == "sev":
        return np.asarray(sev, dtype=np.float64), float("nan")
    if cfg["template_from"] == "auto":
        try:
            return channel_template(records, channel=channel, sev=sev, cfg={**cfg, "template_from": "testpulse"},
                                    what=what)
        except CryopipeError as exc:
            logging.getLogger("cryopipe").warning("%s; using the particle standard event as the test-pulse "
                                                  "template", str(exc).split("; set testpulse")[0])
            return np.asarray(sev, dtype=np.float64), float("nan")
    fs = float(records.attrs["sample_frequency"])
    kind = records["record_kind"].values.astype(str)
    tpa = records["tpa"].values.astype(np.float64)
    idx = np.flatnonzero(kind == "testpulse")
    traces = records["trace"].isel(channel=channel, event=idx).values.astype(np.float64)
    from cryopipe.testpulse.response import choose_template_tpa, pulse_groups, saturated_tpas

    chosen = cfg["template_tpa"]
    if chosen is None:
        saturated = saturated_tpas(tpa[idx], traces, min_pulses=int(cfg["min_pulses"]))
        for v, why in saturated.items():
            logging.getLogger("cryopipe").info("%s: test pulses of TPA %g V saturate (%s): not the template", what,
                                               v, why)
        chosen = choose_template_tpa(tpa[idx], pulse_heights(traces), max_amplitude=cfg["max_amplitude"],
                                     min_pulses=int(cfg["min_pulses"]),
                                     exclude=[*saturated, *map(float, cfg["exclude_tpas"])])
    values, group = pulse_groups(tpa[idx])
    match = np.flatnonzero(np.isclose(values, chosen, rtol=0, atol=10.0 ** -3))
    if match.size == 0:
        raise CryopipeError(f"{what}: no test pulses of TPA {chosen:g} V for the template (TPAs: "
                            f"{', '.join(f'{v:g}' for v in values)})")
    sel = group == match[0]
    try:
        template = standard_event(traces[sel][: int(cfg["max_template_pulses"])], fs, **sev_alignment(records),
                                  min_pulses=int(cfg["min_pulses"]), what=f"{what}, test pulses of TPA {chosen:g} V")
    except CryopipeError as exc:
        raise CryopipeError(f"{exc}; set testpulse.template_from: sev (or auto) to use the particle "
                            f"standard event") from None
    return template, float(values[match[0]])


def channel_amplitudes(records: xr.Dataset, of, *, channel: int, max_shift: int, batch: int = 4096):
    """(shift-searched amplitude, fixed-lag amplitude (V), chi2 at the searched lag, pre-trigger
    drift (V, `response.pretrigger_drift`)) of every record of channel index `channel`, optimum
    filter `of`, lag searched within +-`max_shift` samples; `batch` records read at a time."""
    from cryopipe.io.stores import record_pretrigger
    from cryopipe.signal.optimum_filter import of_amplitudes
    from cryopipe.testpulse.response import pretrigger_drift

    n_ev = records.sizes["event"]
    pretrigger = record_pretrigger(records)
    shifted, fixed, chi2, drift = np.empty(n_ev), np.empty(n_ev), np.empty(n_ev), np.empty(n_ev)
    for a in range(0, n_ev, batch):
        x = records["trace"].isel(channel=channel, event=slice(a, a + batch)).values.astype(np.float32)
        r = of_amplitudes(of, x, shift_window=(-max_shift, max_shift + 1), search=max_shift > 0)
        fixed[a:a + len(x)] = r["amplitude"]
        shifted[a:a + len(x)] = r["amplitude_shifted"] if max_shift > 0 else r["amplitude"]
        chi2[a:a + len(x)] = r["chi2_shifted"] if max_shift > 0 else r["chi2"]
        drift[a:a + len(x)] = pretrigger_drift(x, pretrigger)
    return shifted, fixed, chi2, drift


def testpulse_channel(records: xr.Dataset, characterization: xr.Dataset, *, channel: int, cfg: dict,
                      calibrate_cfg: dict, what: str, log=None) -> dict:
    """Everything of one channel (index `channel` into records' channels): template, amplitudes (V),
    band, stability, pulser-model TPA equivalents (V) and, with a line, energies (keV). Returns a dict
    of arrays. `cfg`: the config's `testpulse` section; `calibrate_cfg`: line_energy (keV),
    min_line_events, min_significance of `calibrate`; `log`: a logger for the channel's summary line."""
    from cryopipe.testpulse import response as tp
    from cryopipe.calibrate.lines import calibrate
    from cryopipe.signal.optimum_filter import build_optimum_filter, expected_resolution

    ch = str(records["channel"].values[channel])
    fs = float(records.attrs["sample_frequency"])
    char = characterization.sel(channel=ch)
    template, template_tpa = channel_template(records, channel=channel, sev=char["sev"].values, cfg=cfg, what=what)
    of = build_optimum_filter(template, char["nps"].values, fs, what=what)
    max_shift = int(round(float(cfg["max_shift"]) * fs))
    amp, amp_fixed, chi2, drift = channel_amplitudes(records, of, channel=channel, max_shift=max_shift)
    kind = records["record_kind"].values.astype(str)
    tpa = records["tpa"].values.astype(np.float64)
    times = records["timestamp"].values.astype(np.float64)
    pulses = np.flatnonzero(np.isin(kind, PULSE_KINDS))
    window = int(cfg["window"])
    clean = np.isfinite(amp[pulses])
    if cfg["k_chi2"] is not None:
        clean &= tp.clean_pulses(times[pulses], tpa[pulses], chi2[pulses], window=window, k_sigma=float(cfg["k_chi2"]))
    if cfg.get("k_drift") is not None:
        clean &= tp.flat_pretrigger(times[pulses], tpa[pulses], drift[pulses], window=window,
                                    k_sigma=float(cfg["k_drift"]))
    band = {"centre": np.full(pulses.size, np.nan), "sigma": np.full(pulses.size, np.nan),
            "stable": np.zeros(pulses.size, bool)}
    for key, v in tp.response_band(times[pulses][clean], tpa[pulses][clean], amp[pulses][clean], window=window,
                                   k_sigma=float(cfg["k_sigma"]), min_sigma=expected_resolution(of)).items():
        band[key][clean] = v
    stab = tp.stability(times[pulses][clean], band["stable"][clean], times, max_gap=cfg["max_gap"])
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
    resolution = mad_sigma(fin) if fin.size >= 2 else float("nan")
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
        log.info("channel %s: template from %s; %d test and %d control pulses, %d not clean (chi2 or "
                 "pre-trigger drift), %d outside their band; "
                 "%d of %d events stable; calibration TPAs %s; TPE resolution %.3g V; line %.5g +- %.2g V (TPE)",
                 ch, "the SEV" if np.isnan(template_tpa) else f"TPA {template_tpa:g} V", n_tp, len(pulses) - n_tp,
                 int((~clean).sum()), int((clean & ~band["stable"]).sum()), int(stab["event_stable"].sum()), len(times),
                 ", ".join(f"{v:g}" for v in tpas), resolution, line["line_position"], line["line_sigma"])
    return out


def figure_data(testpulse: xr.Dataset, *, channel: str) -> dict:
    """What the two test-pulse figures of one channel show, from a "testpulse" store.

    Returns a dict: response figure (hours since the first record; per pulse tpa (V), response,
    band_centre, band_sigma (V), clean, pulse_stable; unstable (k, 2) hours; k_sigma) and
    calibration figure (tpas (K,) V and curves (3, K) V: each calibration TPA's response at the 2, 50
    and 98 % quantiles of the used pulses' times, curve_hours; tpe (V) of the stable particles,
    line_position (V), kev_per_tpa (keV/V)).
    """
    import json

    from cryopipe.testpulse.response import response_curves, unstable_intervals

    c = testpulse.sel(channel=channel)
    k_sigma = json.loads(testpulse.attrs["parameters"])["testpulse"]["k_sigma"]
    t0 = float(testpulse["timestamp"].min())
    pe = testpulse["pulse_event"].values
    t = testpulse["timestamp"].values[pe]
    tpa = testpulse["tpa"].values[pe]
    clean = c["pulse_clean"].values
    hours = (t - t0) / 3600.0
    cal = c["calibration_tpa"].values
    cal = cal[np.isfinite(cal)]
    use = clean & c["pulse_stable"].values & np.isin(np.round(tpa, 4), np.round(cal, 4))
    at = np.quantile(t[use], [0.02, 0.5, 0.98]) if use.any() else np.array([t0])
    tpas, curves = response_curves(t, tpa, c["band_centre"].values, at, use=use)
    kind = testpulse["record_kind"].values.astype(str)
    return {"hours": hours, "tpa": tpa, "response": c["response"].values, "band_centre": c["band_centre"].values,
            "band_sigma": c["band_sigma"].values, "clean": clean, "pulse_stable": c["pulse_stable"].values,
            "unstable": unstable_intervals(hours[clean], c["interval_stable"].values[clean]), "k_sigma": k_sigma,
            "tpas": tpas, "curves": curves.T, "curve_hours": (at - t0) / 3600.0,
            "tpe": c["tpa_equivalent"].values[(kind == "particle") & c["stable"].values],
            "line_position": float(c["line_position"]), "kev_per_tpa": float(c["kev_per_tpa"])}
