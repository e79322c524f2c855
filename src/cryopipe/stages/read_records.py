"""Read-records stage: a run of hardware-triggered records (CRESST .rdt + .par) as a records store.

No trigger: every complete event of the file becomes a record, with its absolute `timestamp`,
its `tpa` and `record_kind` ("particle" TPA 0, "noise" TPA < 0, "testpulse", "controlpulse" above
the control-pulse threshold). Polarity and ADC conversion as for streams.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np
import xarray as xr

from ..io.cresst import open_rdt
from ..io.stores import EVENT_CHUNK, provenance


def rdt_record_batches(spec: dict, inputs=(), batch: int = EVENT_CHUNK) -> tuple[xr.Dataset, Iterator[xr.Dataset], str]:
    """Records of an rdt run in batches of `batch` events (append along event), and a summary.

    `spec` is the run's source spec (`cryopipe.io.sources`): rdt, par, record_length,
    sample_frequency, channels (names, one per detector channel of the file, ascending), polarity,
    adc_bits, adc_range. Memory is bounded by one batch.
    """
    rdt = open_rdt(spec["rdt"], spec["par"], adc_bits=spec.get("adc_bits", 16),
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
        attrs = provenance("records", params, [str(i) for i in inputs], sample_frequency=fs, record_length=n_rec,
                           live_time=duration, stream_duration=duration, threshold=[float("nan")] * len(names),
                           source="rdt", rdt_channels=[int(c) for c in rdt.channels],
                           start_time=float(rdt.par.start_time))
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
        from ..errors import InputError

        raise InputError(f"{spec['rdt']}: {rdt.n_channels} channels in the file ({rdt.channels}) but "
                         f"{len(names)} channel names in the config")
    batches = (to_dataset(ev) for ev in rdt.iter_events(batch))
    kinds, counts = np.unique(rdt.record_kind, return_counts=True)
    summary = (f"{rdt.n_events} events of {rdt.n_channels} channels read from {spec['rdt']} "
               f"({', '.join(f'{c} {k}' for k, c in zip(kinds, counts))}; {rdt.n_incomplete} incomplete skipped)")
    return next(batches), batches, summary
