"""Store schemas, atomic writes, validation on read, and clear errors for broken stores."""
import json
import warnings

import numpy as np
import pytest
import xarray as xr

from cryopipe.errors import StoreError
from cryopipe.io import stores
from cryopipe.io.stores import (STORES, concat_channels, load_store, open_store, provenance, validate,
                                write_store, write_store_batches)


def records(n_events=5, n_samples=64, channels=("phonon", "light")):
    rng = np.random.default_rng(0)
    return xr.Dataset(
        {
            "trace": (("channel", "event", "sample"), rng.normal(size=(len(channels), n_events, n_samples)).astype("f4")),
            "trigger_sample": ("event", np.arange(n_events, dtype=np.int64) * 1000),
            "trigger_time": ("event", np.arange(n_events) * 0.04),
            "timestamp": ("event", 1.6e9 + np.arange(n_events) * 0.04),
            "tpa": ("event", np.array([0.0] * (n_events - 1) + [-1.0], "f4")),
            "record_kind": ("event", np.array(["particle"] * (n_events - 1) + ["noise"])),
            "trigger_channel": ("event", np.array([0] * (n_events - 1) + [-1])),
            "trigger_amplitude": (("channel", "event"), np.ones((len(channels), n_events), "f4")),
            "time": ("sample", (np.arange(n_samples) - n_samples // 4) / 25000.0),
        },
        coords={"channel": list(channels), "event": np.arange(n_events)},
        attrs=provenance("records", parameters={"trigger": {"threshold_sigma": 5}}, inputs=["a.csmpl"],
                         sample_frequency=25000.0,
                         record_length=n_samples, live_time=1.0, stream_duration=2.0, threshold=[0.1, 0.2]),
    )


def test_every_schema_lists_dims_and_attrs():
    for kind, schema in STORES.items():
        text = schema.describe()
        assert kind in text and "attrs" in text
        for name, (dims, dt) in schema.variables.items():
            assert dt in "fibU" and all(isinstance(d, str) for d in dims)


def test_round_trip_keeps_values_strings_and_chunks_along_event(tmp_path):
    ds = records(n_events=3000)
    write_store(ds, tmp_path / "r.zarr", "records", event_chunk=1024)
    back = load_store(tmp_path / "r.zarr", "records")
    xr.testing.assert_equal(back.drop_encoding(), ds.drop_encoding() if hasattr(ds, "drop_encoding") else ds)
    stored = open_store(tmp_path / "r.zarr", "records")
    assert stored["trace"].encoding["chunks"] == (1, 1024, 64)          # traces: one channel per chunk
    assert stored["trigger_amplitude"].encoding["chunks"] == (2, 1024)  # others: every channel


def test_long_traces_are_chunked_per_channel_within_the_byte_budget():
    """16384-sample float32 records: 256 events (16 MiB) per chunk, a divisor of the event chunk,
    so batches of 1024 events stay aligned; a record larger than the budget gets one per chunk."""
    from cryopipe.io.stores import TRACE_CHUNK_BYTES, chunk_shape

    dims = ("channel", "event", "sample")
    assert chunk_shape(dims, (2, 5000, 16384), 4) == (1, 256, 16384)
    assert chunk_shape(dims, (2, 100, 16384), 4) == (1, 100, 16384)
    assert chunk_shape(dims, (3, 5000, 1000), 4, event_chunk=1000) == (1, 1000, 1000)
    assert chunk_shape(dims, (1, 5000, 10_000), 4, event_chunk=1000) == (1, 250, 10_000)   # 400 is no divisor
    assert chunk_shape(dims, (1, 9, TRACE_CHUNK_BYTES), 4) == (1, 1, TRACE_CHUNK_BYTES)
    assert chunk_shape(("channel", "event"), (2, 5000), 8) == (2, 1024)


def test_attrs_are_deterministic(tmp_path):
    write_store(records(), tmp_path / "a.zarr", "records")
    write_store(records(), tmp_path / "b.zarr", "records")
    a = json.loads((tmp_path / "a.zarr" / "zarr.json").read_text())["attributes"]
    b = json.loads((tmp_path / "b.zarr" / "zarr.json").read_text())["attributes"]
    assert a == b and a["cryopipe_version"] and a["store_kind"] == "records"


def test_missing_variable_and_wrong_dims_are_named():
    ds = records().drop_vars("trigger_time")
    ds["trigger_sample"] = ("sample", np.zeros(64, dtype=int))
    with pytest.raises(StoreError) as err:
        validate(ds, "records", where="x.zarr")
    msg = str(err.value)
    assert "x.zarr" in msg and "trigger_time" in msg and "trigger_sample" in msg


def test_wrong_kind_is_rejected(tmp_path):
    write_store(records(), tmp_path / "r.zarr", "records")
    with pytest.raises(StoreError, match="not a valid features store"):
        open_store(tmp_path / "r.zarr", "features")


def test_interrupted_write_leaves_nothing_that_looks_complete(tmp_path, monkeypatch):
    target = tmp_path / "r.zarr"

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(stores.os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        write_store(records(), target, "records")
    assert not target.exists() and list(tmp_path.iterdir()) == []


def test_missing_truncated_and_corrupt_stores_are_reported(tmp_path):
    with pytest.raises(StoreError, match="no such"):
        open_store(tmp_path / "nope.zarr", "records")
    (tmp_path / "half.zarr").mkdir()
    with pytest.raises(StoreError, match="interrupted"):
        open_store(tmp_path / "half.zarr", "records")
    write_store(records(), tmp_path / "c.zarr", "records")
    (tmp_path / "c.zarr" / "zarr.json").write_text("{not json")
    with pytest.raises(StoreError, match="cannot read"):
        open_store(tmp_path / "c.zarr", "records")
    write_store(records(), tmp_path / "d.zarr", "records")
    chunk = next(p for p in (tmp_path / "d.zarr" / "trace").rglob("*") if p.is_file() and p.name != "zarr.json")
    chunk.write_bytes(b"garbage")
    with pytest.raises(StoreError, match="corrupt"):
        load_store(tmp_path / "d.zarr", "records")


def test_snakemake_timestamp_inside_store_does_not_disturb_readers(tmp_path):
    import os
    import shutil

    path = write_store(records(), tmp_path / "r.zarr", "records")
    ts = path / ".snakemake_timestamp"
    assert ts.is_dir()                                   # written with the store, as an empty Zarr group
    os.utime(ts, (5, 5), follow_symlinks=False)          # Snakemake's touch of a directory output
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = load_store(path, "records")
        xr.open_zarr(path, consolidated=False).load()    # plain xarray: no warning either
    assert ds.sizes["event"] == 5
    shutil.rmtree(ts)                                    # a store of an older cryopipe: a plain file
    ts.write_text("")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_store(path, "records").sizes["event"] == 5


def test_batched_write_equals_single_write(tmp_path):
    full = records(n_events=2500)
    parts = [full.isel(event=slice(i, i + 1024)) for i in range(0, 2500, 1024)]
    write_store_batches(parts[0], parts[1:], tmp_path / "b.zarr", "records")
    xr.testing.assert_identical(load_store(tmp_path / "b.zarr", "records").drop_encoding(), full)


def test_concat_channels_joins_per_channel_parts():
    full = records()
    parts = [full.isel(channel=[i]) for i in range(2)]
    joined = concat_channels(parts, inputs=["p0", "p1"])
    np.testing.assert_array_equal(joined["trace"].values, full["trace"].values)
    assert list(joined.channel.values) == ["phonon", "light"] and joined.attrs["inputs"] == ["p0", "p1"]


KILLED_WRITER = """
import sys, time
import numpy as np
sys.path.insert(0, {tests!r})
from test_io_stores import records
from cryopipe.io.stores import write_store_batches

def slow():
    for i in range(1, 100):
        time.sleep(0.2)
        part = records(n_events=1024 * (i + 1)).isel(event=slice(1024 * i, 1024 * (i + 1)))
        print("batch", i, flush=True)
        yield part

write_store_batches(records(n_events=1024), slow(), {target!r}, "records")
"""


def test_killed_writer_leaves_no_store_and_a_rerun_completes(tmp_path):
    """A job killed (SIGKILL) mid-write leaves nothing that looks complete; the next write cleans up."""
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    target = tmp_path / "records.zarr"
    code = KILLED_WRITER.format(tests=str(Path(__file__).parent), target=str(target))
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    for line in proc.stdout:
        if line.startswith("batch 3"):
            os.kill(proc.pid, signal.SIGKILL)
            break
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert not target.exists()
    with pytest.raises(StoreError, match="no such"):
        open_store(target, "records")
    assert list(tmp_path.glob(".records.zarr.tmp-*"))  # the killed writer's partial output
    write_store(records(), target, "records")          # the rerun
    assert load_store(target, "records").sizes["event"] == 5
    assert not list(tmp_path.glob(".records.zarr.tmp-*"))
