"""Test-suite hooks.

CI (environment variable CI=true, set by .ci/run): a test marked ``ci_required`` (the real-browser
test of `cryopipe view`, the tests on the one-node SLURM cluster) that skips FAILS instead, with the
skip's reason: CI installs what they need, so a skip there means the install broke and the test
silently stopped running. Outside CI they skip as before, saying why.

Every test that runs Snakemake must be marked ``slow`` (`pytest -m "not slow"` is the fast subset):
`workflow_util.snakemake`, and any subprocess whose command runs snakemake, fail inside a test
without the mark.
"""
import os
import subprocess

import pytest

IN_CI = os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def pytest_configure(config):
    config.addinivalue_line("markers", "ci_required: must run (not skip) in CI (CI=true)")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if IN_CI and report.skipped and item.get_closest_marker("ci_required") is not None:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = (f"{item.nodeid}: skipped in CI (CI=true), where it must run: {reason}")


def _runs_snakemake(args) -> bool:
    argv = [str(a) for a in (args if isinstance(args, (list, tuple)) else [args])]
    return any(a == "snakemake" or a.endswith("/snakemake") for a in argv) or \
        any(" snakemake" in a or a.startswith("snakemake") for a in argv if " " in a)


class _NoSnakemakePopen(subprocess.Popen):
    def __init__(self, args, *a, **kw):
        if _runs_snakemake(args):
            self.args, self.returncode = args, None   # for repr() in the traceback
            raise AssertionError("this test runs Snakemake: mark it @pytest.mark.slow (the fast subset, "
                                 "pytest -m 'not slow', must not run workflows)")
        super().__init__(args, *a, **kw)


@pytest.fixture(autouse=True)
def _slow_mark_for_snakemake(request, monkeypatch):
    """Tell workflow_util.snakemake whether the running test is marked slow; in a test without the mark,
    starting a snakemake subprocess fails."""
    slow = request.node.get_closest_marker("slow") is not None
    monkeypatch.setenv("CRYOPIPE_TEST_SLOW", "1" if slow else "0")
    if not slow:
        monkeypatch.setattr(subprocess, "Popen", _NoSnakemakePopen)
