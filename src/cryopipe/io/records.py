"""Runs of hardware-triggered records read as records Datasets (CRESST .rdt + .par, NIST LJH).

No trigger: every complete event of the file becomes a record, with its absolute `timestamp`,
its `tpa` and `record_kind` ("particle" TPA 0, "noise" TPA < 0, "testpulse", "controlpulse" above
the control-pulse threshold). Polarity and ADC conversion as for streams. `record_batches` picks the
reader by the run's source spec (`cryopipe.io.sources`); the batches go to
`cryopipe.io.stores.write_store_batches`.
"""
from __future__ import annotations

import logging
from typing import Iterator

import numpy as np
import xarray as xr

from cryopipe.errors import InputError
from cryopipe.io.cresst import open_rdt
from cryopipe.io.stores import EVENT_CHUNK, provenance


def rdt_record_batches(spec: dict, *, inputs=(), batch: int = EVENT_CHUNK) -> tuple[xr.Dataset, Iterator[xr.Dataset], str]:
    """Records of an rdt run in batches of `batch` events (append along event), and a summary.

    `spec` is the run's source spec (`cryopipe.io.sources`): rdt, par, record_length,
    sample_frequency, channels (names, one per detector channel of the file, ascending), polarity,
    adc_bits, adc_range. Memory is bounded by one batch.
    """
    rdt = open_rdt(spec["rdt"], par=spec["par"], adc_bits=spec.get("adc_bits", 16),
                   adc_range=spec.get("adc_range", 20.0), sample_frequency=spec["sample_frequency"])
    fs, n_rec = float(spec["sample_frequency"]), int(spec["record_length"])
    polarity = np.float32(spec.get("polarity", 1))
    names = list(spec["channels"])
    first_time = None
    params = {"stream": spec}
    duration = float(rdt.par.measuring_time or 0.0)

    def to_dataset(ev: dict) -> xr.Dataset:
        nonlocal first_time
        n = ev["trace"].shape[1]
        time = np.asarray(ev["time"], dtype=np.float64)
        attrs = provenance("records", parameters=params, inputs=[str(i) for i in inputs], sample_frequency=fs,
                           record_length=n_rec,
                           live_time=duration, stream_duration=duration, threshold=[float("nan")] * len(names),
                           source="rdt", rdt_channels=[int(c) for c in rdt.channels],
                           start_time=float(rdt.par.start_time), pretrigger=n_rec // 4,
                           n_incomplete_events=int(rdt.n_incomplete))
        return xr.Dataset(
            {
                "trace": (("channel", "event", "sample"), ev["trace"] * polarity, {"units": "V"}),
                "trigger_sample": (("event",), np.rint(time * fs).astype(np.int64)),
                "trigger_time": (("event",), time, {"units": "s"}),
                "timestamp": (("event",), np.asarray(ev["timestamp"], np.float64), {"units": "s"}),
                "tpa": (("event",), np.asarray(ev["tpa"], np.float32), {"units": "V"}),
                "record_kind": (("event",), np.asarray(ev["record_kind"], dtype="U12")),
                "trigger_channel": (("event",), np.full(n, -1, np.int64)),
                "trigger_amplitude": (("channel", "event"), np.full((len(names), n), np.nan, np.float32), {"units": "V"}),
            },
            coords={"channel": names, "event": np.arange(ev["event"].start, ev["event"].start + n),
                    "time": (("sample",), (np.arange(n_rec) - n_rec // 4) / fs, {"units": "s"})},
            attrs=attrs,
        )

    if len(names) != rdt.n_channels:
        raise InputError(f"{spec['rdt']}: {rdt.n_channels} channels in the file ({rdt.channels}) but "
                         f"{len(names)} channel names in the config")
    batches = (to_dataset(ev) for ev in rdt.iter_events(batch=batch))
    kinds, counts = np.unique(rdt.record_kind, return_counts=True)
    summary = (f"{rdt.n_events} events of {rdt.n_channels} channels read from {spec['rdt']} "
               f"({', '.join(f'{c} {k}' for k, c in zip(kinds, counts))}; {rdt.n_incomplete} incomplete skipped)")
    if rdt.n_incomplete:   # never only at INFO: a truncated file, or records of a channel lost
        logging.getLogger("cryopipe").warning(
            "%s: %d of %d triggers lack a record of some channel %s (a truncated file? the last trigger %s) and are "
            "skipped; the store's attr n_incomplete_events says so", spec["rdt"], rdt.n_incomplete,
            rdt.n_events + rdt.n_incomplete, rdt.channels, "is one of them" if rdt.last_incomplete else "is complete")
    mismatch = rdt.clock_mismatch()
    if mismatch:   # trigger_time comes from the counter; timestamp (test pulses, stability) from the stamps
        logging.getLogger("cryopipe").warning(
            "%s: %s; the records' trigger_time and trigger_sample (from the counter) do not follow their "
            "timestamp (from the stamps, used for test pulses and stability)", spec["rdt"], mismatch)
    return next(batches), batches, summary


def ljh_record_batches(spec: dict, *, inputs=(), batch: int = EVENT_CHUNK) -> tuple[xr.Dataset, Iterator[xr.Dataset], str]:
    """Records of an LJH run (one file per channel) in batches, and a one-line summary.

    Every record of the files becomes an event (record_kind "particle", tpa 0), followed by the
    records of `noise_ljh` (record_kind "noise", tpa -1) when given. The trigger sits at the
    header's Presamples: the `time` coord is (arange(N) - pretrigger) / fs and the store's attr
    `pretrigger` says so. `trigger_sample` counts samples from the first record's start (frame
    counter, so gaps between records are kept), `timestamp` is the record's LJH time stamp (s since
    the Unix epoch). Volts = counts * adc_range / 2**adc_bits * polarity; memory is bounded by a batch.
    """
    from cryopipe.io.csmpl import volts_per_adc
    from cryopipe.io.ljh import open_ljh_run

    run = open_ljh_run(spec["ljh"])
    noise = open_ljh_run(spec["noise_ljh"]) if spec.get("noise_ljh") else None
    fs, n_rec = run.sample_frequency, run.n_samples
    pre = int(run.pretrigger)
    names = list(spec["channels"])
    if len(names) != len(run.files):
        raise InputError(f"{spec['ljh'][0]}: {len(run.files)} LJH files but {len(names)} channel names in the config")
    if noise is not None and (noise.n_samples != n_rec or len(noise.files) != len(run.files)):
        raise InputError(f"{spec['noise_ljh'][0]}: noise records of {noise.n_samples} samples x "
                         f"{len(noise.files)} channels do not match the run's {n_rec} samples x {len(run.files)}")
    per_count = volts_per_adc(adc_bits=spec.get("adc_bits", 16), adc_range=spec.get("adc_range", 20.0))
    scale = np.float32(per_count * int(spec.get("polarity", 1)))
    first_frame = int(run.files[0].frame_count[0])
    start_time = float(run.files[0].timestamps[0]) - pre / fs
    n_data = run.n_records
    n_total = n_data + (noise.n_records if noise is not None else 0)
    duration = n_data * n_rec / fs if run.back_to_back else float(
        (run.files[0].frame_count[-1] - first_frame + n_rec) / fs)
    params = {"stream": spec}

    def block(src, a: int, b: int, event0: int, kind: str) -> xr.Dataset:
        n = b - a
        trace = np.empty((len(names), n, n_rec), np.float32)
        for c, f in enumerate(src.files):
            np.multiply(f.records[a:b], scale, out=trace[c], casting="unsafe")
        f0 = src.files[0]
        sample = np.asarray(f0.frame_count[a:b], np.int64) - first_frame + pre
        attrs = provenance("records", parameters=params, inputs=[str(i) for i in inputs], sample_frequency=fs,
                           record_length=n_rec,
                           pretrigger=pre, live_time=duration, stream_duration=duration,
                           threshold=[float("nan")] * len(names), source="ljh", start_time=start_time,
                           ljh_version=run.files[0].version_string)
        return xr.Dataset(
            {
                "trace": (("channel", "event", "sample"), trace, {"units": "V"}),
                "trigger_sample": (("event",), sample),
                "trigger_time": (("event",), sample / fs, {"units": "s"}),
                "timestamp": (("event",), np.asarray(f0.timestamps[a:b], np.float64), {"units": "s"}),
                "tpa": (("event",), np.full(n, 0.0 if kind == "particle" else -1.0, np.float32), {"units": "V"}),
                "record_kind": (("event",), np.full(n, kind, dtype="U12")),
                "trigger_channel": (("event",), np.full(n, -1, np.int64)),
                "trigger_amplitude": (("channel", "event"), np.full((len(names), n), np.nan, np.float32), {"units": "V"}),
            },
            coords={"channel": names, "event": np.arange(event0, event0 + n),
                    "time": (("sample",), (np.arange(n_rec) - pre) / fs, {"units": "s"})},
            attrs=attrs,
        )

    def batches():
        for a in range(0, n_data, batch):
            yield block(run, a, min(a + batch, n_data), a, "particle")
        if noise is not None:
            for a in range(0, noise.n_records, batch):
                yield block(noise, a, min(a + batch, noise.n_records), n_data + a, "noise")

    it = batches()
    how = "back to back" if run.back_to_back else run.describe_gaps()
    summary = (f"LJH {run.files[0].version_string} records: {n_data} records of {n_rec} samples (pretrigger "
               f"{pre}) x {len(names)} channels read from {spec['ljh'][0]}"
               + (f" and {noise.n_records} noise records from {spec['noise_ljh'][0]}" if noise is not None else
                  "; no noise file: the NPS comes from the pre-trigger regions")
               + f"; read as triggered records ({how}); {n_total} events")
    return next(it), it, summary


def record_batches(spec: dict, *, inputs=(), batch: int = EVENT_CHUNK):
    """Records of a run of hardware-triggered records (rdt or LJH, by its source spec)."""
    from cryopipe.io.sources import source_format

    fmt = source_format(spec)
    return (ljh_record_batches if fmt == "ljh" else rdt_record_batches)(spec, inputs=inputs, batch=batch)
