"""Stage entry points: library functions combined the way the workflow scripts and the CLI use them.

Each takes plain dicts of configuration (the validated config's sections) and returns Datasets
ready for cryopipe.io.stores; no Snakemake here.
"""
from __future__ import annotations

import json
from typing import Iterator

import numpy as np
import xarray as xr

from .filters import OverlapSave, filtered_noise_sigma, generic_kernel
from .io.csmpl import CsmplStream, open_csmpl
from .io.stores import EVENT_CHUNK, provenance
from .trigger import (live_time, merge_triggers, noise_trigger_samples, records_dataset, trigger_channel,
                      valid_windows)


def open_run_stream(stream_cfg: dict) -> CsmplStream:
    """Open a run's csmpl files as described by its stream parameters (see rules/common.smk).

    The run's `polarity` is applied here (volts x polarity), so every later stage sees particle
    pulses as positive: records, features and the characterisation of a negative-pulse detector
    hold the sign-flipped signal.
    """
    stream = open_csmpl(stream_cfg["csmpl"], stream_cfg["sample_frequency"], stream_cfg["record_length"],
                        stream_cfg.get("adc_bits", 16), stream_cfg.get("adc_range", 20.0))
    stream.volts_per_adc *= int(stream_cfg.get("polarity", 1))
    return stream


def holdoff_samples(stream_cfg: dict, trigger_cfg: dict) -> int:
    """Hold-off after a trigger in samples (default: half a record)."""
    return int(trigger_cfg.get("holdoff") or stream_cfg["record_length"] // 2)


def segment_bounds(n_samples: int, sample_frequency: float, segment_duration: float | None) -> list[tuple[int, int]]:
    """Split [0, n_samples) into time segments of `segment_duration` s (None: one segment)."""
    if not segment_duration:
        return [(0, n_samples)]
    step = max(int(round(segment_duration * sample_frequency)), 1)
    return [(a, min(a + step, n_samples)) for a in range(0, n_samples, step)]


def trigger_one_channel(stream: CsmplStream, channel: int, stream_cfg: dict, trigger_cfg: dict,
                        kernel: tuple[np.ndarray, int] | None = None, threshold: float | None = None,
                        segment: tuple[int, int] | None = None, inputs=(), progress=None) -> xr.Dataset:
    """Trigger one channel (or one time segment of it); returns a "triggers" Dataset.

    The kernel defaults to the detector-agnostic generic pulse kernel; the threshold defaults to
    `threshold_sigma` times the filtered stream's robust noise sigma, estimated from chunks spread
    over the WHOLE stream, so every segment job of a channel uses the same threshold.

    A segment [a, b) is scanned over [a - lookback, b + holdoff) and keeps the triggers in [a, b):
    the scan state (dead time) at `a` then equals that of an unsplit scan whenever the
    `lookback` (10 hold-offs) holds a quiet stretch, so segments gathered equal the unsplit run.
    """
    k, anchor = kernel if kernel is not None else generic_kernel(stream_cfg["record_length"])
    polarity = 1  # applied when the stream is opened (open_run_stream)
    sigma = filtered_noise_sigma(stream, channel, k, anchor, polarity=polarity)
    if threshold is None:
        threshold = float(trigger_cfg["threshold_sigma"]) * sigma
    holdoff = holdoff_samples(stream_cfg, trigger_cfg)
    a, b = segment if segment is not None else (0, stream.n_samples)
    chunk = OverlapSave(k, anchor, int(trigger_cfg["chunk_size"])).chunk
    # scan whole chunks of the unsplit run's grid, so the float32 filter values are bit-identical
    start = max(a - 10 * holdoff, 0) // chunk * chunk
    stop = min(-(-(b + holdoff) // chunk) * chunk, stream.n_samples)
    samples, amplitudes = trigger_channel(stream, channel, k, anchor, threshold, holdoff, polarity,
                                          chunk_size=int(trigger_cfg["chunk_size"]), start=start, stop=stop)
    keep = (samples >= a) & (samples < b)
    params = {"trigger": trigger_cfg, "stream": stream_cfg, "kernel_length": len(k), "kernel_anchor": anchor}
    attrs = provenance("triggers", params, list(inputs), sample_frequency=stream.sample_frequency,
                       n_samples=stream.n_samples, channel=stream_cfg["channels"][channel],
                       threshold=float(threshold), noise_sigma=sigma, holdoff=holdoff, segment=[a, b])
    return xr.Dataset({"trigger_sample": ("trigger", np.asarray(samples[keep], dtype=np.int64)),
                       "trigger_amplitude": ("trigger", np.asarray(amplitudes[keep], dtype=np.float32))},
                      attrs=attrs)


def gather_segments(parts: list[xr.Dataset], inputs=()) -> xr.Dataset:
    """Join the segment trigger lists of one channel (in time order) into one "triggers" Dataset."""
    parts = sorted(parts, key=lambda p: p.attrs["segment"][0])
    ds = xr.concat([p[["trigger_sample", "trigger_amplitude"]] for p in parts], dim="trigger")
    ds.attrs = {k: v for k, v in parts[0].attrs.items() if k != "segment"}
    ds.attrs["inputs"] = [str(i) for i in inputs]
    return ds


def record_batches(stream: CsmplStream, triggers: list[xr.Dataset], stream_cfg: dict, trigger_cfg: dict,
                   inputs=(), batch: int = EVENT_CHUNK) -> tuple[xr.Dataset, Iterator[xr.Dataset], str]:
    """Merge per-channel triggers, draw noise triggers, and cut records in batches of `batch` events.

    Returns the first "records" Dataset, an iterator over the following batches (append along
    event), and a one-line summary. Memory is bounded by one batch of records.
    """
    n_rec = stream_cfg["record_length"]
    holdoff = holdoff_samples(stream_cfg, trigger_cfg)
    per_channel = [t["trigger_sample"].values for t in triggers]
    samples, fired = merge_triggers(per_channel, holdoff)
    live = live_time(samples, holdoff, stream.n_samples, stream.sample_frequency)
    keep = valid_windows(samples, stream.n_samples, n_rec)
    samples, fired = samples[keep], fired[keep]
    amps = _fired_amplitudes(triggers, samples, fired)
    rng = np.random.default_rng(int(trigger_cfg["seed"]))
    noise = np.sort(noise_trigger_samples(int(trigger_cfg["noise_records"]), samples, stream.n_samples, n_rec, rng))
    thresholds = [float(t.attrs["threshold"]) for t in triggers]
    params = {"trigger": trigger_cfg, "stream": stream_cfg}
    all_samples = np.sort(np.concatenate([samples, noise]))
    bounds = list(range(0, max(len(all_samples), 1), batch)) or [0]

    def part(i0: int) -> xr.Dataset:
        window = all_samples[i0 : i0 + batch]
        lo, hi = (window[0], window[-1]) if len(window) else (0, -1)
        sel = (samples >= lo) & (samples <= hi)
        nsel = (noise >= lo) & (noise <= hi)
        ds = records_dataset(stream, samples[sel], fired[sel], noise[nsel], n_rec, stream_cfg["channels"],
                             amps[:, sel], params, list(inputs), live, thresholds)
        return ds.assign_coords(event=np.arange(i0, i0 + ds.sizes["event"]))

    summary = (f"{len(samples)} particle and {len(noise)} noise records of {len(stream_cfg['channels'])} channels; "
               f"live time {live:.1f} s of {stream.duration:.1f} s")
    return part(bounds[0]), (part(i0) for i0 in bounds[1:]), summary


def _fired_amplitudes(triggers: list[xr.Dataset], samples: np.ndarray, fired: np.ndarray) -> np.ndarray:
    """(channel, event) filter amplitude of the channel that fired at each merged trigger; NaN elsewhere."""
    out = np.full((len(triggers), len(samples)), np.nan, dtype=np.float32)
    for c, t in enumerate(triggers):
        s = t["trigger_sample"].values
        a = t["trigger_amplitude"].values
        idx = np.searchsorted(s, samples)
        ok = (idx < len(s)) & (fired == c)
        ok[ok] &= s[idx[ok]] == samples[ok]
        out[c, ok] = a[idx[ok]]
    return out


# ---------------------------------------------------------------------------------------------
# characterisation (SEV, NPS, optimum filter, resolution, threshold) and optimum-filter features

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
    from .characterize import noise_power_spectrum, select_clean_pulses, standard_event
    from .characterize import clean_noise_mask, fit_pulse_model
    from .optimum_filter import build_optimum_filter, expected_resolution, measured_resolution

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
    from .optimum_filter import build_optimum_filter

    c = characterization.sel(channel=channel)
    return build_optimum_filter(c["sev"].values, c["nps"].values, float(characterization.attrs["sample_frequency"]),
                                what=str(channel))


OF_FEATURE_UNITS = {"of_amplitude": "V", "of_chi2": "1", "of_amplitude_shifted": "V", "of_shift": "s",
                    "of_chi2_shifted": "1"}


def of_features(of, records: xr.Dataset, batch: int = 4096) -> xr.Dataset:
    """Optimum-filter features of one-channel `records` (lazy; read in event batches): fixed-lag
    amplitude and chi2, and amplitude, shift (s) and chi2 of the time-shift search (Cait window)."""
    from .optimum_filter import of_amplitudes

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


# ---------------------------------------------------------------------------------------------
# energy calibration, per-event SEV fits and trigger/cut efficiency

def calibrate_channel(features: xr.Dataset, characterization: xr.Dataset, cfg: dict, what: str) -> xr.Dataset:
    """Amplitude -> energy conversion of one channel from a line of known energy.

    Uses the particle records' `cfg["amplitude"]` feature (default the shift-searched OF amplitude);
    the baseline resolution in keV comes from the channel's measured OF resolution.
    """
    from .calibrate import calibrate

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


def sev_fit_features(records: xr.Dataset, sev: np.ndarray, truncation_level: float | None,
                     batch: int = 4096) -> xr.Dataset:
    """Per-event SEV fit of one-channel `records` (height V, onset s, rms V), read in event batches."""
    from .fit import fit_sev

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


def efficiency_channel(records: xr.Dataset, characterization: xr.Dataset, cuts: dict, cfg: dict,
                       kev_per_volt: float | None = None) -> xr.Dataset:
    """Trigger and cut efficiency of one channel: the SEV scaled to amplitudes from 0.5 to
    `max_resolutions` x the resolution, injected onto the run's noise records, triggered as the final
    pass does (shift-searched OF amplitude >= threshold), featured and cut with `cuts`."""
    from .cuts import apply_cuts, extra_features
    from .efficiency import efficiency_curve

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


def add_energy(features: xr.Dataset, calibration: xr.Dataset) -> xr.Dataset:
    """Add `energy` (channel, event) keV: the calibrated amplitude the calibration was made from."""
    from .calibrate import to_energy

    amp = features[calibration.attrs["amplitude"]]
    k = calibration["kev_per_volt"].sel(channel=features["channel"]).values[:, None]
    off = calibration["offset_kev"].sel(channel=features["channel"]).values[:, None]
    energy = to_energy(amp.values, {"kev_per_volt": 1.0, "offset_kev": 0.0}) * k + off
    units = json.loads(features.attrs.get("units", "{}"))
    out = features.assign(energy=(("channel", "event"), energy, {"units": "keV"}))
    out.attrs["units"] = json.dumps({**units, "energy": "keV"})
    return out


# ---------------------------------------------------------------------------------------------
# data cleaning: labelled simulation of a run's detectors, training, prediction

def simulate_run_records(characterization: xr.Dataset, n_per_class: int, seed: int,
                         snr_range=(3.0, 1000.0)) -> xr.Dataset:
    """Labelled records of every event class for each channel of a characterised run (its SEV and
    NPS), concatenated along ``event`` ("simset" store content; channel dim 'detector')."""
    from .simulate.records import EVENT_CLASSES, simulate_detector_records

    rng = np.random.default_rng(seed)
    fs = float(characterization.attrs["sample_frequency"])
    parts = []
    for ch in characterization["channel"].values:
        c = characterization.sel(channel=ch)
        ds = simulate_detector_records({k: int(n_per_class) for k in EVENT_CLASSES}, c["sev"].values,
                                       c["nps"].values, fs, rng, snr_range=tuple(snr_range))
        parts.append(ds.assign(source_channel=("event", np.full(ds.sizes["event"], str(ch)))))
    out = xr.concat(parts, dim="event", combine_attrs="override")
    out = out.assign_coords(event=np.arange(out.sizes["event"]))
    out.attrs = provenance("simset", {"n_per_class": n_per_class, "seed": seed, "snr_range": list(snr_range)}, [],
                           sample_frequency=fs, record_length=int(characterization.attrs["record_length"]))
    return out


def train_on_simset(path, architecture: str, checkpoint, cfg: dict, progress=None):
    """Train `architecture` on a simset store (90 % train, 10 % validation), multi-class head over
    its event classes (binary score = accepted classes) or a binary head; returns the TrainResult."""
    import sys

    from .cleaning.data import SimsetSource, split_events
    from .simulate.records import DEFAULT_ACCEPTED, EVENT_CLASSES

    probe = SimsetSource(path)
    train_mask, val_mask = split_events(probe.n_events, (0.9, 0.1), seed=int(cfg["seed"]))
    classes = list(EVENT_CLASSES)
    train = SimsetSource(path, class_names=classes, select=train_mask)
    val = SimsetSource(path, class_names=classes, select=val_mask)
    from .cleaning.train import train_model

    n_classes = len(classes) if cfg["multiclass"] else 1
    return train_model(architecture, train, val, checkpoint, epochs=int(cfg["epochs"]),
                       batch_size=int(cfg["batch_size"]), lr=cfg.get("lr"), seed=int(cfg["seed"]),
                       n_classes=n_classes, accepted=sorted(DEFAULT_ACCEPTED) if n_classes > 1 else None,
                       progress=progress or sys.stderr, meta={"trained_on": str(path), "cutoff": cfg["cutoff"]})
