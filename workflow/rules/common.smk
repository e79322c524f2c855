# Input functions and helpers shared by all rules (no algorithms here).
import re
import sys
from pathlib import Path

from cryopipe import runner
from cryopipe.cuts import language as cuts
from cryopipe.config import canonical, run_section
from cryopipe.errors import CryopipeError, InputError
from cryopipe.io import sources
from cryopipe.trigger import stage as trigger_stage
from cryopipe.testpulse import stage as testpulse_stage
from cryopipe.cleaning import architectures

RESULTS = config["results"]
CONDA_ENV = "../../envs/cryopipe.yaml"


PASS_PREFIX = {"pass1": "pass1/", "final": ""}


def characterization_input(wildcards):
    """The run's characterization store when the two-pass analysis is enabled (else nothing)."""
    if characterized(wildcards.run):
        return f"{RESULTS}/{wildcards.run}/characterization.zarr"
    return []


def characterized(run):
    """True when the run gets the two-pass analysis (characterization, optimum filter)."""
    return bool(RUNS[run]["characterize"]["enabled"])


def calibrated(run):
    """True when a calibration line is configured for the run (else `energy` is absent)."""
    return characterized(run) and RUNS[run]["calibrate"]["line_energy"] is not None


def calibration_input(wildcards):
    """The run's calibration store when a calibration line is configured (else nothing)."""
    if calibrated(wildcards.run):
        return f"{RESULTS}/{wildcards.run}/calibration.zarr"
    return []


def exit_one_line(exc):
    """End the workflow's loading on a CryopipeError: its message on one line (`sys.exit`), without
    the traceback frames Snakemake prints for an exception raised while it reads the workflow."""
    sys.exit(f"Error: {' '.join(str(exc).split())}")


_TEST_PULSES = {}


def has_testpulses(run):
    """True when the run gets the test-pulse stage: two-pass analysis and test pulses in its files
    (read when the workflow loads: a bad test_stamps or rdt file is one line naming it)."""
    if run not in _TEST_PULSES:
        try:
            _TEST_PULSES[run] = characterized(run) and testpulse_stage.has_test_pulses(RUNS[run])
        except CryopipeError as exc:
            exit_one_line(InputError(f"run {run}: {exc}"))
    return _TEST_PULSES[run]


def testpulse_input(wildcards):
    """The run's testpulse store when it has test pulses (else nothing)."""
    if has_testpulses(wildcards.run):
        return f"{RESULTS}/{wildcards.run}/testpulse.zarr"
    return []


def model_checkpoint(wildcards):
    """Checkpoint of a cleaning model: the shipped universal one, or one trained on the run's simulation."""
    if wildcards.model == architectures.UNIVERSAL:
        return str(architectures.universal_path())
    return f"{RESULTS}/models/{wildcards.run}/{wildcards.model}.pt"


def cleaning_targets(run):
    c = config["cleaning"]
    out = [f"{RESULTS}/{run}/predictions/{m}.zarr" for m in c["models"]]
    out += [f"{RESULTS}/report/{run}/cleaning_{m}" for m in c["models"]]
    if c["evaluate"]:
        out += [f"{RESULTS}/report/{run}/evaluation_{m}" for m in c["models"]]
    return out


def cut_set(run):
    """The run's cut set: its cuts file, or cryopipe's default cuts (validated)."""
    path = RUNS[run]["labels"]["cuts_file"]
    return canonical(cuts.load_cuts(path) if path else cuts.DEFAULT_CUTS)


def channel_names(run):
    return list(RUNS[run]["channels"])


def is_simulated(run):
    return "simulate" in RUNS[run]


def stream_dir(run):
    return f"{RESULTS}/{run}/stream"


def is_stream(run):
    """True for runs cryopipe triggers (csmpl, simulated); False for hardware-triggered records."""
    return is_simulated(run) or sources.is_stream(RUNS[run])


def run_files(run):
    """The run's raw files (the user's; for a simulated run the simulator's csmpl output)."""
    if is_simulated(run):
        return [f"{stream_dir(run)}/{ch}.csmpl" for ch in channel_names(run)]
    rc = RUNS[run]
    files = list(rc.get("csmpl", [])) + list(rc.get("ljh", [])) + list(rc.get("noise_ljh", []))
    return files + [rc[k] for k in ("rdt", "par", "con", "test_stamps", "dig_stamps") if rc.get(k)]


def feature_plugins(wildcards):
    """The run's feature plug-in files (features.plugins)."""
    return list(run_section(RUNS, wildcards.run, "features").get("plugins") or [])


def feature_plugin_hashes(wildcards):
    """Content hash of each plug-in file, for params: editing a plug-in reruns the features."""
    plugins = feature_plugins(wildcards)
    if not plugins:  # no import of cryopipe.features (its numba kernels: ~1 s) at the DAG's start
        return {}
    from cryopipe.features.plugins import file_hash

    return {str(p): file_hash(p) for p in plugins}


def check_user_files():
    """Load-time checks of the user's files that Snakemake would not look at on an up-to-date run
    (it skips the inputs and params of jobs it need not run): every run's feature plug-in exists, its
    cuts file reads and its side files are sound (an rdt run's .con: `sources.check_run_files`, whose
    warnings go to stderr). One line (`sys.exit`), no traceback frames, whatever the targets."""
    try:
        for run in RUNS:
            try:
                warnings = [] if is_simulated(run) else sources.check_run_files(RUNS[run])
            except CryopipeError as exc:
                raise InputError(f"run {run}: {exc}") from None
            for warning in warnings:
                print(f"Warning: run {run}: {warning}", file=sys.stderr)
            for p in run_section(RUNS, run, "features").get("plugins") or []:
                if not Path(p).is_file():
                    raise InputError(f"run {run}: feature plug-in {p} (features.plugins): no such file "
                                     f"(relative paths start at {Path.cwd()})")
            try:
                cut_set(run)
            except CryopipeError as exc:
                raise InputError(f"run {run}: labels.cuts_file: {exc}") from None
    except CryopipeError as exc:
        exit_one_line(exc)




def stream_runs():
    return [r for r in RUNS if is_stream(r)]


def record_file_runs():
    return [r for r in RUNS if not is_stream(r)]


def run_pattern(runs):
    """Wildcard constraint matching exactly these run names (nothing when there are none)."""
    return "|".join(map(re.escape, runs)) or "(?!)"


FIRST_PASS_STRETCH = 300.0   # s of stream per stretch of a sampled first pass
FIRST_PASS_MIN_DURATION = 3600.0   # s of stream a sampled first pass scans at least


def first_pass_scan(run, pass_name):
    """`sampling` of the first pass's trigger jobs (trigger.stage.trigger_one_channel), None to scan
    everything: with characterize.first_pass_scan auto, each job stops once it has its share of
    characterize.max_pulses triggers in its share of an hour of stream (at least four records of
    stream per noise record)."""
    rc = RUNS[run]
    if pass_name != "pass1" or rc["characterize"]["first_pass_scan"] == "whole":
        return None
    fs, share = float(rc["sample_frequency"]), n_segments(run)
    min_samples = max(FIRST_PASS_MIN_DURATION * fs, 4 * int(rc["trigger"]["noise_records"]) * int(rc["record_length"]))
    return {"min_triggers": -(-int(rc["characterize"]["max_pulses"]) // share),
            "min_samples": int(-(-min_samples // share)),
            "stretch_samples": int(round(FIRST_PASS_STRETCH * fs))}


def first_pass_sampling(run, pass_name):
    """Record cutting of the first pass, which only feeds the characterization: at most
    characterize.max_pulses particle records (it reads no more), no test-pulse records."""
    if pass_name != "pass1":
        return {}
    return {"max_particle_records": int(RUNS[run]["characterize"]["max_pulses"]), "pulser_records": False}


def first_pass_records(wildcards):
    """Records the characterization is built from: the first trigger pass of a stream, or the
    records of a records file."""
    prefix = "pass1/" if is_stream(wildcards.run) else ""
    return f"{RESULTS}/{wildcards.run}/{prefix}records.zarr"


def stream_inputs(wildcards):
    """Inputs of source readers (the simulator folder, or the user's files)."""
    run = wildcards.run
    return [stream_dir(run)] if is_simulated(run) else run_files(run)


def stream_samples(run):
    """Samples per channel, known before the stream is read (simulated: duration x fs)."""
    rc = RUNS[run]
    if is_simulated(run):
        return int(round(rc["simulate"]["duration"] * rc["sample_frequency"]))
    return sources.stream_length(rc)


TRIGGER_THREADS = 2  # threads of a trigger_segment job on a machine with cores to spare


def channel_threads(wildcards):
    """Threads of a per-channel (or per-segment) job: --cores shared among the run's channels, at
    least 1 and at most 2, so a two-channel run on 2 cores processes both channels side by side
    (each job keeps to its threads: cryopipe.runner.use_threads). Outputs do not depend on it."""
    cores = workflow._cores if isinstance(workflow._cores, int) and workflow._cores > 0 else TRIGGER_THREADS
    return max(1, min(TRIGGER_THREADS, cores // max(len(channel_names(wildcards.run)), 1)))


def segment_duration(run):
    """Seconds of stream per trigger job: trigger.segment_duration, or for `auto` the stream split
    so that each of this machine's cores gets one job per pass (a job start costs seconds). Cluster
    jobs re-read the workflow on other machines, so a cluster sets a number (profiles/slurm: 3600)."""
    rc = RUNS[run]
    value = rc["trigger"]["segment_duration"]
    if value != "auto":
        return float(value) if isinstance(value, str) else value  # --config passes strings
    if workflow.remote_exec:
        raise ValueError("trigger.segment_duration: auto sizes the trigger jobs to the machine that runs "
                         "Snakemake; on a cluster set a number of seconds (profiles/slurm sets 3600)")
    return trigger_stage.local_segment_duration(max(stream_samples(run), 1), rc["sample_frequency"],
                                                len(channel_names(run)), job_threads=TRIGGER_THREADS)


def n_segments(run):
    """Number of time segments the trigger of a run is split into (separate jobs)."""
    rc = RUNS[run]
    return len(trigger_stage.segment_bounds(max(stream_samples(run), 1), rc["sample_frequency"],
                                            segment_duration(run)))


def stream_params(run):
    """Source description handed to scripts (`cryopipe.io.sources`; a change reruns the rules
    that read it)."""
    rc = RUNS[run]
    ljh_keys = ("ljh", "noise_ljh", "ljh_mode", "pretrigger") if rc.get("ljh") else ()
    spec = {k: rc[k] for k in ("par", "test_stamps", "dig_stamps", "rdt", "con", "start_time", *ljh_keys)
            if rc.get(k) is not None}
    if not spec.get("rdt") and not spec.get("ljh"):
        spec["csmpl"] = run_files(run)[: len(channel_names(run))]
    spec.update({
        "sample_frequency": rc["sample_frequency"],
        "record_length": rc["record_length"],
        "channels": channel_names(run),
        "polarity": rc["polarity"],
        "adc_bits": rc["adc_bits"],
        "adc_range": rc["adc_range"],
    })
    return canonical(spec)


def subconfig(section, *keys):
    """Params function: the named keys of the run's section (global values under the run's own
    overrides). A rule's params hold only what it uses, so a change of any other value does not
    rerun it."""
    return lambda wildcards: run_section(RUNS, wildcards.run, section, *keys)


def code_version(*modules):
    """Hash of the stage's library modules and everything of cryopipe they import, for params."""
    return runner.code_version("cryopipe", *modules)


def script_code(script):
    """Hash of every cryopipe module a workflow script imports, transitively, for params: editing
    any library code a rule runs reruns it."""
    return code_version(*runner.script_modules(f"{workflow.basedir}/workflow/scripts/{script}"))


def efficiency_enabled(run):
    """efficiency.enabled, for runs that have noise records to inject pulses onto (an LJH run of
    triggered records has them only from its noise_ljh files)."""
    rc = RUNS[run]
    no_noise = bool(rc.get("ljh")) and rc.get("ljh_mode") == "records" and not rc.get("noise_ljh")
    return bool(rc["efficiency"]["enabled"]) and not no_noise


def report_figures(run):
    """The figures of a run (characterization, spectra, efficiency) under results/report/<run>/."""
    out = [f"{RESULTS}/report/{run}/nps.png", f"{RESULTS}/report/{run}/filter_transfer.png"]
    for ch in channel_names(run):
        out += [f"{RESULTS}/report/{run}/sev_{ch}.png", f"{RESULTS}/report/{run}/spectrum_{ch}.png",
                f"{RESULTS}/report/{run}/energy_dependence_{ch}.png"]
        if efficiency_enabled(run):
            out.append(f"{RESULTS}/report/{run}/efficiency_{ch}.png")
    if calibrated(run) and {"phonon", "light"} <= set(RUNS[run]["roles"]):
        out.append(f"{RESULTS}/report/{run}/light_yield.png")
    return out


def all_targets():
    out = []
    for run in RUNS:
        out += [f"{RESULTS}/{run}/records.zarr", f"{RESULTS}/{run}/features.zarr"]
        if characterized(run):
            out += [f"{RESULTS}/{run}/labels.zarr"]
            if efficiency_enabled(run):
                out += [f"{RESULTS}/{run}/efficiency.zarr"]
            out += report_figures(run)
            if has_testpulses(run):
                out += [f"{RESULTS}/report/{run}/testpulse_{kind}_{ch}.png"
                        for kind in ("response", "calibration") for ch in channel_names(run)]
            if config["cleaning"]["enabled"]:
                out += cleaning_targets(run)
    return out


def check_cluster_requests():
    """On the slurm executor, before anything is submitted: no job (or group job) of the DAG may ask
    for more CPUs, memory or GPUs than the nodes of its partition have (it would pend forever with reason
    PartitionConfig). One line naming the job, what it asks and the --cores that fits."""
    plugin = getattr(workflow, "executor_plugin", None)
    if plugin is None or getattr(plugin, "name", "") != "slurm":
        return
    from cryopipe.cluster import check_requests, gres_gpus, parse_sinfo, sinfo_nodes

    try:
        text = sinfo_nodes()
        requests, seen = {}, set()
        for job in workflow.dag.needrun_jobs():
            group = workflow.dag.get_job_group(job)
            unit = group if group is not None else job
            if id(unit) in seen:
                continue
            seen.add(id(unit))
            if group is not None:
                rules = sorted({j.rule.name for j in group.jobs})
                name = f"group {group.groupid} ({', '.join(rules)})"
            else:
                name = f"{job.rule.name}" + (f" ({', '.join(f'{k}={v}' for k, v in job.wildcards_dict.items())})"
                                             if job.wildcards_dict else "")
            partition = str(unit.resources.get("slurm_partition") or "")
            mem = unit.resources.get("mem_mb")
            requests.setdefault(partition, []).append(
                (name, unit.threads, mem if isinstance(mem, (int, float)) else None,
                 gres_gpus(unit.resources.get("gres"))))
        for partition, jobs in requests.items():
            check_requests(jobs, parse_sinfo(text, partition=partition or None))
    except CryopipeError as exc:
        sys.exit(f"Error: {exc}")


check_user_files()
