"""A run's data source behind one interface, chosen by the run's config.

Two shapes of raw data exist:

* a continuous **stream** (what the trigger and records stages need): channels, sample frequency
  (Hz), length (samples), windows and records read as float32 volts. Implementations: csmpl files
  (`cryopipe.io.csmpl.CsmplStream`), optionally with a CRESST `.par` file (time base, record length,
  start time) and `.test_stamps` / `.dig_stamps` (test and control pulses injected by the DAQ);
* hardware-triggered **records** (CRESST `.rdt` + `.par` [+ `.con`]): written as a records store
  directly, no trigger stage.
* NIST **LJH** files (`cryopipe.io.ljh`), one per channel: triggered records (like rdt; the trigger
  at `LjhFile.pretrigger`: Presamples, + 3 for non-DASTARD writers), or, where every record follows
  the previous one without a gap (`ljh_mode` stream, resolved by `cryopipe.config`), a continuous stream (`LjhStream`).

The source spec is a plain dict made by the workflow (`rules/common.smk`, `source_spec`): the run's
config keys `format` ("csmpl" or "rdt"), the file paths, `sample_frequency`, `record_length`,
`channels`, `polarity`, `adc_bits`, `adc_range` (LJH: `ljh`, `noise_ljh`, `ljh_mode`,
`pretrigger`). Nothing above this module knows the file format: the stream interface (`Stream`,
`TestPulses`) lives in `cryopipe.io.base`, and `describe_run_files` tells `cryopipe.config` what a
run's files fix of its settings (sample frequency, record length, ...).
"""
from __future__ import annotations

import logging
from functools import cached_property
from pathlib import Path

import numpy as np

from ..errors import InputError
from .base import Stream, TestPulses

STREAM_FORMATS = ("csmpl",)
RECORD_FORMATS = ("rdt", "ljh")


def source_format(spec: dict) -> str:
    """"csmpl", "rdt" or "ljh" from the keys of a run's source spec."""
    if "rdt" in spec:
        return "rdt"
    if "ljh" in spec:
        return "ljh"
    if "csmpl" in spec:
        return "csmpl"
    raise InputError("run config: no data source (csmpl, rdt or ljh)")


def is_stream(spec: dict) -> bool:
    """True when the run is a continuous stream (triggered by cryopipe), False for records files."""
    fmt = source_format(spec)
    return fmt in STREAM_FORMATS or (fmt == "ljh" and spec.get("ljh_mode") == "stream")


def stream_files(spec: dict) -> list:
    """The raw files of a stream source (csmpl or LJH), one per channel."""
    return list(spec.get("csmpl") or spec.get("ljh") or [])


def open_stream(spec: dict) -> Stream:
    """Open a run's continuous stream (polarity applied: pulses are positive above this layer).

    Returns a stream with `n_channels`, `sample_frequency` (Hz), `n_samples`, `duration` (s),
    `start_time` (s since the Unix epoch, 0 when unknown), `test_pulses` (`TestPulses`),
    `read(start, stop, channels)`, `read_records(starts, length, channels, batch)`,
    `iter_chunks(...)` and `release_pages(...)`.
    """
    from .csmpl import open_csmpl, volts_per_adc

    if source_format(spec) == "ljh" and is_stream(spec):
        from .ljh import open_ljh_stream

        scale = volts_per_adc(adc_bits=spec.get("adc_bits", 16), adc_range=spec.get("adc_range",
                                                                                    20.0)) * int(spec.get("polarity",
                                                                                                          1))
        stream = open_ljh_stream(spec["ljh"], volts_per_adc_=scale)
        logging.getLogger("cryopipe").info(
            "%s: LJH %s, %d records of %d samples back to back: read as one continuous stream of %.3f s "
            "(triggered by cryopipe)", spec["ljh"][0], stream.run.files[0].version_string, stream.run.n_records,
            stream.run.n_samples, stream.duration)
        if spec.get("noise_ljh"):
            logging.getLogger("cryopipe").warning("%s", unused_noise_message(spec))
        return stream
    if source_format(spec) != "csmpl":
        raise InputError(f"{_first_path(spec)}: not a continuous stream ({source_format(spec)} records are read, "
                         f"not triggered)")
    stream = open_csmpl(spec["csmpl"], spec["sample_frequency"], spec["record_length"],
                        adc_bits=spec.get("adc_bits", 16), adc_range=spec.get("adc_range", 20.0))
    stream.volts_per_adc *= int(spec.get("polarity", 1))
    cresst = _cresst() if spec.get("par") or spec.get("test_stamps") else None
    if spec.get("par"):
        par = cresst.read_par(spec["par"])
        stream.start_time = cresst.stream_start_time(par)     # the first sample (Cait's file_start)
    elif spec.get("start_time") is not None:   # a plain csmpl stream with its start given in the config
        stream.start_time = float(spec["start_time"])
    if spec.get("test_stamps"):
        stream.test_pulses = _stamped_test_pulses(spec, stream.n_samples)
    return stream


def unused_noise_message(run: dict) -> str:
    """The warning for an LJH run read as a stream that names `noise_ljh` files: they are not read."""
    return (f"{run['noise_ljh'][0]}: noise_ljh is not used: the LJH run {run['ljh'][0]} is read as a continuous "
            f"stream (ljh_mode stream), whose noise spectrum comes from random triggers in the stream "
            f"(trigger.noise_records); the noise_ljh records are read only with ljh_mode records")


def check_run_files(run: dict) -> list:
    """Load-time checks of a run's side files that no job reads, whatever the targets: the ``.con``
    of an rdt run must parse (`cryopipe.io.cresst.read_con`, in the rdt layout of its par file:
    whole records, plausible detector numbers). `run` holds the run's resolved config keys.

    Returns
    -------
    list of str
        warnings for the user, one line each: ``noise_ljh`` files of an LJH run read as a stream
        (they are not read).

    Raises
    ------
    InputError
        naming the file and the problem.
    """
    warnings = []
    if run.get("rdt") and run.get("con"):
        cresst = _cresst()
        cresst.read_con(run["con"], ints_in_header=cresst.read_par(run["par"]).ints_in_header)
    if run.get("ljh") and run.get("noise_ljh") and is_stream(run):
        warnings.append(unused_noise_message(run))
    return warnings


def stream_length(spec: dict) -> int:
    """Samples per channel of a stream, from file sizes only (cheap: used when the DAG is built).

    0 when the files do not exist yet (a dry run before they are written).
    """
    if source_format(spec) == "ljh":
        from .ljh import read_ljh

        first = Path(spec["ljh"][0])
        return read_ljh(first).n_records * read_ljh(first).n_samples if first.is_file() else 0
    first = Path(spec["csmpl"][0])
    return first.stat().st_size // 2 if first.is_file() else 0


class RunFiles:
    """What a run's raw files say of its settings, read from headers only (no trace), each file
    once and only when asked, so that `cryopipe.config` checks the user's keys without knowing a
    format. Every attribute raises InputError naming the file when it cannot be read.

    Attributes
    ----------
    header_settings : dict
        What the data files' own headers fix (LJH): ``sample_frequency`` (Hz), ``record_length``
        and ``pretrigger`` (samples), ``polarity`` (+1/-1, only where the header states it);
        empty for data files without a header (csmpl, rdt).
    parameter_settings : dict
        What the run's parameter file fixes (CRESST par): ``sample_frequency`` (Hz) and
        ``record_length`` (samples); empty without one. A par file without ``Time base [us]``
        takes the run's own ``sample_frequency`` (InputError naming the par file without one).
    continuous : bool
        Every record starts where the previous one ended (the files can be read as a stream).
    n_records : int
        Records per channel of a records file with a header (LJH), else 0.
    gaps : str
        Where the records are not back to back, for messages ("" when continuous).
    noise_settings : dict | None
        ``sample_frequency`` (Hz) and ``record_length`` (samples) of the run's separate noise
        records; None without them.
    n_channels : int | None
        Channels of the data source; None for a run without data files (simulated).
    """

    def __init__(self, run: dict):
        self._run = run

    @cached_property
    def _header(self):
        from .ljh import open_ljh_run

        return open_ljh_run(self._run["ljh"]) if self._run.get("ljh") else None

    @cached_property
    def header_settings(self) -> dict:
        info = self._header
        if info is None:
            return {}
        out = {"sample_frequency": float(info.sample_frequency), "record_length": int(info.n_samples),
               "pretrigger": int(info.pretrigger)}
        if info.polarity is not None:
            out["polarity"] = int(info.polarity)
        return out

    @cached_property
    def parameter_settings(self) -> dict:
        if not self._run.get("par"):
            return {}
        par = _cresst().read_par(self._run["par"])
        fs = par.sample_frequency
        if fs is None:   # read_par allows it: the config gives the time base then
            if self._run.get("sample_frequency") is None:
                raise InputError(f"{par.path}: the par file has no 'Time base [us]' line: give the run's "
                                 f"sample_frequency (Hz) in the config")
            fs = self._run["sample_frequency"]
        return {"sample_frequency": float(fs), "record_length": int(par.record_length)}

    @property
    def continuous(self) -> bool:
        return bool(self._header is not None and self._header.back_to_back)

    @property
    def n_records(self) -> int:
        return int(self._header.n_records) if self._header is not None else 0

    @property
    def gaps(self) -> str:
        return self._header.describe_gaps() if self._header is not None and not self.continuous else ""

    @cached_property
    def noise_settings(self) -> dict | None:
        if not self._run.get("noise_ljh"):
            return None
        from .ljh import open_ljh_run

        noise = open_ljh_run(self._run["noise_ljh"])
        return {"sample_frequency": float(noise.sample_frequency), "record_length": int(noise.n_samples)}

    @cached_property
    def n_channels(self) -> int | None:
        for key in ("csmpl", "ljh"):
            if key in self._run:
                return len(self._run[key])
        if "rdt" in self._run:
            return _cresst().open_rdt(self._run["rdt"], par=self._run["par"]).n_channels
        return None


def describe_run_files(run: dict) -> RunFiles:
    """The settings a run's raw files fix (`RunFiles`), read lazily from their headers.

    `run` holds the run's config keys: the file paths (csmpl, par, rdt, ljh, noise_ljh).
    """
    return RunFiles(run)


def _stamped_test_pulses(spec: dict, n_samples: int) -> TestPulses:
    """The test stamps inside the stream (stamps outside it are dropped, as Cait does, and logged)."""
    if not spec.get("dig_stamps"):
        raise InputError(f"{spec['test_stamps']}: test stamps need the run's dig_stamps file to align the DAQ clock")
    aligned = _cresst().test_pulse_samples(spec["test_stamps"], spec["dig_stamps"], par=spec.get("par"),
                                           n_samples=n_samples, sample_frequency=spec["sample_frequency"])
    if aligned.n_dropped:
        logging.getLogger("cryopipe").warning("%s: %d test stamps outside the stream dropped",
                                              spec["test_stamps"], aligned.n_dropped)
    if aligned.n_not_pulser:
        logging.getLogger("cryopipe").info("%s: %d particle/noise stamps (TPA <= 0.0001 V) are no pulser pulses, "
                                           "ignored as in Cait", spec["test_stamps"], aligned.n_not_pulser)
    return TestPulses(aligned.samples.astype(np.int64), aligned.tpa.astype(np.float32))


def _cresst():
    from . import cresst

    return cresst


def _first_path(spec: dict) -> str:
    for key in ("rdt", "csmpl", "ljh", "par"):
        if key in spec:
            value = spec[key]
            return str(value[0] if isinstance(value, list) else value)
    return "run"
