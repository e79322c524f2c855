"""Property-based tests (Hypothesis) of the readers and the predict input: random shapes, dtypes,
NaN/inf, truncation and corruption. Each call either works or raises cryopipe's own error
(CryopipeError), never anything else; a result never holds a number for a record with NaN/inf."""
import io
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, assume, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402

from cryopipe.errors import CryopipeError  # noqa: E402
from cryopipe.io.stores import STORES, load_store, open_store, verify_store, write_store  # noqa: E402
from cryopipe.validity import describe_invalid, finite_records  # noqa: E402

SETTINGS = settings(max_examples=40, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

NUMERIC = st.sampled_from([np.float16, np.float32, np.float64, np.int8, np.int16, np.int32, np.uint8, np.bool_,
                           np.complex64])
SPECIAL = st.sampled_from([np.nan, np.inf, -np.inf, 0.0, 1e30, -1e30, 3e38, 1e-40])


@st.composite
def record_arrays(draw, max_dims=3, max_n=700):
    """Arrays of records (..., N): random shape, dtype and some special values (NaN, inf, huge)."""
    ndim = draw(st.integers(1, max_dims))
    shape = tuple(draw(st.lists(st.integers(0, 4), min_size=ndim - 1, max_size=ndim - 1))) + (
        draw(st.integers(0, max_n)),)
    dtype = draw(NUMERIC)
    x = np.asarray(draw(hnp.arrays(np.float64, shape, elements=st.floats(-1.0, 1.0, width=32))))
    if x.size and dtype in (np.float16, np.float32, np.float64, np.complex64):
        for _ in range(draw(st.integers(0, 3))):
            x.flat[draw(st.integers(0, x.size - 1))] = draw(SPECIAL)
    with np.errstate(all="ignore"):
        if np.issubdtype(dtype, np.integer):
            return (x * 100).astype(dtype)
        return x.astype(dtype)


@pytest.fixture(scope="module")
def model():
    from cryopipe.cleaning.universal import resolve_model

    return resolve_model("universal")[0]


@SETTINGS
@given(x=record_arrays())
def test_predict_scores_works_or_raises_cryopipe_error(model, x):
    from cryopipe.cleaning.predict import predict_scores

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)   # overflow in scaling 1e38-sized records
            scores = predict_scores(model, x, batch=7)
    except CryopipeError:
        return
    assert scores.shape == x.shape[:-1]
    finite = finite_records(x)
    assert np.isnan(scores[~finite]).all()                    # never a number for NaN/inf records
    ok = scores[~np.isnan(scores)]
    assert ((ok >= 0) & (ok <= 1)).all()
    moderate = finite & (np.abs(x.astype(np.float64)).max(axis=-1, initial=0) < 1e30)
    if x.dtype.kind in "fc" and x.shape[-1] >= 2:
        assert np.isfinite(scores[moderate]).all()


@SETTINGS
@given(x=record_arrays(max_dims=4, max_n=300), how=st.sampled_from(["ok", "truncate", "object", "other_name",
                                                                    "strings"]),
       cut=st.floats(0.0, 1.0))
def test_predict_file_on_random_npz(model, x, how, cut):
    from cryopipe.cleaning.universal import predict_file

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "r.npz"
        if how == "object":
            np.savez(path, records=np.array([x, "a"], dtype=object))
        elif how == "other_name":
            np.savez(path, traces=x)
        elif how == "strings":
            np.savez(path, records=x.astype(str))
        else:
            np.savez(path, records=x)
        if how == "truncate":
            data = path.read_bytes()
            path.write_bytes(data[: int(len(data) * cut)])
        try:
            out = predict_file(path, model, batch=5, events_per_block=3)
        except CryopipeError:
            return
        assert out["score"].shape == x.shape[:-1] == out["valid"].shape
        assert not np.isfinite(out["score"][~out["valid"]]).any()
        assert np.isnan(out["score"][~finite_records(x)]).all()


@SETTINGS
@given(data=st.binary(min_size=0, max_size=5000), record_length=st.integers(-2, 600),
       fs=st.sampled_from([25000.0, 0.0, -1.0, float("nan"), float("inf")]))
def test_open_csmpl_on_random_bytes(data, record_length, fs):
    from cryopipe.io.csmpl import open_csmpl

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "a.csmpl"
        path.write_bytes(data)
        try:
            s = open_csmpl([path], fs, record_length)
        except CryopipeError:
            return
        v = s.read(0, s.n_samples)
        assert v.shape == (1, len(data) // 2) and np.isfinite(v).all()


@SETTINGS
@given(shape=st.lists(st.integers(0, 5), min_size=0, max_size=4),
       dtype=st.sampled_from(["f4", "f8", "i2", "u1", "S4", "c8", "?"]),
       special=st.booleans(), group=st.sampled_from(["events", "other"]), truncate=st.floats(0.3, 1.0))
def test_read_cait_events_on_random_files(shape, dtype, special, group, truncate):
    h5py = pytest.importorskip("h5py")
    from cryopipe.io.cait import read_cait_events

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "c.h5"
        arr = np.zeros(shape, dtype=dtype)
        if special and arr.size and arr.dtype.kind == "f":
            arr.flat[0] = np.nan
        with h5py.File(path, "w") as f:
            f.create_dataset(f"{group}/event", data=arr)
        if truncate < 1.0:
            data = path.read_bytes()
            path.write_bytes(data[: int(len(data) * truncate)])
        try:
            x = read_cait_events(path)
        except CryopipeError:
            return
        assert x.ndim == 3 and x.dtype == np.float32


def _store_kinds():
    return st.sampled_from(sorted(STORES))


@st.composite
def damage(draw):
    """(file selector in [0, 1), operation, position in [0, 1), byte)."""
    return (draw(st.floats(0.0, 0.999)), draw(st.sampled_from(["delete", "truncate", "flip", "append", "empty"])),
            draw(st.floats(0.0, 0.999)), draw(st.integers(0, 255)))


@SETTINGS
@given(kind=_store_kinds(), dmg=damage())
def test_store_readers_on_damaged_stores(kind, dmg):
    """open/load/verify of a store with one random file damaged: the result is either the intact data
    (the damage missed anything read), or a StoreError; --verify finds every damaged chunk."""
    from test_integrity import synthetic

    which, op, pos, byte = dmg
    with tempfile.TemporaryDirectory() as tmp:
        path = write_store(synthetic(kind), Path(tmp) / "s.zarr", kind, event_chunk=4)
        reference = load_store(path, kind)
        files = sorted(p for p in path.rglob("*") if p.is_file())
        target = files[int(which * len(files))]
        data = target.read_bytes()
        i = int(pos * len(data)) if data else 0
        if op == "delete":
            target.unlink()
        elif op == "truncate":
            target.write_bytes(data[:i])
        elif op == "flip" and data:
            target.write_bytes(data[:i] + bytes([(data[i] + 1 + byte % 255) % 256]) + data[i + 1:])
        elif op == "append":
            target.write_bytes(data + bytes([byte]))
        else:
            target.write_bytes(b"")
        changed = not target.exists() or target.read_bytes() != data
        problems = verify_store(path)                          # never raises
        assert all(isinstance(p, str) for p in problems)
        is_chunk = "/c/" in target.relative_to(path).as_posix() or target.parent.name == "c"
        if changed and (is_chunk or target.name == "zarr.json" and target.parent != path):
            assert problems, f"{op} of {target.relative_to(path)} not found by verify"
        try:
            ds = load_store(path, kind)
        except CryopipeError:
            return
        # read without error: then the data are the intact ones (metadata may differ harmlessly)
        for name in reference.data_vars:
            np.testing.assert_array_equal(ds[name].values, reference[name].values)


@SETTINGS
@given(x=record_arrays(max_dims=3, max_n=20))
def test_finite_records_and_description_never_fail(x):
    valid = finite_records(x)
    assert valid.shape == x.shape[:-1]
    text = describe_invalid(valid)
    assert (text == "") == bool(valid.all())
