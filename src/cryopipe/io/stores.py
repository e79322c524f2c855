"""THE schema of every cryopipe store, and atomic, validated Zarr read/write.

Every intermediate is an xarray Dataset in a Zarr v3 store (``consolidated=False``), chunked
along ``event`` (EVENT_CHUNK events) with whole ``channel`` axes per chunk; traces (variables with
a ``sample`` axis) are chunked per channel, with as many events (a divisor of EVENT_CHUNK) as fit
TRACE_CHUNK_BYTES, so a per-channel job decodes only its own channel and memory stays bounded.
Chunks are Zstd-compressed (level 1) with a content checksum. A store is written to a
temporary sibling path and renamed at the end, so an interrupted job never leaves a store that
looks complete. Attributes are deterministic (no time stamps): equal inputs give equal stores.

Schemas (``STORES``): name -> variables {name: (dims, dtype kind)} and required attrs.
dtype kinds: 'f' float, 'i' integer, 'b' bool, 'U' string.
"""
from __future__ import annotations

import json
from contextlib import contextmanager
import os
import shutil
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import xarray as xr

from .. import __version__
from ..errors import StoreError

EVENT_CHUNK = 1024
TRACE_CHUNK_BYTES = 16 * 2**20   # uncompressed bytes per trace chunk (256 records of 16384 float32)
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


RECORD_KINDS = ("particle", "noise", "saturated", "testpulse", "controlpulse")

STORES = {
    # trigger list of one channel of a run (trigger stage, scattered per channel)
    "triggers": StoreSchema(
        "triggers",
        {"trigger_sample": (("trigger",), "i"),                      # stream index of the filtered maximum
         "trigger_amplitude": (("trigger",), "f")},                  # filter output there (V, polarity-corrected)
        ("sample_frequency", "n_samples", "channel", "threshold", "noise_sigma", "holdoff"),
        # excursions above threshold not taken as triggers (side lobes, within a hold-off, small
        # pulses beside large ones): no noise record may hold one
        optional={"rejected_sample": (("rejected",), "i")},
    ),
    # triggered records of one run (trigger stage)
    "records": StoreSchema(
        "records",
        {
            "trace": (("channel", "event", "sample"), "f"),          # V
            "trigger_sample": (("event",), "i"),                     # stream index of the sample at N/4
            "trigger_time": (("event",), "f"),                       # s since stream start
            "timestamp": (("event",), "f"),                          # s since the Unix epoch (float64;
                                                                     #   s since stream start if unknown)
            "tpa": (("event",), "f"),                                # test-pulse amplitude: 0 particle,
                                                                     #   -1 noise, > 0 test/control pulse
            "record_kind": (("event",), "U"),                        # one of RECORD_KINDS
            "trigger_channel": (("event",), "i"),                    # channel that fired (-1: none)
            "trigger_amplitude": (("channel", "event"), "f"),        # filter output at trigger (V)
            "time": (("sample",), "f"),                              # s relative to trigger
        },                                       # attr pretrigger: trigger sample (default N // 4)
        ("sample_frequency", "record_length", "live_time", "stream_duration", "threshold"),
    ),
    # per-event features (features stage)
    "features": StoreSchema(
        "features",
        {"pulse_height": (("channel", "event"), "f"), "onset": (("channel", "event"), "f"),
         "rise_time": (("channel", "event"), "f"), "decay_time": (("channel", "event"), "f")},
        ("sample_frequency", "record_length", "units"),
        optional={"valid": (("channel", "event"), "b")},   # False: NaN/inf samples, features NaN
    ),
    # simulation truth of a stream (simulate stage)
    "truth": StoreSchema(
        "truth",
        {"onset_sample": (("pulse",), "i"), "amplitude": (("channel", "pulse"), "f"),
         "pulse_class": (("pulse",), "U")},
        ("sample_frequency", "n_samples"),
    ),
    # detector characterization (characterize stage)
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
                                     "cut_flags": (("cut", "channel", "event"), "b")},   # passes this cut
                          optional={"stable": (("channel", "event"), "b")}),  # test-pulse stability (in accepted)
    # test-pulse response, stability cut and pulser-model calibration (testpulse stage; runs with
    # test pulses). event: all records; pulse: the test and control pulse records (pulse_event);
    # tpa_point: the calibration TPAs (NaN-padded per channel). amplitude: OF amplitude with the
    # test-pulse template (every record); tpa_equivalent: V of the pulser (pulser model); stable:
    # the event lies between two stable clean pulses; per pulse the response (= amplitude), its
    # band centre and sigma, pulse_clean (chi2 and pre-trigger drift bands), pulse_stable,
    # interval_stable (interval to the next clean pulse, clean pulses only); per channel kev_per_tpa,
    # line_position (V of the pulser, NaN without calibrate.line_energy), resolution (V of the
    # pulser, noise records).
    "testpulse": StoreSchema(
        "testpulse",
        {"amplitude": (("channel", "event"), "f"), "tpa_equivalent": (("channel", "event"), "f"),
         "stable": (("channel", "event"), "b"), "timestamp": (("event",), "f"), "tpa": (("event",), "f"),
         "record_kind": (("event",), "U"), "pulse_event": (("pulse",), "i"),
         "response": (("channel", "pulse"), "f"), "band_centre": (("channel", "pulse"), "f"),
         "band_sigma": (("channel", "pulse"), "f"), "pulse_clean": (("channel", "pulse"), "b"),
         "pulse_stable": (("channel", "pulse"), "b"), "interval_stable": (("channel", "pulse"), "b"),
         "calibration_tpa": (("channel", "tpa_point"), "f"), "template": (("channel", "sample"), "f"),
         "kev_per_tpa": (("channel",), "f"), "line_position": (("channel",), "f"),
         "resolution": (("channel",), "f")},
        ("sample_frequency", "record_length", "units"),
        optional={"energy": (("channel", "event"), "f")},   # keV, with calibrate.line_energy
    ),

    # network predictions of a run (predict stage); attrs also n_invalid, invalid_records, warnings and
    # line_pickup (the line pickup removed per channel before the network, cleaning.predict.describe_lines)
    "predictions": StoreSchema(
        "predictions",
        {"score": (("channel", "event"), "f"), "decision": (("channel", "event"), "b"),
         "event_clean": (("event",), "b")},
        ("model", "cutoff"),
        optional={"valid": (("channel", "event"), "b"),    # False: NaN/inf samples, score NaN (not scored)
                  "probability": (("channel", "event"), "f"),   # temperature-calibrated P(clean) (issue 15)
                  "ood_score": (("channel", "event"), "f"),     # energy; higher = less like the training data
                  "feature_distance": (("channel", "event"), "f"),  # Mahalanobis distance of the embedding (issue 19)
                  "ood": (("channel", "event"), "b"),           # energy or feature distance above its threshold
                  "unsure": (("channel", "event"), "b")},       # calibrated P(clean) in calibration.UNSURE_BAND
    ),
}


def record_pretrigger(ds) -> int:
    """Sample index of the trigger in each record of a records (or records-like) Dataset: its attr
    ``pretrigger`` (LJH files: the header's Presamples), else cryopipe's convention N // 4."""
    n = int(ds.attrs.get("record_length") or ds.sizes["sample"])
    value = ds.attrs.get("pretrigger")
    return int(value) if value is not None else n // 4


def provenance(kind: str, *, parameters: dict | None = None, inputs: list | None = None, **attrs) -> dict:
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


def validate(ds: xr.Dataset, kind: str, *, where: str = "dataset") -> xr.Dataset:
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
    for dim in ("channel", "event"):
        if dim in ds.coords and ds.coords[dim].ndim == 1:
            values, counts = np.unique(np.asarray(ds.coords[dim].values).astype(str), return_counts=True)
            if (counts > 1).any():
                problems.append(f"duplicate {dim} names {', '.join(repr(str(v)) for v in values[counts > 1][:5])}")
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


def _compressors() -> list:
    """Zstd with its content checksum: a damaged chunk fails to decode (StoreError) instead of
    reading as wrong numbers; xxhash64 costs little next to the decompression itself."""
    from zarr.codecs import ZstdCodec

    # level 1: ~1.6x faster to write and ~2x faster to read than level 3, for a 5 % larger store
    return [ZstdCodec(level=1, checksum=True)]


def trace_event_chunk(event_chunk: int, bytes_per_event: int) -> int:
    """Events per chunk of a trace variable: the largest divisor of `event_chunk` whose chunk
    holds at most TRACE_CHUNK_BYTES (at least 1), so batches of `event_chunk` stay aligned."""
    fits = max(TRACE_CHUNK_BYTES // max(int(bytes_per_event), 1), 1)
    return max(d for d in range(1, event_chunk + 1) if event_chunk % d == 0 and d <= fits)


def chunk_shape(dims: tuple, shape: tuple, itemsize: int, *, event_chunk: int = EVENT_CHUNK) -> tuple:
    """THE chunk layout of a stored variable (see the module docstring)."""
    sizes = dict(zip(dims, shape))
    per_event = itemsize * int(np.prod([s for d, s in sizes.items() if d not in ("event", "channel")]))
    trace = "sample" in sizes
    events = trace_event_chunk(event_chunk, per_event) if trace else event_chunk
    return tuple(1 if (trace and d == "channel") else min(events, s) if d == "event" else s
                 for d, s in zip(dims, shape))


def _encoding(ds: xr.Dataset, event_chunk: int) -> dict:
    enc = {}
    for name, var in ds.variables.items():
        enc[name] = {"compressors": _compressors()}
        if var.dtype.kind == "O" or var.dtype.kind == "U" or var.dtype.kind == "T":
            continue
        chunks = chunk_shape(var.dims, var.shape, var.dtype.itemsize, event_chunk=event_chunk)
        if chunks and all(c > 0 for c in chunks):
            enc[name]["chunks"] = chunks
    return enc


def _as_object_strings(ds: xr.Dataset) -> xr.Dataset:
    """Fixed-width unicode has no Zarr v3 spec; store strings as variable-length."""
    for name, var in list(ds.variables.items()):
        if var.dtype.kind in "UT":
            ds[name] = var.copy(data=np.asarray(var.values, dtype=object))
    return ds


@contextmanager
def atomic_directory(path: str | Path):
    """Yield a temporary sibling of the directory `path` to write into; on success it replaces
    `path` (rename), on any error it is removed, so a killed or failed writer never leaves a
    directory that looks complete."""
    path = Path(path)
    tmp = _temporary_path(path)
    try:
        yield tmp
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_store(ds: xr.Dataset, path: str | Path, kind: str, *, event_chunk: int = EVENT_CHUNK) -> Path:
    """Validate and write `ds` as a Zarr store at `path`, atomically (temp path, then rename)."""
    return write_store_batches(ds, (), path, kind, event_chunk=event_chunk)


def write_store_batches(first: xr.Dataset, more, path: str | Path, kind: str,
                        *, event_chunk: int = EVENT_CHUNK) -> Path:
    """Write a store too large for memory: `first` (a valid Dataset), then append each Dataset of
    the iterable `more` along ``event``; atomic like write_store (nothing appears until complete).

    Batches should hold multiples of `event_chunk` events (except the last) so chunks stay aligned.
    """
    path = Path(path)
    validate(first, kind, where=str(path))
    with atomic_directory(path) as tmp:
        first = _as_object_strings(first.copy())
        for v in first.variables.values():
            v.encoding = {}
        first.attrs[MANIFEST_ATTR] = sorted(str(n) for n in first.variables)
        first.to_zarr(tmp, mode="w", consolidated=False, encoding=_encoding(first, event_chunk))
        for batch in prefetched(more):
            batch = _as_object_strings(batch.drop_vars([n for n, v in batch.variables.items()
                                                        if "event" not in v.dims]))
            for v in batch.variables.values():
                v.encoding = {}
            batch.attrs = dict(first.attrs)
            batch.to_zarr(tmp, append_dim="event", consolidated=False)
        write_manifests(tmp, first.attrs[MANIFEST_ATTR])
        mark_for_snakemake(tmp)
    return path


#: the file Snakemake touches inside every directory() output as its mtime carrier
SNAKEMAKE_TIMESTAMP = ".snakemake_timestamp"


def mark_for_snakemake(path: str | Path) -> None:
    """Give the store at `path` a ``.snakemake_timestamp`` that Zarr reads as an empty group.

    Snakemake touches ``<directory output>/.snakemake_timestamp`` after every job, creating a plain
    file if there is none; Zarr 3 warns about any file in a group that is not a node of the hierarchy
    ("Object at .snakemake_timestamp is not recognized ..."), so every ``xr.open_zarr`` of a store made
    by the workflow warned. Snakemake only needs the path to exist and takes its mtime (it sets it
    with utime, which works on a directory), so the store carries it as an empty Zarr group.
    """
    d = Path(path) / SNAKEMAKE_TIMESTAMP
    if d.is_file():
        d.unlink()
    d.mkdir(exist_ok=True)
    (d / "zarr.json").write_text('{"zarr_format":3,"node_type":"group","attributes":{}}')


def prefetched(items):
    """Iterate over `items`, computing the next one in a background thread while the caller
    works on the current one (a batch is read and cut while the previous one is compressed and
    written: both release the GIL). At most two items are in memory."""
    from concurrent.futures import ThreadPoolExecutor

    it = iter(items)
    done = object()
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(next, it, done)
        while True:
            item = pending.result()
            if item is done:
                return
            pending = pool.submit(next, it, done)
            yield item


def open_store(path: str | Path, kind: str) -> xr.Dataset:
    """Open a store lazily and validate it against its schema; StoreError on any problem."""
    path = Path(path)
    if not path.exists():
        raise StoreError(f"{path}: no such {kind} store")
    if not (path / "zarr.json").is_file():
        raise StoreError(f"{path}: not a Zarr store (no zarr.json); an interrupted write? rerun the job")
    manifests = check_complete(path, kind=kind)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*not recognized as a component of a Zarr hierarchy.*")
        try:
            ds = xr.open_zarr(verified_zarr_store(path, manifests, kind=kind) if manifests else path,
                              consolidated=False)
        except Exception as exc:  # zarr raises many types for corrupt metadata
            raise StoreError(f"{path}: cannot read {kind} store: corrupt metadata or chunk ({type(exc).__name__}: "
                             f"{exc}); `cryopipe inspect --verify {path}` names it; {_RERUN}") from None
    ds.attrs.pop(MANIFEST_ATTR, None)  # bookkeeping of this file, not of the data (see check_complete)
    ds.encoding["source"] = str(path)  # messages name the path, not the verifying store object
    return validate(_fixed_width_strings(ds), kind, where=str(path))


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
    except StoreError:
        raise
    except Exception as exc:
        raise StoreError(f"{path}: corrupt or truncated {kind} store ({type(exc).__name__}: {exc}); "
                         f"`cryopipe inspect --verify {path}` names the chunk; {_RERUN}") from None


def read_values(arr: xr.DataArray, path: str | Path, *, kind: str = "store") -> np.ndarray:
    """``arr.values`` of a lazily opened store variable; StoreError naming the store and variable if a
    chunk cannot be decoded (corrupt or overwritten chunk)."""
    try:
        return arr.values
    except StoreError:
        raise
    except Exception as exc:  # zarr/numcodecs raise many types (RuntimeError from Zstd, ValueError, ...)
        raise StoreError(f"{path}: corrupt chunk in variable {arr.name!r} of the {kind} store "
                         f"({type(exc).__name__}: {exc}); {_RERUN}") from None


def parameters(ds: xr.Dataset) -> dict:
    """The parameters that made a store (decoded from its attrs)."""
    return json.loads(ds.attrs.get("parameters", "{}"))


def concat_channels(parts: list[xr.Dataset], *, inputs: list | None = None) -> xr.Dataset:
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


def gather_channel_stores(parts: list, output, kind: str) -> xr.Dataset:
    """Read the per-channel stores `parts` (paths) of `kind`, join them along ``channel``
    (`concat_channels`), write the run's store `output`; returns it."""
    ds = concat_channels([load_store(p, kind) for p in parts], inputs=list(parts))
    write_store(ds, output, kind)
    return ds


# --- integrity: a manifest of every chunk, written with the store, checked on every read -------------
#
# Zarr reads a missing chunk as the fill value without a word, so a store records at write time
# what it must contain: each array's directory holds MANIFEST, a JSON file listing every chunk file
# written (key relative to the array, size in bytes, CRC-32 of its bytes) and the CRC-32 of the
# array's zarr.json; the root attribute MANIFEST_ATTR names the arrays that have one. Zarr does
# not look inside array directories for unknown files, so the manifests cause no warnings.
# `open_store` checks completeness (every listed chunk present with its size: a directory listing
# and a stat per chunk, no chunk is read); `verify_store` reads every chunk and checks its CRC.
# Zarr skips chunks that hold only the fill value, so the manifest lists the files actually written.

MANIFEST = ".cryopipe-chunks.json"
MANIFEST_ATTR = "chunk_manifests"
MANIFEST_FORMAT = 1
_RERUN = "rerun the job that writes it (delete the store, or snakemake --forcerun that rule)"


def _crc(data: bytes) -> int:
    return zlib.crc32(data) & 0xFFFFFFFF


def _chunk_files(array_dir: Path) -> dict[str, int]:
    """Chunk files of one array: key relative to the array directory ('c/0/1/0') -> size (bytes)."""
    out = {}
    base = os.fspath(array_dir)
    stack = [("c", os.path.join(base, "c"))]
    if not os.path.isdir(stack[0][1]):
        return out
    while stack:
        key, d = stack.pop()
        with os.scandir(d) as it:
            for e in it:
                if e.is_dir(follow_symlinks=False):
                    stack.append((f"{key}/{e.name}", e.path))
                elif e.is_file(follow_symlinks=False):
                    out[f"{key}/{e.name}"] = e.stat(follow_symlinks=False).st_size
    return out


def write_manifests(path: str | Path, arrays) -> None:
    """Write MANIFEST into each array directory of the store at `path` (after the last write)."""
    path = Path(path)
    for name in arrays:
        d = path / name
        chunks = {}
        for key in sorted(_chunk_files(d)):
            data = (d / key).read_bytes()
            chunks[key] = [len(data), _crc(data)]
        meta = (d / "zarr.json").read_bytes()
        doc = {"format": MANIFEST_FORMAT, "checksum": "crc32", "metadata": [len(meta), _crc(meta)],
               "chunks": chunks}
        (d / MANIFEST).write_text(json.dumps(doc, sort_keys=True, separators=(",", ":")))


def _root_attrs(path: Path, what: str) -> dict:
    try:
        meta = json.loads((path / "zarr.json").read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise StoreError(f"{path}: cannot read {what}: zarr.json is truncated or corrupt "
                         f"({type(exc).__name__}); {_RERUN}") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("attributes", {}), dict):
        raise StoreError(f"{path}: zarr.json is not Zarr group metadata; {_RERUN}")
    return meta.get("attributes", {})


def store_kind(path: str | Path) -> str | None:
    """The ``store_kind`` attribute of a store (None if absent); StoreError if zarr.json is unreadable."""
    path = Path(path)
    if not (path / "zarr.json").is_file():
        raise StoreError(f"{path}: not a Zarr store (no zarr.json)")
    return _root_attrs(path, "store").get("store_kind")


def _load_manifest(path: Path, name: str, kind: str) -> dict:
    d = path / name
    if not d.is_dir():
        raise StoreError(f"{path}: {kind} store is incomplete: variable {name!r} is missing; {_RERUN}")
    try:
        doc = json.loads((d / MANIFEST).read_text())
        chunks = doc["chunks"]
        if not isinstance(chunks, dict):
            raise ValueError("chunks")
    except FileNotFoundError:
        raise StoreError(f"{path}: {kind} store is incomplete: variable {name!r} has no chunk manifest "
                         f"({name}/{MANIFEST}); {_RERUN}") from None
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
        raise StoreError(f"{path}: chunk manifest of variable {name!r} is corrupt ({type(exc).__name__}); "
                         f"{_RERUN}") from None
    return doc


def _names(keys, n=3) -> str:
    keys = sorted(keys)
    return ", ".join(keys[:n]) + (f" and {len(keys) - n} more" if len(keys) > n else "")


def check_complete(path: str | Path, *, kind: str = "store") -> dict:
    """Cheap completeness check of a store against its chunk manifests (no chunk is read).

    Every chunk listed at write time must be present with its size; StoreError naming the store,
    the variable and the chunks otherwise. Stores written before manifests existed (no
    MANIFEST_ATTR) pass unchecked. Returns the manifests, variable name -> manifest ({} if none).
    """
    path = Path(path)
    arrays = _root_attrs(path, f"{kind} store").get(MANIFEST_ATTR)
    if arrays is None:
        return {}
    docs = {}
    for name in arrays:
        doc = docs[str(name)] = _load_manifest(path, str(name), kind)
        meta = path / str(name) / "zarr.json"
        if not meta.is_file():   # Zarr would skip the variable with a warning: a store without it
            raise StoreError(f"{path}: {kind} store is damaged: variable {name!r} has no metadata "
                             f"({name}/zarr.json); {_RERUN}")
        if "metadata" in doc and meta.stat().st_size != int(doc["metadata"][0]):
            raise StoreError(f"{path}: {kind} store is damaged: metadata {name}/zarr.json has "
                             f"{meta.stat().st_size} bytes, {int(doc['metadata'][0])} when written; {_RERUN}")
        present = _chunk_files(path / str(name))
        missing = [k for k in doc["chunks"] if k not in present]
        if missing:
            raise StoreError(f"{path}: {kind} store is incomplete: variable {name!r} lacks "
                             f"{len(missing)} of {len(doc['chunks'])} chunk(s) ({_names(missing)}); {_RERUN}")
        resized = [k for k, (size, _) in doc["chunks"].items() if present[k] != size]
        if resized:
            k = sorted(resized)[0]
            raise StoreError(f"{path}: {kind} store is damaged: chunk {name}/{k} has {present[k]} bytes, "
                             f"{doc['chunks'][k][0]} when written ({len(resized)} chunk(s) of {name!r} "
                             f"changed size); {_RERUN}")
    return docs


def verified_zarr_store(path: str | Path, manifests: dict, *, kind: str = "store"):
    """A read-only Zarr store of the directory `path` that checks every chunk and array metadata it
    reads against the store's manifests (CRC-32 of the bytes as written): a chunk swapped in from
    elsewhere, even a valid one of the same size, raises StoreError naming the store and the chunk.

    The check costs one CRC-32 of the compressed bytes read (a few GB/s), a few per cent of the
    decompression (`bench/bench_verified_reads.py` measures it).
    """
    from zarr.storage import LocalStore, WrapperStore

    path = Path(path)
    expected = {}
    for name, doc in manifests.items():
        for key, (size, crc) in doc["chunks"].items():
            expected[f"{name}/{key}"] = (int(size), int(crc))
        if "metadata" in doc:
            expected[f"{name}/zarr.json"] = tuple(int(x) for x in doc["metadata"])
    prefixes = tuple(f"{name}/c/" for name in manifests)

    class VerifiedStore(WrapperStore):
        def _with_store(self, store):
            return type(self)(store)

        async def get(self, key, prototype=None, byte_range=None):
            buf = await self._store.get(key, prototype, byte_range)
            if buf is None or byte_range is not None:
                return buf
            want = expected.get(key)
            if want is None:
                if key.startswith(prefixes):
                    raise StoreError(f"{path}: chunk {key} was not written with the {kind} store (unexpected "
                                     f"file: copied in from elsewhere?); {_RERUN}")
                return buf
            data = buf.as_numpy_array()
            if (data.nbytes, zlib.crc32(data) & 0xFFFFFFFF) != want:
                what = "metadata" if key.endswith("zarr.json") else "chunk"
                raise StoreError(f"{path}: {what} {key} is corrupt or swapped in from elsewhere (checksum differs "
                                 f"from the {kind} store's manifest); {_RERUN}")
            return buf

    return VerifiedStore(LocalStore(path, read_only=True))


def verify_store(path: str | Path) -> list[str]:
    """Read every chunk of a store and check it against its manifest; returns the problems found
    (one line each, naming the variable and chunk; empty if the store is intact)."""
    path = Path(path)
    if not (path / "zarr.json").is_file():
        return [f"{path}: not a Zarr store (no zarr.json)"]
    try:
        attrs = _root_attrs(path, "store")
    except StoreError as exc:
        return [str(exc)]
    arrays = attrs.get(MANIFEST_ATTR)
    if arrays is None:
        return [f"{path}: store has no chunk manifests (written by an older cryopipe); cannot verify"]
    problems = []
    for name in arrays:
        name = str(name)
        try:
            doc = _load_manifest(path, name, attrs.get("store_kind", "store"))
        except StoreError as exc:
            problems.append(str(exc))
            continue
        d = path / name
        try:
            meta = (d / "zarr.json").read_bytes()
            if [len(meta), _crc(meta)] != list(doc.get("metadata", [len(meta), _crc(meta)])):
                problems.append(f"{path}: metadata {name}/zarr.json changed since it was written (checksum)")
        except OSError:
            problems.append(f"{path}: metadata {name}/zarr.json is missing")
        present = _chunk_files(d)
        for key, (size, crc) in sorted(doc["chunks"].items()):
            if key not in present:
                problems.append(f"{path}: chunk {name}/{key} is missing")
                continue
            data = (d / key).read_bytes()
            if len(data) != size:
                problems.append(f"{path}: chunk {name}/{key} is truncated or altered ({len(data)} bytes, "
                                f"{size} when written)")
            elif _crc(data) != crc:
                problems.append(f"{path}: chunk {name}/{key} is corrupt (checksum differs from when written)")
        for key in sorted(set(present) - set(doc["chunks"])):
            problems.append(f"{path}: chunk {name}/{key} was not written with the store (unexpected file)")
    return problems
