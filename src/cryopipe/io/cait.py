"""Import of Cait HDF5 files (Cait seed paper 001, section 2) into cryopipe "records" stores.

Cait's layout (cait 1.3): group ``events`` with ``event`` (channels, events, samples) float32 V,
optional ``hours`` (events,) hours since the start of the measurement, ``time_s`` / ``time_mus``
(events,) unix time stamp in s and microseconds, ``mainpar`` (channels, events, 10) and
``of_ph`` (channels, events) V. A group ``noise`` with its own ``event`` dataset holds noise
(empty baseline) records, a group ``testpulses`` with ``event`` and ``testpulseamplitude``
(events,) V the test and control pulses. Record window: trigger at N/4 (attr ``pretrigger``).

Mapping to the "records" store (`cryopipe.io.stores.STORES["records"]`):
- trace: events of ``events`` (record_kind 'particle') and, if present, of ``noise`` (record_kind
  'noise') and ``testpulses`` (record_kind 'testpulse' or 'controlpulse' by TPA, the CRESST
  convention of `cryopipe.io.cresst.record_kind_from_tpa`), sorted by trigger time;
- tpa: 0 for particle, -1 for noise records, ``testpulseamplitude`` for test and control pulses;
- trigger_time: ``hours`` x 3600 if present (s since the measurement's start, as Cait counts), else
  ``time_s`` (+ ``time_mus``) minus the first record's, else record index * N / fs (records back to
  back); trigger_sample = round(trigger_time * fs);
- timestamp: ``time_s`` + ``time_mus`` (s since the Unix epoch) where every group has them, else
  trigger_time;
- per-event values (hours, time_s, time_mus, testpulseamplitude, of_ph, mainpar) must have one
  finite value per record (else InputError naming the file and dataset); records with NaN or inf
  samples are imported with a warning;
- trigger_amplitude: ``of_ph`` if present, else ``mainpar[..., 0]`` (Cait's pulse height), else NaN;
- trigger_channel: the channel of the largest trigger amplitude (-1 for noise records, or when unknown);
- mainpar (channel, event, parameter) when present (parameter: MAINPAR_NAMES);
- attrs: live_time and stream_duration are the span of the trigger times plus one record (Cait
  files hold no dead time), threshold NaN per channel (unknown), source "cait" (the SEV keeps the
  records' own alignment, `cryopipe.characterize.channel.FOREIGN_TRIGGER_SOURCES`).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr

from ..errors import InputError
from .stores import provenance

MAINPAR_NAMES = ("pulse_height", "t_zero", "t_rise", "t_max", "t_decaystart", "t_half", "t_end", "offset",
                 "linear_drift", "quadratic_drift")


def _open(path: Path):
    import h5py

    if not path.is_file():
        raise InputError(f"{path}: no such Cait HDF5 file")
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise InputError(f"{path}: not an HDF5 file ({exc})") from None


def read_cait_events(path: str | Path, *, group: str = "events", channels=None) -> np.ndarray:
    """The ``group/event`` dataset of a Cait file as float32 (channels, events, samples) V."""
    path = Path(path)
    with _open(path) as f:
        return _event_array(f, path, group, channels)


def _event_array(f, path, group, channels=None):
    if group not in f or "event" not in f[group]:
        raise InputError(f"{path}: no dataset {group}/event (not a Cait file?)")
    ev = f[group]["event"]
    if ev.ndim != 3:
        raise InputError(f"{path}: {group}/event has shape {ev.shape}, expected (channels, events, samples)")
    return _take(ev, _channel_indices(channels, ev.shape[0], path)).astype(np.float32, copy=False)


def _take(dataset, idx):
    """dataset[idx] along the first axis for any order of `idx` (h5py needs increasing unique indices)."""
    uniq, inverse = np.unique(idx, return_inverse=True)
    return np.asarray(dataset[uniq.tolist()])[inverse]


def _channel_indices(channels, n_channels, path):
    if channels is None:
        return list(range(n_channels))
    idx = [int(c) for c in channels]
    bad = [c for c in idx if not 0 <= c < n_channels]
    if bad:
        raise InputError(f"{path}: channel indices {bad} outside 0..{n_channels - 1}")
    return idx


def _per_event(grp, name: str, n_events: int, path) -> np.ndarray:
    """Dataset `grp/name` as float64 (n_events,): one finite value per event, else InputError."""
    values = np.asarray(grp[name][:], dtype=np.float64).ravel()
    where = f"{path}: {grp.name.strip('/')}/{name}"
    if values.size != n_events:
        raise InputError(f"{where} has {values.size} values for {n_events} records")
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        raise InputError(f"{where} is not finite (NaN or inf) at {bad.size} record(s), the first at index {bad[0]}")
    return values


def _times(grp, n_events, offset_index, record_length, fs, path):
    """Trigger times (s, absolute scale of the file) and which source they came from."""
    if "hours" in grp:
        return _per_event(grp, "hours", n_events, path) * 3600.0, "hours"
    if "time_s" in grp:
        return _unix_times(grp, n_events, path), "time_s"
    return (offset_index + np.arange(n_events)) * record_length / fs, "index"


def _unix_times(grp, n_events, path) -> np.ndarray | None:
    """``time_s`` + 1e-6 ``time_mus`` (s since the Unix epoch) of a group, or None without time_s."""
    if "time_s" not in grp:
        return None
    t = _per_event(grp, "time_s", n_events, path)
    return t + 1e-6 * _per_event(grp, "time_mus", n_events, path) if "time_mus" in grp else t


def _warn_non_finite(traces, path, group) -> None:
    """A warning naming the records of `group` with NaN or inf samples (kept; `predict` marks them invalid)."""
    import logging

    bad = np.flatnonzero(~np.isfinite(traces).all(axis=(0, 2)))
    if bad.size:
        logging.getLogger("cryopipe").warning("%s: %s/event has NaN or inf samples in %d record(s), the first at index "
                                              "%d; they are imported as they are (predict marks them invalid)",
                                              path, group, bad.size, bad[0])


def _amplitudes(grp, idx, n_events, path):
    for name, ndim in (("of_ph", 2), ("mainpar", 3)):
        if name in grp and grp[name].ndim == ndim:
            values = _take(grp[name], idx)
            if values.shape[1] != n_events:
                raise InputError(f"{path}: {grp.name.strip('/')}/{name} has {values.shape[1]} events for "
                                 f"{n_events} records")
            return (values if ndim == 2 else values[:, :, 0]).astype(np.float32)
    return np.full((len(idx), n_events), np.nan, dtype=np.float32)


def cait_records(path: str | Path, *, sample_frequency: float = 25_000.0, channels=None,
                 channel_names=None) -> xr.Dataset:
    """A "records" Dataset of the events (and noise records) of Cait HDF5 file `path`.

    Parameters
    ----------
    sample_frequency : Hz (Cait files do not store it)
    channels : channel indices to import (default all)
    channel_names : one name per imported channel (default ch<index>)
    """
    path = Path(path)
    if not sample_frequency or sample_frequency <= 0:
        raise InputError(f"sample_frequency: must be > 0 Hz, got {sample_frequency}")
    fs = float(sample_frequency)
    with _open(path) as f:
        traces = [_event_array(f, path, "events", channels)]
        n_all = f["events"]["event"].shape[0]
        idx = _channel_indices(channels, n_all, path)
        n_samples = traces[0].shape[2]
        _warn_non_finite(traces[0], path, "events")
        kinds = [np.full(traces[0].shape[1], "particle")]
        times, source = _times(f["events"], traces[0].shape[1], 0, n_samples, fs, path)
        times = [times]
        unix = [_unix_times(f["events"], traces[0].shape[1], path)]
        amps = [_amplitudes(f["events"], idx, traces[0].shape[1], path)]
        mainpar = _take(f["events"]["mainpar"], idx) if "mainpar" in f["events"] and f["events"]["mainpar"].ndim == 3 \
            and f["events"]["mainpar"].shape[2] == len(MAINPAR_NAMES) else None
        if mainpar is not None and mainpar.shape[1] != traces[0].shape[1]:
            raise InputError(f"{path}: events/mainpar has {mainpar.shape[1]} events for {traces[0].shape[1]} records")
        if "noise" in f and "event" in f["noise"]:
            noise = _event_array(f, path, "noise", channels)
            if noise.shape[0] != traces[0].shape[0] or noise.shape[2] != n_samples:
                raise InputError(f"{path}: noise/event shape {noise.shape} does not match events/event "
                                 f"{traces[0].shape}")
            _warn_non_finite(noise, path, "noise")
            traces.append(noise)
            kinds.append(np.full(noise.shape[1], "noise"))
            unix.append(_unix_times(f["noise"], noise.shape[1], path))
            t, src = _times(f["noise"], noise.shape[1], traces[0].shape[1], n_samples, fs, path)
            if src != source:
                raise InputError(f"{path}: events time from {source!r} but noise time from {src!r}")
            times.append(t)
            amps.append(np.full((noise.shape[0], noise.shape[1]), np.nan, dtype=np.float32))
            if mainpar is not None:
                mainpar = np.concatenate([mainpar, np.full((noise.shape[0], noise.shape[1], mainpar.shape[2]),
                                                           np.nan)], axis=1)
        tpas = [np.zeros(traces[0].shape[1], np.float32)] + [np.full(t.shape[1], -1.0, np.float32) for t in traces[1:]]
        if "testpulses" in f and "event" in f["testpulses"]:
            from .cresst import record_kind_from_tpa

            tp = _event_array(f, path, "testpulses", channels)
            if tp.shape[0] != traces[0].shape[0] or tp.shape[2] != n_samples:
                raise InputError(f"{path}: testpulses/event shape {tp.shape} does not match events/event "
                                 f"{traces[0].shape}")
            if "testpulseamplitude" not in f["testpulses"]:
                raise InputError(f"{path}: testpulses/event without testpulses/testpulseamplitude (the TPA of "
                                 f"each test pulse)")
            tpa = _per_event(f["testpulses"], "testpulseamplitude", tp.shape[1], path).astype(np.float32)
            _warn_non_finite(tp, path, "testpulses")
            unix.append(_unix_times(f["testpulses"], tp.shape[1], path))
            t, src = _times(f["testpulses"], tp.shape[1], sum(x.shape[1] for x in traces), n_samples, fs, path)
            if src != source:
                raise InputError(f"{path}: events time from {source!r} but testpulses time from {src!r}")
            traces.append(tp)
            kinds.append(record_kind_from_tpa(tpa))
            times.append(t)
            tpas.append(tpa)
            amps.append(np.full((tp.shape[0], tp.shape[1]), np.nan, dtype=np.float32))
            if mainpar is not None:
                mainpar = np.concatenate([mainpar, np.full((tp.shape[0], tp.shape[1], mainpar.shape[2]), np.nan)],
                                         axis=1)
    unix = np.concatenate(unix) if all(u is not None for u in unix) else None
    return _records_dataset(path, fs, traces, kinds, times, amps, mainpar, idx, channel_names, source, tpas, unix)


def _records_dataset(path, fs, traces, kinds, times, amps, mainpar, idx, channel_names, source, tpas, unix):
    trace = np.concatenate(traces, axis=1)
    n_ch, n_ev, n_samples = trace.shape
    if n_ev == 0:
        raise InputError(f"{path}: holds no events")
    t = np.concatenate(times)
    order = np.argsort(t, kind="stable")
    t = t[order]
    if source != "hours":   # hours: s since the measurement's start, as Cait counts; else since the first record
        t = t - t[0]
    stamp = t if unix is None else unix[order]
    kind = np.concatenate(kinds)[order]
    amp = np.concatenate(amps, axis=1)[:, order]
    fired = np.where(np.isfinite(amp).any(axis=0), np.argmax(np.nan_to_num(amp, nan=-np.inf), axis=0), -1)
    fired[kind != "particle"] = -1
    tpa = np.concatenate(tpas)[order]
    names = [f"ch{i}" for i in idx] if channel_names is None else [str(c) for c in channel_names]
    if len(names) != n_ch:
        raise InputError(f"channel_names: {len(names)} names for {n_ch} channels")
    duration = float(t[-1] - t[0] + n_samples / fs)
    data = {
        "trace": (("channel", "event", "sample"), trace[:, order], {"units": "V"}),
        "trigger_sample": (("event",), np.round(t * fs).astype(np.int64)),
        "trigger_time": (("event",), t, {"units": "s"}),
        "timestamp": (("event",), stamp.astype(np.float64), {"units": "s"}),
        "tpa": (("event",), tpa.astype(np.float32), {"units": "V"}),
        "record_kind": (("event",), kind.astype(str)),
        "trigger_channel": (("event",), fired.astype(np.int64)),
        "trigger_amplitude": (("channel", "event"), amp, {"units": "V"}),
    }
    coords = {"channel": names, "event": np.arange(n_ev),
              "time": (("sample",), (np.arange(n_samples) - n_samples // 4) / fs, {"units": "s"})}
    if mainpar is not None:
        data["mainpar"] = (("channel", "event", "parameter"), np.asarray(mainpar, dtype=np.float32)[:, order])
        coords["parameter"] = list(MAINPAR_NAMES)
    attrs = provenance("records", parameters={"source": "cait", "sample_frequency": fs, "channels": idx,
                                              "time_from": source},
                       inputs=[path.name], sample_frequency=fs, record_length=int(n_samples), live_time=duration,
                       stream_duration=duration, threshold=[float("nan")] * n_ch, source="cait",
                       pretrigger=int(n_samples) // 4)
    return xr.Dataset(data, coords=coords, attrs=attrs)
