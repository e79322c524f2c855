"""LJH reader (cryopipe.io.ljh) against an independent writer (struct, by hand) and the real NIST files.

The layout is the one of ``doc/LJHfiles.md`` (usnistgov/mass): 2.2 records = int64 row counter,
int64 POSIX microseconds, uint16 samples; 2.1 records = uint8 4-us tick, one unused byte, uint32
millisecond counter, uint16 samples. regress_chan3.ljh is evaluation data: never read here.
"""
from __future__ import annotations

import re
import struct
from pathlib import Path

import numpy as np
import pytest

from cryopipe.errors import InputError
from cryopipe.io.ljh import read_ljh
from ljh_util import write_ljh_by_hand

from real_data import NIST_DIR as REAL
needs_real = pytest.mark.skipif(not REAL.is_dir(), reason="real NIST LJH files not present")


@pytest.fixture
def samples():
    rng = np.random.default_rng(3)
    return rng.integers(0, 65536, size=(5, 12), dtype=np.int64).astype(np.uint16)


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"])
def test_v22_records_timestamps_row_counts(tmp_path, samples, newline):
    rows = 4
    rc = np.array([400, 448, 500, 1_000_000_000_000, 1_000_000_000_048]) * 1 + 1
    usec = np.array([1_687_806_373_126_882, 1_687_806_373_130_978, 1_687_806_373_135_074,
                     1_687_806_400_000_000, 1_687_806_400_000_061])
    p = write_ljh_by_hand(tmp_path / "a_chan1.ljh", "2.2.1", samples, rows=rows, row=1, row_counts=rc,
                          posix_usec=usec, newline=newline, presamples=3)
    f = read_ljh(p)
    assert f.version == "2.2" and f.version_string == "2.2.1"
    assert f.n_records == 5 and f.n_samples == 12 and f.presamples == 3
    # the trigger: Presamples in DASTARD files, Presamples + 3 from any other writer (MATTER's offset)
    assert f.pretrigger == (3 if "DASTARD" in f.header["Software Version"] else 6)
    assert f.sample_frequency == pytest.approx(1 / 5.12e-6, rel=1e-12)
    assert f.records.dtype == np.uint16 and f.records.shape == (5, 12)
    np.testing.assert_array_equal(f.records, samples)
    np.testing.assert_array_equal(f.row_count, rc)
    np.testing.assert_array_equal(f.frame_count, rc // rows)
    # microseconds as written, to float64 seconds (1 us resolution kept at epoch magnitudes)
    np.testing.assert_allclose(f.timestamps, usec / 1e6, rtol=0, atol=1e-6)
    assert f.timestamps[1] - f.timestamps[0] == pytest.approx(4096e-6, abs=1e-6)
    assert f.header["Software Version"].startswith("hand-written test")
    assert f.number_of_rows == rows and f.row_number == 1 and f.polarity is None


def test_v21_timestamps_and_derived_frames(tmp_path, samples):
    # 2.1: t = offset + ms / 1e3 + tick * 4e-6; frame = ceil(ticks * 4 us / timebase)
    ms = np.array([10_476_435, 10_476_544, 10_476_891, 10_476_904, 4_000_000_000])
    ticks = np.array([92, 232, 190, 0, 249])
    offset = 1_439_485_224.407454
    p = write_ljh_by_hand(tmp_path / "b.ljh", "2.1.0", samples, rows=16, row=2, ms=ms, ticks=ticks,
                          offset=offset, timebase=5.12e-6)
    f = read_ljh(p)
    assert f.version == "2.1"
    np.testing.assert_array_equal(f.records, samples)
    expect_t = offset + ms * 1e-3 + ticks * 4e-6
    np.testing.assert_allclose(f.timestamps, expect_t, rtol=0, atol=1e-6)
    total_4us = ms * 250 + ticks
    frames = np.array([-(-int(t) * 4000 // 5120) for t in total_4us])
    np.testing.assert_array_equal(f.frame_count, frames)
    np.testing.assert_array_equal(f.row_count, frames * 16 + 2)


def test_volts_and_inverted(tmp_path, samples):
    p = write_ljh_by_hand(tmp_path / "c.ljh", "2.1.0", samples, ms=np.arange(5), ticks=np.zeros(5),
                          extra=["Inverted: Yes"])
    f = read_ljh(p)
    assert f.polarity == -1
    np.testing.assert_allclose(f.volts(start=1, stop=3), samples[1:3] * (20 / 2**16), rtol=1e-6)


def test_back_to_back_gaps(tmp_path):
    n, rows = 10, 3
    data = np.zeros((4, n), np.uint16)
    rc = np.array([0, n, 2 * n, 5 * n]) * rows + 2
    p = write_ljh_by_hand(tmp_path / "d.ljh", "2.2.0", data, rows=rows, row=2, row_counts=rc,
                          posix_usec=np.arange(4))
    np.testing.assert_array_equal(read_ljh(p).record_gaps(), [0, 0, 2 * n])


def _write_ok(tmp_path, **kw):
    data = np.arange(24, dtype=np.uint16).reshape(3, 8)
    return write_ljh_by_hand(tmp_path / "e.ljh", kw.pop("version", "2.2.0"), data,
                             row_counts=np.arange(3) * 8, posix_usec=np.arange(3), ms=np.arange(3),
                             ticks=np.zeros(3), **kw)


def test_truncated_last_record(tmp_path):
    p = _write_ok(tmp_path)
    whole = read_ljh(p).n_records
    p.write_bytes(p.read_bytes()[:-5])
    with pytest.raises(InputError, match=r"e\.ljh: truncated last record") as err:
        read_ljh(p)
    # the message's remedy works: a copy cut to the bytes it names holds the whole records
    cut = int(re.search(r"truncate -s (\d+) COPY", str(err.value)).group(1))
    (tmp_path / "cut.ljh").write_bytes(p.read_bytes()[:cut])
    assert read_ljh(tmp_path / "cut.ljh").n_records == whole - 1


def test_header_disagrees_with_size(tmp_path):
    # a 2.1 header on 2.2 records: the binary part is whole records of the other layout
    p = _write_ok(tmp_path)
    p.write_bytes(p.read_bytes().replace(b"Version: 2.2.0", b"Version: 2.1.0"))
    with pytest.raises(InputError, match=r"e\.ljh: LJH header disagrees with the file size.*2\.2 layout"):
        read_ljh(p)
    # a header claiming longer records than the file holds
    p = _write_ok(tmp_path)
    p.write_bytes(p.read_bytes().replace(b"Total Samples: 8", b"Total Samples: 80"))
    with pytest.raises(InputError, match=r"e\.ljh: LJH header disagrees with the file size"):
        read_ljh(p)


def test_unknown_version_and_missing_keys(tmp_path):
    p = _write_ok(tmp_path)
    p.write_bytes(p.read_bytes().replace(b"Version: 2.2.0", b"Version: 3.0.0"))
    with pytest.raises(InputError, match=r"e\.ljh: unknown LJH version '3\.0\.0'"):
        read_ljh(p)
    for key in ("Timebase", "Presamples", "Total Samples", "Save File Format Version"):
        p = _write_ok(tmp_path, drop=(key,))
        with pytest.raises(InputError, match=rf"e\.ljh: LJH header has no '{key}' line"):
            read_ljh(p)
    p = tmp_path / "none.ljh"
    p.write_bytes(b"just text\n" * 5)
    with pytest.raises(InputError, match=r"none\.ljh: not an LJH file"):
        read_ljh(p)
    with pytest.raises(InputError, match=r"missing\.ljh: LJH file not found"):
        read_ljh(tmp_path / "missing.ljh")


def _raw_record(path, header_end, index, record_bytes):
    with open(path, "rb") as f:
        f.seek(header_end + index * record_bytes)
        return f.read(record_bytes)


@needs_real
def test_real_v21_regress_chan1_by_hand():
    path = REAL / "regress_chan1.ljh"
    raw = path.read_bytes()
    end = raw.index(b"#End of Header\r\n") + len(b"#End of Header\r\n")  # MATTER writes CRLF
    f = read_ljh(path)
    assert f.header_bytes == end
    # MATTER wrote Presamples 3 below the trigger sample (mass adds 3: its DASTARD copy says 515)
    assert f.version == "2.1" and f.n_samples == 1024 and f.presamples == 512 and f.pretrigger == 515
    assert f.sample_frequency == pytest.approx(1 / 5.12e-6)
    rec = 6 + 2 * 1024
    assert f.n_records == (len(raw) - end) // rec == 300
    for i in (0, 1, 150, 299):
        b = _raw_record(path, end, i, rec)
        tick, _unused, ms = struct.unpack("<BBI", b[:6])
        np.testing.assert_array_equal(f.records[i], struct.unpack("<1024H", b[6:]))
        assert f.timestamps[i] == pytest.approx(1439485224.407454 + ms / 1e3 + tick * 4e-6, abs=1e-6)
    assert f.polarity == 1  # "Inverted: No"


@needs_real
@pytest.mark.parametrize("name", ["20230626_run0000_chan4102.ljh", "20230626_run0000_chan4109.ljh"])
def test_real_v22_noise_by_hand(name):
    path = REAL / name
    raw = path.read_bytes()
    end = raw.index(b"#End of Header\n") + len(b"#End of Header\n")
    f = read_ljh(path)
    assert f.version == "2.2" and f.n_samples == 1000 and f.pretrigger == 250
    assert f.number_of_rows == 33
    rec = 16 + 2 * 1000
    assert f.n_records == (len(raw) - end) // rec == 610
    for i in (0, 7, 609):
        b = _raw_record(path, end, i, rec)
        rc, usec = struct.unpack("<qq", b[:16])
        assert f.row_count[i] == rc and f.frame_count[i] == rc // 33
        assert f.timestamps[i] == pytest.approx(usec * 1e-6, abs=1e-6)
        np.testing.assert_array_equal(f.records[i], struct.unpack("<1000H", b[16:]))
    # DASTARD wrote these noise records back to back: the frame counter advances by one record
    assert np.all(f.record_gaps() == 0)


@needs_real
def test_real_dastard_v21_file():
    """DASTARD's 2.1 variant ('Digitized Word Size In Bytes', LF newlines, no 'Inverted' line)."""
    path = REAL / "regress_dastard_chan1.ljh"
    raw = path.read_bytes()
    end = raw.index(b"#End of Header\n") + len(b"#End of Header\n")
    f = read_ljh(path)
    assert (f.version, f.n_samples, f.pretrigger, f.n_records, f.polarity) == ("2.1", 1024, 515, 10, None)
    assert f.number_of_rows == 24 and f.row_number == 0
    b = _raw_record(path, end, 9, 6 + 2048)
    tick, _, ms = struct.unpack("<BBI", b[:6])
    assert f.timestamps[9] == pytest.approx(1565013358.937494 + ms / 1e3 + tick * 4e-6, abs=1e-6)
    np.testing.assert_array_equal(f.records[9], struct.unpack("<1024H", b[6:]))
