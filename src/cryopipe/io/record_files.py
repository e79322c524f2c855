"""Files of records for prediction (`cryopipe predict FILE`): the kind of a file (records store, Cait
HDF5, .npz, NIST LJH) from its first bytes, its records in blocks (float32, V), and the trigger sample
it declares."""
from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from ..errors import InputError
from .cait import read_cait_events
from .ljh import read_ljh
from .stores import open_store, read_values


def records_input_kind(path: str | Path) -> str:
    """'records' (a Zarr records store), 'cait' (HDF5), 'npz', 'npy' (one array of records, read
    memory-mapped) or 'ljh' (NIST LJH, by its first header line), from the file itself; InputError
    otherwise."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file or store")
    if path.is_dir():
        if (path / "zarr.json").is_file():
            return "records"
        raise InputError(f"{path}: a directory but not a Zarr store (no zarr.json)")
    with open(path, "rb") as f:
        head = f.read(16)
    if head.startswith(b"#LJH"):
        return "ljh"
    if head[:8] == b"\x89HDF\r\n\x1a\n":
        return "cait"
    if head[:4] == b"PK\x03\x04":
        return "npz"
    if head[:6] == b"\x93NUMPY":
        return "npy"
    if not head:
        raise InputError(f"{path}: the file is empty (0 bytes)")
    expected = _EXPECTED_START.get(path.suffix.lower())
    found = f"it begins with {head[:8]!r}"
    if expected is not None:
        raise InputError(f"{path}: not a valid {expected[0]} file: {found}, not {expected[1]}")
    raise InputError(f"{path}: unknown input ({found}); need a records store, a Cait HDF5 file, an LJH file, "
                     f"an .npz with 'records' or an .npy array of records")


#: suffix -> (format, how its files begin): named in the error for a file whose content does not match
_EXPECTED_START = {".ljh": ("LJH", "'#LJH Memorial File Format'"), ".h5": ("HDF5", "the HDF5 signature"),
                   ".hdf5": ("HDF5", "the HDF5 signature"), ".npz": (".npz", "a zip archive ('PK')"),
                   ".npy": (".npy", "the numpy signature ('\\x93NUMPY')")}


def iter_record_blocks(path: str | Path, *, events_per_block: int = 8192):
    """The records of `path` in blocks along the event axis: yields (event slice, (..., n, N) float32 block).

    Returns the leading shape of the whole input first: the generator's first item is
    ``(None, leading_shape)`` (``(channels, events)`` or ``(events,)``), then the blocks.
    An LJH file gives its records in volts (counts * 20 V / 2**16, times -1 where the header says
    ``Inverted: Yes``), read block by block from its memory map; its trigger sample is
    `input_pretrigger`.
    """
    path = Path(path)
    kind = records_input_kind(path)
    if kind == "ljh":
        f = read_ljh(path)
        sign = -1.0 if f.polarity == -1 else 1.0
        yield None, (f.n_records,)
        for a in range(0, f.n_records, events_per_block):
            sl = slice(a, min(a + events_per_block, f.n_records))
            yield sl, f.volts(start=sl.start, stop=sl.stop) * np.float32(sign)
        return
    if kind == "records":
        trace = open_store(path, "records")["trace"]
        yield None, tuple(trace.shape[:2])
        for a in range(0, trace.shape[1], events_per_block):
            sl = slice(a, min(a + events_per_block, trace.shape[1]))
            yield sl, np.asarray(read_values(trace[:, sl], path, kind="records"), dtype=np.float32)
        return
    if kind == "cait":
        x = read_cait_events(path)
    else:
        x = npy_records(path) if kind == "npy" else npz_records(path)
        if (x.ndim not in (2, 3) or x.shape[-1] < 1 or not np.issubdtype(x.dtype, np.number)
                or np.issubdtype(x.dtype, np.complexfloating)):
            name = "the array" if kind == "npy" else "'records'"
            raise InputError(f"{path}: {name} must be numeric (events, samples) or (channels, events, samples), "
                             f"got shape {x.shape} dtype {x.dtype}")
    yield None, tuple(x.shape[:-1])
    for a in range(0, x.shape[-2], events_per_block):
        sl = slice(a, min(a + events_per_block, x.shape[-2]))
        yield sl, np.asarray(x[..., sl, :], dtype=np.float32)


def npy_records(path: Path) -> np.ndarray:
    """The array of an .npy file, memory-mapped (read block by block); InputError for anything unreadable."""
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as exc:
        if "pickle" in str(exc) or "object" in str(exc):
            raise InputError(f"{path}: an object (pickled) array; need a numeric array of records") from None
        if "mmap length" in str(exc):
            raise InputError(f"{path}: truncated .npy (the file is shorter than its header says)") from None
        raise InputError(f"{path}: cannot read the .npy array ({exc})") from None
    except (OSError, EOFError) as exc:
        raise InputError(f"{path}: corrupt or truncated .npy ({type(exc).__name__}: {exc})") from None


def npz_records(path: Path) -> np.ndarray:
    """The 'records' array of an .npz file; InputError for anything unreadable (never a raw error)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            if "records" not in z:
                raise InputError(f"{path}: .npz has no array 'records' (has {sorted(z.files)})")
            return np.asarray(z["records"])
    except InputError:
        raise
    except ValueError as exc:
        if "pickle" in str(exc):
            raise InputError(f"{path}: 'records' is an object (pickled) array; need a numeric array") from None
        raise InputError(f"{path}: cannot read 'records' ({exc})") from None
    except (OSError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        raise InputError(f"{path}: corrupt or truncated .npz ({type(exc).__name__}: {exc})") from None


def input_pretrigger(path: str | Path) -> int | None:
    """The trigger sample an input declares: a records store's ``pretrigger`` attr, an LJH file's
    trigger sample (`LjhFile.pretrigger`) or an .npz's integer scalar ``pretrigger``; None (N//4) for
    inputs that declare none."""
    path = Path(path)
    kind = records_input_kind(path)
    if kind == "records":
        value = open_store(path, "records").attrs.get("pretrigger")
        return None if value is None or int(value) < 0 else int(value)
    if kind == "ljh":
        return int(read_ljh(path).pretrigger)
    if kind == "npz":
        return npz_pretrigger(path)
    return None


def input_sample_frequency(path: str | Path) -> float | None:
    """The sample frequency (Hz) an input declares: a records store's ``sample_frequency`` attr, an
    LJH file's 1 / Timebase or an .npz's positive scalar ``sample_frequency``; None for inputs that
    declare none (Cait HDF5, .npy, an .npz without it)."""
    path = Path(path)
    kind = records_input_kind(path)
    if kind == "records":
        value = open_store(path, "records").attrs.get("sample_frequency")
        return None if value is None else float(value)
    if kind == "ljh":
        return float(read_ljh(path).sample_frequency)
    if kind == "npz":
        with np.load(path, allow_pickle=False) as z:
            if "sample_frequency" not in z:
                return None
            value = np.asarray(z["sample_frequency"])
        if value.ndim != 0 or value.dtype.kind not in "iuf" or not float(value) > 0:
            raise InputError(f"{path}: 'sample_frequency' must be a positive number (Hz), got shape {value.shape} "
                             f"dtype {value.dtype}")
        return float(value)
    return None


def npz_pretrigger(path: Path) -> int | None:
    """The .npz's ``pretrigger`` (an integer scalar, samples), None where it has none; InputError for
    anything else."""
    try:
        with np.load(path, allow_pickle=False) as z:
            if "pretrigger" not in z:
                return None
            value = np.asarray(z["pretrigger"])
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        raise InputError(f"{path}: cannot read 'pretrigger' ({type(exc).__name__}: {exc})") from None
    if value.ndim != 0 or not np.issubdtype(value.dtype, np.integer) or int(value) < 0:
        raise InputError(f"{path}: 'pretrigger' must be a non-negative integer scalar (the trigger's sample index), "
                         f"got shape {value.shape} dtype {value.dtype}")
    return int(value)
