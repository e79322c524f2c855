"""The suite's own guards (tests/conftest.py): in CI a skipped browser/SLURM test fails the run, and a
test that runs Snakemake without the `slow` mark fails (so `pytest -m "not slow"` never runs one)."""
import sys
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

CONFTEST = (Path(__file__).parent / "conftest.py").read_text()

PROBE = '''
import subprocess, sys
import pytest

@pytest.mark.ci_required
@pytest.mark.skipif(True, reason="no chromium on PATH")
def test_needs_browser():
    pass

@pytest.mark.skipif(True, reason="optional data not present")
def test_optional():
    pass

def test_unmarked_runs_snakemake():
    subprocess.run([sys.executable, "-m", "snakemake", "--version"], capture_output=True)

@pytest.mark.slow
def test_marked_runs_snakemake():
    assert subprocess.run([sys.executable, "-m", "snakemake", "--version"], capture_output=True).returncode == 0

def test_other_subprocesses_run():
    assert subprocess.run([sys.executable, "-c", "print(1)"], capture_output=True).returncode == 0
'''


@pytest.mark.slow  # more than 5 s (the fast subset: pytest -m 'not slow')
@pytest.mark.parametrize("ci", ["true", ""])
def test_ci_required_skip_fails_only_in_ci_and_unmarked_snakemake_always_fails(pytester, monkeypatch, ci):
    monkeypatch.setenv("CI", ci)
    pytester.makeconftest(CONFTEST)
    pytester.makeini("[pytest]\nmarkers =\n    slow: runs Snakemake\n")
    pytester.makepyfile(test_probe=PROBE)
    result = pytester.runpytest_subprocess("-rA", "-p", "no:cacheprovider")
    outcomes = result.parseoutcomes()
    failed = outcomes.get("failed", 0) + outcomes.get("errors", 0)   # a skip at setup fails as an error
    if ci:
        result.stdout.fnmatch_lines(["*test_needs_browser*skipped in CI*no chromium on PATH*"])
        assert failed == 2 and outcomes.get("skipped") == 1, outcomes
        assert result.ret != 0
    else:
        assert failed == 1 and outcomes.get("skipped") == 2, outcomes
    result.stdout.fnmatch_lines(["*mark it @pytest.mark.slow*", "*FAILED*test_unmarked_runs_snakemake*"])
    assert outcomes.get("passed") == 2, outcomes


def test_ci_run_script_sets_ci_and_checks_chromium_the_way_the_test_does():
    text = (Path(__file__).parents[1] / ".ci" / "run").read_text()
    assert "CI=true" in text and "command -v chromium" in text
    import test_view
    assert 'shutil.which("chromium")' in Path(test_view.__file__).read_text()
    assert sys.executable
