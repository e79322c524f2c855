"""CRESST / COSINUS DAQ file formats: par, rdt, con, test_stamps and dig_stamps.

All binary files are little-endian, without a file header unless stated:

rdt (hardware-triggered records)
    one record per channel and trigger, ``ints_in_header`` (7, or 6 in old files) int32, three
    uint32, four float32, ``dvm_channels`` float32, then ``record_length`` int16 ADC samples.
    With 7 integers: detector number, coincident pulses, trigger count, trigger delay, absolute
    time [s], absolute time [us], delay to test pulse; the old 6-integer layout lacks the last.
    Then the DAQ clock time as low and high 32-bit words (ticks = high * 2**32 + low), a QDC
    event counter, hours since the start of the measurement, dead time, test pulse amplitude
    (TPA, V) and DAC output. Records of one trigger are adjacent and share the trigger count.
con (control pulses of an rdt run)
    a 12-byte header (three int32), then records of detector number (int32), pulse height
    (float32, V), clock time low and high (uint32), dead time (float32) and, with 7 integers
    in the rdt header, microseconds since the last test pulse (int32).
test_stamps (test and control pulses sent during a stream run)
    records of DAQ clock ticks (uint64), TPA (float32, V), test pulse channel (uint32).
dig_stamps (bank switches of the continuous digitizer)
    records of DAQ clock ticks (uint64) and two uint32 bank words.
par
    text, one ``Key [unit] : value`` per line (sections separated by ``****`` banners); read and
    written by `cryopipe.io.cresst_par`, whose names this module re-exports.

Conventions, as in Cait (the public analysis code of CRESST): a 10 MHz DAQ clock (1.7 GHz for
the old 6-integer rdt layout); volts = ADC * 20 / 2**16; TPA = 0 is a particle trigger, TPA < 0
(-1) a noise trigger, 0 < TPA <= 10.1 a test pulse and TPA > 10.1 a control pulse. The
continuous stream starts at DAQ clock tick ``2 * dig[0] - dig[1]`` (bank switch ``b`` is stamped
at ``start + (b + 1) * bank``), so a test stamp ``s`` falls on stream sample
``(s - start) * fs / clock``; the stream's first sample is at the par file's start time (Cait's
``file_start``), so stream sample ``k`` is at ``par start + k / fs``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, NamedTuple, Sequence

import numpy as np

from ..errors import InputError
from .stores import RECORD_KINDS
from .base import whole_records_hint
from .csmpl import volts_per_adc, volts_to_adc
from .cresst_par import ParInfo, _as_par, _existing_file, read_par, write_par  # noqa: F401 (re-exported)

CLOCK_FREQUENCY = 10_000_000
"""DAQ clock frequency in Hz (CRESST, rdt header with 7 integers)."""

CLOCK_FREQUENCY_OLD = 1_700_000_000
"""DAQ clock frequency in Hz assumed for the old rdt layout with 6 integers in the header."""

DEFAULT_CONTROL_THRESHOLD = 10.1
"""TPA (V) above which a pulser stamp is a control pulse (Cait's ``min_cpa``)."""

MIN_PULSER_TPA = 1e-4
"""TPA (V) a test stamp must exceed to be a pulser (test or control) pulse. The DAQ also stamps
particle (TPA 0) and noise (TPA -1) triggers into ``.test_stamps``; Cait ignores stamps of TPA
<= 0.0001 when it records or excludes test pulses, and so does cryopipe."""


DEFAULT_BANK_SAMPLES = 1_040_512
"""Samples per digitizer bank (event size 2081024 / samples divider 2, Cait's defaults)."""

MAX_DETECTOR_NUMBER = 99_999
"""Detector numbers above this (or negative) mean the rdt is read with the wrong layout."""

TEST_STAMP_DTYPE = np.dtype([("stamp", "<u8"), ("tpa", "<f4"), ("channel", "<u4")])
DIG_STAMP_DTYPE = np.dtype([("stamp", "<u8"), ("bank", "<u4"), ("bank2", "<u4")])
CON_HEADER_BYTES = 12


# ---------------------------------------------------------------------------------------------
# small helpers

def _check_whole_records(p: Path, size: int, itemsize: int, offset: int = 0, what: str = "record") -> int:
    body = size - offset
    if body < 0:
        raise InputError(f"{p}: file of {size} bytes is shorter than its {offset}-byte header")
    n, rest = divmod(body, itemsize)
    if rest:
        raise InputError(f"{p}: truncated {what} at byte {offset + n * itemsize}: {rest} trailing bytes "
                         f"(file size {size} is not {offset} + a multiple of the {itemsize}-byte {what}); "
                         f"{whole_records_hint(offset + n * itemsize)}")
    return n


def _read_records(path, dtype: np.dtype, what: str, offset: int = 0) -> np.ndarray:
    p = _existing_file(path, what)
    n = _check_whole_records(p, p.stat().st_size, dtype.itemsize, offset)
    if n == 0:
        raise InputError(f"{p}: {what} file holds no records")
    return np.array(np.memmap(p, dtype=dtype, mode="r", offset=offset, shape=(n,)))


# ---------------------------------------------------------------------------------------------
# record kinds

def record_kind_from_tpa(tpa, *, control_threshold: float = DEFAULT_CONTROL_THRESHOLD) -> np.ndarray:
    """Kind of each trigger from its test pulse amplitude (V).

    ``tpa == 0``: "particle"; ``tpa < 0`` (the DAQ writes -1): "noise"; ``0 < tpa <=
    control_threshold``: "testpulse"; ``tpa > control_threshold``: "controlpulse". The
    comparison is made in float32, the precision of the TPA in the files, so a stamp of 10.1 V
    is a test pulse (as in Cait, which compares its float32 TPA with ``min_cpa`` = 10.1).

    Returns
    -------
    ndarray of str (``<U12``), the shape of `tpa`.
    """
    t = np.asarray(tpa, dtype=np.float32)  # the files' precision: float32(10.1) is no control pulse
    if np.isnan(t).any():
        raise ValueError(f"{int(np.isnan(t).sum())} test pulse amplitudes are NaN")
    control_threshold = np.float32(control_threshold)
    kinds = np.array([k for k in RECORD_KINDS if k != "saturated"], dtype="<U12")  # by tpa code 0-3
    code = np.where(t == 0, 0, np.where(t < 0, 1, np.where(t > control_threshold, 3, 2)))
    return kinds[code]


# ---------------------------------------------------------------------------------------------
# test stamps, dig stamps, clock alignment

def read_test_stamps(path) -> np.ndarray:
    """Read a ``.test_stamps`` file: structured array (stamp [DAQ clock ticks, uint64], tpa [V,
    float32], channel [test pulse channel, uint32]). A NaN TPA (no kind: a corrupt file) is an
    InputError naming the file and the stamps."""
    stamps = _read_records(path, TEST_STAMP_DTYPE, "test_stamps")
    _refuse_nan_tpa(path, np.isnan(stamps["tpa"]), "stamp")
    return stamps


def _refuse_nan_tpa(path, nan: np.ndarray, what: str) -> None:
    """InputError naming the file where a test pulse amplitude is NaN (`nan`: bool mask over the
    stamps or records; `what`: "stamp" or "record")."""
    bad = np.nonzero(nan)[0]
    if bad.size:
        shown = ", ".join(str(i) for i in bad[:5]) + (" ..." if bad.size > 5 else "")
        raise InputError(f"{path}: {bad.size} of {len(nan)} {what}s have a NaN test pulse amplitude (TPA), "
                         f"which is no particle, noise, test or control pulse ({what} indices {shown}): "
                         f"a corrupt file?")


def read_dig_stamps(path) -> np.ndarray:
    """Read a ``.dig_stamps`` file: structured array (stamp [DAQ clock ticks, uint64], bank,
    bank2 [uint32])."""
    return _read_records(path, DIG_STAMP_DTYPE, "dig_stamps")


def write_test_stamps(path, stamp, tpa, *, channel=0) -> None:
    """Write a ``.test_stamps`` file (stamp in DAQ clock ticks, tpa in V, test pulse channel)."""
    stamp = np.asarray(stamp)
    out = np.zeros(stamp.shape[0], dtype=TEST_STAMP_DTYPE)
    if np.any(stamp < 0):
        raise ValueError("test stamps must be non-negative clock ticks")
    out["stamp"], out["tpa"], out["channel"] = stamp, tpa, channel
    out.tofile(str(path))


def write_dig_stamps(path, stamp, *, bank=0, bank2=0) -> None:
    """Write a ``.dig_stamps`` file (stamp in DAQ clock ticks, two bank words)."""
    stamp = np.asarray(stamp)
    if np.any(stamp < 0):
        raise ValueError("dig stamps must be non-negative clock ticks")
    out = np.zeros(stamp.shape[0], dtype=DIG_STAMP_DTYPE)
    out["stamp"], out["bank"], out["bank2"] = stamp, bank, bank2
    out.tofile(str(path))


def _stamps(arg, reader, what):
    if isinstance(arg, np.ndarray):
        return arg, what
    return reader(arg), str(arg)


def stream_start_ticks(dig_stamps) -> int:
    """DAQ clock tick of the first sample of the continuous stream: ``2 * dig[0] - dig[1]``.

    `dig_stamps` is a path or the array of :func:`read_dig_stamps`. Cait's ``get_offset``
    returns the negative of this (``dig[1] - 2 * dig[0]``) and adds it to the stamps.
    """
    dig, name = _stamps(dig_stamps, read_dig_stamps, "dig stamps")
    if len(dig) < 2:
        raise InputError(f"{name}: {len(dig)} dig stamp(s); the stream start needs at least two")
    d0, d1 = int(dig["stamp"][0]), int(dig["stamp"][1])
    if d1 <= d0:
        raise InputError(f"{name}: dig stamps not increasing ({d0}, {d1})")
    return 2 * d0 - d1


def stream_start_time(par) -> float:
    """Time of the first stream sample in s since the Unix epoch: the par file's start time, as Cait
    reads it (an event's time is the file start plus its time in the stream; the dig stamps only
    place the test stamps in the stream, `test_pulse_samples`). A test pulse at stamp ``s`` is then
    at ``start + (s - stream_start_ticks) / clock``."""
    return _as_par(par).start_time


class AlignedTestPulses(NamedTuple):
    """Pulser stamps mapped onto a csmpl stream.

    samples : int64 stream sample of each kept stamp (the pulse's trigger position)
    tpa : float32 V
    channel : uint32 test pulse channel
    kept : bool mask over the stamps given (False: outside the stream, not a pulser stamp, or of
        another channel)
    pulser : bool mask over the stamps given: TPA > MIN_PULSER_TPA (None: all stamps count)
    """

    samples: np.ndarray
    tpa: np.ndarray
    channel: np.ndarray
    kept: np.ndarray
    pulser: np.ndarray | None = None

    @property
    def n_dropped(self) -> int:
        """Pulser stamps left out (outside the stream, or of channels not asked for)."""
        pulser = np.ones_like(self.kept) if self.pulser is None else self.pulser
        return int((~self.kept & pulser).sum())

    @property
    def n_not_pulser(self) -> int:
        """Particle (TPA 0) and noise (TPA -1) stamps: TPA <= MIN_PULSER_TPA, never pulser pulses."""
        return 0 if self.pulser is None else int((~self.pulser).sum())


def test_pulse_samples(test_stamps, dig_stamps, *, par=None, n_samples: int | None = None,
                       sample_frequency: float | None = None, 
                       clock_frequency: float = CLOCK_FREQUENCY, channels: Sequence[int] | None = None,
                       outside: str = "drop") -> AlignedTestPulses:
    """Stream sample index of each test / control pulse stamp.

    ``sample = round((stamp - start) * sample_frequency / clock_frequency)`` with ``start`` the
    stream's first tick (:func:`stream_start_ticks`).

    Parameters
    ----------
    test_stamps, dig_stamps : paths or arrays of :func:`read_test_stamps` / :func:`read_dig_stamps`
    par : ParInfo or path; supplies sample_frequency where it is not given
    n_samples : samples in the stream (per channel)
    sample_frequency : Hz
    clock_frequency : Hz of the DAQ clock (10 MHz for CRESST)
    channels : keep only stamps of these test pulse channels (None: all)
    outside : "drop" (default, as Cait drops stamps before the stream start): stamps outside
        ``[0, n_samples)`` are left out and reported by ``kept``; "error": any such stamp is an
        InputError. Either way, stamps that ALL fall outside are an InputError.

    Only pulser stamps (TPA > MIN_PULSER_TPA, as in Cait) are test or control pulses; the DAQ's
    particle (TPA 0) and noise (TPA -1) stamps are left out (``pulser``, ``n_not_pulser``).
    """
    if outside not in ("drop", "error"):
        raise ValueError(f"outside must be 'drop' or 'error', got {outside!r}")
    ts, name = _stamps(test_stamps, read_test_stamps, "test stamps")
    if sample_frequency is None:
        if par is None or _as_par(par).sample_frequency is None:
            raise InputError(f"{name}: no sample frequency given and none in the par file")
        sample_frequency = _as_par(par).sample_frequency
    if n_samples is None or n_samples <= 0:
        raise InputError(f"{name}: the stream length (n_samples) must be positive, got {n_samples}")
    start = stream_start_ticks(dig_stamps)
    pulser = ts["tpa"] > np.float32(MIN_PULSER_TPA)
    sel = pulser if channels is None else pulser & np.isin(ts["channel"], list(channels))
    rel = ts["stamp"].astype(np.int64) - np.int64(start)
    samples = np.rint(rel * (float(sample_frequency) / float(clock_frequency))).astype(np.int64)
    inside = (samples >= 0) & (samples < int(n_samples))
    out = sel & ~inside
    if (sel & inside).sum() == 0 and sel.any():
        lo, hi = samples[sel].min(), samples[sel].max()
        raise InputError(f"{name}: all {int(sel.sum())} test stamps fall outside the stream of {n_samples} "
                         f"samples (they map to samples {lo} .. {hi}); wrong dig_stamps or clock?")
    if out.any() and outside == "error":
        idx = np.nonzero(out)[0]
        shown = ", ".join(str(i) for i in idx[:5]) + (" ..." if len(idx) > 5 else "")
        raise InputError(f"{name}: {len(idx)} of {len(ts)} test stamps fall outside the stream of {n_samples} "
                         f"samples (stamp indices {shown})")
    kept = sel & inside
    return AlignedTestPulses(samples[kept], ts["tpa"][kept].astype(np.float32),
                             ts["channel"][kept].astype(np.uint32), kept, pulser)


test_pulse_samples.__test__ = False  # a library function, not a pytest test


# ---------------------------------------------------------------------------------------------
# con

def con_dtype(*, ints_in_header: int = 7) -> np.dtype:
    """Record layout of a ``.con`` file (after its 12-byte header)."""
    fields = [("detector", "<i4"), ("pulse_height", "<f4"), ("time_low", "<u4"), ("time_high", "<u4"),
              ("dead_time", "<f4")]
    if ints_in_header == 7:
        fields.append(("mus_since_last_tp", "<i4"))
    return np.dtype(fields)


@dataclass(frozen=True)
class ConData:
    """Control pulses of an rdt run.

    Attributes
    ----------
    header : the three int32 of the file header
    channel : int32 detector number
    pulse_height : float32 V (as measured by the DAQ)
    clock_ticks : uint64 DAQ clock (high * 2**32 + low)
    time : float64 s since the run's start (clock_ticks / clock_frequency)
    dead_time : float32
    mus_since_last_tp : int32 us, or None in the 6-integer layout
    """

    header: np.ndarray
    channel: np.ndarray
    pulse_height: np.ndarray
    clock_ticks: np.ndarray
    time: np.ndarray
    dead_time: np.ndarray
    mus_since_last_tp: np.ndarray | None


def read_con(path, *, ints_in_header: int = 7, clock_frequency: float | None = None) -> ConData:
    """Read a ``.con`` file (control pulse heights and times); a file with only its header
    gives zero control pulses. clock_frequency defaults by layout (10 MHz for 7 integers,
    1.7 GHz for 6).

    Raises
    ------
    InputError
        missing or empty file, a file shorter than its header or cut inside a record, or
        implausible detector numbers (a file of the other layout: give the rdt's `ints_in_header`).
    """
    p = _existing_file(path, "con")
    dt = con_dtype(ints_in_header=ints_in_header)
    size = p.stat().st_size
    n = _check_whole_records(p, size, dt.itemsize, CON_HEADER_BYTES)
    header = np.fromfile(p, dtype="<i4", count=3)
    rec = np.fromfile(p, dtype=dt, offset=CON_HEADER_BYTES, count=n) if n else np.zeros(0, dt)
    if n and (rec["detector"].min() < 0 or rec["detector"].max() > MAX_DETECTOR_NUMBER):
        raise InputError(f"{p}: implausible detector numbers ({rec['detector'].min()} .. {rec['detector'].max()}) "
                         f"in con records of the layout with {ints_in_header} integers in the rdt header "
                         f"({dt.itemsize}-byte records): the file does not have that layout")
    clock = clock_frequency or (CLOCK_FREQUENCY if ints_in_header == 7 else CLOCK_FREQUENCY_OLD)
    ticks = (rec["time_high"].astype(np.uint64) << np.uint64(32)) | rec["time_low"].astype(np.uint64)
    return ConData(header, rec["detector"].copy(), rec["pulse_height"].copy(), ticks, ticks / float(clock),
                   rec["dead_time"].copy(), rec["mus_since_last_tp"].copy() if ints_in_header == 7 else None)


def write_con(path, channel, pulse_height, clock_ticks, *, dead_time=0.0, mus_since_last_tp=0,
              ints_in_header: int = 7, header=(0, 0, 0)) -> None:
    """Write a ``.con`` file: 12-byte header, then one record per control pulse and channel."""
    ticks = np.asarray(clock_ticks, dtype=np.uint64)
    rec = np.zeros(ticks.shape[0], dtype=con_dtype(ints_in_header=ints_in_header))
    rec["detector"], rec["pulse_height"] = channel, pulse_height
    rec["time_low"] = ticks & np.uint64(0xFFFFFFFF)
    rec["time_high"] = ticks >> np.uint64(32)
    rec["dead_time"] = dead_time
    if ints_in_header == 7:
        rec["mus_since_last_tp"] = mus_since_last_tp
    with open(path, "wb") as f:
        np.asarray(header, dtype="<i4").reshape(3).tofile(f)
        rec.tofile(f)


# ---------------------------------------------------------------------------------------------
# rdt

def rdt_header_fields(*, ints_in_header: int = 7) -> list:
    """(name, dtype) of the rdt record header, in file order (without DVM values and samples)."""
    ints = ["detector", "coincide_pulses", "trig_count", "trig_delay", "abs_time_s", "abs_time_us"]
    if ints_in_header == 7:
        ints.append("delay_ch_tp")
    elif ints_in_header != 6:
        raise ValueError(f"ints_in_header must be 6 or 7, got {ints_in_header}")
    return ([(n, "<i4") for n in ints] + [("time_low", "<u4"), ("time_high", "<u4"), ("qcd_events", "<u4")]
            + [("hours", "<f4"), ("dead_time", "<f4"), ("tpa", "<f4"), ("dac_output", "<f4")])


def rdt_dtype(record_length: int, *, dvm_channels: int = 0, ints_in_header: int = 7) -> np.dtype:
    """numpy dtype of one rdt record (header, DVM float32 values, int16 samples), little-endian."""
    fields = rdt_header_fields(ints_in_header=ints_in_header)
    if dvm_channels:
        fields.append(("dvm", "<f4", (int(dvm_channels),)))
    fields.append(("samples", "<i2", (int(record_length),)))
    return np.dtype(fields)


class RdtFile:
    """A memory-mapped ``.rdt`` file, its records grouped into multi-channel events.

    An event is a run of adjacent records sharing one trigger count (as Cait's RDTFile groups
    them) that holds exactly one record of each requested channel; runs lacking a channel are
    skipped and counted in ``n_incomplete``.

    Attributes
    ----------
    path, par : the file and its ParInfo
    channels : channel (detector) numbers of the events, in the requested order
    channels_present : every detector number in the file, ascending
    record_index : int64 (n_channels, n_events) record numbers of each event's records
    n_records, n_events, n_incomplete : counts
    last_incomplete : the last trigger lacks a record (a file cut at a record boundary)
    sample_frequency : Hz (par, or given)
    """

    def __init__(self, path, par=None, channels: Sequence[int] | None = None, *, adc_bits: int = 16,
                 adc_range: float = 20.0, sample_frequency: float | None = None,
                 clock_frequency: float | None = None, control_threshold: float = DEFAULT_CONTROL_THRESHOLD,
                 scan_batch: int = 65536):
        p = _existing_file(path, "rdt")
        self.path = p
        self.par = _as_par(par, p)
        self.dtype = rdt_dtype(self.par.record_length, dvm_channels=self.par.dvm_channels,
                               ints_in_header=self.par.ints_in_header)
        size = p.stat().st_size
        if size < self.dtype.itemsize:
            raise InputError(f"{p}: file of {size} bytes is shorter than one record of {self.dtype.itemsize} bytes "
                             f"(record length {self.par.record_length} from {self.par.path.name})")
        # the whole records first: the layout is checked on them before the file is called truncated (a par
        # of another layout leaves trailing bytes too, and cutting a copy would not help)
        n = size // self.dtype.itemsize
        self.n_records = n
        self._map = np.memmap(p, dtype=self.dtype, mode="r", shape=(n,))
        self.volts_per_adc = volts_per_adc(adc_bits=adc_bits, adc_range=adc_range)
        self.sample_frequency = sample_frequency if sample_frequency is not None else self.par.sample_frequency
        self.clock_frequency = clock_frequency or (CLOCK_FREQUENCY if self.par.ints_in_header == 7
                                                   else CLOCK_FREQUENCY_OLD)
        self.control_threshold = control_threshold
        det = np.empty(n, dtype=np.int64)
        trig = np.empty(n, dtype=np.int64)
        nan_tpa = np.zeros(n, dtype=bool)
        for a in range(0, n, scan_batch):  # header columns only, batch by batch
            block = self._map[a:a + scan_batch]
            det[a:a + len(block)] = block["detector"]
            trig[a:a + len(block)] = block["trig_count"]
            nan_tpa[a:a + len(block)] = np.isnan(block["tpa"])
        present = np.unique(det)
        if present.min() < 0 or present.max() > MAX_DETECTOR_NUMBER or len(present) > 256:
            par = self.par
            raise InputError(f"{p}: implausible detector numbers ({len(present)} distinct, "
                             f"{present.min()} .. {present.max()}) read with the record layout of {par.path} "
                             f"(Integers in header {par.ints_in_header}, DVM channels {par.dvm_channels}, Record "
                             f"length {par.record_length}: {self.dtype.itemsize}-byte records): the par file's "
                             f"layout does not match the file (is it the par file of this rdt?)")
        _check_whole_records(p, size, self.dtype.itemsize)  # the layout fits: trailing bytes are a cut file
        _refuse_nan_tpa(p, nan_tpa, "record")
        self.channels_present = [int(c) for c in present]
        if self.par.n_channels is not None and len(present) > self.par.n_channels:
            raise InputError(f"{p}: {len(present)} channels in the file ({self.channels_present}) but "
                             f"{self.par.n_channels} named in {self.par.path.name}")
        chans = self.channels_present if channels is None else [int(c) for c in channels]
        if len(set(chans)) != len(chans) or not chans:
            raise InputError(f"{p}: channels must be distinct and non-empty, got {list(channels)}")
        missing = [c for c in chans if c not in self.channels_present]
        if missing:
            raise InputError(f"{p}: channel(s) {missing} not in the file (channels present: {self.channels_present})")
        self.channels = chans
        # runs of equal trigger count
        new_run = np.ones(n, dtype=bool)
        new_run[1:] = trig[1:] != trig[:-1]
        run = np.cumsum(new_run) - 1
        n_runs = int(run[-1]) + 1
        index = np.full((len(chans), n_runs), -1, dtype=np.int64)
        complete = np.ones(n_runs, dtype=bool)
        for row, c in enumerate(chans):
            where = np.nonzero(det == c)[0]
            counts = np.bincount(run[where], minlength=n_runs)
            complete &= counts == 1
            index[row, run[where]] = where  # used only where the run holds exactly one
        self.record_index = index[:, complete]
        self.n_events = int(complete.sum())
        self.n_incomplete = n_runs - self.n_events
        self.last_incomplete = not bool(complete[-1])   # the file ends inside a trigger: truncated
        if self.n_events == 0:
            raise InputError(f"{p}: no event holds one record of each of the channels {chans} "
                             f"({n_runs} triggers, {n} records)")

    @property
    def n_channels(self) -> int:
        return len(self.channels)

    @property
    def record_length(self) -> int:
        return self.par.record_length

    def _column(self, name: str, row: int = 0) -> np.ndarray:
        return np.asarray(self._map[name][self.record_index[row]])

    @property
    def tpa(self) -> np.ndarray:
        """float32 (n_events,) test pulse amplitude in V (of the first channel's record)."""
        return self._column("tpa").astype(np.float32)

    @property
    def timestamp(self) -> np.ndarray:
        """float64 (n_events,) s since the Unix epoch (header seconds + microseconds)."""
        return (self._column("abs_time_s").astype(np.float64)
                + 1e-6 * self._column("abs_time_us").astype(np.float64))

    @property
    def record_kind(self) -> np.ndarray:
        return record_kind_from_tpa(self.tpa, control_threshold=self.control_threshold)

    def clock_mismatch(self, *, min_span: float = 10.0, tolerance: float = 0.01) -> str:
        """"" when the header clock counter (time_low/high at `clock_frequency`) and the absolute
        time stamps advance alike over the run (within `tolerance`, spans of `min_span` s or more);
        else the two spans, in words."""
        high, low = self._column("time_high").astype(np.uint64), self._column("time_low").astype(np.uint64)
        clock = ((high << np.uint64(32)) | low) / float(self.clock_frequency)
        stamp = self.timestamp
        clock_span, stamp_span = float(clock.max() - clock.min()), float(stamp.max() - stamp.min())
        if stamp_span < min_span or abs(clock_span / stamp_span - 1.0) <= tolerance:
            return ""
        return (f"its clock counter (time_low/time_high at {self.clock_frequency:g} Hz) spans {clock_span:.6g} s, its "
                f"absolute time stamps {stamp_span:.6g} s")

    def iter_events(self, *, batch: int = 256) -> Iterator[dict]:
        """Yield events in batches of at most `batch`.

        Each item: ``event`` (slice of event numbers), ``trace`` float32 (channel, n,
        record_length) V, ``timestamp`` float64 s since the epoch, ``tpa`` float32 V,
        ``record_kind`` str, ``hours`` float32 h since the run start, ``clock_ticks`` uint64
        DAQ clock, ``time`` float64 s since the run start (clock_ticks / clock_frequency),
        ``trig_count`` int64, ``dead_time`` float32, ``coincide_pulses`` int32, ``dac_output``
        float32, ``record_index`` int64 (channel, n), and ``dvm`` float32 (channel, n, dvm)
        where the file has DVM channels. Header fields are those of the first channel's record.
        """
        if batch <= 0:
            raise ValueError("batch must be positive")
        scale = np.float32(self.volts_per_adc)
        for a in range(0, self.n_events, batch):
            idx = self.record_index[:, a:a + batch]
            n = idx.shape[1]
            trace = np.empty((self.n_channels, n, self.record_length), dtype=np.float32)
            for row in range(self.n_channels):
                recs = self._map[idx[row]]  # fancy index: copies only these records
                np.multiply(recs["samples"], scale, out=trace[row], casting="unsafe")
                if row == 0:
                    head = recs
                if self.par.dvm_channels:
                    if row == 0:
                        dvm = np.empty((self.n_channels, n, self.par.dvm_channels), dtype=np.float32)
                    dvm[row] = recs["dvm"]
            ticks = (head["time_high"].astype(np.uint64) << np.uint64(32)) | head["time_low"].astype(np.uint64)
            tpa = head["tpa"].astype(np.float32)
            out = {
                "event": slice(a, a + n),
                "trace": trace,
                "timestamp": head["abs_time_s"].astype(np.float64) + 1e-6 * head["abs_time_us"].astype(np.float64),
                "tpa": tpa,
                "record_kind": record_kind_from_tpa(tpa, control_threshold=self.control_threshold),
                "hours": head["hours"].astype(np.float32),
                "clock_ticks": ticks,
                "time": ticks / float(self.clock_frequency),
                "trig_count": head["trig_count"].astype(np.int64),
                "dead_time": head["dead_time"].astype(np.float32),
                "coincide_pulses": head["coincide_pulses"].astype(np.int32),
                "dac_output": head["dac_output"].astype(np.float32),
                "record_index": idx.copy(),
            }
            if self.par.dvm_channels:
                out["dvm"] = dvm
            yield out


def open_rdt(path, *, par=None, channels: Sequence[int] | None = None, **kwargs) -> RdtFile:
    """Open an ``.rdt`` file; `par` is a ParInfo, a path, or None for the ``.par`` beside it.
    Keyword arguments go to :class:`RdtFile` (adc_bits, adc_range, sample_frequency, ...)."""
    return RdtFile(path, par, channels, **kwargs)


def write_rdt(path, channels: Sequence[int], trace, timestamp, tpa, *, start_time: float,
              clock_frequency: float = CLOCK_FREQUENCY, ints_in_header: int = 7, dvm=None,
              dead_time=0.0, adc_bits: int = 16, adc_range: float = 20.0, trig_count=None,
              append: bool = False) -> None:
    """Write events as rdt records, the channels of each event adjacent, in `channels` order.

    Parameters
    ----------
    channels : detector numbers, one per row of `trace`
    trace : (n_channels, n_events, record_length) V, or int16 ADC counts (written unchanged)
    timestamp : (n_events,) s since the epoch; sets abs time [s]/[us], hours since
        `start_time`, and the DAQ clock ticks ``round((timestamp - start_time) * clock)``
    tpa : (n_events,) V (0 particle, -1 noise, > 0 test pulse)
    dvm : optional (n_channels, n_events, dvm_channels) float32
    trig_count : (n_events,) int, default 0, 1, ... (continuing nothing when appending: pass it)
    """
    trace = np.asarray(trace)
    if trace.ndim != 3 or trace.shape[0] != len(channels):
        raise ValueError(f"trace must be (n_channels={len(channels)}, n_events, record_length), got {trace.shape}")
    n_ch, n_ev, n = trace.shape
    ts = np.asarray(timestamp, dtype=np.float64).reshape(n_ev)
    dvm_n = 0 if dvm is None else np.asarray(dvm).shape[-1]
    dt = rdt_dtype(n, dvm_channels=dvm_n, ints_in_header=ints_in_header)
    rec = np.zeros(n_ch * n_ev, dtype=dt)
    ev = np.repeat(np.arange(n_ev), n_ch)
    ch = np.tile(np.arange(n_ch), n_ev)
    secs = np.floor(ts)
    us = np.rint((ts - secs) * 1e6)
    secs, us = np.where(us >= 1e6, secs + 1, secs), np.where(us >= 1e6, 0, us)
    ticks = np.rint((ts - start_time) * clock_frequency).astype(np.int64)
    if np.any(ticks < 0):
        raise ValueError("timestamps before start_time")
    ticks = ticks.astype(np.uint64)
    rec["detector"] = np.asarray(channels)[ch]
    rec["trig_count"] = (np.arange(n_ev) if trig_count is None else np.asarray(trig_count))[ev]
    rec["abs_time_s"] = secs[ev]
    rec["abs_time_us"] = us[ev]
    rec["time_low"] = (ticks & np.uint64(0xFFFFFFFF))[ev]
    rec["time_high"] = (ticks >> np.uint64(32))[ev]
    rec["hours"] = ((ts - start_time) / 3600.0)[ev]
    rec["dead_time"] = np.broadcast_to(np.asarray(dead_time, dtype=np.float32), (n_ev,))[ev]
    rec["tpa"] = np.asarray(tpa, dtype=np.float32).reshape(n_ev)[ev]
    if dvm_n:
        rec["dvm"] = np.asarray(dvm, dtype=np.float32)[ch, ev]
    adc = trace if trace.dtype == np.int16 else volts_to_adc(trace, adc_bits=adc_bits, adc_range=adc_range)
    rec["samples"] = adc[ch, ev]
    with open(path, "ab" if append else "wb") as f:
        rec.tofile(f)
