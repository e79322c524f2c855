"""Bad CRESST side files found when the workflow loads: one line naming the file and the problem, exit 1,
no traceback frames (Snakemake dry runs on files written by the independent numpy writer of
test_io_cresst_bad_files); and the load-time warning of an LJH stream's unused noise_ljh."""
from __future__ import annotations

import numpy as np
import pytest

from ljh_util import write_pulse_ljh
from test_io_cresst_bad_files import daq_con, daq_par, daq_rdt, daq_test_stamps
from workflow_util import snakemake, write_config

pytestmark = pytest.mark.slow   # runs Snakemake (dry runs: a few seconds each)


def dry_run(tmp_path, run: dict):
    cfg = {"runs": {"x": run}, "cleaning": {"enabled": False}, "results": str(tmp_path / "results")}
    return snakemake(tmp_path, write_config(tmp_path / "c.yaml", cfg), "-n", check=False)


def stderr_lines(proc):
    return [ln for ln in proc.stderr.splitlines() if ln.strip() and not ln.startswith("Using workflow specific")]


def one_line_failure(proc, *words):
    assert proc.returncode == 1, proc.stderr[-3000:]
    lines = stderr_lines(proc)
    assert len(lines) == 1, proc.stderr
    assert 'File "' not in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]


def csmpl_run(tmp_path, *, time_base_us=40, stamps=None):
    csmpl = tmp_path / "s.csmpl"
    np.random.default_rng(1).normal(0, 5, 25000 * 30).astype("<i2").tofile(csmpl)
    run = {"csmpl": [str(csmpl)], "par": str(daq_par(tmp_path / "s.par", record_length=8192,
                                                     time_base_us=time_base_us))}
    if stamps is not None:
        start = 1_000_000
        daq_test_stamps(tmp_path / "s.test_stamps", start + np.array([1e5, 3e5, 5e5], np.uint64) * 400, stamps)
        dig = np.zeros(3, [("stamp", "<u8"), ("bank", "<u4"), ("bank2", "<u4")])
        dig["stamp"] = start + np.arange(1, 4, dtype=np.uint64) * 416_204_800
        dig.tofile(tmp_path / "s.dig_stamps")
        run.update(test_stamps=str(tmp_path / "s.test_stamps"), dig_stamps=str(tmp_path / "s.dig_stamps"))
    return run


@pytest.mark.parametrize("case", ["truncated", "nan"])
def test_bad_test_stamps_are_one_line(tmp_path, case):
    run = csmpl_run(tmp_path, stamps=[1.0, np.nan, 3.0] if case == "nan" else [1.0, 2.0, 3.0])
    if case == "truncated":
        with open(run["test_stamps"], "r+b") as fh:
            fh.truncate(40)
    words = ["truncated record at byte 32"] if case == "truncated" else ["NaN test pulse amplitude"]
    one_line_failure(dry_run(tmp_path, run), "run x", "s.test_stamps", *words)


def test_truncated_con_is_one_line(tmp_path):
    daq_rdt(tmp_path / "r.rdt", n_events=6, length=256)
    run = {"rdt": str(tmp_path / "r.rdt"), "par": str(daq_par(tmp_path / "r.par", record_length=256)),
           "con": str(daq_con(tmp_path / "r.con", [0, 1, 0], [1.0, 1.1, 1.2], [1000, 2000, 3000]))}
    assert dry_run(tmp_path, run).returncode == 0
    with open(run["con"], "r+b") as fh:
        fh.truncate(12 + 3 * 24 - 7)
    one_line_failure(dry_run(tmp_path, run), "run x", "r.con", "truncated record")


def test_par_without_time_base(tmp_path):
    run = csmpl_run(tmp_path, time_base_us=None)
    one_line_failure(dry_run(tmp_path, run), "s.par", "Time base", "sample_frequency")
    ok = dry_run(tmp_path, {**run, "sample_frequency": 25000})
    assert ok.returncode == 0, ok.stderr[-3000:]


def test_unused_noise_ljh_of_an_ljh_stream_is_a_warning_at_load(tmp_path):
    s, _, _ = write_pulse_ljh(tmp_path / "s.ljh", n_records=400, n=1024, presamples=256, fs=100_000.0,
                              back_to_back=True)
    q, _, _ = write_pulse_ljh(tmp_path / "noise.ljh", n_records=40, n=1024, presamples=256, fs=100_000.0,
                              pulses=False, seed=2)
    proc = dry_run(tmp_path, {"ljh": str(s), "noise_ljh": str(q)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    warned = [ln for ln in stderr_lines(proc) if "noise_ljh is not used" in ln]
    assert len(warned) == 1 and warned[0].startswith("Warning: run x: ") and "noise.ljh" in warned[0], proc.stderr
