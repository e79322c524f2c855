# Input functions and helpers shared by all rules (no algorithms here).
import json
from pathlib import Path

from cryopipe import cuts, runner
from cryopipe.stages import trigger as trigger_stage
from cryopipe.cleaning import universal

RESULTS = config["results"]
RUNS = config["runs"]
CONDA_ENV = "../../envs/cryopipe.yaml"


PASS_PREFIX = {"pass1": "pass1/", "final": ""}


def characterization_input(wildcards):
    """The run's characterization store when the two-pass analysis is enabled (else nothing)."""
    if config["characterize"]["enabled"]:
        return f"{RESULTS}/{wildcards.run}/characterization.zarr"
    return []


def calibration_input(wildcards):
    """The run's calibration store when a calibration line is configured (else nothing)."""
    if config["characterize"]["enabled"] and config["calibrate"]["line_energy"] is not None:
        return f"{RESULTS}/{wildcards.run}/calibration.zarr"
    return []


def model_checkpoint(wildcards):
    """Checkpoint of a cleaning model: the shipped universal one, or one trained on the run's simulation."""
    if wildcards.model == "universal":
        return str(universal.universal_path())
    return f"{RESULTS}/models/{wildcards.run}/{wildcards.model}.pt"


def cleaning_targets(run):
    c = config["cleaning"]
    out = [f"{RESULTS}/{run}/predictions/{m}.zarr" for m in c["models"]]
    out += [f"{RESULTS}/report/{run}/cleaning_{m}" for m in c["models"]]
    if c["evaluate"]:
        out += [f"{RESULTS}/report/{run}/evaluation_{m}" for m in c["models"]]
    return out


def cut_set():
    """The cut set: the config's cuts file, or cryopipe's default cuts (validated)."""
    path = config["labels"]["cuts_file"]
    return canonical(cuts.load_cuts(path) if path else cuts.DEFAULT_CUTS)


def run_config(run):
    return RUNS[run]


def channel_names(run):
    rc = RUNS[run]
    n = len(rc["csmpl"]) if "csmpl" in rc else len(rc["simulate"].get("channels", [])) or 2
    names = rc.get("channels") or [f"ch{i}" for i in range(n)]
    if len(names) != n:
        raise ValueError(f"run {run!r}: {len(names)} channel names for {n} channels")
    return list(names)


def is_simulated(run):
    return "simulate" in RUNS[run]


def stream_dir(run):
    return f"{RESULTS}/{run}/stream"


def csmpl_paths(run):
    """The run's csmpl files: the user's, or the simulator's output."""
    if is_simulated(run):
        return [f"{stream_dir(run)}/{ch}.csmpl" for ch in channel_names(run)]
    return list(RUNS[run]["csmpl"])


def stream_inputs(wildcards):
    """Inputs of stream readers (the simulator folder, or the user csmpl files)."""
    run = wildcards.run
    return [stream_dir(run)] if is_simulated(run) else csmpl_paths(run)


def stream_samples(run):
    """Samples per channel, known before the stream is read (simulated: duration x fs)."""
    rc = RUNS[run]
    if is_simulated(run):
        return int(round(rc["simulate"]["duration"] * rc["sample_frequency"]))
    first = Path(rc["csmpl"][0])
    return first.stat().st_size // 2 if first.is_file() else 0


def n_segments(run):
    """Number of time segments the trigger of a run is split into (separate jobs)."""
    rc = RUNS[run]
    return len(trigger_stage.segment_bounds(max(stream_samples(run), 1), rc["sample_frequency"],
                                       config["trigger"]["segment_duration"]))


def stream_params(run):
    """Stream description handed to scripts (a change reruns the rules that read it)."""
    rc = RUNS[run]
    return canonical({
        "csmpl": csmpl_paths(run),
        "sample_frequency": rc["sample_frequency"],
        "record_length": rc["record_length"],
        "channels": channel_names(run),
        "polarity": rc.get("polarity", 1),
        "adc_bits": rc.get("adc_bits", 16),
        "adc_range": rc.get("adc_range", 20.0),
    })


def canonical(value):
    """`value` with every mapping's keys sorted: params compare by value, so reordering keys in a
    config file does not rerun anything."""
    return json.loads(json.dumps(value, sort_keys=True))


def subconfig(section, *keys):
    """The named keys of a config section: a rule's params hold only what it uses, so a change
    of any other value does not rerun it."""
    return canonical({k: config[section][k] for k in keys})


def code_version(*modules):
    """Hash of the stage's library modules (and cryopipe's version), for params."""
    return runner.code_version("cryopipe", *modules)


def report_figures(run):
    """The figures of a run (characterisation, spectra, efficiency) under results/report/<run>/."""
    out = [f"{RESULTS}/report/{run}/nps.png", f"{RESULTS}/report/{run}/filter_transfer.png"]
    for ch in channel_names(run):
        out += [f"{RESULTS}/report/{run}/sev_{ch}.png", f"{RESULTS}/report/{run}/spectrum_{ch}.png"]
        if config["efficiency"]["enabled"]:
            out.append(f"{RESULTS}/report/{run}/efficiency_{ch}.png")
    return out


def all_targets():
    out = []
    for run in RUNS:
        out += [f"{RESULTS}/{run}/records.zarr", f"{RESULTS}/{run}/features.zarr"]
        if config["characterize"]["enabled"]:
            out += [f"{RESULTS}/{run}/labels.zarr"]
            if config["efficiency"]["enabled"]:
                out += [f"{RESULTS}/{run}/efficiency.zarr"]
            out += report_figures(run)
            if config["cleaning"]["enabled"]:
                out += cleaning_targets(run)
    return out
