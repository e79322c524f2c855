"""NIST LJH files (DASTARD, MATTER): a text header, then fixed-size binary records of uint16 samples.

Layout (``doc/LJHfiles.md`` of the public usnistgov/mass repository; our own reader):

* a text header of ``Key: value`` lines (LF, CR or CRLF), ending with the line ``#End of Header`` and
  its line end, the same as the header's other lines (a CR-only header ends after one CR, even
  where the first binary byte is an LF); the keys used here: ``Save File Format Version``,
  ``Timebase`` (s per sample), ``Total Samples`` (record length), ``Presamples`` (trigger position,
  samples), ``Software Version`` (the writer), ``Timestamp offset (s)``, ``Subframe divisions`` /
  ``Number of rows`` / ``Row number`` (see below), ``Digitized Word Size in Bytes`` (must be 2) and,
  where present, ``Inverted`` (MATTER: "Yes" means negative-going pulses); ``Presamples`` and
  ``Total Samples`` must be whole numbers;
* version 2.2 records: int64 subframe counter, int64 POSIX microseconds, then the samples. The
  counter is ``frame * divisions + offset``: divisions = ``Subframe divisions`` where the header has
  that line (DASTARD >= 2024, e.g. 64 on Abaco/uMUX systems), else ``Number of rows`` (older DASTARD
  and MATTER files count rows: TDM rows, or the channel group size on the 2023 Abaco files); the
  frame counter is ``counter // divisions`` (`LjhFile.frame_count`);
* version 2.1 records: uint8 "4 microsecond tick" (microseconds past the millisecond counter / 4),
  one unused byte, uint32 millisecond counter, then the samples. The time is
  ``Timestamp offset (s) + ms * 1e-3 + tick * 4e-6`` s; the frame counter is derived from it as
  ``ceil(t_ticks * 4 us / Timebase)`` (exact while a frame lasts at least 4 us), the counter as
  ``frame * divisions + Row number``.

Trigger position (`LjhFile.pretrigger`): ``Presamples`` in files written by DASTARD (its
``Software Version`` names it), ``Presamples + 3`` in every other file: MATTER and XCALDAQ wrote a
Presamples 3 lower than the true trigger sample (mass applies the same correction; its MATTER file
regress_chan1.ljh, Presamples 512, and the DASTARD copy of the same data, Presamples 515, hold
identical records). cryopipe takes both per-record counters (frame counter and time stamp) to mark
the record's trigger sample, `pretrigger` after its first sample (DASTARD's trigger frame; the format
note does not say): a stream's start time is the first stamp minus pretrigger / fs. The
back-to-back test (frame counter advancing by exactly one record length) holds either way.

Plausibility: a ``Total Samples`` that is wrong but divides the file size into whole records would
read record headers as samples and samples as record headers. The reader checks the record
headers of a few records (first, last and some in between): counters and time stamps must not go
backwards, 2.2 time stamps must lie between 1970 and 2100, 2.1 ticks below 250, and no record may
hold, at a whole fraction of its length, what looks like the record header of a record between its
neighbours (records of half the length read as one). Each failure is one line pointing at
``Total Samples``.

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
PRESAMPLES_BUG = 3                      # MATTER / XCALDAQ: true trigger sample = Presamples + 3
USEC_2100 = 4_102_444_800 * 1_000_000   # 2100-01-01 in POSIX microseconds: later stamps are not time stamps
TICKS_PER_MS = 250                      # 2.1: 4-us ticks per millisecond (a tick is 0..249)
N_CHECKED = 9                           # records whose headers the plausibility check reads


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
    pretrigger : samples before the trigger: Presamples (DASTARD), Presamples + 3 (MATTER, XCALDAQ and
        any other writer; see the module doc)
    presamples : the header's Presamples as written
    records : uint16 counts, (n_records, n_samples), a read-only memory map
    timestamps : s since the Unix epoch of each record, float64
    row_count : subframe (row) counter of each record, int64: frame * subframe_divisions + offset
        (2.2: as stored; 2.1: derived, see module doc)
    frame_count : frame counter of each record, int64 (row_count // subframe_divisions)
    number_of_rows, row_number : TDM rows of the readout (Number of rows) and this channel's row
    subframe_divisions : subframe counts per frame: Subframe divisions, else Number of rows
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
    presamples: int
    records: np.ndarray
    timestamps: np.ndarray
    row_count: np.ndarray
    frame_count: np.ndarray
    number_of_rows: int
    row_number: int
    subframe_divisions: int
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
    """Offset of the first record: right after the line ``#End of Header`` and its line end.

    The line end is the one of the header's own lines (the line before): after a CR-only header
    one CR, even where the first binary byte is an LF (0x0A), which is not part of a CRLF there.
    """
    i = head.find(END_OF_HEADER)
    while i > 0 and head[i - 1:i] not in (b"\n", b"\r"):      # only at the start of a line
        i = head.find(END_OF_HEADER, i + 1)
    if i < 0:
        raise InputError(f"{path}: not an LJH file (no '#End of Header' line in the first "
                         f"{min(len(head), MAX_HEADER_BYTES)} bytes)")
    j = i + len(END_OF_HEADER)
    if i >= 2 and head[i - 2:i] == b"\r\n":
        newline = b"\r\n"
    elif i >= 1:
        newline = head[i - 1:i]
    else:
        newline = b""
    if newline and head[j:j + len(newline)] == newline:
        return j + len(newline)
    rest = head[j:j + 2]   # the last line ends unlike the others: take what is there
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
    """The header's `key` as `kind` (int: a whole number; "512" and "512.0" are 512, "128.7" an error)."""
    value = _get(header, key)
    if value is None:
        if default is not None:
            return default
        raise InputError(f"{path}: LJH header has no '{key}' line")
    try:
        number = float(value) if kind is int else kind(value)
    except ValueError:
        raise InputError(f"{path}: LJH header '{key}: {value}' is not a number") from None
    if kind is int:
        if not (math.isfinite(number) and number == int(number)):
            raise InputError(f"{path}: LJH header '{key}: {value}' is not a whole number")
        return int(number)
    return number


def read_ljh(path: str | Path) -> LjhFile:
    """Open an LJH 2.1 or 2.2 file: parse its header, memory-map its records, decode the record headers.

    The trigger sample (`LjhFile.pretrigger`) is the header's Presamples in files that DASTARD wrote
    and Presamples + 3 in all others (MATTER / XCALDAQ wrote it 3 too low; mass's correction); the
    frame counter is the record's subframe counter // ``Subframe divisions`` (else ``Number of rows``).

    Raises `InputError` (one line naming the file) for a missing or empty file, a missing header key,
    a Presamples or Total Samples that is not a whole number, an unknown version, a word size other
    than 2 bytes, a header that disagrees with the file size, a truncated last record and record
    headers that show ``Total Samples`` is not the record length (see the module doc).
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: LJH file not found")
    if p.stat().st_size == 0:
        raise InputError(f"{p}: the file is empty (0 bytes)")
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
    presamples = _number(header, "Presamples", int, p)
    word = _number(header, "Digitized Word Size in Bytes", int, p, default=2)
    if not (math.isfinite(timebase) and timebase > 0):
        raise InputError(f"{p}: LJH header 'Timebase: {_get(header, 'Timebase')}' must be a positive time (s)")
    if n_samples <= 0:
        raise InputError(f"{p}: LJH header 'Total Samples: {n_samples}' must be positive")
    dastard = "dastard" in (_get(header, "Software Version") or "").lower()
    pretrigger = presamples if dastard else presamples + PRESAMPLES_BUG
    if not (0 <= presamples and pretrigger < n_samples):
        shift = "" if dastard else f" (trigger at Presamples + {PRESAMPLES_BUG} = {pretrigger}, not a DASTARD file)"
        raise InputError(f"{p}: LJH header 'Presamples: {presamples}'{shift} outside the record of "
                         f"{n_samples} samples")
    if word != 2:
        raise InputError(f"{p}: LJH word size {word} bytes; cryopipe reads 2-byte (uint16) samples")
    n_rows = max(_number(header, "Number of rows", int, p, default=1), 1)
    row = _first_matching(header, r"^Row number", int, 0)
    divisions = n_rows
    if _get(header, "Subframe divisions") is not None:
        divisions = _number(header, "Subframe divisions", int, p)
        if divisions < 1:
            raise InputError(f"{p}: LJH header 'Subframe divisions: {divisions}' must be at least 1")
    sub_offset = _number(header, "Subframe offset", int, p, default=row)   # 2.1 (derived counters) only
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
    _check_record_headers(p, raw, version, n_samples)
    if version == "2.2":
        row_count = np.asarray(raw["row_count"], np.int64)
        timestamps = np.asarray(raw["posix_usec"], np.int64) * 1e-6
    else:
        ticks = np.asarray(raw["ms"], np.int64) * TICKS_PER_MS + np.asarray(raw["tick_4us"], np.int64)
        timestamps = offset + ticks * 4e-6
        ns_per_frame = int(round(timebase * 1e9))
        frames = (ticks * 4000 + ns_per_frame - 1) // ns_per_frame
        row_count = frames * divisions + sub_offset
    inverted = _get(header, "Inverted")
    polarity = None if inverted is None else (-1 if inverted.strip().lower().startswith("y") else 1)
    fs = float(f"{1.0 / timebase:.12g}")   # 1 / 5.12e-06 = 195312.5, not 195312.49999999997
    return LjhFile(p, version, version_string, header, fs, n_samples, pretrigger, presamples,
                   raw["samples"], timestamps, row_count, row_count // divisions, n_rows, row, divisions,
                   polarity, start, raw)


def _record_time(version: str, fields) -> np.ndarray:
    """Record time in the file's own units (2.2: POSIX us; 2.1: 4-us ticks), int64."""
    if version == "2.2":
        return np.asarray(fields["posix_usec"], np.int64)
    return np.asarray(fields["ms"], np.int64) * TICKS_PER_MS + np.asarray(fields["tick_4us"], np.int64)


def _check_record_headers(path: Path, raw: np.ndarray, version: str, n_samples: int) -> None:
    """Stop (InputError pointing at Total Samples) where the record headers of a few records are no
    record headers: see "Plausibility" in the module doc. Reads N_CHECKED records and a few bytes."""
    n = raw.shape[0]
    idx = np.unique(np.linspace(0, n - 1, N_CHECKED).round().astype(np.int64))
    heads = raw[idx]
    hint = f"is 'Total Samples: {n_samples}' the record length?"
    t = _record_time(version, heads)
    if version == "2.2":
        c = np.asarray(heads["row_count"], np.int64)
        bad = np.flatnonzero((t < 0) | (t >= USEC_2100))
        if bad.size:
            raise InputError(f"{path}: implausible record headers: record {idx[bad[0]]} has the time stamp "
                             f"{t[bad[0]]} us, not between 1970 and 2100; {hint}")
        back = np.flatnonzero((c < 0) | (np.diff(c, prepend=0) < 0))
        if back.size:
            raise InputError(f"{path}: implausible record headers: the subframe counter goes backwards or is "
                             f"negative at record {idx[back[0]]} ({c[back[0]]}); {hint}")
    else:
        tick = np.asarray(heads["tick_4us"], np.int64)
        bad = np.flatnonzero(tick >= TICKS_PER_MS)
        if bad.size:
            raise InputError(f"{path}: implausible record headers: record {idx[bad[0]]} has the 4-us tick "
                             f"{tick[bad[0]]} (0 to 249 in a millisecond); {hint}")
    back = np.flatnonzero(np.diff(t) < 0)
    if back.size:
        raise InputError(f"{path}: implausible record headers: the time stamps go backwards between records "
                         f"{idx[back[0]]} and {idx[back[0] + 1]}; {hint}")
    _check_no_records_inside(path, raw, version, n_samples, idx[idx < n - 1])


def _check_no_records_inside(path: Path, raw: np.ndarray, version: str, n_samples: int,
                             idx: np.ndarray) -> None:
    """Records of a fraction 1/m of the record size read as one (Total Samples too large by m - 1
    record headers' worth, e.g. 1032 for 512 in 2.2): each record then holds, at every 1/m of its
    length, a record header whose counter and time stamp lie between those of the record and the
    next. Stop with one line where that holds for every checked record."""
    if idx.size == 0:
        return
    size = raw.dtype.itemsize
    head = RECORD_HEADER_BYTES[version]
    flat = raw.view(np.uint8).reshape(-1)
    one = record_dtype(version, 0)
    for m in range(2, size // (head + 2) + 1):
        sub = size // m
        if size % m or (sub - head) % 2:
            continue
        if all(_looks_like_header(flat, raw, version, one, k, j * sub)
               for k in idx for j in range(1, m)):
            raise InputError(f"{path}: 'Total Samples: {n_samples}' reads {m} records as one: every checked "
                             f"record holds, every {sub} bytes, the record header of a record of "
                             f"{(sub - head) // 2} samples (counter and time stamp between its neighbours'); "
                             f"check the header's 'Total Samples'")


def _looks_like_header(flat: np.ndarray, raw: np.ndarray, version: str, one: np.dtype, k: int, at: int) -> bool:
    """Do the bytes `at` bytes into record k read as a record header between records k and k + 1?"""
    size = raw.dtype.itemsize
    fields = np.frombuffer(flat[k * size + at: k * size + at + one.itemsize].tobytes(), one)
    pair = raw[[k, k + 1]]
    t, (t0, t1) = _record_time(version, fields)[0], _record_time(version, pair)
    if not t0 <= t <= t1:
        return False
    if version == "2.2":
        c, (c0, c1) = int(fields["row_count"][0]), np.asarray(pair["row_count"], np.int64)
        return 0 <= t < USEC_2100 and c0 <= c <= c1
    return int(fields["tick_4us"][0]) < TICKS_PER_MS


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
