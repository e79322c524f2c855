"""LJH reader (cryopipe.io.ljh) on layouts written by an independent numpy writer with known truth:
subframe counters (DASTARD >= 2024), CR-only headers, the MATTER / XCALDAQ Presamples offset,
plausibility of the record headers against Total Samples, and header numbers that must be whole.

The writer follows ``doc/LJHfiles.md`` (usnistgov/mass) and the header DASTARD writes (key order of
its Go writer): 2.2 records = int64 subframe counter, int64 POSIX microseconds, uint16 samples;
2.1 records = uint8 4-us tick, one unused byte, uint32 milliseconds, uint16 samples.
regress_chan3.ljh is evaluation data: never read here.
"""
from __future__ import annotations

import numpy as np
import pytest

from cryopipe.errors import InputError
from cryopipe.io.ljh import open_ljh_run, open_ljh_stream, read_ljh

from real_data import NIST_DIR as REAL
needs_real = pytest.mark.skipif(not (REAL / "regress_dastard_chan1.ljh").is_file(),
                                reason="real NIST LJH files not present")

T0 = 1_700_000_000.0


def header(*, presamples, nsamples, timebase=1e-5, version="2.2.1", software="DASTARD version 0.3.2",
           source="Lancero", rows=1, row=0, divisions=None, sub_offset=None, newline="\n", extra=()):
    """Header bytes in DASTARD's key order; `software` None leaves out the Software Version line."""
    lines = ["#LJH Memorial File Format", f"Save File Format Version: {version}"]
    if software is not None:
        lines.append(f"Software Version: {software}")
    lines += [f"Data source: {source}", f"Number of rows: {rows}", "Number of columns: 1",
              f"Row number (from 0-{rows - 1} inclusive): {row}", "Column number (from 0-0 inclusive): 0"]
    if divisions is not None:
        lines += [f"Subframe divisions: {divisions}", f"Subframe offset: {sub_offset or 0}"]
    lines += ["Digitized Word Size In Bytes: 2", f"Presamples: {presamples}", f"Total Samples: {nsamples}",
              f"Timestamp offset (s): {T0:.6f}", f"Timebase: {timebase:e}", *extra, "#End of Header"]
    return (newline.join(lines) + newline).encode("latin-1")


def write22(path, head: bytes, samples, first_word, usec):
    samples = np.asarray(samples, np.uint16)
    rec = np.zeros(len(samples), [("w", "<i8"), ("us", "<i8"), ("d", "<u2", (samples.shape[1],))])
    rec["w"], rec["us"], rec["d"] = first_word, usec, samples
    path.write_bytes(head + rec.tobytes())
    return path


def write21(path, head: bytes, samples, ms, tick):
    samples = np.asarray(samples, np.uint16)
    rec = np.zeros(len(samples), [("t", "u1"), ("x", "u1"), ("ms", "<u4"), ("d", "<u2", (samples.shape[1],))])
    rec["t"], rec["ms"], rec["d"] = tick, ms, samples
    path.write_bytes(head + rec.tobytes())
    return path


def noise(n_rec, n, seed=0, base=30000):
    rng = np.random.default_rng(seed)
    return np.clip(np.rint(base + rng.normal(0, 20, (n_rec, n))), 0, 65535).astype(np.uint16)


# ------------------------------------------------------------------ 1. subframe divisions

@pytest.mark.parametrize("back_to_back", [True, False])
def test_subframe_counter_of_dastard_2024_abaco_files(tmp_path, back_to_back):
    """'Subframe divisions: 64' with 'Number of rows: 4' (Abaco/uMUX): the first word is
    frame * 64 + offset; frames, gaps and the stream come from it, not from Number of rows."""
    n_rec, n, tb, div, off = 40, 256, 8e-6, 64, 5
    rng = np.random.default_rng(1)
    step = n if back_to_back else n + rng.integers(10, 900, n_rec)
    frames = 555_000 + np.cumsum(np.r_[0, np.broadcast_to(step, (n_rec,))[1:]])
    usec = np.rint((T0 + frames * tb) * 1e6).astype(np.int64)
    head = header(presamples=64, nsamples=n, timebase=tb, source="Abaco", rows=4, row=2, divisions=div,
                  sub_offset=off)
    d = noise(n_rec, n, seed=2)
    f = read_ljh(write22(tmp_path / "abaco_chan2.ljh", head, d, frames * div + off, usec))
    assert f.subframe_divisions == 64 and f.number_of_rows == 4
    np.testing.assert_array_equal(f.frame_count, frames)
    np.testing.assert_array_equal(f.row_count, frames * div + off)
    np.testing.assert_array_equal(f.records, d)
    np.testing.assert_array_equal(f.record_gaps(), np.diff(frames) - n)
    if back_to_back:
        s = open_ljh_stream([f.path])
        assert s.n_samples == n_rec * n
        assert s.start_time == pytest.approx(usec[0] * 1e-6 - 64 * tb, abs=1e-6)
    else:
        with pytest.raises(InputError, match=r"abaco_chan2\.ljh: not a continuous stream"):
            open_ljh_stream([f.path])


@pytest.mark.parametrize("source", ["Lancero", "Abaco"])
def test_without_subframe_lines_the_counter_counts_rows(tmp_path, source):
    """No 'Subframe divisions' line (DASTARD before 2024, MATTER): counter = frame * Number of rows +
    Row number, whatever the source (the 2023 DASTARD Abaco files count 33 rows, see below)."""
    n_rec, n, rows, row = 12, 100, 33, 6
    frames = 10_000 + np.arange(n_rec) * n
    head = header(presamples=25, nsamples=n, source=source, rows=rows, row=row)
    f = read_ljh(write22(tmp_path / "a.ljh", head, noise(n_rec, n), frames * rows + row,
                         np.rint((T0 + frames * 1e-5) * 1e6).astype(np.int64)))
    assert f.subframe_divisions == rows
    np.testing.assert_array_equal(f.frame_count, frames)
    assert open_ljh_run([f.path]).back_to_back


@needs_real
def test_real_2023_abaco_files_count_rows():
    """DASTARD 0.2.11 'Data source: Abaco', 'Number of rows: 33', no Subframe lines: back-to-back
    noise records whose counters step by 1000 samples x 33 rows, and both channels share frames."""
    run = open_ljh_run([REAL / "20230626_run0000_chan4102.ljh", REAL / "20230626_run0000_chan4109.ljh"])
    f = run.files[0]
    assert f.header["Data source"] == "Abaco" and f.subframe_divisions == 33
    assert np.all(np.diff(f.row_count) == 33 * 1000) and run.back_to_back


def test_subframe_divisions_must_be_positive(tmp_path):
    head = header(presamples=2, nsamples=8, rows=4, divisions=0)
    p = write22(tmp_path / "z.ljh", head, noise(3, 8), [0, 8, 16], np.rint(T0 * 1e6) + np.arange(3))
    with pytest.raises(InputError, match=r"z\.ljh: LJH header 'Subframe divisions: 0' must be at least 1"):
        read_ljh(p)


# ------------------------------------------------------------------ 2. end of the header

@pytest.mark.parametrize("newline", ["\r", "\n", "\r\n"])
@pytest.mark.parametrize("first", [7, 10, 13])
def test_header_ends_after_its_own_line_end(tmp_path, newline, first):
    """A CR-only header ends after one CR even where the first binary byte is 0x0A (row counter 10);
    LF and CRLF headers likewise take their own line end only (0x0D first: counter 13)."""
    n_rec, n = 20, 512
    head = header(presamples=128, nsamples=n, newline=newline)
    counters = first + np.arange(n_rec) * 2000
    usec = np.rint((T0 + counters * 1e-5) * 1e6).astype(np.int64)
    d = noise(n_rec, n, seed=5)
    f = read_ljh(write22(tmp_path / "cr.ljh", head, d, counters, usec))
    assert f.header_bytes == len(head) and f.n_records == n_rec
    np.testing.assert_array_equal(f.row_count, counters)
    np.testing.assert_array_equal(f.records, d)
    np.testing.assert_allclose(f.timestamps, usec * 1e-6, rtol=0, atol=1e-6)


def test_end_of_header_only_at_the_start_of_a_line(tmp_path):
    head = header(presamples=2, nsamples=8, extra=["Pixel Name: #End of Header"])
    p = write22(tmp_path / "e.ljh", head, noise(3, 8), [0, 8, 16], np.rint(T0 * 1e6) + np.arange(3))
    f = read_ljh(p)
    assert f.header_bytes == len(head) and f.header["Pixel Name"] == "#End of Header"


# ------------------------------------------------------------------ 3. Presamples of MATTER / XCALDAQ

@pytest.mark.parametrize("software, trigger", [("DASTARD version 0.3.2", 128), ("MATTER version 1.2", 131),
                                               ("XCALDAQ client 2.0", 131), (None, 131)])
def test_trigger_sample_is_presamples_plus_3_unless_dastard(tmp_path, software, trigger):
    """The pulses start at sample `trigger`; MATTER / XCALDAQ (and unnamed writers) wrote Presamples 3 lower."""
    n_rec, n = 30, 512
    x = np.arange(n)
    d = noise(n_rec, n, seed=7)
    d[:, trigger:] += np.rint(2000 * np.exp(-(x[trigger:] - trigger) / 60.0)).astype(np.uint16)
    head = header(presamples=128, nsamples=n, version="2.1.0", software=software)
    t_ms = 3000 + np.arange(n_rec) * 50
    f = read_ljh(write21(tmp_path / "m.ljh", head, d, t_ms, np.zeros(n_rec)))
    assert f.presamples == 128 and f.pretrigger == trigger
    rise = np.argmax(np.asarray(f.records, float) - np.median(f.records[:, :100], axis=1)[:, None] > 1000, axis=1)
    assert np.all(rise == f.pretrigger)
    assert open_ljh_run([f.path]).pretrigger == trigger


def test_presamples_outside_the_record_after_the_correction(tmp_path):
    head = header(presamples=510, nsamples=512, software="MATTER version 1.2")
    p = write22(tmp_path / "o.ljh", head, noise(3, 512), [0, 600, 1200], np.rint(T0 * 1e6) + np.arange(3))
    with pytest.raises(InputError, match=r"o\.ljh: LJH header 'Presamples: 510' \(trigger at Presamples \+ 3 = 513"):
        read_ljh(p)


@needs_real
def test_real_matter_file_and_its_dastard_copy_agree():
    """mass's regress_chan1.ljh (MATTER, Presamples 512) and regress_dastard_chan1.ljh (DASTARD,
    Presamples 515) hold the same first 10 records: the same trigger sample."""
    matter, dastard = read_ljh(REAL / "regress_chan1.ljh"), read_ljh(REAL / "regress_dastard_chan1.ljh")
    np.testing.assert_array_equal(matter.records[:10], dastard.records)
    assert (matter.presamples, dastard.presamples) == (512, 515)
    assert matter.pretrigger == dastard.pretrigger == 515


# ------------------------------------------------------------------ 4. Total Samples against the record headers

def _triggered22(tmp_path, name, n_rec=20, n=512, header_n=None, seed=3):
    frames = np.cumsum(np.random.default_rng(seed).integers(n + 10, 3 * n, n_rec))
    head = header(presamples=128, nsamples=header_n or n)
    return write22(tmp_path / name, head, noise(n_rec, n, seed=seed), frames,
                   np.rint((T0 + frames * 1e-5) * 1e6).astype(np.int64))


def test_total_samples_that_reads_two_records_as_one(tmp_path):
    """2.2: 16 + 2 * 1032 = 2 * (16 + 2 * 512): the sizes agree, the record headers of the even
    records are real ones, and every read record holds the next record's header among its samples."""
    p = _triggered22(tmp_path, "tsw.ljh", header_n=1032)
    with pytest.raises(InputError, match=r"tsw\.ljh: 'Total Samples: 1032' reads 2 records as one: .*every "
                                         r"1040 bytes, the record header of a record of 512 samples"):
        read_ljh(p)
    # three records as one: 16 + 2 * 1552 = 3 * 1040
    p = _triggered22(tmp_path, "tsw3.ljh", n_rec=21, header_n=1552)
    with pytest.raises(InputError, match=r"tsw3\.ljh: 'Total Samples: 1552' reads 3 records as one"):
        read_ljh(p)


def test_total_samples_that_reads_two_records_as_one_v21(tmp_path):
    """2.1: 6 + 2 * 1027 = 2 * (6 + 2 * 512)."""
    n_rec, n = 20, 512
    ms = 5000 + np.cumsum(np.random.default_rng(4).integers(20, 200, n_rec))
    head = header(presamples=128, nsamples=1027, version="2.1.0")
    p = write21(tmp_path / "t21.ljh", head, noise(n_rec, n), ms, np.arange(n_rec) * 12)
    with pytest.raises(InputError, match=r"t21\.ljh: 'Total Samples: 1027' reads 2 records as one"):
        read_ljh(p)


def test_total_samples_too_small(tmp_path):
    """16 + 2 * 252 = 1040 / 2: every other read record starts inside the samples: implausible stamps."""
    p = _triggered22(tmp_path, "small.ljh", header_n=252)
    with pytest.raises(InputError, match=r"small\.ljh: implausible record headers: .*is 'Total Samples: 252' "
                                         r"the record length\?"):
        read_ljh(p)
    # 2.1: 6 + 2 * 254 = (6 + 2 * 511) / 2: samples read as a millisecond counter (~2e9 ms) between true ones
    n_rec = 20
    head = header(presamples=128, nsamples=254, version="2.1.0")
    p = write21(tmp_path / "small21.ljh", head, noise(n_rec, 511), 5000 + np.arange(n_rec) * 40, np.zeros(n_rec))
    with pytest.raises(InputError, match=r"small21\.ljh: implausible record headers: .*'Total Samples: 254'"):
        read_ljh(p)


US0 = int(T0 * 1e6)


@pytest.mark.parametrize("counters, usec, message", [  # 2**63 - 10 us: the year 294247
    ([0, 5000, 4000, 9000], US0 + np.arange(4), r"the subframe counter goes backwards .* at record 2 \(4000\)"),
    ([0, 1000, 2000, 3000], US0 + np.array([3, 2, 4, 5]), r"the time stamps go backwards between records 0 and 1"),
    ([0, 1000, 2000, 3000], 2**63 - 10 + np.arange(4), r"record 0 has the time stamp \d+ us, not between 1970 and "
                                                        r"2100"),
    ([0, 1000, 2000, 3000], -5 + np.arange(4), r"record 0 has the time stamp -5 us, not between 1970 and 2100"),
])
def test_implausible_record_headers(tmp_path, counters, usec, message):
    p = write22(tmp_path / "bad.ljh", header(presamples=8, nsamples=32), noise(4, 32), counters, usec)
    with pytest.raises(InputError, match=rf"bad\.ljh: implausible record headers: {message}; "
                                         rf"is 'Total Samples: 32' the record length\?"):
        read_ljh(p)


@needs_real
def test_every_real_file_passes_the_plausibility_check():
    names = ["regress_chan1.ljh", "regress_noise_chan1.ljh", "regress_dastard_chan1.ljh",
             "20230626_run0000_chan4102.ljh", "20230626_run0000_chan4109.ljh"]
    assert [read_ljh(REAL / n).n_records for n in names] == [300, 300, 10, 610, 610]


# ------------------------------------------------------------------ 5. whole numbers; 6. empty file

@pytest.mark.parametrize("key, value", [("Presamples", "128.7"), ("Total Samples", "512.5"),
                                        ("Presamples", "nan"), ("Total Samples", "inf")])
def test_presamples_and_total_samples_must_be_whole(tmp_path, key, value):
    head = header(presamples=128, nsamples=512)
    head = head.replace(f"{key}: {128 if key == 'Presamples' else 512}\n".encode(), f"{key}: {value}\n".encode())
    p = write22(tmp_path / "frac.ljh", head, noise(3, 512), [0, 600, 1200], np.rint(T0 * 1e6) + np.arange(3))
    with pytest.raises(InputError, match=rf"frac\.ljh: LJH header '{key}: {value}' is not a whole number"):
        read_ljh(p)


def test_whole_numbers_written_as_floats_are_read(tmp_path):
    head = header(presamples=128, nsamples=512).replace(b"Presamples: 128\n", b"Presamples: 128.0\n")
    p = write22(tmp_path / "f.ljh", head, noise(3, 512), [0, 600, 1200], np.rint(T0 * 1e6) + np.arange(3))
    assert read_ljh(p).pretrigger == 128


def test_empty_file(tmp_path):
    p = tmp_path / "empty.ljh"
    p.write_bytes(b"")
    with pytest.raises(InputError, match=r"empty\.ljh: the file is empty \(0 bytes\)$"):
        read_ljh(p)
