"""Bad or odd CRESST DAQ files (and an LJH stream's unused noise file): each is read right or refused
with an InputError naming the file and the problem, never a bare TypeError/ValueError and never a
misdiagnosis.

The files are written here by a small numpy writer of its own, following the layouts as Cait's public
readers read them (par text, rdt records, con, test_stamps), independent of cryopipe's writers.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from cryopipe.config import check, load_schema, resolve_runs
from cryopipe.errors import InputError
from cryopipe.io import cresst as cr
from cryopipe.io.sources import check_run_files, open_stream
from cryopipe.io.stamps import holds_test_pulses
from ljh_util import write_pulse_ljh

REPO = Path(__file__).resolve().parents[1]
SCHEMA_PATH = REPO / "workflow" / "schemas" / "config.schema.yaml"
SCHEMA = load_schema(SCHEMA_PATH)


# ------------------------------------------------------------------------------ independent writers

def daq_par(path, *, start_s=1610000000, start_us=0, stop_s=1610000400, stop_us=0, record_length=512,
            time_base_us=40, ints=7, dvm=0):
    """A par file as the DAQ writes it; time_base_us None leaves out the 'Time base [us]' line."""
    lines = ["CRESST Version 1.x",
             f"Timeofday at start  [s]: {start_s}",
             f"Timeofday at start [us]: {start_us}",
             f"Timeofday at stop   [s]: {stop_s}",
             f"Timeofday at stop  [us]: {stop_us}",
             "Measuring time    [h] : 0.1111",
             "",
             "********************** Record Structure *********************",
             f"Integers in header             : {ints}",
             "Unsigned longs in header       : 3",
             "Reals in header                : 4",
             f"DVM channels                   : {dvm}",
             f"Record length                  : {record_length}",
             "Records written                : 0",
             "First DVM channel              : 0",
             "",
             "**********************  Digitizer Setting *******************",
             "Pre trigger                    : 2"]
    if time_base_us is not None:
        lines.append(f"Time base [us]                 : {time_base_us}")
    lines.append("Trigger mode                   : 5")
    Path(path).write_text("\n".join(lines) + "\n")
    return Path(path)


def rdt_record_dtype(length, ints=7, dvm=0):
    fields = [("detector_nmbr", "<i4"), ("coincide_pulses", "<i4"), ("trig_count", "<i4"), ("trig_delay", "<i4"),
              ("abs_time_s", "<i4"), ("abs_time_mus", "<i4")]
    if ints == 7:
        fields.append(("delay_ch_tp", "<i4"))
    fields += [("time_low", "<u4"), ("time_high", "<u4"), ("qcd_events", "<u4"), ("hours", "<f4"),
               ("dead_time", "<f4"), ("test_pulse_amplitude", "<f4"), ("dac_output", "<f4")]
    if dvm:
        fields.append(("dvm_channels", "<f4", (dvm,)))
    fields.append(("samples", "<i2", (length,)))
    return np.dtype(fields)


def daq_rdt(path, *, n_events=20, length=512, ints=7, tpa=None, seed=0):
    """Two channels (0, 1) per trigger, adjacent, baselines -3000 / +1000 ADC with noise; returns
    (samples (channel, event, length) int16, tpa float32)."""
    rng = np.random.default_rng(seed)
    tpa = np.float32(rng.choice([0.0, -1.0, 1.0, 3.0], n_events)) if tpa is None else np.float32(tpa)
    samples = np.stack([np.rint(rng.normal(b, 20.0, (n_events, length))).astype("<i2") for b in (-3000, 1000)])
    rec = np.zeros(2 * n_events, rdt_record_dtype(length, ints))
    t_rel = 0.5 * (1 + np.arange(n_events))
    ticks = np.rint(t_rel * 10_000_000).astype(np.uint64)
    for i in range(n_events):
        for c in (0, 1):
            r = rec[2 * i + c]
            r["detector_nmbr"], r["trig_count"] = c, i
            r["abs_time_s"], r["abs_time_mus"] = 1610000000 + int(t_rel[i]), int(round((t_rel[i] % 1) * 1e6))
            r["time_low"], r["time_high"] = int(ticks[i]) & 0xFFFFFFFF, int(ticks[i]) >> 32
            r["hours"], r["test_pulse_amplitude"], r["samples"] = t_rel[i] / 3600, tpa[i], samples[c, i]
            rec[2 * i + c] = r
    rec.tofile(path)
    return samples, tpa


def daq_con(path, detectors, heights, ticks, ints=7):
    """A con file: 12-byte header of three int32, then one record per control pulse."""
    fields = [("det", "<i4"), ("ph", "<f4"), ("lo", "<u4"), ("hi", "<u4"), ("dead", "<f4")]
    if ints == 7:
        fields.append(("mus", "<i4"))
    rec = np.zeros(len(detectors), fields)
    ticks = np.asarray(ticks, np.uint64)
    rec["det"], rec["ph"] = detectors, heights
    rec["lo"], rec["hi"] = ticks & np.uint64(0xFFFFFFFF), ticks >> np.uint64(32)
    with open(path, "wb") as f:
        np.array([0, 0, 0], "<i4").tofile(f)
        rec.tofile(f)
    return Path(path)


def daq_test_stamps(path, stamps, tpa, channel=1):
    rec = np.zeros(len(stamps), [("stamp", "<u8"), ("tpa", "<f4"), ("tpch", "<u4")])
    rec["stamp"], rec["tpa"], rec["tpch"] = stamps, tpa, channel
    rec.tofile(path)
    return Path(path)


def resolved(runs: dict) -> dict:
    from snakemake.utils import validate

    cfg = {"runs": runs}
    check(cfg, SCHEMA)
    validate(cfg, str(SCHEMA_PATH))
    return resolve_runs(cfg, SCHEMA)


# ------------------------------------------------------------------------------ par: time base, [us]

def test_par_without_time_base_takes_the_configs_sample_frequency(tmp_path):
    """read_par allows a par without 'Time base [us]': the run's sample_frequency is used then (it was a bare
    TypeError from float(None)), and without one the message names the par file and the key to give."""
    csmpl = tmp_path / "a.csmpl"
    np.zeros(25000 * 4, "<i2").tofile(csmpl)
    par = daq_par(tmp_path / "a.par", record_length=4096, time_base_us=None)
    run = resolved({"x": {"csmpl": [str(csmpl)], "par": str(par), "sample_frequency": 25000}})["x"]
    assert run["sample_frequency"] == 25000.0 and run["record_length"] == 4096
    with pytest.raises(InputError, match=r"a\.par: the par file has no 'Time base \[us\]' line: give the run's "
                                         r"sample_frequency"):
        resolved({"x": {"csmpl": [str(csmpl)], "par": str(par)}})
    # with a time base the par file wins as before, and a disagreeing key is refused
    daq_par(par, record_length=4096, time_base_us=20)
    assert resolved({"x": {"csmpl": [str(csmpl)], "par": str(par)}})["x"]["sample_frequency"] == 50000.0


@pytest.mark.parametrize("key, value", [("start_us", -5), ("start_us", 2_500_000), ("start_us", 1_000_000),
                                        ("stop_us", 1_000_000)])
def test_par_microseconds_out_of_range_refused(tmp_path, key, value):
    """[us] outside 0 .. 999999 shifted the start silently (2500000: by 2.5 s)."""
    par = daq_par(tmp_path / "a.par", **{key: value})
    name = "start" if key == "start_us" else "stop"
    with pytest.raises(InputError, match=rf"a\.par: par 'Timeofday at {name} \[us\]' is {value}: .*0 \.\. 999999"):
        cr.read_par(par)


def test_par_microseconds_at_the_edges_are_read(tmp_path):
    par = cr.read_par(daq_par(tmp_path / "a.par", start_s=1610000000, start_us=999_999, stop_us=0))
    assert par.start_time == pytest.approx(1610000000.999999, abs=1e-7)
    assert par.stop_time == 1610000400.0


# ------------------------------------------------------------------------------ rdt: layout vs truncation

def test_rdt_layout_mismatch_is_not_called_truncated(tmp_path):
    """A par whose layout does not match the rdt leaves trailing bytes as a cut file does; the layout is
    checked first, so the message blames the par file's layout, not a truncated record (whose remedy, a cut
    copy, would read garbage)."""
    rdt = tmp_path / "r.rdt"
    samples, tpa = daq_rdt(rdt, n_events=20, length=512)
    good = daq_par(tmp_path / "r.par", record_length=512)
    f = cr.open_rdt(rdt, par=good)                     # the right par reads the written truth
    assert f.channels == [0, 1] and f.n_events == 20 and f.n_incomplete == 0
    ev = next(f.iter_events(batch=100))
    np.testing.assert_array_equal(np.rint(ev["trace"] / np.float32(20 / 2**16)).astype(np.int16), samples)
    np.testing.assert_array_equal(ev["tpa"], tpa)
    size = rdt.stat().st_size                            # 40 records of 1080 bytes
    for kw, words in (({"ints": 6}, "Integers in header 6"), ({"record_length": 500}, "Record length 500"),
                      ({"dvm": 2}, "DVM channels 2")):
        bad = daq_par(tmp_path / "bad.par", **{"record_length": 512, **kw})
        itemsize = cr.read_par(bad).record_length * 2 + 56 + (4 * kw.get("dvm", 0)) - (4 if "ints" in kw else 0)
        assert size % itemsize, "the wrong layout must leave trailing bytes for this test"
        with pytest.raises(InputError) as err:
            cr.open_rdt(rdt, par=bad)
        msg = str(err.value)
        assert msg.startswith(str(rdt)) and "bad.par" in msg and words in msg, msg
        assert "layout does not match" in msg and "truncat" not in msg and "truncate -s" not in msg, msg
    # a file really cut inside a record, with its right par, is still called truncated
    with open(rdt, "r+b") as fh:
        fh.truncate(size - 100)
    with pytest.raises(InputError, match=rf"r\.rdt: truncated record at byte {39 * 1080}"):
        cr.open_rdt(rdt, par=good)


# ------------------------------------------------------------------------------ NaN test pulse amplitudes

def test_nan_tpa_in_test_stamps_is_an_input_error_naming_the_file(tmp_path):
    stamps = daq_test_stamps(tmp_path / "s.test_stamps", [1000, 2000, 3000], [1.0, np.nan, 3.0])
    with pytest.raises(InputError, match=r"s\.test_stamps: 1 of 3 stamps have a NaN test pulse amplitude"):
        cr.read_test_stamps(stamps)
    with pytest.raises(InputError, match=r"s\.test_stamps: .*NaN.*stamp indices 1\b"):
        holds_test_pulses({"csmpl": [str(tmp_path / "a.csmpl")], "test_stamps": str(stamps)})
    daq_test_stamps(stamps, [1000, 2000, 3000], [1.0, 0.0, -1.0])
    assert holds_test_pulses({"csmpl": [str(tmp_path / "a.csmpl")], "test_stamps": str(stamps)})


def test_nan_tpa_in_rdt_records_is_an_input_error_naming_the_file(tmp_path):
    tpa = np.zeros(6, np.float32)
    tpa[4] = np.nan
    daq_rdt(tmp_path / "r.rdt", n_events=6, length=64, tpa=tpa)
    daq_par(tmp_path / "r.par", record_length=64)
    spec = {"rdt": str(tmp_path / "r.rdt"), "par": str(tmp_path / "r.par")}
    with pytest.raises(InputError, match=r"r\.rdt: 2 of 12 records have a NaN test pulse amplitude .*indices 8, 9"):
        holds_test_pulses(spec)


# ------------------------------------------------------------------------------ con

def test_con_of_an_rdt_run_is_checked(tmp_path):
    """The .con is a declared input of an rdt run: it is parsed (in the rdt layout of the par file) when
    the workflow loads, so a cut or foreign one is an InputError naming it, not passed silently."""
    daq_rdt(tmp_path / "r.rdt", n_events=4, length=64)
    daq_par(tmp_path / "r.par", record_length=64)
    run = {"rdt": str(tmp_path / "r.rdt"), "par": str(tmp_path / "r.par"), "con": str(tmp_path / "r.con")}
    ticks = [10_000_000, (3 << 32) + 5, 40_000_000]
    con = daq_con(tmp_path / "r.con", [0, 1, 0], [1.0, 1.25, 1.5], ticks)
    assert check_run_files(run) == []
    got = cr.read_con(con)
    np.testing.assert_array_equal(got.channel, [0, 1, 0])
    np.testing.assert_array_equal(got.clock_ticks, ticks)
    np.testing.assert_allclose(got.pulse_height, [1.0, 1.25, 1.5])
    con.write_bytes(con.read_bytes()[:-7])
    with pytest.raises(InputError, match=r"r\.con: truncated record at byte 60"):
        check_run_files(run)
    con.write_bytes(b"")
    with pytest.raises(InputError, match=r"r\.con: con file is empty"):
        check_run_files(run)
    # the old 6-integer layout: 20-byte con records, read so because the par says 6 integers
    daq_par(tmp_path / "r.par", record_length=64, ints=6)
    daq_rdt(tmp_path / "r.rdt", n_events=4, length=64, ints=6)
    daq_con(con, [0, 1], [1.0, 1.25], ticks[:2], ints=6)
    assert check_run_files(run) == []
    daq_con(con, [0, 1, 0, 1, 0], [1.0] * 5, [7] * 5, ints=7)  # 120 bytes: 6 whole 20-byte records
    with pytest.raises(InputError, match=r"r\.con: implausible detector numbers"):
        check_run_files(run)


# ------------------------------------------------------------------------------ LJH stream: noise_ljh

def test_noise_ljh_of_an_ljh_stream_is_said_to_be_unused(tmp_path, caplog):
    """An LJH run read as a stream takes its noise from random triggers in the stream: its noise_ljh files
    are not read, and that is said (load-time warning, and WARNING in the logs of the jobs reading it)."""
    s, _, _ = write_pulse_ljh(tmp_path / "s.ljh", n_records=8, n=256, presamples=64, fs=100_000.0,
                              back_to_back=True)
    q, _, _ = write_pulse_ljh(tmp_path / "noise.ljh", n_records=8, n=256, presamples=64, fs=100_000.0,
                              pulses=False, seed=2)
    run = resolved({"st": {"ljh": str(s), "noise_ljh": str(q)}})["st"]
    assert run["ljh_mode"] == "stream"
    warnings = check_run_files(run)
    assert len(warnings) == 1 and "noise.ljh" in warnings[0] and "not used" in warnings[0]
    assert "random triggers" in warnings[0]
    spec = {k: run[k] for k in ("ljh", "noise_ljh", "ljh_mode", "sample_frequency", "record_length", "polarity")}
    with caplog.at_level(logging.INFO, logger="cryopipe"):
        open_stream(spec)
    said = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(said) == 1 and "noise.ljh" in said[0] and "not used" in said[0]
    # read as records, the noise file is used: no warning
    rec = resolved({"r": {"ljh": str(s), "noise_ljh": str(q), "ljh_mode": "records"}})["r"]
    assert check_run_files(rec) == []
