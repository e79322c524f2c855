"""Cost of checking every chunk read against the store's manifest (CRC-32), next to a features job.

Usage: python bench/bench_verified_reads.py [--events 4096] [--samples 16384] [--channels 2] [--repeat 3]

Writes a records store of `--channels` x `--events` records of `--samples` samples (ADC-quantised
white noise of 10 LSB rms, one Proebst pulse in half of them: compresses like real records) to a
temporary directory, then prints, best of `--repeat`:
- the CRC-32 of every chunk file of the store (the work the check adds, bytes as read from disk);
- reading all traces with `open_store` as it is (checked) and with its chunk check switched off
  (`verified_zarr_store` replaced by the plain path; everything else the same);
- a gather-like job: the store read (checked) and written again (`write_store`), the least work a
  stage does with what it reads;
- the features job on the store (`features_dataset` with the default families, characterized),
  the way the features rule reads it (through `open_store`);
and the added cost as a percentage of the read and of the features job (target: below 5 %).
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
import zlib
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import xarray as xr

from cryopipe.features.context import ChannelContext  # noqa: F401
from cryopipe.features.dataset import features_dataset  # noqa: F401
from cryopipe.io import stores
from cryopipe.io.stores import MANIFEST, open_store, provenance, write_store
from cryopipe.signal.pulses import proebst_pulse

FS = 25_000.0
LSB = 20.0 / 2**16  # V


def records(n_channels: int, n_events: int, n: int, seed: int = 0) -> tuple[xr.Dataset, xr.Dataset]:
    rng = np.random.default_rng(seed)
    t = (np.arange(n) - n // 4) / FS
    shape = proebst_pulse(t, 0.0, 1.0, 0.5, 10e-3, 0.5e-3, 50e-3)
    shape /= shape.max()
    trace = np.empty((n_channels, n_events, n), np.float32)
    for c in range(n_channels):
        adc = rng.normal(0, 10, (n_events, n))
        adc[::2] += rng.uniform(20, 2000, (len(adc[::2]), 1)) * shape
        trace[c] = (np.round(adc) * LSB).astype(np.float32)
    k = np.arange(n_events)
    ds = xr.Dataset(
        {"trace": (("channel", "event", "sample"), trace),
         "trigger_sample": ("event", k * 2 * n), "trigger_time": ("event", k * 2 * n / FS),
         "timestamp": ("event", k * 2 * n / FS), "tpa": ("event", np.zeros(n_events)),
         "record_kind": ("event", np.array(["particle"] * n_events)),
         "trigger_channel": ("event", np.zeros(n_events, int)),
         "trigger_amplitude": (("channel", "event"), np.zeros((n_channels, n_events))),
         "time": ("sample", t)},
        coords={"channel": [f"ch{c}" for c in range(n_channels)], "event": k},
        attrs=provenance("records", parameters={}, inputs=[], sample_frequency=FS, record_length=n, live_time=1.0,
                         stream_duration=1.0, threshold=0.0))
    nps = np.full(n // 2 + 1, 2 * (10 * LSB) ** 2 / FS)
    char = xr.Dataset({"sev": (("channel", "sample"), np.tile(shape.astype(np.float32), (n_channels, 1))),
                       "nps": (("channel", "frequency"), np.tile(nps, (n_channels, 1)))},
                      coords={"channel": ds.channel.values}, attrs={"sample_frequency": FS})
    return ds, char


def best(f, repeat: int) -> float:
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        f()
        out.append(time.perf_counter() - t0)
    return min(out)


@contextmanager
def unchecked_reads():
    """open_store without the per-chunk check (the store's path instead of the verifying store)."""
    original = stores.verified_zarr_store
    stores.verified_zarr_store = lambda path, manifests, kind="store": path
    try:
        yield
    finally:
        stores.verified_zarr_store = original


def crc_all(path: Path) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            if name != MANIFEST and name != "zarr.json":
                data = Path(root, name).read_bytes()
                total += len(data)
                zlib.crc32(data)
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=4096)
    ap.add_argument("--samples", type=int, default=16384)
    ap.add_argument("--channels", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    ds, char = records(a.channels, a.events, a.samples)
    with tempfile.TemporaryDirectory() as tmp:
        path = write_store(ds, Path(tmp) / "records.zarr", "records")
        del ds
        n_rec = a.channels * a.events
        crc_all(path)  # page cache warm
        nbytes = crc_all(path)
        t_crc = best(lambda: crc_all(path), a.repeat)
        t_checked = best(lambda: open_store(path, "records").trace.values, a.repeat)
        with unchecked_reads():
            t_plain = best(lambda: open_store(path, "records").trace.values, a.repeat)
        t_copy = best(lambda: write_store(open_store(path, "records").load(), Path(tmp) / "copy.zarr", "records"),
                      a.repeat)
        t_job = best(lambda: features_dataset(open_store(path, "records"), characterization=char), max(1, a.repeat - 1))
    print(f"store: {a.channels} x {a.events} records of {a.samples} samples, {nbytes / 2**20:.0f} MiB compressed "
          f"({n_rec * a.samples * 4 / 2**20:.0f} MiB as float32)")
    print(f"CRC-32 of every chunk (the added work): {t_crc:.3f} s ({nbytes / t_crc / 2**30:.2f} GiB/s)")
    print(f"read all traces with open_store, checked: {t_checked:.3f} s; check off: {t_plain:.3f} s "
          f"(difference {100 * (t_checked - t_plain) / t_plain:+.1f} %, noisy on a shared machine)")
    print(f"features job (features_dataset, all default families): {t_job:.2f} s ({n_rec / t_job:.0f} records/s)")
    print(f"gather-like job (open_store, load, write_store): {t_copy:.2f} s")
    extra = max(t_checked - t_plain, t_crc)
    print(f"check cost (the larger of the CRC time and the measured difference, {extra:.3f} s): "
          f"{100 * extra / t_plain:.1f} % of the bare read, {100 * extra / t_copy:.1f} % of the gather-like job, "
          f"{100 * extra / t_job:.2f} % of the features job (target < 5 % of a job)")


if __name__ == "__main__":
    main()
