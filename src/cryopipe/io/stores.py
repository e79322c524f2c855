"""THE schema of every cryopipe store, and atomic, validated Zarr read/write.

Every intermediate is an xarray Dataset in a Zarr v3 store (``consolidated=False``), chunked
along ``event`` with whole ``channel`` and ``sample`` axes per chunk. A store is written to a
temporary sibling path and renamed at the end, so an interrupted job never leaves a store that
looks complete. Attributes are deterministic (no time stamps): equal inputs give equal stores.

Schemas (``STORES``): name -> variables {name: (dims, dtype kind)} and required attrs.
dtype kinds: 'f' float, 'i' integer, 'b' bool, 'U' string.
"""
from __future__ import annotations

import json
import os
import shutil
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import xarray as xr

from .. import __version__
from ..errors import StoreError

EVENT_CHUNK = 1024
SCHEMA_VERSION = 1
BASE_ATTRS = ("cryopipe_version", "store_kind", "schema_version", "parameters", "inputs")


@dataclass(frozen=True)
class StoreSchema:
    """Layout of one store kind: variables (dims, dtype kind), required attrs, optional variables."""

    kind: str
    variables: dict
    attrs: tuple = ()
    optional: dict = field(default_factory=dict)

    def describe(self) -> str:
        lines = [f"{self.kind}:"]
        for name, (dims, dt) in {**self.variables, **self.optional}.items():
            opt = " (optional)" if name in self.optional else ""
            lines.append(f"  {name}{opt}: ({', '.join(dims)}) {dt}")
        lines.append(f"  attrs: {', '.join(BASE_ATTRS + self.attrs)}")
        return "\n".join(lines)


RECORD_KINDS = ("particle", "noise")

STORES = {
    # trigger list of one channel of a run (trigger stage, scattered per channel)
    "triggers": StoreSchema(
        "triggers",
        {"trigger_sample": (("trigger",), "i"),                      # stream index of the filtered maximum
         "trigger_amplitude": (("trigger",), "f")},                  # filter output there (V, polarity-corrected)
        ("sample_frequency", "n_samples", "channel", "threshold", "noise_sigma", "holdoff"),
    ),
    # triggered records of one run (trigger stage)
    "records": StoreSchema(
        "records",
        {
            "trace": (("channel", "event", "sample"), "f"),          # V
            "trigger_sample": (("event",), "i"),                     # stream index of the sample at N/4
            "trigger_time": (("event",), "f"),                       # s since stream start
            "record_kind": (("event",), "U"),                        # 'particle' or 'noise'
            "trigger_channel": (("event",), "i"),                    # channel that fired (-1: noise)
            "trigger_amplitude": (("channel", "event"), "f"),        # filter output at trigger (V)
            "time": (("sample",), "f"),                              # s relative to trigger
        },
        ("sample_frequency", "record_length", "live_time", "stream_duration", "threshold"),
    ),
    # per-event features (features stage)
    "features": StoreSchema(
        "features",
        {"pulse_height": (("channel", "event"), "f"), "onset": (("channel", "event"), "f"),
         "rise_time": (("channel", "event"), "f"), "decay_time": (("channel", "event"), "f")},
        ("sample_frequency", "record_length", "units"),
    ),
    # simulation truth of a stream (simulate stage)
    "truth": StoreSchema(
        "truth",
        {"onset_sample": (("pulse",), "i"), "amplitude": (("channel", "pulse"), "f"),
         "pulse_class": (("pulse",), "U")},
        ("sample_frequency", "n_samples"),
    ),
    # detector characterisation (characterize stage)
    "characterization": StoreSchema(
        "characterization",
        {"sev": (("channel", "sample"), "f"), "nps": (("channel", "frequency"), "f"),
         "filter_real": (("channel", "frequency"), "f"), "filter_imag": (("channel", "frequency"), "f"),
         "resolution": (("channel",), "f"), "threshold": (("channel",), "f")},
        ("sample_frequency", "record_length"),
    ),
    # energy calibration per channel (calibrate stage)
    "calibration": StoreSchema(
        "calibration",
        {"kev_per_volt": (("channel",), "f"), "line_position": (("channel",), "f"),
         "resolution_kev": (("channel",), "f")},
        ("line_energy",),
    ),
    # trigger and cut efficiency against injected amplitude (efficiency stage)
    "efficiency": StoreSchema(
        "efficiency",
        {"amplitude": (("channel", "point"), "f"), "n_injected": (("channel", "point"), "i"),
         "trigger_efficiency": (("channel", "point"), "f"), "efficiency": (("channel", "point"), "f"),
         "threshold": (("channel",), "f"),
         "trigger_x50": (("channel",), "f"), "total_x50": (("channel",), "f")},
        ("units",),
    ),
    # labelled simulated records (simulate-records stage)
    "simset": StoreSchema(
        "simset",
        {"trace": (("channel", "event", "sample"), "f"), "event_class": (("event",), "U"),
         "label": (("channel", "event"), "b")},
        ("sample_frequency", "record_length"),
    ),
    # cut labels of a run (labels stage)
    "labels": StoreSchema("labels", {"accepted": (("channel", "event"), "b"),            # passes every cut
                                     "cut_flags": (("cut", "channel", "event"), "b")}),  # passes this cut

    # network predictions of a run (predict stage)
    "predictions": StoreSchema(
        "predictions",
        {"score": (("channel", "event"), "f"), "decision": (("channel", "event"), "b"),
         "event_clean": (("event",), "b")},
        ("model", "cutoff"),
    ),
}


def provenance(kind: str, parameters: dict | None = None, inputs: list | None = None, **attrs) -> dict:
    """Deterministic attrs for a store: version, kind, parameters (JSON), input names, extras."""
    out = {
        "cryopipe_version": __version__,
        "store_kind": kind,
        "schema_version": SCHEMA_VERSION,
        "parameters": json.dumps(parameters or {}, sort_keys=True, default=_jsonable),
        "inputs": [str(i) for i in (inputs or [])],
    }
    out.update(attrs)
    return out


def _jsonable(x):
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    return str(x)


def _dtype_ok(arr: xr.DataArray, kind: str) -> bool:
    k = arr.dtype.kind
    if kind == "U":
        return k in "UOT"
    if kind == "f":
        return k == "f"
    if kind == "i":
        return k in "iu"
    return k == kind


def validate(ds: xr.Dataset, kind: str, where: str = "dataset") -> xr.Dataset:
    """Check `ds` against the schema of `kind`; raise StoreError naming `where` and the problem."""
    if kind not in STORES:
        raise StoreError(f"{where}: unknown store kind {kind!r}")
    schema = STORES[kind]
    problems = []
    for name, (dims, dt) in schema.variables.items():
        if name not in ds.variables:
            problems.append(f"missing variable {name!r}")
            continue
        problems += _check_var(ds[name], name, dims, dt)
    for name, (dims, dt) in schema.optional.items():
        if name in ds.variables:
            problems += _check_var(ds[name], name, dims, dt)
    for a in BASE_ATTRS + schema.attrs:
        if a not in ds.attrs:
            problems.append(f"missing attribute {a!r}")
    if ds.attrs.get("store_kind", kind) != kind:
        problems.append(f"is a {ds.attrs['store_kind']!r} store, expected {kind!r}")
    if problems:
        raise StoreError(f"{where}: not a valid {kind} store: " + "; ".join(problems))
    return ds


def _check_var(arr, name, dims, dt):
    out = []
    if tuple(arr.dims) != tuple(dims):
        out.append(f"{name!r} has dims {tuple(arr.dims)}, expected {tuple(dims)}")
    if not _dtype_ok(arr, dt):
        out.append(f"{name!r} has dtype {arr.dtype}, expected kind {dt!r}")
    return out


def _temporary_path(path: Path) -> Path:
    """A fresh temporary sibling of `path`; leftovers of killed writers (other pids) are removed."""
    for stale in path.parent.glob(f".{path.name}.tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def _encoding(ds: xr.Dataset, event_chunk: int) -> dict:
    enc = {}
    for name, var in ds.variables.items():
        if var.dtype.kind == "O" or var.dtype.kind == "U" or var.dtype.kind == "T":
            continue
        chunks = tuple(min(event_chunk, s) if d == "event" else s for d, s in zip(var.dims, var.shape))
        if chunks and all(c > 0 for c in chunks):
            enc[name] = {"chunks": chunks}
    return enc


def _as_object_strings(ds: xr.Dataset) -> xr.Dataset:
    """Fixed-width unicode has no Zarr v3 spec; store strings as variable-length."""
    for name, var in list(ds.variables.items()):
        if var.dtype.kind in "UT":
            ds[name] = var.copy(data=np.asarray(var.values, dtype=object))
    return ds


def write_store(ds: xr.Dataset, path: str | Path, kind: str, event_chunk: int = EVENT_CHUNK) -> Path:
    """Validate and write `ds` as a Zarr store at `path`, atomically (temp path, then rename)."""
    return write_store_batches(ds, (), path, kind, event_chunk)


def write_store_batches(first: xr.Dataset, more, path: str | Path, kind: str,
                        event_chunk: int = EVENT_CHUNK) -> Path:
    """Write a store too large for memory: `first` (a valid Dataset), then append each Dataset of
    the iterable `more` along ``event``; atomic like write_store (nothing appears until complete).

    Batches should hold multiples of `event_chunk` events (except the last) so chunks stay aligned.
    """
    path = Path(path)
    validate(first, kind, str(path))
    tmp = _temporary_path(path)
    try:
        first = _as_object_strings(first.copy())
        for v in first.variables.values():
            v.encoding = {}
        first.to_zarr(tmp, mode="w", consolidated=False, encoding=_encoding(first, event_chunk))
        for batch in more:
            batch = _as_object_strings(batch.drop_vars([n for n, v in batch.variables.items()
                                                        if "event" not in v.dims]))
            for v in batch.variables.values():
                v.encoding = {}
            batch.attrs = dict(first.attrs)
            batch.to_zarr(tmp, append_dim="event", consolidated=False)
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def open_store(path: str | Path, kind: str) -> xr.Dataset:
    """Open a store lazily and validate it against its schema; StoreError on any problem."""
    path = Path(path)
    if not path.exists():
        raise StoreError(f"{path}: no such {kind} store")
    if not (path / "zarr.json").is_file():
        raise StoreError(f"{path}: not a Zarr store (no zarr.json); an interrupted write? rerun the job")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*not recognized as a component of a Zarr hierarchy.*")
        try:
            ds = xr.open_zarr(path, consolidated=False)
        except Exception as exc:  # zarr raises many types for corrupt metadata
            raise StoreError(f"{path}: cannot read {kind} store ({type(exc).__name__}: {exc})") from None
    return validate(_fixed_width_strings(ds), kind, str(path))


def _fixed_width_strings(ds: xr.Dataset) -> xr.Dataset:
    """Zarr v3 strings come back as numpy's StringDType, which many numpy/xarray calls (astype(str),
    comparisons with fixed-width arrays) do not accept: turn them into plain fixed-width unicode."""
    for name, var in list(ds.variables.items()):
        if var.dtype.kind in "TO":
            values = np.array([str(v) for v in np.ravel(var.values)]).reshape(var.shape)
            if name in ds.coords:
                ds = ds.assign_coords({name: (var.dims, values, var.attrs)})
            else:
                ds[name] = (var.dims, values, var.attrs)
    return ds


def load_store(path: str | Path, kind: str) -> xr.Dataset:
    """Open, validate and load a (small) store into memory; StoreError if chunks are corrupt."""
    ds = open_store(path, kind)
    try:
        return ds.load()
    except Exception as exc:
        raise StoreError(f"{path}: corrupt or truncated {kind} store ({type(exc).__name__}: {exc})") from None


def parameters(ds: xr.Dataset) -> dict:
    """The parameters that made a store (decoded from its attrs)."""
    return json.loads(ds.attrs.get("parameters", "{}"))


def concat_channels(parts: list[xr.Dataset], inputs: list | None = None) -> xr.Dataset:
    """Join per-channel stores of one run along ``channel`` (per-event variables taken from the first)."""
    if not parts:
        raise StoreError("no per-channel stores to gather")
    per_channel = [p[[n for n, v in p.data_vars.items() if "channel" in v.dims]] for p in parts]
    ds = xr.concat(per_channel, dim="channel", combine_attrs="override")
    for name, var in parts[0].data_vars.items():
        if "channel" not in var.dims:
            ds[name] = var
    ds.attrs = dict(parts[0].attrs)
    if inputs is not None:
        ds.attrs["inputs"] = [str(i) for i in inputs]
    return ds
