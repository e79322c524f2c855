"""Start-up cost of workflow jobs (issue 12): each stage script imports only what its stage needs,
the Snakefile's own imports stay light, and numba kernels live in the package with a disk cache.

bench/bench_startup.py prints the import time of every stage script.
"""
from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))
from startup_util import HEAVY, HEAVY_OK, SCRIPTS, common_imports, script_imports  # noqa: E402

SRC = REPO / "src" / "cryopipe"


def imported_after(code: str) -> list[str]:
    """Top-level module names in sys.modules after running `code` in a fresh interpreter."""
    probe = code + "\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))\n"
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow  # more than 5 s (the fast subset: pytest -m 'not slow')
def test_stage_scripts_import_no_deep_learning_or_plotting():
    """torch, matplotlib and sklearn only in the cleaning and plot scripts."""
    names = sorted(p.name for p in SCRIPTS.glob("*.py") if not HEAVY_OK.match(p.name))
    assert {"trigger_segment.py", "records.py", "features_channel.py", "labels.py"} <= set(names)
    with ThreadPoolExecutor(2) as pool:
        loaded = dict(zip(names, pool.map(lambda n: imported_after(script_imports(SCRIPTS / n)), names)))
    bad = {n: [h for h in HEAVY if h in mods] for n, mods in loaded.items()}
    assert not {n: h for n, h in bad.items() if h}, bad


def test_snakefile_imports_no_filters_kernels_or_networks():
    """Building the DAG (every `snakemake` call, dry runs too) needs no scipy.signal, numba or torch:
    common.smk takes segment_bounds from cryopipe.trigger.stage, which imports its kernels lazily."""
    code = common_imports()
    assert "from cryopipe.trigger import stage" in code
    mods = imported_after(code)
    assert not {"scipy.signal", "numba", "torch", "matplotlib", "sklearn"} & set(mods), \
        sorted({"scipy.signal", "numba", "torch", "matplotlib", "sklearn"} & set(mods))


def test_gather_job_imports_no_kernels():
    """The per-channel gather of trigger segments reads and concatenates: no scipy.fft, no numba."""
    mods = imported_after(script_imports(SCRIPTS / "gather_triggers.py"))
    assert not {"numba", "scipy.fft", "scipy.signal"} & set(mods)


def test_numba_kernels_are_in_the_package_and_cached():
    """Every numba kernel is compiled with cache=True inside src/cryopipe (a `script:` file's cache is
    never reused: Snakemake runs a renamed copy), and no workflow script defines one."""
    missing = []
    for path in SRC.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for dec in node.decorator_list:
                call = dec if isinstance(dec, ast.Call) else None
                name = ast.unparse(call.func if call else dec)
                if re.search(r"(^|\.)(njit|jit|vectorize|guvectorize)$", name):
                    cached = call is not None and any(
                        k.arg == "cache" and isinstance(k.value, ast.Constant) and k.value.value is True
                        for k in call.keywords)
                    if not cached:
                        missing.append(f"{path.relative_to(REPO)}:{node.lineno} {node.name}")
    assert not missing, missing
    for script in SCRIPTS.glob("*.py"):
        assert "numba" not in script.read_text(), script.name


@pytest.mark.slow
def test_numba_cache_is_written_next_to_the_package_and_reused(tmp_path):
    """A kernel's cache index lands in the package's __pycache__; a second process loads it
    instead of compiling (NUMBA_DEBUG_CACHE reports 'data loaded')."""
    code = ("import numpy as np\nfrom cryopipe.trigger.scan import merge_triggers\n"
            "merge_triggers([np.array([1, 50, 400]), np.array([2, 300])], 10)\n")
    env = {"NUMBA_DEBUG_CACHE": "1", "PATH": "/usr/bin:/bin"}
    first = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    assert list((SRC / "trigger" / "__pycache__").glob("scan.*.nbi"))
    second = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert second.returncode == 0, second.stderr[-2000:]
    out = second.stdout + second.stderr
    assert "data loaded" in out and "data saved" not in out, out[-2000:]


# ------------------------------------------------------------------------- job sizing (trigger)
def test_local_segments_fill_the_machine_once():
    from cryopipe.trigger.stage import local_segment_duration, segment_bounds

    fs, n = 25000.0, int(2 * 3600 * 25000)
    for cpus, channels, per_channel in [(2, 1, 1), (2, 2, 1), (4, 1, 2), (16, 2, 4), (64, 1, 32), (1, 3, 1)]:
        d = local_segment_duration(n, fs, channels, cpus=cpus, job_threads=2)
        bounds = segment_bounds(n, fs, d)
        assert len(bounds) == per_channel, (cpus, channels, bounds)
        assert bounds[0][0] == 0 and bounds[-1][1] == n
    assert len(segment_bounds(7, fs, local_segment_duration(7, fs, 1, cpus=64))) == 7  # never empty


def _segment_jobs(tmp_path, *args):
    sys.path.insert(0, str(REPO / "tests"))
    from workflow_util import snakemake, tiny_config, write_config

    tmp_path.mkdir(parents=True, exist_ok=True)
    cfg = tiny_config(tmp_path / "results", duration=7200.0)
    cfg["trigger"].pop("segment_duration", None)        # the schema's default: auto
    proc = snakemake(tmp_path, write_config(tmp_path / "c.yaml", cfg), "-n", "--quiet", "rules", *args)
    counts = dict(line.split() for line in proc.stdout.splitlines()
                  if len(line.split()) == 2 and line.split()[1].isdigit())
    return int(counts["trigger_segment_pass1"]), int(counts["trigger_segment"])


@pytest.mark.slow
def test_auto_segments_locally_and_hourly_with_the_slurm_profile(tmp_path):
    """trigger.segment_duration auto: locally one trigger job per core pair and pass (a 2-h stream
    of 2 channels on a 2-core machine: one per channel); profiles/slurm sets one hour (2 each)."""
    import os

    pytest.importorskip("snakemake_executor_plugin_slurm")
    per_channel = max(1, len(os.sched_getaffinity(0)) // 4)
    assert _segment_jobs(tmp_path / "local") == (2 * per_channel, 2 * per_channel)
    assert _segment_jobs(tmp_path / "slurm", "--workflow-profile", str(REPO / "profiles" / "slurm")) == (4, 4)
