"""Store integrity: every store records its chunks (size + CRC-32) when written; `open_store` finds a
missing or resized chunk cheaply, `verify_store` / `cryopipe inspect --verify` find any damaged
chunk, and rewriting the store (what a rerun does) repairs it. Covers every store kind in STORES."""
import json
import os

import numpy as np
import pytest
import xarray as xr

from cryopipe.cli import main
from cryopipe.errors import StoreError
from cryopipe.io import stores
from cryopipe.io.stores import (MANIFEST, MANIFEST_ATTR, STORES, check_complete, load_store, open_store,
                                provenance, read_values, verify_store, write_store)

SIZES = {"event": 10, "channel": 2, "sample": 16}
CHUNK = 4   # events per chunk: 3 chunks along event


def _values(dims, kind, rng):
    shape = tuple(SIZES.get(d, 3) for d in dims)
    if kind == "f":
        return rng.normal(size=shape).astype("f4")
    if kind == "i":
        return rng.integers(1, 1000, size=shape)
    if kind == "b":
        return rng.random(shape) < 0.5
    return np.array([f"s{i}" for i in range(int(np.prod(shape)))]).reshape(shape)


def synthetic(kind: str, seed: int = 0) -> xr.Dataset:
    """A valid Dataset of store `kind`, made from its schema alone (so new kinds are covered too)."""
    rng = np.random.default_rng(seed)
    schema = STORES[kind]
    data = {name: (dims, _values(dims, dt, rng)) for name, (dims, dt) in schema.variables.items()}
    dims = {d for v in data.values() for d in v[0]}
    coords = {}
    if "channel" in dims:
        coords["channel"] = [f"ch{i}" for i in range(SIZES["channel"])]
    if "event" in dims:
        coords["event"] = np.arange(SIZES["event"])
    attrs = provenance(kind, parameters={"seed": seed}, inputs=["input"], **{a: 1.0 for a in schema.attrs})
    return xr.Dataset(data, coords=coords, attrs=attrs)


def _write(kind, path, seed=0):
    return write_store(synthetic(kind, seed), path, kind, event_chunk=CHUNK)


def _chunks(path):
    """(variable, chunk key) of every chunk written, from the manifests."""
    out = []
    for name in json.loads((path / "zarr.json").read_text())["attributes"][MANIFEST_ATTR]:
        doc = json.loads((path / name / MANIFEST).read_text())
        out += [(name, key) for key in doc["chunks"]]
    return out


def _target(path):
    """The chunk to damage: one of the largest variable, preferably along event."""
    chunks = _chunks(path)
    return max(chunks, key=lambda c: ((path / c[0] / c[1]).stat().st_size, c[1].count("/")))


def _damage(path, name, key, how):
    f = path / name / key
    data = f.read_bytes()
    if how == "deleted":
        f.unlink()
    elif how == "truncated":
        f.write_bytes(data[: len(data) // 2])
    else:  # overwritten with the same number of bytes
        f.write_bytes(bytes((b + 1) % 256 for b in data))


@pytest.mark.parametrize("kind", sorted(STORES))
def test_intact_store_verifies_and_round_trips(tmp_path, kind):
    path = _write(kind, tmp_path / f"{kind}.zarr")
    assert verify_store(path) == []
    ds = load_store(path, kind)
    assert MANIFEST_ATTR not in ds.attrs          # bookkeeping stays out of the data's attrs
    assert all((path / n / MANIFEST).is_file() for n in ds.variables)


@pytest.mark.parametrize("how", ["deleted", "truncated", "overwritten"])
@pytest.mark.parametrize("kind", sorted(STORES))
def test_damaged_chunk_is_found_and_a_rerun_repairs_it(tmp_path, kind, how, capsys):
    path = _write(kind, tmp_path / f"{kind}.zarr")
    name, key = _target(path)
    _damage(path, name, key, how)
    # --verify always names the damaged chunk, exit 1
    problems = verify_store(path)
    word = {"deleted": "missing", "truncated": "truncated", "overwritten": "corrupt"}[how]
    assert len(problems) == 1 and f"{name}/{key}" in problems[0] and word in problems[0]
    assert main(argv=["inspect", "--verify", str(path)]) == 1
    err = capsys.readouterr().err
    assert f"{name}/{key}" in err and "--verify" in err
    if how in ("deleted", "truncated"):   # the cheap check on every open catches these
        with pytest.raises(StoreError) as exc:
            open_store(path, kind)
        assert str(path) in str(exc.value) and name in str(exc.value)
        assert main(argv=["inspect", str(path)]) == 1
    else:                                 # same size: caught when the chunk is decoded, as StoreError
        with pytest.raises(StoreError, match="corrupt"):
            load_store(path, kind)
    # the rerun (the job writes the store again) repairs it
    _write(kind, path)
    assert verify_store(path) == []
    xr.testing.assert_identical(load_store(path, kind), load_store(_write(kind, tmp_path / "ref.zarr"), kind))


def test_missing_chunk_never_reads_as_fill_values(tmp_path):
    """The issue's worst case: a deleted trace chunk of a records store read as NaN traces."""
    path = _write("records", tmp_path / "records.zarr")
    os.remove(path / "trace" / "c" / "0" / "1" / "0")
    with pytest.raises(StoreError, match=r"incomplete: variable 'trace' lacks 1 of 6 chunk\(s\) \(c/0/1/0\)"):
        open_store(path, "records")
    assert main(argv=["inspect", str(path)]) == 1


def test_missing_variable_directory_and_manifest_are_reported(tmp_path):
    path = _write("records", tmp_path / "r.zarr")
    os.remove(path / "trigger_time" / MANIFEST)
    with pytest.raises(StoreError, match="'trigger_time' has no chunk manifest"):
        open_store(path, "records")
    path = _write("records", tmp_path / "r.zarr")
    (path / "trigger_sample" / MANIFEST).write_text("{broken")
    with pytest.raises(StoreError, match="manifest of variable 'trigger_sample' is corrupt"):
        check_complete(path, kind="records")


def test_unexpected_chunk_file_is_reported_by_verify(tmp_path):
    path = _write("records", tmp_path / "r.zarr")
    (path / "trace" / "c" / "0" / "9").mkdir(parents=True)
    (path / "trace" / "c" / "0" / "9" / "0").write_bytes(b"junk")
    assert any("unexpected" in p and "trace/c/0/9/0" in p for p in verify_store(path))


def test_changed_array_metadata_is_reported_by_verify(tmp_path):
    path = _write("records", tmp_path / "r.zarr")
    meta = path / "trace" / "zarr.json"
    meta.write_text(meta.read_text().replace('"little"', '"big"'))
    assert any("trace/zarr.json" in p for p in verify_store(path))


def test_store_without_manifests_still_opens_but_cannot_be_verified(tmp_path):
    """Stores written by an older cryopipe (no manifests) stay readable."""
    path = _write("records", tmp_path / "r.zarr")
    meta = json.loads((path / "zarr.json").read_text())
    del meta["attributes"][MANIFEST_ATTR]
    (path / "zarr.json").write_text(json.dumps(meta))
    open_store(path, "records")
    assert "cannot verify" in verify_store(path)[0]


def test_truncated_zarr_json_is_one_line(tmp_path, capsys):
    path = _write("records", tmp_path / "r.zarr")
    text = (path / "zarr.json").read_text()
    (path / "zarr.json").write_text(text[: len(text) // 2])
    assert main(argv=["inspect", str(path)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "zarr.json is truncated or corrupt" in err and str(path) in err
    with pytest.raises(StoreError, match="truncated or corrupt"):
        open_store(path, "records")


def test_read_values_turns_a_decode_error_into_a_store_error(tmp_path):
    path = _write("records", tmp_path / "r.zarr")
    _damage(path, "trace", "c/0/0/0", "overwritten")
    trace = open_store(path, "records")["trace"]
    with pytest.raises(StoreError, match="trace/c/0/0/0 is corrupt"):   # the manifest's CRC, before decoding
        read_values(trace[:, :CHUNK], path, kind="records")
    meta = json.loads((path / "zarr.json").read_text())                  # a store without manifests:
    del meta["attributes"][MANIFEST_ATTR]                                # the decoder's error, as StoreError
    (path / "zarr.json").write_text(json.dumps(meta))
    trace = open_store(path, "records")["trace"]
    with pytest.raises(StoreError, match="corrupt chunk in variable 'trace'"):
        read_values(trace[:, :CHUNK], path, kind="records")


def test_inspect_verify_reports_an_intact_store(tmp_path, capsys):
    path = _write("features", tmp_path / "f.zarr")
    assert main(argv=["inspect", "--verify", str(path)]) == 0
    assert "every chunk verified" in capsys.readouterr().out


def test_batched_write_has_a_complete_manifest(tmp_path):
    full = synthetic("records")
    parts = [full.isel(event=slice(i, i + CHUNK)) for i in range(0, SIZES["event"], CHUNK)]
    path = stores.write_store_batches(parts[0], parts[1:], tmp_path / "b.zarr", "records", event_chunk=CHUNK)
    assert verify_store(path) == []
    assert sum(1 for n, k in _chunks(path) if n == "trace") == 3 * SIZES["channel"]   # 3 event chunks, one per channel


def _incompressible_records(seed=0):
    """A records store whose trace chunks all have the same size (random bytes do not compress)."""
    ds = synthetic("records", seed)
    raw = np.random.default_rng(seed).integers(0, 2**23, ds.trace.shape, dtype=np.int32) | (64 << 23)
    return ds.assign(trace=(ds.trace.dims, raw.view(np.float32)))


def test_swapped_chunk_of_the_same_size_fails_every_read(tmp_path, capsys):
    """A valid chunk of the same size swapped in from another place passes the completeness check and
    decodes; the reads check it against the manifest's CRC and fail with one line naming the chunk."""
    path = write_store(_incompressible_records(), tmp_path / "records.zarr", "records", event_chunk=CHUNK)
    a, b = path / "trace" / "c" / "0" / "0" / "0", path / "trace" / "c" / "1" / "0" / "0"
    assert a.stat().st_size == b.stat().st_size and a.read_bytes() != b.read_bytes()
    da, db = a.read_bytes(), b.read_bytes()
    a.write_bytes(db)
    b.write_bytes(da)
    check_complete(path, kind="records")                       # sizes agree: the cheap check cannot see it
    with pytest.raises(StoreError) as exc:
        load_store(path, "records")
    msg = str(exc.value)
    assert "\n" not in msg and str(path) in msg and "trace/c/" in msg and "swapped" in msg
    ds = open_store(path, "records")
    with pytest.raises(StoreError, match=r"trace/c/1/0/0 is corrupt or swapped"):
        read_values(ds.trace.isel(channel=1, event=slice(0, CHUNK)), path, kind="records")
    # a read of the intact chunks still works, and equals what was written
    np.testing.assert_array_equal(read_values(ds.trace.isel(event=slice(CHUNK, None)), path),
                                  _incompressible_records().trace.values[:, CHUNK:])


def test_store_opens_without_a_warning_after_snakemake_touched_it(tmp_path):
    """Snakemake touches <output>/.snakemake_timestamp; plain xr.open_zarr must not warn about it."""
    import warnings

    path = _write("features", tmp_path / "features.zarr")
    ts = path / ".snakemake_timestamp"
    os.utime(ts, (1, 1), follow_symlinks=False)                       # what Snakemake's touch does
    assert os.stat(ts).st_mtime == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        xr.open_zarr(path, consolidated=False).load()
    assert verify_store(path) == []


@pytest.mark.parametrize("how", ["deleted", "appended"])
def test_missing_or_resized_array_metadata_never_drops_the_variable(tmp_path, how):
    """Without its zarr.json Zarr skips a variable (with a warning that open_store hides): the store
    must fail to open instead of reading without it (found by test_io_properties)."""
    path = _write("calibration", tmp_path / "c.zarr")
    name = sorted(json.loads((path / "zarr.json").read_text())["attributes"][MANIFEST_ATTR])[0]
    meta = path / name / "zarr.json"
    if how == "deleted":
        meta.unlink()
    else:
        meta.write_text(meta.read_text() + " ")
    with pytest.raises(StoreError, match=rf"{name}/zarr.json"):
        open_store(path, "calibration")
