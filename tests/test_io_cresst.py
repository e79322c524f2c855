"""CRESST DAQ formats (cryopipe.io.cresst).

Readers are checked against bytes written here field by field with struct.pack, following the
layouts as Cait's public source reads them, so that a layout mistake in the module cannot hide
behind its own (symmetric) writers.
"""
from __future__ import annotations

import re
import shutil
import struct

import numpy as np
import pytest

from cryopipe.errors import InputError
from cryopipe.io import cresst as cr
from cryopipe.io.csmpl import open_csmpl
from cresst_util import write_cresst_rdt_run, write_cresst_stream_run

V_PER_ADC = 20.0 / 2**16

CAIT_PAR = """CRESST Version 1.x
Timeofday at start  [s]: 1602879720
Timeofday at start [us]: 250000
Timeofday at stop   [s]: 1602879812
Timeofday at stop  [us]: 0
Start writing to file : 2020-10-16 22:22:00
Stop writing to file  : 2020-10-16 22:23:32
Measuring time    [h] : 0.025555555555555557

********************** Record Structure *********************
Integers in header             : {ints}
Unsigned longs in header       : 3
Reals in header                : 4
DVM channels                   : {dvm}
Record length                  : {n}
Records written                : 6
First DVM channel              : 0

**********************  Digitizer Setting *******************
Pre trigger                    : 2
Time base [us]                 : 40
Trigger mode                   : 5
"""


def par_text(n=8, dvm=0, ints=7):
    return CAIT_PAR.format(n=n, dvm=dvm, ints=ints)


def pack_rdt_record(det, trig, abs_s, abs_us, low, high, hours, tpa, samples, dvm=(), ints=7,
                    coincide=0, trig_delay=0, delay_ch_tp=0, qcd=0, dead=0.0, dac=0.0):
    """One rdt record, field by field: 7 (or 6) int32, 3 uint32, 4 float32, DVM float32, int16."""
    ints_part = [det, coincide, trig, trig_delay, abs_s, abs_us] + ([delay_ch_tp] if ints == 7 else [])
    b = struct.pack(f"<{len(ints_part)}i", *ints_part)
    b += struct.pack("<3I", low, high, qcd)
    b += struct.pack("<4f", hours, dead, tpa, dac)
    b += struct.pack(f"<{len(dvm)}f", *dvm)
    b += struct.pack(f"<{len(samples)}h", *samples)
    return b


@pytest.fixture
def tmp(tmp_path):
    return tmp_path


# ------------------------------------------------------------------------------------------ par

def test_read_par_cait_layout(tmp):
    p = tmp / "run.par"
    p.write_text(par_text(n=16384, dvm=2))
    par = cr.read_par(p)
    assert par.start_time == pytest.approx(1602879720.25, abs=1e-6)
    assert par.stop_time == pytest.approx(1602879812.0)
    assert par.sample_frequency == pytest.approx(25000.0)
    assert par.time_base == pytest.approx(40e-6)
    assert par.record_length == 16384
    assert par.dvm_channels == 2 and par.ints_in_header == 7 and par.pre_trigger == 2
    assert par.records_written == 6 and par.trigger_mode == 5
    assert par.measuring_time == pytest.approx(92.0)
    assert par.raw["Start writing to file"] == "2020-10-16 22:22:00"
    assert par.raw["Record length"] == 16384
    assert par.n_channels is None


def test_read_par_text_variants(tmp):
    """CRLF, tabs, other spacing around ':' and '[', channel-name lines, no time base."""
    text = ("Timeofday at start [s] :\t1600000000\r\n"
            "Timeofday  at start[us]:   5\r\n"
            "record length: 512\r\n"
            "Integers in header: 6\r\n"
            "ch1: Phonon\r\nch2, Light\r\n")
    p = tmp / "v.par"
    p.write_bytes(text.encode("latin-1") + b"Comment: \xb5s\r\n")
    par = cr.read_par(p)
    assert par.start_time == pytest.approx(1600000000.000005, abs=1e-7)
    assert par.record_length == 512 and par.ints_in_header == 6
    assert par.sample_frequency is None
    assert par.channel_names == {1: "Phonon", 2: "Light"} and par.n_channels == 2


def test_par_round_trip(tmp):
    p = tmp / "w.par"
    cr.write_par(p, start_time=1700000000.123456, stop_time=1700003600.5, record_length=4096,
                 sample_frequency=50000, dvm_channels=1, channel_names={1: "a", 2: "b"})
    par = cr.read_par(p)
    assert par.start_time == pytest.approx(1700000000.123456, abs=1e-6)
    assert par.stop_time == pytest.approx(1700003600.5)
    assert par.sample_frequency == 50000 and par.record_length == 4096 and par.dvm_channels == 1
    assert par.n_channels == 2


@pytest.mark.parametrize("text, match", [
    ("Record length : 8\n", "no 'timeofday at start \\[s\\]' line"),
    ("Timeofday at start [s]: 1\n", "no 'record length' line"),
    ("Timeofday at start [s]: 1\nRecord length : abc\n", "not a number"),
    ("Timeofday at start [s]: 1\nRecord length : 8\nIntegers in header : 9\n", "6 or 7"),
    ("Timeofday at start [s]: 1\nRecord length : 8\nTime base [us] : 0\n", "time base"),
])
def test_par_errors(tmp, text, match):
    p = tmp / "bad.par"
    p.write_text(text)
    with pytest.raises(InputError, match=match):
        cr.read_par(p)


def test_par_missing_and_empty(tmp):
    with pytest.raises(InputError, match="par file not found"):
        cr.read_par(tmp / "none.par")
    (tmp / "e.par").write_text("")
    with pytest.raises(InputError, match="par file is empty"):
        cr.read_par(tmp / "e.par")


# ------------------------------------------------------------------------------------------ rdt

def write_independent_rdt(tmp, ints=7, dvm=0, n=8, extra=b""):
    """3 triggers of channels (3, 5), plus a lone channel-3 record (incomplete trigger) between."""
    (tmp / "r.par").write_text(par_text(n=n, dvm=dvm, ints=ints))
    rows = []
    recs = [  # det, trig, abs_s, abs_us, ticks, hours, tpa
        (3, 0, 1602879721, 500000, 10_000_000 * 3 // 2, 0.25, 0.0),
        (5, 0, 1602879721, 500000, 10_000_000 * 3 // 2, 0.25, 0.0),
        (3, 1, 1602879722, 1, (1 << 32) + 7, 0.5, -1.0),  # lone record: incomplete trigger
        (3, 2, 1602879723, 999999, (5 << 32) + 123, 0.75, 3.5),
        (5, 2, 1602879723, 999999, (5 << 32) + 123, 0.75, 3.5),
        (3, 3, 1602879724, 0, 42, 1.0, 20.0),
        (5, 3, 1602879724, 0, 42, 1.0, 20.0),
    ]
    b = b""
    for i, (det, trig, s, us, ticks, hours, tpa) in enumerate(recs):
        samples = [(i * 1000 + det * 10 + k) * (-1) ** k for k in range(n)]
        samples[0] = -32768 if i == 0 else samples[0]
        samples[-1] = 32767 if i == 0 else samples[-1]
        dv = [float(i + j / 10) for j in range(dvm)]
        b += pack_rdt_record(det, trig, s, us, ticks & 0xFFFFFFFF, ticks >> 32, hours, tpa, samples, dv, ints,
                             coincide=i, dead=0.125, dac=-1.5)
        rows.append((det, trig, s, us, ticks, hours, tpa, samples, dv, i))
    (tmp / "r.rdt").write_bytes(b + extra)
    return rows


@pytest.mark.parametrize("ints, dvm", [(7, 0), (7, 2), (6, 0), (6, 3)])
def test_rdt_reads_independent_bytes(tmp, ints, dvm):
    rows = write_independent_rdt(tmp, ints=ints, dvm=dvm)
    f = cr.open_rdt(tmp / "r.rdt")  # par beside it
    assert f.channels_present == [3, 5] and f.channels == [3, 5]
    assert f.n_records == 7 and f.n_events == 3 and f.n_incomplete == 1
    np.testing.assert_array_equal(f.record_index, [[0, 3, 5], [1, 4, 6]])
    batches = list(f.iter_events(batch=2))
    assert [b["trace"].shape for b in batches] == [(2, 2, 8), (2, 1, 8)]
    ev = {k: np.concatenate([b[k] for b in batches], axis=1 if k in ("trace", "record_index", "dvm") else 0)
          for k in batches[0] if k != "event"}
    used = [rows[i] for i in (0, 3, 5)]
    for row, rec_ids in enumerate([[0, 3, 5], [1, 4, 6]]):
        for e, r in enumerate(rec_ids):
            np.testing.assert_allclose(ev["trace"][row, e], np.array(rows[r][7]) * V_PER_ADC, rtol=0, atol=1e-7)
            if dvm:
                np.testing.assert_allclose(ev["dvm"][row, e], rows[r][8], atol=1e-6)
    assert ev["trace"][0, 0, 0] == pytest.approx(-10.0) and ev["trace"][0, 0, -1] == pytest.approx(10 - V_PER_ADC)
    np.testing.assert_allclose(ev["timestamp"], [r[2] + 1e-6 * r[3] for r in used], rtol=0, atol=1e-7)
    np.testing.assert_array_equal(ev["clock_ticks"], [r[4] for r in used])
    clock = cr.CLOCK_FREQUENCY if ints == 7 else cr.CLOCK_FREQUENCY_OLD
    np.testing.assert_allclose(ev["time"], [r[4] / clock for r in used])
    np.testing.assert_allclose(ev["hours"], [0.25, 0.75, 1.0])
    np.testing.assert_array_equal(ev["tpa"], np.float32([0.0, 3.5, 20.0]))
    assert list(ev["record_kind"]) == ["particle", "testpulse", "controlpulse"]
    np.testing.assert_array_equal(ev["trig_count"], [0, 2, 3])
    np.testing.assert_array_equal(ev["coincide_pulses"], [0, 3, 5])
    np.testing.assert_allclose(ev["dead_time"], 0.125)
    np.testing.assert_allclose(ev["dac_output"], -1.5)
    np.testing.assert_allclose(f.timestamp, ev["timestamp"])
    np.testing.assert_array_equal(f.tpa, ev["tpa"])


def test_rdt_channel_subset_and_order(tmp):
    write_independent_rdt(tmp)
    f = cr.open_rdt(tmp / "r.rdt", par=tmp / "r.par", channels=[5, 3])
    np.testing.assert_array_equal(f.record_index, [[1, 4, 6], [0, 3, 5]])
    f3 = cr.open_rdt(tmp / "r.rdt", par=cr.read_par(tmp / "r.par"), channels=[3])
    assert f3.n_events == 4 and f3.n_incomplete == 0  # the lone record is a complete 1-channel event
    np.testing.assert_array_equal(f3.tpa, np.float32([0, -1, 3.5, 20]))
    assert list(f3.record_kind) == ["particle", "noise", "testpulse", "controlpulse"]
    f3b = cr.open_rdt(tmp / "r.rdt", par=tmp / "r.par", channels=[3], adc_range=10.0)
    tr = next(f3b.iter_events())["trace"]
    assert tr[0, 0, 0] == pytest.approx(-5.0)


def test_rdt_writer_matches_independent_bytes(tmp):
    """write_rdt's bytes equal the struct.pack layout."""
    start = 1602879720.0
    trace = np.array([[[1, -2, 3, -4]], [[5, 6, -7, 8]]], dtype=np.int16)  # (2 ch, 1 ev, 4)
    cr.write_rdt(tmp / "w.rdt", [7, 9], trace, [start + 1.5], [0.5], start_time=start, dead_time=0.25,
                 dvm=np.array([[[1.5]], [[2.5]]]))
    ticks = 15_000_000
    want = b"".join(pack_rdt_record(det, 0, 1602879721, 500000, ticks, 0, np.float32(1.5 / 3600), 0.5,
                                    list(trace[c, 0]), [dv], dead=0.25)
                    for c, (det, dv) in enumerate([(7, 1.5), (9, 2.5)]))
    assert (tmp / "w.rdt").read_bytes() == want


def test_rdt_run_round_trip(tmp):
    truth = write_cresst_rdt_run(tmp, n_particle=6, n_noise=4, n_testpulse=8, n_control=3, dvm_channels=2,
                                 record_length=512, drift=0.5, seed=3)
    f = cr.open_rdt(truth["paths"]["rdt"])
    assert f.channels == [1, 2] and f.n_events == 18
    b = next(f.iter_events(batch=100))
    assert list(b["record_kind"]) == list(truth["kind"])
    np.testing.assert_array_equal(b["tpa"], truth["tpa"])
    np.testing.assert_allclose(b["timestamp"], truth["timestamp"], atol=2e-6)
    np.testing.assert_allclose(b["dvm"], truth["dvm"])
    # pulse heights (max after the onset, baseline removed) follow the drifting truth
    onset = truth["onset"]
    height = b["trace"][:, :, onset:].max(-1) - b["trace"][:, :, :onset].mean(-1)
    pulsed = truth["kind"] != "noise"
    np.testing.assert_allclose(height[:, pulsed], truth["amplitude"][:, pulsed], rtol=0.05, atol=0.02)
    tp = (truth["kind"] == "testpulse") & (truth["tpa"] >= 0.5)  # small pulses: max is biased by noise
    ratio = height[0, tp] / (truth["tpa"][tp] * 0.3)
    np.testing.assert_allclose(ratio, truth["response"][tp], rtol=0.05)
    assert truth["response"][tp].max() / truth["response"][tp].min() > 1.2
    con = cr.read_con(truth["paths"]["con"])
    assert len(con.channel) == 6 and list(con.channel) == [1, 2] * 3
    np.testing.assert_allclose(con.time[::2], truth["control_time"], atol=1e-6)
    np.testing.assert_allclose(con.pulse_height.reshape(3, 2).T, truth["control_height"], rtol=1e-6)


def test_rdt_truncated(tmp):
    write_independent_rdt(tmp, extra=b"\x00" * 10)
    rec = 4 * 14 + 2 * 8
    with pytest.raises(InputError, match=f"r.rdt: truncated record at byte {7 * rec}") as err:
        cr.open_rdt(tmp / "r.rdt")
    # the message's remedy works: a copy cut to the bytes it names holds the 7 whole records
    cut = int(re.search(r"truncate -s (\d+) COPY", str(err.value)).group(1))
    (tmp / "cut.rdt").write_bytes((tmp / "r.rdt").read_bytes()[:cut])
    shutil.copy(tmp / "r.par", tmp / "cut.par")
    assert cr.open_rdt(tmp / "cut.rdt").n_records == 7


def test_rdt_par_record_length_mismatch(tmp):
    write_independent_rdt(tmp)  # 7 records of 72 bytes = 504 bytes
    (tmp / "r.par").write_text(par_text(n=10))  # 76-byte records: 504 is no multiple
    # the par's layout is wrong, not the file cut: said so, not "truncated ... cut a copy"
    with pytest.raises(InputError, match="r.par .*Record length 10: 76-byte records.*layout does not match") as err:
        cr.open_rdt(tmp / "r.rdt")
    assert "truncat" not in str(err.value)
    (tmp / "r.par").write_text(par_text(n=1000))
    with pytest.raises(InputError, match="shorter than one record"):
        cr.open_rdt(tmp / "r.rdt")


def test_rdt_layout_mismatch_detected(tmp):
    """Records read with a wrong layout that happens to divide the file size: garbage detectors."""
    write_independent_rdt(tmp, n=8)  # 7 records of 72 bytes = 504 bytes
    (tmp / "r.par").write_text(par_text(n=56))  # 56 + 112 = 168 bytes: 504 = 3 * 168
    with pytest.raises(InputError, match="r.rdt: implausible detector numbers .* does not match the file"):
        cr.open_rdt(tmp / "r.rdt")


def test_rdt_channel_errors(tmp):
    write_independent_rdt(tmp)
    with pytest.raises(InputError, match=r"channel\(s\) \[4\] not in the file \(channels present: \[3, 5\]\)"):
        cr.open_rdt(tmp / "r.rdt", channels=[3, 4])
    (tmp / "r.par").write_text(par_text() + "ch1: phonon\n")
    with pytest.raises(InputError, match="2 channels in the file .* but 1 named in r.par"):
        cr.open_rdt(tmp / "r.rdt")


def test_rdt_missing_and_empty(tmp):
    (tmp / "r.par").write_text(par_text())
    with pytest.raises(InputError, match="rdt file not found"):
        cr.open_rdt(tmp / "r.rdt")
    (tmp / "r.rdt").write_bytes(b"")
    with pytest.raises(InputError, match="rdt file is empty"):
        cr.open_rdt(tmp / "r.rdt")
    (tmp / "x.rdt").write_bytes(b"\0" * 72)
    with pytest.raises(InputError, match="x.par: par file not found"):
        cr.open_rdt(tmp / "x.rdt")


# ------------------------------------------------------------------------------------------ con

@pytest.mark.parametrize("ints", [7, 6])
def test_con_reads_independent_bytes(tmp, ints):
    b = struct.pack("<3i", 1, 2, 3)
    recs = [(1, 6.5, (2 << 32) + 5, 0.5, 111), (2, 4.25, 300_000_000, 0.0, 222)]
    for det, ph, ticks, dead, mus in recs:
        b += struct.pack("<ifIIf", det, ph, ticks & 0xFFFFFFFF, ticks >> 32, dead)
        if ints == 7:
            b += struct.pack("<i", mus)
    (tmp / "c.con").write_bytes(b)
    con = cr.read_con(tmp / "c.con", ints_in_header=ints)
    np.testing.assert_array_equal(con.header, [1, 2, 3])
    np.testing.assert_array_equal(con.channel, [1, 2])
    np.testing.assert_array_equal(con.pulse_height, np.float32([6.5, 4.25]))
    np.testing.assert_array_equal(con.clock_ticks, [(2 << 32) + 5, 300_000_000])
    clock = 1e7 if ints == 7 else 1.7e9
    np.testing.assert_allclose(con.time, np.array([(2 << 32) + 5, 300_000_000]) / clock)
    if ints == 7:
        np.testing.assert_array_equal(con.mus_since_last_tp, [111, 222])
    else:
        assert con.mus_since_last_tp is None
    cr.write_con(tmp / "w.con", [1, 2], [6.5, 4.25], [(2 << 32) + 5, 300_000_000], dead_time=[0.5, 0.0],
                 mus_since_last_tp=[111, 222],
                 ints_in_header=ints, header=(1, 2, 3))
    assert (tmp / "w.con").read_bytes() == b


def test_con_header_only_and_errors(tmp):
    (tmp / "h.con").write_bytes(struct.pack("<3i", 0, 0, 0))
    assert len(cr.read_con(tmp / "h.con").channel) == 0
    (tmp / "t.con").write_bytes(struct.pack("<3i", 0, 0, 0) + b"\0" * 30)
    with pytest.raises(InputError, match="t.con: truncated record at byte 36"):
        cr.read_con(tmp / "t.con")
    (tmp / "s.con").write_bytes(b"\0" * 5)
    with pytest.raises(InputError, match="shorter than its 12-byte header"):
        cr.read_con(tmp / "s.con")
    with pytest.raises(InputError, match="con file not found"):
        cr.read_con(tmp / "none.con")


# ----------------------------------------------------------------------- stamps and clock alignment

def test_stamps_read_independent_bytes(tmp):
    (tmp / "a.test_stamps").write_bytes(struct.pack("<QfI", 2**40 + 3, 0.5, 1) + struct.pack("<QfI", 9, 20.0, 0))
    ts = cr.read_test_stamps(tmp / "a.test_stamps")
    np.testing.assert_array_equal(ts["stamp"], [2**40 + 3, 9])
    np.testing.assert_array_equal(ts["tpa"], np.float32([0.5, 20.0]))
    np.testing.assert_array_equal(ts["channel"], [1, 0])
    (tmp / "a.dig_stamps").write_bytes(struct.pack("<QII", 100, 1, 2) + struct.pack("<QII", 300, 3, 4))
    dig = cr.read_dig_stamps(tmp / "a.dig_stamps")
    np.testing.assert_array_equal(dig["stamp"], [100, 300])
    np.testing.assert_array_equal(dig["bank"], [1, 3])
    np.testing.assert_array_equal(dig["bank2"], [2, 4])
    assert cr.stream_start_ticks(tmp / "a.dig_stamps") == -100
    cr.write_test_stamps(tmp / "b.test_stamps", [2**40 + 3, 9], [0.5, 20.0], channel=[1, 0])
    cr.write_dig_stamps(tmp / "b.dig_stamps", [100, 300], bank=[1, 3], bank2=[2, 4])
    assert (tmp / "b.test_stamps").read_bytes() == (tmp / "a.test_stamps").read_bytes()
    assert (tmp / "b.dig_stamps").read_bytes() == (tmp / "a.dig_stamps").read_bytes()


def test_stamp_file_errors(tmp):
    with pytest.raises(InputError, match="test_stamps file not found"):
        cr.read_test_stamps(tmp / "no.test_stamps")
    (tmp / "e.dig_stamps").write_bytes(b"")
    with pytest.raises(InputError, match="dig_stamps file is empty"):
        cr.read_dig_stamps(tmp / "e.dig_stamps")
    (tmp / "t.test_stamps").write_bytes(b"\0" * 40)
    with pytest.raises(InputError, match="t.test_stamps: truncated record at byte 32"):
        cr.read_test_stamps(tmp / "t.test_stamps")
    (tmp / "one.dig_stamps").write_bytes(struct.pack("<QII", 100, 0, 0))
    with pytest.raises(InputError, match="1 dig stamp"):
        cr.stream_start_ticks(tmp / "one.dig_stamps")


def test_alignment_cait_generator_convention(tmp):
    """Stamps laid out as Cait's mock-data generator lays them out (bank switch b at
    ((b + 1) * bank - cdaq_offset) samples, test pulse e at ((e + 1) * interval - cdaq_offset)
    samples, both times 400 ticks per sample at 25 kHz / 10 MHz): pulse e sits at stream sample
    (e + 1) * interval."""
    fs, clock, bank, off, interval = 25_000, 10_000_000, 1_040_512, 30_000, 75_000
    r = clock // fs
    (tmp / "m.dig_stamps").write_bytes(b"".join(struct.pack("<QII", ((b + 1) * bank - off) * r, 0, 0)
                                                for b in range(2)))
    (tmp / "m.test_stamps").write_bytes(b"".join(struct.pack("<QfI", ((e + 1) * interval - off) * r, 0.5, 0)
                                                 for e in range(30)))
    (tmp / "m.par").write_text(par_text())
    al = cr.test_pulse_samples(tmp / "m.test_stamps", tmp / "m.dig_stamps", par=tmp / "m.par", n_samples=92 * fs)
    np.testing.assert_array_equal(al.samples, (np.arange(30) + 1) * interval)
    assert al.n_dropped == 0 and al.samples.dtype == np.int64 and al.tpa.dtype == np.float32
    assert cr.stream_start_ticks(tmp / "m.dig_stamps") == -off * r
    par = cr.read_par(tmp / "m.par")
    # Cait's reader: time = file_start + time in the stream, so its generator's pulse e (hardware run:
    # start + (e + 1) * interval / fs) is at the same time in the stream run
    assert cr.stream_start_time(par) == par.start_time


def test_alignment_against_generated_stream(tmp):
    truth = write_cresst_stream_run(tmp, duration=12.0, pulser_interval=0.4, record_length=2048,
                                    start_ticks=987_654_321, stamps_before_start=3, drift=0.3, seed=1)
    paths = truth["paths"]
    n = truth["n_samples"]
    al = cr.test_pulse_samples(paths["test_stamps"], paths["dig_stamps"], par=paths["par"], n_samples=n)
    assert al.n_dropped == 3 and not al.kept[:3].any() and al.kept[3:].all()
    idx = truth["stamp_pulse"][3:]
    np.testing.assert_array_equal(al.samples, truth["samples"][idx])
    np.testing.assert_array_equal(al.tpa, truth["tpa"][idx])
    kinds = cr.record_kind_from_tpa(al.tpa)
    assert set(kinds) == {"testpulse", "controlpulse"}
    np.testing.assert_array_equal(kinds, truth["kind"][idx])
    # the pulses really sit there in the csmpl stream, with the drifting response
    par = cr.read_par(paths["par"])
    stream = open_csmpl(paths["csmpl"], par.sample_frequency, par.record_length)
    peak_lag = int(np.argmax(truth["pulse_shape"]))  # samples from onset to maximum
    tp = kinds == "testpulse"
    heights = []
    for s in al.samples[tp]:
        v = stream.read(s - 200, s + 600)
        seg = v - v[:, :190].mean(axis=1, keepdims=True)
        onset = int(np.argmax(np.correlate(seg[0], truth["pulse_shape"][:400], "valid")))
        assert abs(onset - 200) <= 1
        heights.append(seg[0, 200 + peak_lag])
    resp = np.array(heights) / (truth["volts_per_tpa"][0] * al.tpa[tp])
    big = al.tpa[tp] >= 0.5
    np.testing.assert_allclose(resp[big], truth["response"][idx][tp][big], rtol=0.03)
    assert truth["stream_start_time"] == pytest.approx(cr.stream_start_time(par))
    assert stream.n_channels == 2 and (truth["kind"] == "particle").any()


def test_alignment_outside_stream(tmp):
    truth = write_cresst_stream_run(tmp, duration=4.0, stamps_before_start=2, seed=2)
    paths, n = truth["paths"], truth["n_samples"]
    with pytest.raises(InputError, match=r"mock_001.test_stamps: 2 of \d+ test stamps fall outside .*indices 0, 1\)"):
        cr.test_pulse_samples(paths["test_stamps"], paths["dig_stamps"], par=paths["par"], n_samples=n, outside="error")
    short = cr.test_pulse_samples(paths["test_stamps"], paths["dig_stamps"], par=paths["par"], n_samples=n // 2)
    assert short.n_dropped > 2 and (short.samples < n // 2).all()
    # every stamp outside: an error, whatever `outside` says
    far = cr.read_test_stamps(paths["test_stamps"])
    far["stamp"] += np.uint64(10 * 10_000_000 * 60)
    cr.write_test_stamps(tmp / "far.test_stamps", far["stamp"], far["tpa"], channel=far["channel"])
    with pytest.raises(InputError, match=r"far.test_stamps: all \d+ test stamps fall outside"):
        cr.test_pulse_samples(tmp / "far.test_stamps", paths["dig_stamps"], par=paths["par"], n_samples=n)
    with pytest.raises(InputError, match="no sample frequency"):
        cr.test_pulse_samples(paths["test_stamps"], paths["dig_stamps"], par=None, n_samples=n)
    only = cr.test_pulse_samples(paths["test_stamps"], paths["dig_stamps"], par=None, n_samples=n,
                                 sample_frequency=25_000.0, channels=[7])
    assert len(only.samples) == 0


# ----------------------------------------------------------------------------------- record kinds

def test_record_kind_from_tpa():
    tpa = np.array([0.0, -1.0, 0.1, 3.0, 10.0, 10.1, 10.2, 20.0, -0.5], dtype=np.float32)
    kinds = cr.record_kind_from_tpa(tpa)
    assert list(kinds) == ["particle", "noise", "testpulse", "testpulse", "testpulse", "testpulse",
                           "controlpulse", "controlpulse", "noise"]
    assert cr.DEFAULT_CONTROL_THRESHOLD == 10.1
    assert list(cr.record_kind_from_tpa([5.0, 2.0], control_threshold=4.0)) == ["controlpulse", "testpulse"]
    assert cr.record_kind_from_tpa(np.zeros((2, 3))).shape == (2, 3)
    with pytest.raises(ValueError, match="NaN"):
        cr.record_kind_from_tpa([np.nan])


def test_rdt_cut_at_a_record_boundary_is_a_warning_and_an_attr(tmp, caplog):
    """An rdt file cut after a whole record (the last trigger lacks its second channel) is read,
    the incomplete trigger skipped, and that is said at WARNING and kept in the store's attrs
    (issue 21: it was only in an INFO summary)."""
    import logging

    from cryopipe.io.records import rdt_record_batches

    truth = write_cresst_rdt_run(tmp, n_particle=4, n_noise=2, n_testpulse=2, n_control=0, record_length=256, seed=1)
    rdt = truth["paths"]["rdt"]
    whole = cr.open_rdt(rdt)
    record_bytes = whole.dtype.itemsize
    n_events = whole.n_events
    with open(rdt, "r+b") as fh:                        # drop the last record: one channel of the last trigger
        fh.truncate(whole.n_records * record_bytes - record_bytes)
    spec = dict(rdt=str(rdt), par=str(truth["paths"]["par"]), record_length=256,
                sample_frequency=whole.sample_frequency, channels=["a", "b"])
    with caplog.at_level(logging.INFO, logger="cryopipe"):
        first, _, summary = rdt_record_batches(spec)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "1 of" in warnings[0].getMessage() and "truncated" in warnings[0].getMessage()
    assert "the last trigger is one of them" in warnings[0].getMessage()
    assert first.attrs["n_incomplete_events"] == 1 and first.sizes["event"] == n_events - 1
    # a whole file: no warning, attr 0
    truth = write_cresst_rdt_run(tmp / "ok", n_particle=4, n_noise=2, n_testpulse=2, n_control=0,
                                 record_length=256, seed=1)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="cryopipe"):
        first, _, _ = rdt_record_batches({**spec, "rdt": str(truth["paths"]["rdt"]), "par": str(truth["paths"]["par"])})
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert first.attrs["n_incomplete_events"] == 0


def test_rdt_clock_counter_that_does_not_follow_the_time_stamps_is_a_warning(tmp, caplog):
    """trigger_time comes from the header's clock counter, timestamp from its absolute stamps: where
    the two advance differently (Cait's mock writes seconds into time_high) the reader says so."""
    import logging

    from cryopipe.io.records import rdt_record_batches

    truth = write_cresst_rdt_run(tmp, n_particle=20, n_noise=10, n_testpulse=10, n_control=0, record_length=256,
                                 seed=2)
    rdt = truth["paths"]["rdt"]
    spec = dict(rdt=str(rdt), par=str(truth["paths"]["par"]), record_length=256, sample_frequency=25_000.0,
                channels=["a", "b"])
    with caplog.at_level(logging.INFO, logger="cryopipe"):
        first, _, _ = rdt_record_batches(spec)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    np.testing.assert_allclose(np.diff(first["trigger_time"].values), np.diff(first["timestamp"].values), atol=1e-6)
    f = cr.open_rdt(rdt)
    rec = np.memmap(rdt, dtype=f.dtype, mode="r+")
    rec["time_high"] = np.rint(rec["abs_time_s"] - truth["start_time"]).astype(np.uint32)   # seconds, as Cait's mock
    rec["time_low"] = 0
    rec.flush()
    del rec
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="cryopipe"):
        rdt_record_batches(spec)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and str(rdt) in warnings[0] and "clock counter" in warnings[0], warnings
    assert "trigger_time" in warnings[0]
