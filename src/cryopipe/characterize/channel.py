"""One channel's characterization from its records: noise and pulse traces, NPS, SEV with its
pulse-model fit, optimum filter, resolution and second-pass threshold; and the optimum filter
rebuilt from a characterization.

Record conventions as `cryopipe.characterize.sev_nps`: (n, N) float32 records in V, the trigger at
the records' pretrigger (attr ``pretrigger``, default N // 4). The SEV's onset sits there for records
cryopipe triggered; records another DAQ or tool triggered keep their own alignment.
"""
from __future__ import annotations

import numpy as np
import xarray as xr

from cryopipe.errors import CryopipeError
from cryopipe.io.stores import record_pretrigger

FIT_PARAMETERS = ("t0", "An", "At", "tau_n", "tau_in", "tau_t")
#: records stores (attr ``source``) triggered by a DAQ or another tool, not by cryopipe's stream trigger
FOREIGN_TRIGGER_SOURCES = ("ljh", "rdt", "cait")


def channel_traces(records: xr.Dataset, mask: np.ndarray, limit: int, rng: np.random.Generator) -> np.ndarray:
    """Traces (n, N) float32 of one-channel `records` where `mask`, at most `limit`, evenly spread."""
    idx = np.flatnonzero(mask)
    if len(idx) > limit:
        idx = np.sort(rng.choice(idx, limit, replace=False))
    if len(idx) == 0:
        return np.empty((0, records.sizes["sample"]), np.float32)
    return records["trace"].isel(channel=0, event=idx).values.astype(np.float32, copy=False)


#: the clean pulses' mean this much wider at half maximum than the small pulses' is a warning
SEV_WIDENING_WARNING = 1.1


def _warn_if_wider_than_small_pulses(pulses, mask, features, trigger: int, what: str) -> None:
    """Warn where the SEV's pulses are wider than the channel's small pulses (`small_pulse_widening`)."""
    import logging

    from cryopipe.characterize.selection import small_pulse_widening

    ratio, n_small = small_pulse_widening(pulses, mask, features, trigger=trigger)
    if ratio > SEV_WIDENING_WARNING:
        logging.getLogger("cryopipe").warning(
            "%s: the standard event's pulses (median height %.3g V) are %.2f times as wide at half maximum as "
            "the %d pulses below half that height: compressed by the saturation, or slower when large? Every "
            "smaller amplitude then reads low; set characterize.sev_height_range below it", what,
            float(np.median(features["height"][mask])), ratio, n_small)


def sev_alignment(records: xr.Dataset) -> dict:
    """`standard_event` alignment keywords for `records`: those another DAQ or tool triggered
    (`FOREIGN_TRIGGER_SOURCES`) keep their own alignment, wherever their pulses start (a few samples
    off Presamples in LJH, tens of samples before N/4 in Cait's rdt; moving the SEV would put every
    pulse off the OF's fixed lag, 4 % low on Cait's rdt); a stream cryopipe triggered: the onset at
    its trigger sample."""
    if records.attrs.get("source") in FOREIGN_TRIGGER_SOURCES:
        return {"onset_fraction": None}
    return {"onset": record_pretrigger(records)}


def channel_height_range(setting, channel: str) -> tuple[float, float] | None:
    """`characterize.sev_height_range` for `channel`: one [low, high] (V) for every channel, or a
    {channel: [low, high]} mapping (None where the channel is left out), or None."""
    if isinstance(setting, dict):
        setting = setting.get(channel)
    return None if setting is None else (float(setting[0]), float(setting[1]))


def no_pulses_hint(records: xr.Dataset, pulses: np.ndarray, pretrigger: int) -> str:
    """The likely cause of a run without clean pulses, as a sentence to append to the error ("" when
    none shows in the records):

    - no particle records, but particle triggers were dropped on test/control pulses (the records'
      attr ``n_particle_on_pulser``): the pulser stamps (TPA) or ``trigger.pulser_exclusion``;
    - the particle records' pulses point down: the median over records of (baseline - minimum) is
      more than twice that of (maximum - baseline), baseline = mean before the trigger: the run's
      ``polarity``.
    """
    on_pulser = int(records.attrs.get("n_particle_on_pulser", 0))
    if len(pulses) == 0 and on_pulser:
        return (f"; all {on_pulser} particle triggers lay within trigger.pulser_exclusion of a test/control pulse "
                f"and were dropped: are the test stamps' TPA right (particle 0, noise -1, pulser > 0.0001 V), "
                f"or is trigger.pulser_exclusion too long?")
    if len(pulses) == 0:
        return "; no particle records: is the threshold too high, or the run's polarity wrong?"
    x = np.asarray(pulses, dtype=np.float64)
    base = x[:, : max(int(pretrigger), 1)].mean(axis=1, keepdims=True)
    up = np.median(x.max(axis=1) - base[:, 0])
    down = np.median(base[:, 0] - x.min(axis=1))
    if down > 2.0 * up:
        return (f"; the particle records' pulses point down (median depth {down:.3g} V, height {up:.3g} V): set the "
                f"run's polarity to the opposite sign (polarity: -1 for negative pulses)")
    return ""


def characterize_records(records: xr.Dataset, *, cfg: dict, what: str) -> dict:
    """Characterize one channel from its (first-pass) records.

    NPS (V^2/Hz) from noise records (records of a run without any, e.g. LJH files without a noise
    file: from the pre-trigger regions of its records), SEV (1) from clean pulses with a
    pulse-model fit (onset at the records' trigger), optimum filter, resolution (V) and the
    second-pass threshold (V) = ``threshold_resolution`` x resolution.

    Parameters
    ----------
    records : a "records" Dataset holding one channel (lazy is fine; at most `max_pulses` and
        `max_noise_records` traces are loaded)
    cfg : the config's `characterize` section
    what : run/channel name for error messages

    Returns
    -------
    dict: sample_frequency (Hz), record_length, pretrigger (samples), sev, fit (the
    `fit_pulse_model` dict), nps, of (`OptimumFilter`), resolution, expected_resolution,
    threshold (V), n_noise_records, n_pulses
    """
    from cryopipe.characterize.sev_nps import (
        clean_noise_mask,
        fit_pulse_model,
        noise_power_spectrum,
        pretrigger_noise_spectrum,
        pulse_features,
        select_clean_pulses,
        standard_event,
    )
    from cryopipe.signal.optimum_filter import build_optimum_filter, expected_resolution, measured_resolution

    fs = float(records.attrs["sample_frequency"])
    n = int(records.attrs["record_length"])
    pre = record_pretrigger(records)
    kind = np.array([str(k) for k in records["record_kind"].values])
    rng = np.random.default_rng(0)
    noise = channel_traces(records, kind == "noise", int(cfg["max_noise_records"]), rng)
    pulses = channel_traces(records, kind == "particle", int(cfg["max_pulses"]), rng)
    if len(noise) == 0 and records.attrs.get("source") in ("ljh", "rdt"):   # records files without noise records
        nps = pretrigger_noise_spectrum(pulses, fs, pre, record_length=n, min_records=int(cfg["min_noise_records"]),
                                        what=f"{what}: pre-trigger regions")
    else:
        nps = noise_power_spectrum(noise, fs, min_records=int(cfg["min_noise_records"]), what=what)
    heights = channel_height_range(cfg.get("sev_height_range"), str(records["channel"].values[0]))
    features = pulse_features(pulses) if len(pulses) else None
    mask = (select_clean_pulses(pulses, fs, min_snr=float(cfg["min_pulse_snr"]), trigger=pre, height_range=heights,
                                features=features) if len(pulses) else np.zeros(0, bool))
    if heights is None and mask.any():
        _warn_if_wider_than_small_pulses(pulses, mask, features, pre, what)
    try:
        sev = standard_event(pulses, fs, mask=mask, min_pulses=int(cfg["min_pulses"]), what=what,
                             **sev_alignment(records))
    except CryopipeError as exc:   # too few clean pulses: say why, where the records show it
        limit = "" if heights is None else (f"; characterize.sev_height_range keeps only pulses of "
                                            f"{heights[0]:g} to {heights[1]:g} V")
        raise CryopipeError(f"{exc}{limit}{no_pulses_hint(records, pulses, pre)}") from None
    fit = fit_pulse_model(sev, fs)
    of = build_optimum_filter(sev, nps, fs, onset=pre, what=what)
    if len(noise):
        clean_noise = noise[clean_noise_mask(noise, what=what)]
        resolution = measured_resolution(of, clean_noise)
    else:   # no noise records: the resolution expected from the NPS
        clean_noise = noise
        resolution = expected_resolution(of)
    return {"sample_frequency": fs, "record_length": n, "pretrigger": pre, "sev": sev, "fit": fit, "nps": nps,
            "of": of, "resolution": resolution, "expected_resolution": expected_resolution(of),
            "threshold": float(cfg["threshold_resolution"]) * resolution, "n_noise_records": len(clean_noise),
            "n_pulses": int(mask.sum())}


def optimum_filter_from(characterization: xr.Dataset, channel: str):
    """Rebuild the optimum filter of `channel` from a characterization store (deterministic)."""
    from cryopipe.signal.optimum_filter import build_optimum_filter

    c = characterization.sel(channel=channel)
    return build_optimum_filter(c["sev"].values, c["nps"].values, float(characterization.attrs["sample_frequency"]),
                                onset=record_pretrigger(characterization), what=str(channel))
