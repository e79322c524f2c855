"""The HPC path: profiles/slurm through snakemake-executor-plugin-slurm, on a real SLURM cluster.

The end-to-end test needs a SLURM controller and an idle node on this machine (ci/slurm/setup.sh
makes one, as root); it skips, saying why, when `sbatch`/`sinfo` are missing or no node is idle.
The profile test needs only the plugin.
"""
import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import pytest
import xarray as xr
import yaml

from cryopipe.io.stores import load_store
from workflow_util import REPO, snakemake, tiny_config, write_config

SLURM_PROFILE = REPO / "profiles" / "slurm"
SUBMITTED = re.compile(r"Job \d+ has been submitted with SLURM jobid (\d+) \(log: (\S+/rule_(\w+)/\S+)\)")


def idle_slurm_node() -> tuple[str | None, str]:
    """(name of an idle or partly used node that answers, or None; why not)."""
    missing = [exe for exe in ("sbatch", "sinfo") if shutil.which(exe) is None]
    if missing:
        return None, f"{' and '.join(missing)} not on PATH (set up SLURM with: sudo bash ci/slurm/setup.sh)"
    try:
        proc = subprocess.run(["sinfo", "-h", "-N", "-o", "%N %T"], capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        return None, "sinfo did not answer within 30 s (is slurmctld running?)"
    nodes = [line.split() for line in proc.stdout.splitlines() if len(line.split()) == 2]
    for name, state in nodes:
        if state in ("idle", "mixed"):  # "idle*" would be a node that does not respond
            return name, ""
    return None, f"no idle SLURM node answers (sinfo: {(proc.stdout + proc.stderr).strip()[:200] or 'no nodes'})"


@pytest.fixture(scope="module")
def slurm_node():
    node, why = idle_slurm_node()
    if node is None:
        pytest.skip(why)
    return node


def job_counts(log: str) -> dict[str, int]:
    """The 'Job stats' table that Snakemake prints first: rule -> number of jobs."""
    counts = {}
    table = log[log.index("Job stats:"):].splitlines()[3:]
    for line in table:
        parts = line.split()
        if len(parts) != 2 or parts[0] == "total":
            break
        counts[parts[0]] = int(parts[1])
    return counts


def ci_profile(tmp_path: Path) -> Path:
    """profiles/slurm with three additions for a 2-CPU test node running second-long jobs."""
    profile = yaml.safe_load((SLURM_PROFILE / "config.yaml").read_text())
    # Allocate 1 CPU per job (each still runs its rule's threads, as the local run does), so that
    # the per-channel jobs run side by side on a 2-CPU node (TaskPlugin=task/none: no pinning).
    profile["default-resources"]["cpus_per_task"] = 1
    # Poll squeue soon after each submission: these jobs take 10-20 s, real ones minutes. The
    # plugin polls at 6 s, then 10 s later each time no job finished: a job is seen by 22 s.
    profile["slurm-init-seconds-before-status-checks"] = 6
    # Keep SLURM's own job logs: proof below that each job ran under slurmd.
    profile["slurm-keep-successful-logs"] = True
    out = tmp_path / "profile"
    out.mkdir()
    (out / "config.yaml").write_text(yaml.safe_dump(profile, sort_keys=False))
    return out


@pytest.mark.slow
def test_tiny_workflow_through_slurm_equals_the_local_run(tmp_path, slurm_node):
    """Every job goes through sbatch and the stores equal those of a local run of the same config."""
    cfg = tiny_config(Path("results"))  # the same relative results path in both workdirs: equal attrs
    cfg["cleaning"] = {"enabled": False}  # network training is tested locally (tests/test_workflow.py)
    runs = {}
    for name in ("local", "slurm"):
        work = tmp_path / name
        work.mkdir()
        runs[name] = work, write_config(work / "tiny.yaml", cfg)
    targets = ("all",)  # the whole default DAG: two trigger passes, characterisation, labels, figures
    slurm_args = ("--executor", "slurm", "--workflow-profile", str(ci_profile(tmp_path)), *targets)
    # the local run uses the host's cores while the SLURM jobs mostly wait for status polls
    with ThreadPoolExecutor(2) as pool:
        slurm_run = pool.submit(snakemake, *runs["slurm"], *slurm_args)
        local_run = pool.submit(snakemake, *runs["local"], *targets)
        slurm_proc, _ = slurm_run.result(), local_run.result()

    log = slurm_proc.stdout + slurm_proc.stderr
    submitted = SUBMITTED.findall(log)
    expected = job_counts(log)
    expected.pop("all", None)  # a local rule: the target, nothing to compute
    assert {"simulate_stream", "records_pass1", "characterize", "records", "features", "labels"} <= set(expected), expected
    got = {rule: sum(r == rule for *_, r in submitted) for rule in expected}
    assert got == expected, log[-3000:]
    for jobid, logfile, rule in submitted:
        text = Path(logfile).read_text()
        # written by slurmd: the jobstep executor ran the rule inside the allocation with srun
        assert f"rule {rule}:" in text and "Finished jobid" in text, (jobid, text[-2000:])

    local_res, slurm_res = (runs[n][0] / "results" / "sim" for n in ("local", "slurm"))
    for kind in ("records", "features", "truth", "characterization", "labels", "calibration", "efficiency"):
        a = load_store(local_res / f"{kind}.zarr", kind)
        b = load_store(slurm_res / f"{kind}.zarr", kind)
        assert min(a.sizes.values()) > 0
        xr.testing.assert_identical(a, b)
    for local_csmpl in sorted((local_res / "stream").glob("*.csmpl")):
        assert local_csmpl.read_bytes() == (slurm_res / "stream" / local_csmpl.name).read_bytes()


def test_slurm_profile_gives_a_train_rule_one_gpu(tmp_path):
    """The profile's `train` entries reach a rule of that name and render to a valid sbatch call,
    the partition comes from $CRYOPIPE_SLURM_PARTITION, and the real workflow (no `train` rule
    yet) accepts the profile."""
    (tmp_path / "Snakefile").write_text(
        'rule train:\n    output: "model.pt"\n    threads: 1\n'
        '    resources: mem_mb=1000, runtime=10\n    shell: "touch {output}"\n')
    # --cores only lifts the local cap on threads, as a SLURM run without --cores does
    cmd = [sys.executable, "-m", "snakemake", "-s", str(tmp_path / "Snakefile"), "-d", str(tmp_path),
           "--workflow-profile", str(SLURM_PROFILE), "-n", "--cores", "64"]
    env = {**os.environ, "CRYOPIPE_SLURM_PARTITION": "gpu"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    threads = int(re.search(r"^\s+threads: (\d+)$", out, re.M).group(1))
    res_line = re.search(r"^\s+resources: (.*)$", out, re.M).group(1)
    resources = dict(item.split("=", 1) for item in res_line.split(", "))
    assert resources["gres"] == "gpu:1" and threads == 8 and resources["slurm_partition"] == "gpu"

    from snakemake_executor_plugin_slurm.submit_string import get_submit_command
    from snakemake_executor_plugin_slurm.utils import set_gres_string

    class Resources(dict):
        __getattr__ = dict.__getitem__

    job = SimpleNamespace(threads=threads, resources=Resources(
        gres=resources["gres"], mem_mb=int(resources["mem_mb"]), runtime=int(resources["runtime"])))
    params = dict(run_uuid="r", slurm_logfile="l", comment_str="c", account="", partition="",
                  workdir=str(tmp_path))
    call = get_submit_command(job, params) + set_gres_string(job)
    for part in ("--gres=gpu:1", "--cpus-per-task=8", "--mem 32000", "-t 720"):
        assert part in call, call

    wf = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(tmp_path),
                         "--configfile", str(write_config(tmp_path / "tiny.yaml", tiny_config(Path("results")))),
                         "--workflow-profile", str(SLURM_PROFILE), "-n"],
                        capture_output=True, text=True, timeout=300)
    assert wf.returncode == 0 and "simulate_stream" in wf.stdout + wf.stderr, (wf.stdout + wf.stderr)[-3000:]
