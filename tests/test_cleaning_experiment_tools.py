"""The README's tools/experiments commands run end to end at a tiny scale (their figures are
measured at full scale; here: they run, print their tables and refuse test seeds)."""
import subprocess
import sys

import pytest

from tool_util import ROOT

EXPERIMENTS = ROOT / "tools" / "experiments"
SMALL = ["--detectors", "1", "--per-class", "10"]


def run_tool(name, *args, expect_ok=True):
    out = subprocess.run([sys.executable, str(EXPERIMENTS / name), *map(str, args)], capture_output=True, text=True,
                         cwd=ROOT, timeout=900)
    assert (out.returncode == 0) == expect_ok, out.stdout[-2000:] + out.stderr[-2000:]
    return out.stdout + out.stderr


@pytest.mark.slow
@pytest.mark.parametrize("command, expected", [
    (["compare", "universal", "--seed", "5"], "universal (cutoff"),
    (["ablate", "--seed", "5"], "no mains:"),
    (["lines", "--seeds", "5"], "mean over seeds: with"),
    (["ensemble", "universal", "universal", "--seeds", "5"], "mean over seeds ensemble:"),
    (["oracle", "--seeds", "5"], "BA ceiling:"),
    (["oracle", "--generator", "own", "--seeds", "5", "--block-means"], "BA ceiling:"),
    (["oracle-rescue", "--seeds", "5"], "q 0.02:"),
])
def test_independent_diagnosis_commands(command, expected):
    assert expected in run_tool("independent_diagnosis.py", *SMALL, *command)


@pytest.mark.slow
def test_independent_diagnosis_refuses_test_seeds():
    said = run_tool("independent_diagnosis.py", *SMALL, "compare", "universal", "--seed", "1001", expect_ok=False)
    assert "test seed" in said


@pytest.mark.slow
def test_compare_models_command(tmp_path):
    said = run_tool("compare_models.py", "--models", "cnn", "resnet", "--scale", "0.002", "--epochs", "1",
                    "--n-per-class", "5", "--pulses", "20", "--pileups", "20", "--out", tmp_path)
    assert "| cnn |" in said and "| resnet |" in said
    assert (tmp_path / "models.md").is_file()


@pytest.mark.slow
def test_leave_one_family_out_command(tmp_path):
    said = run_tool("leave_one_family_out.py", "--scale", "0.002", "--epochs", "1", "--test-per-class", "5",
                    "--families", "saturation", "--out", tmp_path)
    assert "saturation     all" in said and "without_saturation" in said
