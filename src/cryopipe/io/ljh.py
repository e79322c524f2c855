"""NIST LJH files (DASTARD, MATTER): a text header, then fixed-size binary records of uint16 samples.

Layout (``doc/LJHfiles.md`` of the public usnistgov/mass repository; our own reader):

* a text header of ``Key: value`` lines (LF, CR or CRLF), ending with the line ``#End of Header``;
  the keys used here: ``Save File Format Version``, ``Timebase`` (s per sample), ``Total Samples``
  (record length), ``Presamples`` (trigger position, samples), ``Timestamp offset (s)``,
  ``Number of rows`` / ``Row number`` (TDM row of this channel), ``Digitized Word Size in Bytes``
  (must be 2) and, where present, ``Inverted`` (MATTER: "Yes" means negative-going pulses);
* version 2.2 records: int64 row counter (rows read out since the server started; the frame
  counter is ``row_count // Number of rows``), int64 POSIX microseconds, then the samples;
* version 2.1 records: uint8 "4 microsecond tick" (microseconds past the millisecond counter / 4),
  one unused byte, uint32 millisecond counter, then the samples. The time is
  ``Timestamp offset (s) + ms * 1e-3 + tick * 4e-6`` s; the frame counter is derived from it as
  ``ceil(t_ticks * 4 us / Timebase)`` (exact while a frame lasts at least 4 us), the row counter as
  ``frame * Number of rows + Row number``.

cryopipe takes both per-record counters (row counter and time stamp) to mark the record's trigger
sample, Presamples after its first sample (DASTARD's trigger frame; the format note does not say):
a stream's start time is the first stamp minus Presamples / fs. The back-to-back test (frame
counter advancing by exactly one record length) holds either way.

All integers are little endian; samples are uint16 counts on a large offset, pulses positive-going
unless the header says ``Inverted: Yes``. Volts = counts * adc_range / 2**adc_bits (the same
conversion as every cryopipe source; defaults 20 V / 2**16), times the polarity.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from ..errors import InputError
from .base import TestPulses, whole_records_hint
from .csmpl import volts_per_adc

END_OF_HEADER = b"#End of Header"
MAX_HEADER_BYTES = 1 << 20
VERSIONS = ("2.1", "2.2")
RECORD_HEADER_BYTES = {"2.1": 6, "2.2": 16}
REQUIRED_KEYS = ("Save File Format Version", "Timebase", "Total Samples", "Presamples")


def record_dtype(version: str, n_samples: int) -> np.dtype:
    """numpy dtype of one binary record of an LJH file of `version` ("2.1" or "2.2")."""
    if version == "2.2":
        return np.dtype([("row_count", "<i8"), ("posix_usec", "<i8"), ("samples", "<u2", (n_samples,))])
    if version == "2.1":
        return np.dtype([("tick_4us", "u1"), ("unused", "u1"), ("ms", "<u4"), ("samples", "<u2", (n_samples,))])
    raise ValueError(f"unknown LJH version {version!r}")


@dataclass
class LjhFile:
    """One LJH file (one channel), memory-mapped.

    Attributes
    ----------
    path : the file
    version : "2.1" or "2.2" (major.minor of ``Save File Format Version``)
    version_string : the header's version as written (e.g. "2.2.1")
    header : the text header, key -> value (str; of repeated keys the first)
    sample_frequency : Hz (1 / Timebase, to 12 significant digits)
    n_samples : samples per record (Total Samples)
    pretrigger : samples before the trigger (Presamples)
    records : uint16 counts, (n_records, n_samples), a read-only memory map
    timestamps : s since the Unix epoch of each record, float64
    row_count : row counter of each record, int64 (2.2: as stored; 2.1: derived, see module doc)
    frame_count : frame counter of each record, int64 (row_count // number_of_rows)
    number_of_rows, row_number : TDM rows of the readout and this channel's row
    polarity : +1, or -1 where the header says ``Inverted: Yes``; None when the header is silent
    header_bytes : offset of the first record (bytes)
    """

    path: Path
    version: str
    version_string: str
    header: dict
    sample_frequency: float
    n_samples: int
    pretrigger: int
    records: np.ndarray
    timestamps: np.ndarray
    row_count: np.ndarray
    frame_count: np.ndarray
    number_of_rows: int
    row_number: int
    polarity: int | None
    header_bytes: int
    _raw: np.ndarray = field(repr=False, default=None)

    @property
    def n_records(self) -> int:
        return int(self.records.shape[0])

    @property
    def timebase(self) -> float:
        """s per sample."""
        return 1.0 / self.sample_frequency

    def volts(self, *, start: int = 0, stop: int | None = None, scale: float = volts_per_adc()) -> np.ndarray:
        """Records [start, stop) as float32 volts (counts * scale), (n, n_samples); no polarity."""
        out = np.empty((len(range(self.n_records)[start:stop]), self.n_samples), np.float32)
        np.multiply(self.records[start:stop], np.float32(scale), out=out, casting="unsafe")
        return out

    def record_gaps(self) -> np.ndarray:
        """Frames between the ends of consecutive records (0: back to back), int64 (n_records - 1,)."""
        return np.diff(self.frame_count) - self.n_samples


def _header_end(head: bytes, path: Path) -> int:
    i = head.find(END_OF_HEADER)
    if i < 0:
        raise InputError(f"{path}: not an LJH file (no '#End of Header' line in the first "
                         f"{min(len(head), MAX_HEADER_BYTES)} bytes)")
    j = i + len(END_OF_HEADER)
    rest = head[j:j + 2]
    return j + (2 if rest.startswith(b"\r\n") else 1 if rest[:1] in (b"\n", b"\r") else 0)


def parse_header(text: str) -> dict:
    """``Key: value`` lines of an LJH text header as a dict (first of repeated keys wins)."""
    header: dict = {}
    for line in re.split(r"\r\n|\r|\n", text):
        if not line or line.startswith("#") or ":" not in line:
            continue
        key, _, value = line.partition(":")
        header.setdefault(key.strip(), value.strip())
    return header


def _get(header: dict, key: str):
    """Value of a header key, matched case-insensitively (DASTARD writes 'In Bytes', MATTER 'in Bytes')."""
    if key in header:
        return header[key]
    low = key.lower()
    for k, v in header.items():
        if k.lower() == low:
            return v
    return None


def _number(header: dict, key: str, kind, path: Path, default=None):
    value = _get(header, key)
    if value is None:
        if default is not None:
            return default
        raise InputError(f"{path}: LJH header has no '{key}' line")
    try:
        return kind(float(value)) if kind is int else kind(value)
    except ValueError:
        raise InputError(f"{path}: LJH header '{key}: {value}' is not a number") from None


def read_ljh(path: str | Path) -> LjhFile:
    """Open an LJH 2.1 or 2.2 file: parse its header, memory-map its records, decode the record headers.

    Raises `InputError` (one line naming the file) for a missing file, a missing header key, an
    unknown version, a word size other than 2 bytes, a header that disagrees with the file size
    and a truncated last record.
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: LJH file not found")
    with open(p, "rb") as f:
        head = f.read(MAX_HEADER_BYTES)
    start = _header_end(head, p)
    header = parse_header(head[:start].decode("latin-1"))
    for key in REQUIRED_KEYS:
        if _get(header, key) is None:
            raise InputError(f"{p}: LJH header has no '{key}' line")
    version_string = _get(header, "Save File Format Version")
    m = re.match(r"^(\d+)\.(\d+)", version_string)
    version = f"{m.group(1)}.{m.group(2)}" if m else version_string
    if version not in VERSIONS:
        raise InputError(f"{p}: unknown LJH version {version_string!r} (cryopipe reads 2.1 and 2.2)")
    timebase = _number(header, "Timebase", float, p)
    n_samples = _number(header, "Total Samples", int, p)
    pretrigger = _number(header, "Presamples", int, p)
    word = _number(header, "Digitized Word Size in Bytes", int, p, default=2)
    if not (math.isfinite(timebase) and timebase > 0):
        raise InputError(f"{p}: LJH header 'Timebase: {_get(header, 'Timebase')}' must be a positive time (s)")
    if n_samples <= 0:
        raise InputError(f"{p}: LJH header 'Total Samples: {n_samples}' must be positive")
    if not 0 <= pretrigger < n_samples:
        raise InputError(f"{p}: LJH header 'Presamples: {pretrigger}' outside the record of {n_samples} samples")
    if word != 2:
        raise InputError(f"{p}: LJH word size {word} bytes; cryopipe reads 2-byte (uint16) samples")
    n_rows = max(_number(header, "Number of rows", int, p, default=1), 1)
    row = _first_matching(header, r"^Row number", int, 0)
    offset = _number(header, "Timestamp offset (s)", float, p, default=0.0)

    dtype = record_dtype(version, n_samples)
    binary = p.stat().st_size - start
    n_rec, rest = divmod(binary, dtype.itemsize)
    if rest:
        other = "2.2" if version == "2.1" else "2.1"
        other_size = record_dtype(other, n_samples).itemsize
        if n_rec == 0 or binary % other_size == 0:
            fits = f"; it would fit records of the {other} layout" if binary % other_size == 0 else ""
            raise InputError(f"{p}: LJH header disagrees with the file size: {binary} bytes of records are "
                             f"not whole records of {dtype.itemsize} bytes (version {version_string}, "
                             f"{n_samples} samples){fits}")
        raise InputError(f"{p}: truncated last record: {binary} bytes of records = {n_rec} records of "
                         f"{dtype.itemsize} bytes + {rest} bytes; {whole_records_hint(start + n_rec * dtype.itemsize)}")
    if n_rec == 0:
        raise InputError(f"{p}: LJH file holds no records")
    raw = np.memmap(p, dtype=dtype, mode="r", offset=start, shape=(n_rec,))
    if version == "2.2":
        row_count = np.asarray(raw["row_count"], np.int64)
        timestamps = np.asarray(raw["posix_usec"], np.int64) * 1e-6
    else:
        ticks = np.asarray(raw["ms"], np.int64) * 250 + np.asarray(raw["tick_4us"], np.int64)
        timestamps = offset + ticks * 4e-6
        ns_per_frame = int(round(timebase * 1e9))
        frames = (ticks * 4000 + ns_per_frame - 1) // ns_per_frame
        row_count = frames * n_rows + row
    inverted = _get(header, "Inverted")
    polarity = None if inverted is None else (-1 if inverted.strip().lower().startswith("y") else 1)
    fs = float(f"{1.0 / timebase:.12g}")   # 1 / 5.12e-06 = 195312.5, not 195312.49999999997
    return LjhFile(p, version, version_string, header, fs, n_samples, pretrigger,
                   raw["samples"], timestamps, row_count, row_count // n_rows, n_rows, row, polarity,
                   start, raw)


def _first_matching(header: dict, pattern: str, kind, default):
    """Value of the first key matching `pattern` (MATTER writes 'Row number (from 0-15 inclusive)')."""
    for k, v in header.items():
        if re.match(pattern, k, re.IGNORECASE):
            try:
                return kind(float(v)) if kind is int else kind(v)
            except ValueError:
                return default
    return default


@dataclass(frozen=True)
class LjhRun:
    """The LJH files of one run (one file per channel), checked to agree with each other.

    sample_frequency (Hz), n_samples and pretrigger (samples), n_records, polarity (+1/-1, None
    when the headers are silent), and `gaps`: for each pair of consecutive records, the frames
    between the end of one and the start of the next (0: back to back), as in the first channel.
    """

    files: tuple
    sample_frequency: float
    n_samples: int
    pretrigger: int
    n_records: int
    polarity: int | None
    gaps: np.ndarray

    @property
    def back_to_back(self) -> bool:
        """True when every record starts right where the previous one ended: a continuous stream."""
        return bool(np.all(self.gaps == 0))

    def describe_gaps(self) -> str:
        """One line on where the stream is broken (first gap, and how many)."""
        bad = np.flatnonzero(self.gaps != 0)
        if bad.size == 0:
            return "records back to back"
        i = int(bad[0])
        what = "overlaps" if self.gaps[i] < 0 else "gap of"
        return (f"{bad.size} of {self.gaps.size} record boundaries are not back to back (first: {what} "
                f"{abs(int(self.gaps[i]))} samples between records {i} and {i + 1})")


def open_ljh_run(paths: Sequence[str | Path]) -> LjhRun:
    """Read the LJH files of a run (one per channel) and check they agree.

    The channels must share sample frequency, record length, pretrigger and number of records,
    and (triggered together) the same frame counter for every record. `InputError` otherwise.
    """
    paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
    if not paths:
        raise InputError("no LJH files given")
    files = [read_ljh(p) for p in paths]
    first = files[0]
    for f in files[1:]:
        for attr, unit in (("sample_frequency", "Hz"), ("n_samples", "samples"), ("pretrigger", "samples"),
                           ("n_records", "records")):
            a, b = getattr(first, attr), getattr(f, attr)
            if a != b:
                raise InputError(f"{f.path}: {attr} {b:g} {unit} disagrees with {a:g} {unit} in {first.path}")
        if not np.array_equal(f.frame_count, first.frame_count):
            i = int(np.flatnonzero(f.frame_count != first.frame_count)[0])
            raise InputError(f"{f.path}: record {i} was triggered at frame {f.frame_count[i]}, but at frame "
                             f"{first.frame_count[i]} in {first.path} (channels must be triggered together)")
    pols = {f.polarity for f in files if f.polarity is not None}
    if len(pols) > 1:
        raise InputError(f"{paths[0]}: channels disagree on 'Inverted' in their headers")
    return LjhRun(tuple(files), first.sample_frequency, first.n_samples, first.pretrigger, first.n_records,
                  pols.pop() if pols else None, first.record_gaps())


@dataclass
class LjhStream:
    """Back-to-back LJH records of one or more channels read as one continuous stream (`Stream`).

    Sample k of the stream is sample k % N of record k // N. Volts = counts * volts_per_adc (the
    polarity is folded into volts_per_adc by `cryopipe.io.sources.open_stream`).
    """

    run: LjhRun
    volts_per_adc: float
    start_time: float = 0.0
    test_pulses: TestPulses = field(default_factory=TestPulses)

    @property
    def sample_frequency(self) -> float:
        return self.run.sample_frequency

    @property
    def n_samples(self) -> int:
        return self.run.n_records * self.run.n_samples

    @property
    def n_channels(self) -> int:
        return len(self.run.files)

    @property
    def duration(self) -> float:
        """Stream length in s."""
        return self.n_samples / self.sample_frequency

    @property
    def paths(self) -> tuple:
        return tuple(f.path for f in self.run.files)

    def _channel(self, c: int, lo: int, hi: int, out: np.ndarray) -> None:
        n = self.run.n_samples
        r0, r1 = lo // n, (hi - 1) // n + 1
        flat = self.run.files[c].records[r0:r1].reshape(-1)
        np.multiply(flat[lo - r0 * n: hi - r0 * n], np.float32(self.volts_per_adc), out=out, casting="unsafe")

    def read(self, start: int, stop: int, channels: Sequence[int] | None = None) -> np.ndarray:
        """Volts of samples [start, stop) as float32 (n_channels, stop - start); samples outside
        the stream take the nearest edge value."""
        chans = range(self.n_channels) if channels is None else channels
        lo, hi = max(start, 0), min(stop, self.n_samples)
        out = np.empty((len(chans), stop - start), dtype=np.float32)
        for row, c in enumerate(chans):
            inner = out[row, lo - start: hi - start]
            if hi > lo:
                self._channel(c, lo, hi, inner)
            out[row, : lo - start] = inner[0] if hi > lo else 0.0
            out[row, hi - start:] = inner[-1] if hi > lo else 0.0
        return out

    def release_pages(self, channel: int, start: int, stop: int) -> None:
        """No-op: LJH files are small; the OS page cache holds them."""

    def read_records(self, starts: np.ndarray, length: int, *, channels: Sequence[int] | None = None,
                     batch: int = 1024) -> Iterator[tuple[slice, np.ndarray]]:
        """Yield (event slice, volts (n_channels, n, length)) for windows starting at `starts`."""
        chans = list(range(self.n_channels)) if channels is None else list(channels)
        for b in range(0, len(starts), batch):
            s = np.asarray(starts[b: b + batch], dtype=np.int64)
            out = np.empty((len(chans), len(s), length), dtype=np.float32)
            for i, a in enumerate(s):
                out[:, i] = self.read(int(a), int(a) + length, chans)
            yield slice(b, b + len(s)), out

    def iter_chunks(self, chunk_size: int, before: int = 0, after: int = 0, start: int = 0,
                    stop: int | None = None, *, channels: Sequence[int] | None = None
                    ) -> Iterator[tuple[int, int, np.ndarray]]:
        """Yield (a, b, volts) for owned chunks [a, b) of [start, stop), volts spanning
        [a - before, b + after) (edge-padded)."""
        stop = self.n_samples if stop is None else min(stop, self.n_samples)
        for a in range(start, stop, chunk_size):
            b = min(a + chunk_size, stop)
            yield a, b, self.read(a - before, b + after, channels)


def open_ljh_stream(paths: Sequence[str | Path], *, volts_per_adc_: float = volts_per_adc()) -> LjhStream:
    """The LJH files of a run as a continuous stream; `InputError` naming the first gap if the
    records are not back to back."""
    run = open_ljh_run(paths)
    if not run.back_to_back:
        raise InputError(f"{run.files[0].path}: not a continuous stream: {run.describe_gaps()}")
    first = run.files[0]
    start = float(first.timestamps[0]) - first.pretrigger / first.sample_frequency
    return LjhStream(run, volts_per_adc_, start_time=start)
