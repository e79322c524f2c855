"""The HPC path: profiles/slurm through snakemake-executor-plugin-slurm, on a real SLURM cluster.

The end-to-end test needs a SLURM controller and an idle node on this machine (ci/slurm/setup.sh
makes one, as root); it skips, saying why, when `sbatch`/`sinfo` are missing or no node is idle, and
in CI (CI=true) that skip fails the run (tests/conftest.py: marker ci_required).
The profile tests (the train rule's GPU, the grouping of a long run) need only the plugin.
"""
import math
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
# "Job 3 ... (log: .../slurm_logs/rule_<rule>/<wildcards>/<id>.log)" for a job alone, "Job <uuid> ...
# (log: .../slurm_logs/group_<group>_<its rules, cut short>/<id>.log)" for a group job
SUBMITTED = re.compile(r"Job \S+ has been submitted with SLURM jobid (\d+) "
                       r"\(log: ([^\s)]+/slurm_logs/(rule|group)_([^/]+)/[^\s)]+)\)")
# the jobstep's own Snakemake in the allocation names each job it runs ("localrule" is the
# nested Snakemake of that job)
RAN_RULE = re.compile(r"^rule (\w+):$", re.M)


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


def profile_groups(profile: dict) -> tuple[dict[str, str], dict[str, int]]:
    """The profile's groups (rule -> group) and group-components (group -> jobs per group job)."""
    groups = dict(item.split("=") for item in profile["groups"])
    components = {g: int(n) for g, n in (item.split("=") for item in profile.get("group-components", []))}
    return groups, components


def expected_submissions(counts: dict[str, int], groups: dict[str, str], components: dict[str, int]) -> dict[str, int]:
    """sbatch jobs of a one-run DAG (rule -> number of its jobs): one per job of a rule outside the
    groups, for a group with group-components N (trigger segments: unconnected jobs) one per N of
    its jobs, for any other group one (its jobs are connected within a run)."""
    expected: dict[str, int] = {}
    for rule, n in counts.items():
        if rule not in groups:
            expected[rule] = n
    for group in set(groups.values()):
        n = sum(counts.get(rule, 0) for rule, g in groups.items() if g == group)
        if n:
            expected[group] = math.ceil(n / components[group]) if group in components else 1
    return expected


def ci_profile(tmp_path: Path) -> Path:
    """profiles/slurm with two additions for a 2-CPU test node running second-long jobs (the run
    passes --cores 2: no job, group jobs included, asks for more CPUs than the node has)."""
    profile = yaml.safe_load((SLURM_PROFILE / "config.yaml").read_text())
    # Poll squeue soon after each submission: these jobs take 10-70 s, real ones minutes. The
    # plugin polls at 6 s, then 10 s later each time no job finished (6, 22, 48, 84 s, ...).
    profile["slurm-init-seconds-before-status-checks"] = 6
    # Keep SLURM's own job logs: proof below that each job ran under slurmd.
    profile["slurm-keep-successful-logs"] = True
    out = tmp_path / "profile"
    out.mkdir()
    (out / "config.yaml").write_text(yaml.safe_dump(profile, sort_keys=False))
    return out


@pytest.mark.slow
@pytest.mark.ci_required
def test_tiny_workflow_through_slurm_equals_the_local_run(tmp_path, slurm_node):
    """Every job runs under SLURM, grouped as profiles/slurm says (one sbatch job per group job or
    job outside the groups, each within the node), and the stores equal those of a local run."""
    cfg = tiny_config(Path("results"))  # the same relative results path in both workdirs: equal attrs
    cfg["cleaning"] = {"enabled": False}  # network training is tested locally (tests/test_workflow.py)
    runs = {}
    for name in ("local", "slurm"):
        work = tmp_path / name
        work.mkdir()
        runs[name] = work, write_config(work / "tiny.yaml", cfg)
    targets = ("all",)  # the whole default DAG: two trigger passes, characterization, labels, figures
    slurm_args = ("--executor", "slurm", "--workflow-profile", str(ci_profile(tmp_path)), *targets)
    # the local run uses the host's cores while the SLURM jobs mostly wait for status polls
    with ThreadPoolExecutor(2) as pool:
        slurm_run = pool.submit(snakemake, *runs["slurm"], *slurm_args)
        local_run = pool.submit(snakemake, *runs["local"], *targets)
        slurm_proc, _ = slurm_run.result(), local_run.result()

    log = slurm_proc.stdout + slurm_proc.stderr
    submitted = SUBMITTED.findall(log)
    counts = job_counts(log)
    counts.pop("all", None)  # a local rule: the target, nothing to compute
    assert {"simulate_stream", "records_pass1", "characterize", "records", "features", "labels"} <= set(counts), counts
    groups, components = profile_groups(yaml.safe_load((SLURM_PROFILE / "config.yaml").read_text()))
    expected = expected_submissions(counts, groups, components)
    # the one-minute module: the stream simulation, a bundle of trigger segments per pass, the
    # first pass's records with the characterization, and the rest of the analysis
    assert expected == {"simulate_stream": 1, "trigger_pass1": 1, "pass1": 1, "trigger": 1, "analysis": 1}, expected
    names = sorted(set(groups.values()) | set(counts), key=len, reverse=True)  # "trigger_pass1" before "trigger"
    got: dict[str, int] = {}
    for *_, kind, name in submitted:
        name = name if kind == "rule" else next(g for g in names if name.startswith(f"{g}_"))
        got[name] = got.get(name, 0) + 1
    assert got == expected, log[-3000:]
    assert len(submitted) == 5 < sum(counts.values()) == 34, (len(submitted), counts)

    node_cpus, node_mem = (int(v) for v in subprocess.run(
        ["sinfo", "-h", "-N", "-n", slurm_node, "-o", "%c %m"], capture_output=True, text=True).stdout.split()[:2])
    ran: dict[str, int] = {}
    for jobid, logfile, *_ in submitted:
        text = Path(logfile).read_text()
        # written by slurmd: the jobstep executor ran each job (of a group: one after another)
        # inside the allocation with srun
        assert "Finished jobid" in text, (jobid, text[-2000:])
        for rule in RAN_RULE.findall(text):
            ran[rule] = ran.get(rule, 0) + 1
        # what the job asked for fits the node (finished jobs stay visible: MinJobAge=3600)
        info = subprocess.run(["scontrol", "-o", "show", "job", jobid], capture_output=True, text=True).stdout
        cpus = int(re.search(r"\bNumCPUs=(\d+)", info).group(1))
        mem = int(re.search(r"\bMinMemoryNode=(\d+)M", info).group(1))
        assert 1 <= cpus <= node_cpus and 0 < mem <= node_mem, (jobid, cpus, mem, info)
    assert ran == counts, (ran, counts)  # every job of the DAG ran under SLURM, once

    local_res, slurm_res = (runs[n][0] / "results" / "sim" for n in ("local", "slurm"))
    for kind in ("records", "features", "truth", "characterization", "labels", "calibration", "efficiency"):
        a = load_store(local_res / f"{kind}.zarr", kind)
        b = load_store(slurm_res / f"{kind}.zarr", kind)
        assert min(a.sizes.values()) > 0
        xr.testing.assert_identical(a, b)
    for local_csmpl in sorted((local_res / "stream").glob("*.csmpl")):
        assert local_csmpl.read_bytes() == (slurm_res / "stream" / local_csmpl.name).read_bytes()


@pytest.mark.slow  # runs Snakemake
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


@pytest.mark.slow  # runs Snakemake
def test_slurm_profile_groups_a_long_run_into_few_jobs(tmp_path):
    """A simulated two-channel 24-h run (48 one-hour trigger segments per pass) plans, with
    profiles/slurm, 11 sbatch jobs (of 126 jobs): the simulation, 4 bundles of 12 segments per
    pass, the first pass's records with the characterization, and the rest of the analysis."""
    cfg = tiny_config(Path("results"), duration=86400.0)
    cfg["cleaning"] = {"enabled": False}
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(tmp_path),
                           "--configfile", str(write_config(tmp_path / "day.yaml", cfg)),
                           "--workflow-profile", str(SLURM_PROFILE), "--cores", "2", "-n", "all"],
                          capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    counts = job_counts(out)
    counts.pop("all")
    assert counts["trigger_segment_pass1"] == counts["trigger_segment"] == 48 and sum(counts.values()) == 126, counts
    planned: dict[str, int] = {}
    for name in re.findall(r"^(?:\[.*\] Group job (\w+) |rule (\w+):$)", out, re.M):
        name = name[0] or name[1]
        if name != "all":
            planned[name] = planned.get(name, 0) + 1
    groups, components = profile_groups(yaml.safe_load((SLURM_PROFILE / "config.yaml").read_text()))
    expected = expected_submissions(counts, groups, components)
    assert planned == expected == {"simulate_stream": 1, "trigger_pass1": 4, "pass1": 1, "trigger": 4,
                                   "analysis": 1}, (planned, expected)


# --- requests the partition cannot meet: one line before anything is submitted -------------------

SINFO = """debug* 2 21695
debug* 4 8000
big 64 512000
"""


def test_partition_limits_are_the_largest_node_of_the_partition():
    from cryopipe.cluster import PartitionLimits, parse_sinfo

    assert parse_sinfo(SINFO) == PartitionLimits("debug", 4, 21695)       # default partition: '*'
    assert parse_sinfo(SINFO, partition="big") == PartitionLimits("big", 64, 512000)
    assert parse_sinfo("debug* 2+ 1000+\n") == PartitionLimits("debug", 2, 1000)


def test_unknown_partition_names_the_ones_there_are():
    from cryopipe.cluster import parse_sinfo
    from cryopipe.errors import InputError

    with pytest.raises(InputError, match=r"no partition 'gpu' \(partitions: big, debug\).*CRYOPIPE_SLURM_PARTITION"):
        parse_sinfo(SINFO, partition="gpu")
    with pytest.raises(InputError, match="sinfo shows no default partition"):
        parse_sinfo("big 4 100\n")


def test_a_request_above_the_partition_names_job_request_and_cores():
    from cryopipe.cluster import PartitionLimits, check_requests
    from cryopipe.errors import InputError

    limits = PartitionLimits("debug", 2, 4000)
    check_requests([("a", 2, 4000), ("b", 1, None)], limits)               # fits exactly: no error
    with pytest.raises(InputError) as err:
        check_requests([("a", 2, 100), ("group trigger_pass1 (trigger_segment_pass1)", 4, 100)], limits)
    msg = str(err.value)
    assert "\n" not in msg and "group trigger_pass1" in msg and "asks for 4 CPUs" in msg
    assert "at most 2" in msg and "PartitionConfig" in msg and msg.endswith("--cores 2")
    with pytest.raises(InputError, match=r"job a asks for 5000 MiB .* at most 4000.*mem_mb.*copy of profiles/slurm"):
        check_requests([("a", 1, 5000)], limits)


def test_gpus_of_the_nodes_and_a_gpu_request_no_node_meets():
    """sinfo's gres column gives the GPUs per node (the most of a partition's nodes); a job asking for
    GPUs a partition lacks (the profile's train rule on a CPU-only partition) is one line."""
    from cryopipe.cluster import PartitionLimits, check_requests, gres_gpus, parse_sinfo
    from cryopipe.errors import InputError

    assert [gres_gpus(g) for g in ("(null)", "gpu:1", "gpu:a100:4(S:0-1)", "gpu", "mps:100,gpu:2", None)] == \
        [0, 1, 4, 1, 2, 0]
    text = "cpu* 16 64000 (null)\ngpu 32 256000 gpu:a100:4(S:0-1)\ngpu 32 256000 gpu:a100:2\n"
    assert parse_sinfo(text) == PartitionLimits("cpu", 16, 64000, 0)
    assert parse_sinfo(text, partition="gpu") == PartitionLimits("gpu", 32, 256000, 4)
    check_requests([("train (run=sim)", 8, 32000, 1)], parse_sinfo(text, partition="gpu"))
    check_requests([("train (run=sim)", 8, 32000, 1)], PartitionLimits("old", 16, 64000))   # GPUs unknown
    with pytest.raises(InputError, match=r"^SLURM: job train \(run=sim\) asks for 1 GPU\(s\) \(gres\), but the "
                                         r"nodes of partition cpu have at most 0: .*delete the rule's gres line"):
        check_requests([("train (run=sim)", 8, 32000, 1)], parse_sinfo(text))


@pytest.mark.slow
@pytest.mark.ci_required
def test_job_asking_more_cpus_than_the_node_fails_at_once_with_one_line(tmp_path, slurm_node):
    """--cores above the node's CPUs: a group job would ask for them and pend forever (reason
    PartitionConfig). The run must fail within a minute, before submitting anything, with one line
    naming the job, what it asked for and the --cores that fits."""
    import time

    node_cpus = int(subprocess.run(["sinfo", "-h", "-N", "-n", slurm_node, "-o", "%c"], capture_output=True,
                                   text=True).stdout.split()[0])
    cfg = tiny_config(Path("results"))
    cfg["cleaning"] = {"enabled": False}
    work = tmp_path / "w"
    work.mkdir()
    before = set(subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True).stdout.split())
    t0 = time.time()
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(work),
           f"--configfile={write_config(work / 'tiny.yaml', cfg)}", "--executor", "slurm",
           "--workflow-profile", str(ci_profile(tmp_path)), "--cores", str(2 * node_cpus)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        proc = None
    finally:   # never leave a job pending on the test cluster
        new = set(subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True).stdout.split()) - before
        if new:
            subprocess.run(["scancel", *sorted(new)], capture_output=True)
    assert proc is not None, "snakemake still waiting after 60 s (jobs pending for ever?)"
    assert time.time() - t0 < 60 and proc.returncode == 1 and not new, (proc.stdout[-2000:], proc.stderr[-2000:])
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("Error")]
    assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    line = errors[0]
    assert f"asks for {2 * node_cpus} CPUs" in line and f"at most {node_cpus}" in line, line
    assert line.endswith(f"--cores {node_cpus}") and re.search(r"job (group )?\w+", line), line
