"""Helpers for workflow tests: a tiny simulated config and a Snakemake subprocess runner."""
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
SNAKEFILE = REPO / "Snakefile"


def tiny_config(results: Path, duration: float = 60.0, seed: int = 3) -> dict:
    """The default simulated module, shortened: 4096-sample records, a busy one-minute stream
    (enough clean pulses and noise records to characterize both channels)."""
    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    run = cfg["runs"]["sim"]
    run["record_length"] = 4096
    sim = run["simulate"]
    sim.update(duration=duration, seed=seed, event_rate=3.0)
    cfg["results"] = str(results)
    cfg["trigger"]["noise_records"] = 60
    sim["line_fraction"] = 0.7
    cfg["efficiency"]["n_per_amplitude"] = 30
    cfg["cleaning"] = {"simulate": {"n_per_class": 60, "n_test_per_class": 30}, "train": {"epochs": 2}}
    return cfg


def write_config(path: Path, cfg: dict) -> Path:
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def require_slow_mark() -> None:
    """Fail a test that runs Snakemake without the `slow` mark (tests/conftest.py sets the flag), so
    `pytest -m "not slow"` never starts a workflow."""
    import os

    if os.environ.get("CRYOPIPE_TEST_SLOW") == "0":
        raise AssertionError("this test runs Snakemake: mark it @pytest.mark.slow (the fast subset, "
                             "pytest -m 'not slow', must not run workflows)")


def snakemake(workdir: Path, configfile: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run Snakemake on the repo's Snakefile in `workdir`; returns the completed process."""
    require_slow_mark()
    cmd = [sys.executable, "-m", "snakemake", "-s", str(SNAKEFILE), "-d", str(workdir),
           "--configfile", str(configfile), "--cores", "2", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc


def planned_rules(workdir: Path, configfile: Path, *targets: str) -> set[str]:
    """Rules a dry run would execute."""
    proc = snakemake(workdir, configfile, *targets, "-n", "--quiet", "rules")  # --quiet takes several values
    rules = set()
    for line in proc.stdout.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit() and parts[0] not in ("job", "total"):
            rules.add(parts[0])
    return rules
