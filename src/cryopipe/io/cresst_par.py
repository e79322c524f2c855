"""CRESST / COSINUS par files (the run's text parameters): `read_par`, `write_par`, `ParInfo`.

par: text, one ``Key [unit] : value`` per line (sections separated by ``****`` banners); the keys
read are listed in `read_par`. Part of `cryopipe.io.cresst`, which re-exports these names.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError


def _existing_file(path, what: str) -> Path:
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: {what} file not found")
    if p.stat().st_size == 0:
        raise InputError(f"{p}: {what} file is empty")
    return p




def _norm_key(key: str) -> str:
    key = re.sub(r"\s+", " ", key.strip().lower())
    return re.sub(r"\s*\[\s*", " [", key).replace(" ]", "]")


def _parse_value(text: str):
    text = text.strip()
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


_CHANNEL_NAME = re.compile(r"^\s*ch\s*(\d+)\s*[:,]\s*(.+?)\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class ParInfo:
    """Contents of a CRESST ``.par`` file.

    Attributes
    ----------
    path : the file read
    start_time : float64 s since the Unix epoch (``Timeofday at start`` [s] + [us] * 1e-6);
        DAQ clock tick 0 of the run
    stop_time : s since the epoch, or None
    measuring_time : s (from ``Measuring time [h]``), or None
    time_base : s per sample (from ``Time base [us]``), or None where the file has none
    sample_frequency : Hz (1 / time base), or None
    record_length : samples per record
    records_written : as written by the DAQ (not checked against the rdt), or None
    ints_in_header, unsigned_longs_in_header, reals_in_header : rdt header layout (7, 3, 4)
    dvm_channels : float32 DVM values per rdt record
    first_dvm_channel, pre_trigger, trigger_mode : digitizer settings as written, or None
        (``Pre trigger`` 2 is the usual value; Cait places the trigger at record_length / 4)
    channel_names : {channel number as written (1-based): name} from ``ch<i>: name`` lines
    n_channels : len(channel_names), or None where the file names no channels
    raw : every ``key: value`` line, key as written (whitespace collapsed), value as int,
        float or str
    """

    path: Path
    start_time: float
    record_length: int
    stop_time: float | None = None
    measuring_time: float | None = None
    time_base: float | None = None
    sample_frequency: float | None = None
    records_written: int | None = None
    ints_in_header: int = 7
    unsigned_longs_in_header: int = 3
    reals_in_header: int = 4
    dvm_channels: int = 0
    first_dvm_channel: int | None = None
    pre_trigger: int | None = None
    trigger_mode: int | None = None
    channel_names: dict = field(default_factory=dict, hash=False)
    n_channels: int | None = None
    raw: dict = field(default_factory=dict, hash=False, repr=False)


def read_par(path) -> ParInfo:
    """Read a CRESST ``.par`` text file.

    Keys are matched case- and whitespace-insensitively (``Timeofday at start  [s]:`` and
    ``Timeofday at start [s] :`` are the same key); banners, blank lines and lines without a
    colon are skipped; CRLF line ends and non-UTF-8 bytes are tolerated. ``Timeofday at start
    [s]`` and ``Record length`` are required; a missing ``[us]`` counts as 0; a missing
    ``Time base [us]`` leaves sample_frequency None (the run's config must then give it).

    Raises
    ------
    InputError
        missing or empty file, missing required key, a value of the wrong type, or a
        ``Timeofday at start/stop [us]`` outside 0 .. 999999 (it would shift the time by seconds).
    """
    p = _existing_file(path, "par")
    text = p.read_bytes().decode("latin-1")
    raw: dict = {}
    norm: dict = {}
    names: dict = {}
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("*"):
            continue
        m = _CHANNEL_NAME.match(line)
        if m:
            names[int(m.group(1))] = m.group(2)
        if ":" not in line:
            continue
        key, value = line.split(":", 1)
        key = re.sub(r"\s+", " ", key.strip())
        if not key:
            continue
        raw[key] = _parse_value(value)
        norm.setdefault(_norm_key(key), raw[key])

    def get(key, kind, required=False):
        v = norm.get(key)
        if v is None or v == "":
            if required:
                raise InputError(f"{p}: par file has no '{key}' line")
            return None
        if kind is int and isinstance(v, float) and v.is_integer():
            v = int(v)
        if kind is float and isinstance(v, int):
            v = float(v)
        if not isinstance(v, kind):
            raise InputError(f"{p}: par value of '{key}' is not a number: {v!r}")
        return v

    def microseconds(key):
        us = get(key, int) or 0
        if not 0 <= us < 1_000_000:
            raise InputError(f"{p}: par '{_par_key(raw, key)}' is {us}: the microseconds of the time of day must "
                             f"be in 0 .. 999999")
        return us

    start_s = get("timeofday at start [s]", int, required=True)
    start_us = microseconds("timeofday at start [us]")
    stop_s = get("timeofday at stop [s]", int)
    stop_us = microseconds("timeofday at stop [us]")
    record_length = get("record length", int, required=True)
    if record_length <= 0:
        raise InputError(f"{p}: par record length must be positive, got {record_length}")
    hours = norm.get("measuring time [h]")
    time_base_us = norm.get("time base [us]")
    if time_base_us is not None and (not isinstance(time_base_us, (int, float)) or time_base_us <= 0):
        raise InputError(f"{p}: par time base must be a positive number of us, got {time_base_us!r}")
    ints = get("integers in header", int) or 7
    if ints not in (6, 7):
        raise InputError(f"{p}: par 'Integers in header' is {ints}; the rdt layouts have 6 or 7")
    ulongs = get("unsigned longs in header", int)
    reals = get("reals in header", int)
    if ulongs not in (None, 3) or reals not in (None, 4):
        raise InputError(f"{p}: par header layout ({ulongs} unsigned longs, {reals} reals) is not the "
                         f"known one (3 unsigned longs, 4 reals)")
    return ParInfo(
        path=p,
        start_time=float(start_s) + 1e-6 * float(start_us),
        stop_time=None if stop_s is None else float(stop_s) + 1e-6 * float(stop_us),
        measuring_time=None if not isinstance(hours, (int, float)) else 3600.0 * float(hours),
        time_base=None if time_base_us is None else 1e-6 * float(time_base_us),
        sample_frequency=None if time_base_us is None else 1e6 / float(time_base_us),
        record_length=int(record_length),
        records_written=get("records written", int),
        ints_in_header=int(ints),
        unsigned_longs_in_header=3 if ulongs is None else ulongs,
        reals_in_header=4 if reals is None else reals,
        dvm_channels=get("dvm channels", int) or 0,
        first_dvm_channel=get("first dvm channel", int),
        pre_trigger=get("pre trigger", int),
        trigger_mode=get("trigger mode", int),
        channel_names=names,
        n_channels=len(names) or None,
        raw=raw,
    )


def _par_key(raw: dict, key: str) -> str:
    """The key as the par file writes it (whitespace collapsed), for messages."""
    return next((k for k in raw if _norm_key(k) == key), key)


def write_par(path, *, start_time: float, record_length: int, sample_frequency: float | None = None,
              stop_time: float | None = None, records_written: int = 0, dvm_channels: int = 0,
              ints_in_header: int = 7, pre_trigger: int = 2, trigger_mode: int = 5,
              channel_names: dict | None = None) -> None:
    """Write a ``.par`` file in the DAQ's layout.

    Parameters
    ----------
    start_time, stop_time : s since the Unix epoch (split into [s] and [us] lines)
    record_length : samples
    sample_frequency : Hz, written as ``Time base [us]`` (an integer in the DAQ's files; a
        non-integer time base is written with decimals)
    channel_names : {1-based channel number: name}, written as ``ch<i>: name`` lines
    """
    def split(t):
        s = math.floor(t)
        us = int(round((t - s) * 1e6))
        if us == 1_000_000:
            s, us = s + 1, 0
        return int(s), us

    s0, us0 = split(start_time)
    stop = start_time if stop_time is None else stop_time
    s1, us1 = split(stop)
    lines = [
        "CRESST Version 1.x",
        f"Timeofday at start  [s]: {s0}",
        f"Timeofday at start [us]: {us0}",
        f"Timeofday at stop   [s]: {s1}",
        f"Timeofday at stop  [us]: {us1}",
        f"Measuring time    [h] : {(stop - start_time) / 3600.0!r}",
        "",
        "********************** Record Structure *********************",
        f"Integers in header             : {int(ints_in_header)}",
        "Unsigned longs in header       : 3",
        "Reals in header                : 4",
        f"DVM channels                   : {int(dvm_channels)}",
        f"Record length                  : {int(record_length)}",
        f"Records written                : {int(records_written)}",
        "First DVM channel              : 0",
        "",
        "**********************  Digitizer Setting *******************",
        f"Pre trigger                    : {int(pre_trigger)}",
    ]
    if sample_frequency is not None:
        tb = 1e6 / float(sample_frequency)
        lines.append(f"Time base [us]                 : {int(round(tb)) if abs(tb - round(tb)) < 1e-9 else tb!r}")
    lines.append(f"Trigger mode                   : {int(trigger_mode)}")
    for i, name in sorted((channel_names or {}).items()):
        lines.append(f"ch{int(i)}: {name}")
    Path(path).write_text("\n".join(lines) + "\n")


def _as_par(par, rdt_path: Path | None = None) -> ParInfo:
    if isinstance(par, ParInfo):
        return par
    if par is None:
        if rdt_path is None:
            raise InputError("no par file given")
        return read_par(rdt_path.with_suffix(".par"))
    return read_par(par)
