"""Characterisation stage: SEV, NPS, optimum filter, resolution and threshold of a channel;
the optimum-filter and SEV-fit features of records.

Stage entry points for the workflow scripts and the CLI: plain config dicts in, Datasets
ready for cryopipe.io.stores out; no Snakemake here.
"""
from __future__ import annotations

import json

import numpy as np
import xarray as xr

from ..io.stores import provenance

FIT_PARAMETERS = ("t0", "An", "At", "tau_n", "tau_in", "tau_t")


def _channel_traces(records: xr.Dataset, mask: np.ndarray, limit: int, rng: np.random.Generator) -> np.ndarray:
    """Traces (n, N) float32 of one-channel `records` where `mask`, at most `limit`, evenly spread."""
    idx = np.flatnonzero(mask)
    if len(idx) > limit:
        idx = np.sort(rng.choice(idx, limit, replace=False))
    if len(idx) == 0:
        return np.empty((0, records.sizes["sample"]), np.float32)
    return records["trace"].isel(channel=0, event=idx).values.astype(np.float32, copy=False)


def characterize_channel(records: xr.Dataset, cfg: dict, what: str) -> xr.Dataset:
    """Characterise one channel from its (first-pass) records: NPS from noise records, SEV from
    clean pulses with a pulse-model fit, optimum filter, resolution and the second-pass threshold.

    Parameters
    ----------
    records : a "records" Dataset holding one channel (lazy is fine; at most `max_pulses` and
        `max_noise_records` traces are loaded)
    cfg : the config's `characterize` section
    what : run/channel name for error messages
    """
    from ..characterize import (
        clean_noise_mask,
        fit_pulse_model,
        noise_power_spectrum,
        select_clean_pulses,
        standard_event,
    )
    from ..optimum_filter import (
        build_optimum_filter,
        expected_resolution,
        measured_resolution,
    )

    fs = float(records.attrs["sample_frequency"])
    n = int(records.attrs["record_length"])
    kind = np.array([str(k) for k in records["record_kind"].values])
    rng = np.random.default_rng(0)
    noise = _channel_traces(records, kind == "noise", int(cfg["max_noise_records"]), rng)
    pulses = _channel_traces(records, kind == "particle", int(cfg["max_pulses"]), rng)
    nps = noise_power_spectrum(noise, fs, min_records=int(cfg["min_noise_records"]), what=what)
    mask = select_clean_pulses(pulses, fs, min_snr=float(cfg["min_pulse_snr"])) if len(pulses) else np.zeros(0, bool)
    sev = standard_event(pulses, fs, mask=mask, min_pulses=int(cfg["min_pulses"]), what=what)
    fit = fit_pulse_model(sev, fs)
    of = build_optimum_filter(sev, nps, fs, what=what)
    clean_noise = noise[clean_noise_mask(noise, what=what)]
    resolution = measured_resolution(of, clean_noise)
    threshold = float(cfg["threshold_resolution"]) * resolution
    ch = records["channel"].values
    freq = np.fft.rfftfreq(n, 1.0 / fs)
    time = (np.arange(n) - n // 4) / fs
    return xr.Dataset(
        {
            "sev": (("channel", "sample"), sev[None].astype(np.float32)),
            "sev_fit": (("channel", "sample"), np.asarray(fit["model"], np.float32)[None]),
            "fit_parameters": (("channel", "parameter"), np.array([[fit[p] for p in FIT_PARAMETERS]])),
            "nps": (("channel", "frequency"), nps[None]),
            "filter_real": (("channel", "frequency"), of.transfer.real[None]),
            "filter_imag": (("channel", "frequency"), of.transfer.imag[None]),
            "resolution": ("channel", [resolution]),
            "expected_resolution": ("channel", [expected_resolution(of)]),
            "threshold": ("channel", [threshold]),
            "n_noise_records": ("channel", [len(clean_noise)]),
            "n_pulses": ("channel", [int(mask.sum())]),
        },
        coords={"channel": ch, "frequency": freq, "time": ("sample", time), "parameter": list(FIT_PARAMETERS)},
        attrs=provenance("characterization", cfg, [], sample_frequency=fs, record_length=n,
                         units=json.dumps({"sev": "1", "nps": "V^2/Hz", "resolution": "V", "threshold": "V",
                                           "fit_parameters": "s (t0, tau_*), 1 (An, At)",
                                           "filter_real": "1", "frequency": "Hz", "time": "s"})),
    )


def optimum_filter_from(characterization: xr.Dataset, channel: str):
    """Rebuild the optimum filter of `channel` from a characterization store (deterministic)."""
    from ..optimum_filter import build_optimum_filter

    c = characterization.sel(channel=channel)
    return build_optimum_filter(c["sev"].values, c["nps"].values, float(characterization.attrs["sample_frequency"]),
                                what=str(channel))


OF_FEATURE_UNITS = {"of_amplitude": "V", "of_chi2": "1", "of_amplitude_shifted": "V", "of_shift": "s",
                    "of_chi2_shifted": "1"}


def of_features(of, records: xr.Dataset, batch: int = 4096) -> xr.Dataset:
    """Optimum-filter features of one-channel `records` (lazy; read in event batches): fixed-lag
    amplitude and chi2, and amplitude, shift (s) and chi2 of the time-shift search (Cait window)."""
    from ..optimum_filter import of_amplitudes

    n_ev = records.sizes["event"]
    out = {k: np.empty(n_ev) for k in OF_FEATURE_UNITS}
    for a in range(0, n_ev, batch):
        tr = records["trace"].isel(channel=0, event=slice(a, a + batch)).values.astype(np.float32, copy=False)
        r = of_amplitudes(of, tr)
        b = a + len(tr)
        out["of_amplitude"][a:b], out["of_chi2"][a:b] = r["amplitude"], r["chi2"]
        out["of_amplitude_shifted"][a:b], out["of_chi2_shifted"][a:b] = r["amplitude_shifted"], r["chi2_shifted"]
        out["of_shift"][a:b] = r["shift"] / of.sample_frequency
    return xr.Dataset({k: (("channel", "event"), v[None]) for k, v in out.items()},
                      coords={"channel": records["channel"].values, "event": records["event"].values})


def sev_fit_features(records: xr.Dataset, sev: np.ndarray, truncation_level: float | None,
                     batch: int = 4096) -> xr.Dataset:
    """Per-event SEV fit of one-channel `records` (height V, onset s, rms V), read in event batches."""
    from ..fit import fit_sev

    fs = float(records.attrs["sample_frequency"])
    n_ev = records.sizes["event"]
    out = {k: np.empty(n_ev) for k in ("fit_height", "fit_onset", "fit_rms")}
    for a in range(0, n_ev, batch):
        tr = records["trace"].isel(channel=0, event=slice(a, a + batch)).values.astype(np.float32, copy=False)
        r = fit_sev(tr, sev, fs, truncation_level=truncation_level)
        for k in out:
            out[k][a : a + len(tr)] = r[k]
    units = {"fit_height": "V", "fit_onset": "s", "fit_rms": "V"}
    return xr.Dataset({k: (("channel", "event"), v[None], {"units": units[k]}) for k, v in out.items()},
                      coords={"channel": records["channel"].values, "event": records["event"].values})
