"""The run configuration: the user's file is the whole truth, per-run settings, validation, and
values that are equal in meaning rerun nothing."""
from __future__ import annotations

import copy
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from cryopipe.config import check, coerce_strings, load_schema, resolve_runs
from cryopipe.errors import ConfigError
from cryopipe.io.cresst import write_par

REPO = Path(__file__).resolve().parents[1]
SCHEMA = load_schema(REPO / "workflow" / "schemas" / "config.schema.yaml")


def resolved(cfg: dict) -> dict:
    """The config as the Snakefile sees it: schema defaults filled (by Snakemake's validate), runs resolved."""
    from snakemake.utils import validate

    cfg = copy.deepcopy(cfg)
    check(cfg, SCHEMA)
    validate(cfg, str(REPO / "workflow" / "schemas" / "config.schema.yaml"), set_default=True)
    return resolve_runs(cfg, SCHEMA)


def user_run(tmp_path, **keys) -> dict:
    f = tmp_path / "a.csmpl"
    f.write_bytes(np.zeros(50_000, "<i2").tobytes())
    return {"runs": {"mine": {"csmpl": [str(f)], "sample_frequency": 25000, "record_length": 4096, **keys}}}


def test_per_run_sections_override_global_values_key_by_key(tmp_path):
    cfg = user_run(tmp_path, calibrate={"line_energy": 5.9}, trigger={"threshold_sigma": 7})
    cfg["trigger"] = {"holdoff": 100}
    run = resolved(cfg)["mine"]
    assert run["calibrate"]["line_energy"] == 5.9
    assert run["trigger"]["threshold_sigma"] == 7 and run["trigger"]["holdoff"] == 100
    assert run["trigger"]["chunk_size"] == 1048576          # the schema's default
    assert run["characterize"]["enabled"] is True and run["channels"] == ["ch0"]


def test_one_csmpl_file_may_be_a_string(tmp_path):
    cfg = user_run(tmp_path)
    listed = resolved(cfg)["mine"]
    cfg["runs"]["mine"]["csmpl"] = cfg["runs"]["mine"]["csmpl"][0]
    assert resolved(cfg)["mine"]["csmpl"] == listed["csmpl"] == [str(tmp_path / "a.csmpl")]


def test_no_calibration_line_by_default(tmp_path):
    assert resolved(user_run(tmp_path))["mine"]["calibrate"]["line_energy"] is None
    assert resolved(user_run(tmp_path))["mine"]["calibrate"]["expected"] is None


@pytest.mark.parametrize("expected", [0.3, {"ch0": 0.3}])
def test_calibration_line_hint_is_one_value_or_one_per_channel(tmp_path, expected):
    run = resolved(user_run(tmp_path, calibrate={"line_energy": 5.9, "expected": expected}))["mine"]
    assert run["calibrate"]["expected"] == expected


def test_a_line_hint_for_a_channel_the_run_lacks_is_a_config_error(tmp_path):
    """A misspelt channel name would silently not apply (the most prominent line instead): refused,
    per run against the run's channels, globally against the channels of every run."""
    with pytest.raises(ConfigError, match=r"runs.mine.calibrate.expected names channel\(s\) 'phonen', but run "
                                          r"'mine' has only ch0"):
        resolved(user_run(tmp_path, calibrate={"line_energy": 5.9, "expected": {"phonen": 0.3}}))
    cfg = user_run(tmp_path)
    cfg["calibrate"] = {"line_energy": 5.9, "expected": {"ch0": 0.3, "ch9": 0.1}}
    with pytest.raises(ConfigError, match=r"^config: calibrate.expected names channel\(s\) 'ch9', but the runs"):
        resolved(cfg)
    cfg["calibrate"]["expected"] = {"ch0": 0.3}
    assert resolved(cfg)["mine"]["calibrate"]["expected"] == {"ch0": 0.3}


@pytest.mark.parametrize("expected", [-0.3, 0, {"phonon": -1}, "0.3 V"])
def test_a_bad_calibration_line_hint_is_a_config_error(tmp_path, expected):
    with pytest.raises(ConfigError, match="expected"):
        resolved(user_run(tmp_path, calibrate={"line_energy": 5.9, "expected": expected}))


def test_equal_values_resolve_equal(tmp_path):
    a = resolved(user_run(tmp_path))["mine"]
    b_cfg = user_run(tmp_path)
    b_cfg["runs"]["mine"]["sample_frequency"] = 25000.0
    b_cfg["runs"]["mine"]["record_length"] = 4096.0
    b_cfg["runs"]["mine"]["csmpl"] = [f"{tmp_path}/./a.csmpl"]
    b = resolved(b_cfg)["mine"]
    assert a == b and isinstance(b["sample_frequency"], float) and isinstance(b["record_length"], int)


@pytest.mark.parametrize("name", ["../x", "a/b", ".hidden", "a..b", "x y"])
def test_unsafe_run_names_are_rejected(tmp_path, name):
    cfg = user_run(tmp_path)
    cfg["runs"] = {name: cfg["runs"]["mine"]}
    with pytest.raises(ConfigError, match="run name .* is not allowed"):
        resolved(cfg)


def test_duplicate_channel_names_are_rejected(tmp_path):
    cfg = user_run(tmp_path, channels=["a", "a"])
    cfg["runs"]["mine"]["csmpl"] *= 2
    with pytest.raises(ConfigError, match="duplicate channel names a"):
        resolved(cfg)


def test_bad_override_key_names_the_run_and_section(tmp_path):
    with pytest.raises(ConfigError, match=r"run 'mine', trigger: .*unknown key threshold\b"):
        resolved(user_run(tmp_path, trigger={"threshold": 3}))


def test_unknown_top_level_key_is_one_short_paragraph():
    with pytest.raises(ConfigError) as err:
        check({"runs": {"a": {"csmpl": ["x"]}}, "trigggger": {}}, SCHEMA)
    msg = str(err.value)
    assert "unknown key trigggger" in msg and "allowed keys:" in msg and msg.count("\n") == 0 and len(msg) < 400


def test_par_file_gives_sample_frequency_and_record_length_and_conflicts_are_errors(tmp_path):
    par = tmp_path / "r.par"
    write_par(par, start_time=1.6e9, record_length=8192, sample_frequency=50_000.0)
    cfg = user_run(tmp_path)
    run = cfg["runs"]["mine"]
    del run["sample_frequency"], run["record_length"]
    run["par"] = str(par)
    got = resolved(cfg)["mine"]
    assert got["sample_frequency"] == 50_000.0 and got["record_length"] == 8192
    run["record_length"] = 4096
    with pytest.raises(ConfigError, match="record_length 4096 disagrees with 8192 in .*r.par"):
        resolved(cfg)


def test_run_files_are_read_lazily_through_io(tmp_path):
    """config knows no format: `describe_run_files` reads a header file only when a setting needs it."""
    from cryopipe.errors import InputError
    from cryopipe.io.sources import describe_run_files

    files = describe_run_files({"csmpl": ["a", "b"], "par": str(tmp_path / "missing.par")})
    assert files.n_channels == 2 and files.header_settings == {} and files.noise_settings is None
    with pytest.raises(InputError, match="missing.par"):
        files.parameter_settings
    write_par(tmp_path / "r.par", start_time=1.6e9, record_length=8192, sample_frequency=50_000.0)
    files = describe_run_files({"csmpl": ["a"], "par": str(tmp_path / "r.par")})
    assert files.parameter_settings == {"sample_frequency": 50_000.0, "record_length": 8192}
    assert describe_run_files({"simulate": {}}).n_channels is None


def test_sample_frequency_is_required_without_par(tmp_path):
    cfg = user_run(tmp_path)
    del cfg["runs"]["mine"]["sample_frequency"]
    with pytest.raises(ConfigError, match="sample_frequency is required"):
        resolved(cfg)


def test_test_stamps_need_dig_stamps(tmp_path):
    with pytest.raises(ConfigError, match="test_stamps need the run's dig_stamps"):
        resolved(user_run(tmp_path, test_stamps="x.test_stamps"))


def test_sev_height_range_is_checked_when_the_config_loads(tmp_path):
    run = resolved({**user_run(tmp_path), "characterize": {"sev_height_range": {"ch0": [0.1, 0.6]}}})["mine"]
    assert run["characterize"]["sev_height_range"] == {"ch0": [0.1, 0.6]}
    with pytest.raises(ConfigError, match=r"characterize.sev_height_range names channel\(s\) 'light', but"):
        resolved({**user_run(tmp_path), "characterize": {"sev_height_range": {"light": [0.1, 0.6]}}})
    with pytest.raises(ConfigError, match=r"runs.mine.characterize.sev_height_range is \[0.6, 0.1\] V: it needs"):
        resolved(user_run(tmp_path, characterize={"sev_height_range": [0.6, 0.1]}))
    with pytest.raises(ConfigError, match="sev_height_range"):
        resolved(user_run(tmp_path, characterize={"sev_height_range": [0.1]}))


def test_command_line_strings_become_the_numbers_and_booleans_the_schema_asks_for(tmp_path):
    cfg = user_run(tmp_path, trigger={"holdoff": "100"})
    cfg.update(trigger={"threshold_sigma": "6.5"}, characterize={"max_pulses": "600", "enabled": "false"},
               testpulse={"exclude_tpas": ["3", "10.0"], "template_tpa": "null"}, results="123")
    coerce_strings(cfg, SCHEMA)
    assert cfg["trigger"]["threshold_sigma"] == 6.5 and cfg["characterize"]["max_pulses"] == 600
    assert cfg["characterize"]["enabled"] is False and cfg["testpulse"]["exclude_tpas"] == [3, 10.0]
    assert cfg["testpulse"]["template_tpa"] is None and cfg["results"] == "123"   # a string where one is asked for
    assert resolved(cfg)["mine"]["trigger"]["holdoff"] == 100   # per-run sections too
    bad = {"trigger": {"threshold_sigma": "six"}, "characterize": {"max_pulses": "6.5"}}
    coerce_strings(bad, SCHEMA)
    assert bad == {"trigger": {"threshold_sigma": "six"}, "characterize": {"max_pulses": "6.5"}}
    with pytest.raises(ConfigError, match="threshold_sigma: 'six' is not of type 'number'"):
        check(bad, SCHEMA)


@pytest.mark.slow  # runs Snakemake
def test_a_section_given_with_config_on_the_command_line_is_accepted(tmp_path):
    cfg = user_run(tmp_path)
    cfg["trigger"] = {"holdoff": 100}
    (tmp_path / "u.yaml").write_text(yaml.safe_dump(cfg))
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(tmp_path), "-n", "--cores", "1",
           f"--configfile={tmp_path / 'u.yaml'}", "--config", "trigger={threshold_sigma: 6}", "--printshellcmds"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "run=mine" in proc.stdout + proc.stderr


def _dry_run(workdir: Path, configfile: Path, *targets: str, env=None) -> str:
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(workdir), "-n",
           "--cores", "1", *targets, f"--configfile={configfile}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout + proc.stderr


@pytest.mark.slow  # runs Snakemake
def test_a_user_config_plans_only_its_own_run(tmp_path):
    cfg = user_run(tmp_path)
    (tmp_path / "u.yaml").write_text(yaml.safe_dump(cfg))
    out = _dry_run(tmp_path, tmp_path / "u.yaml")
    assert "run=mine" in out and "run=sim" not in out and "results/sim" not in out


@pytest.mark.slow
def test_equal_values_rerun_nothing_and_library_edits_rerun_what_imports_them(tmp_path):
    """A real one-pass run on a private copy of the library; then: the same config with 25000.0 and
    ./data/x plans nothing, another sample frequency plans the run again, and an edit of a module
    the trigger imports only indirectly (signal/pulses.py, via filters) reruns it (its code hash)."""
    import os
    import shutil

    lib = tmp_path / "lib"
    shutil.copytree(REPO / "src" / "cryopipe", lib / "cryopipe", ignore=shutil.ignore_patterns("__pycache__"))
    env = {**os.environ, "PYTHONPATH": str(lib)}
    rng = np.random.default_rng(0)
    n, fs = 1_500_000, 25_000.0
    x = rng.normal(0, 2e-3, n)
    t = np.arange(4096) / fs
    shape = np.exp(-t / 0.02) - np.exp(-t / 0.001)
    for i in rng.integers(0, n - 4096, 40):
        x[i:i + 4096] += 0.1 * shape / shape.max()
    (tmp_path / "data").mkdir()
    np.clip(np.rint(x / (20 / 2**16)), -32768, 32767).astype("<i2").tofile(tmp_path / "data" / "x.csmpl")
    base = {"runs": {"r": {"csmpl": ["data/x.csmpl"], "sample_frequency": 25000, "record_length": 4096}},
            "characterize": {"enabled": False}, "cleaning": {"enabled": False}, "trigger": {"noise_records": 20}}
    (tmp_path / "a.yaml").write_text(yaml.safe_dump(base))
    target = "results/r/features.zarr"
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(tmp_path), "--cores", "2",
           target, f"--configfile={tmp_path / 'a.yaml'}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Nothing to be done" in _dry_run(tmp_path, tmp_path / "a.yaml", target, env=env)
    other = copy.deepcopy(base)
    other["runs"]["r"].update(csmpl=["./data/x.csmpl"], sample_frequency=25000.0)
    (tmp_path / "b.yaml").write_text(yaml.safe_dump(other))
    assert "Nothing to be done" in _dry_run(tmp_path, tmp_path / "b.yaml", target, env=env)
    changed = copy.deepcopy(base)
    changed["runs"]["r"]["sample_frequency"] = 25001
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(changed))
    assert "Nothing to be done" not in _dry_run(tmp_path, tmp_path / "c.yaml", target, env=env)
    pulses = lib / "cryopipe" / "signal" / "pulses.py"
    pulses.write_text(pulses.read_text() + "\n# edited\n")
    plan = _dry_run(tmp_path, tmp_path / "a.yaml", target, env=env)
    rerun = set(re.findall(r"^rule (\w+):", plan, flags=re.M)) | set(re.findall(r"^localrule (\w+):", plan, flags=re.M))
    assert "trigger_segment" in rerun and "Params have changed" in plan, plan[-2000:]   # the code hash


def test_channel_roles_default_to_phonon_and_light_names_and_are_checked(tmp_path):
    cfg = user_run(tmp_path, channels=["phonon", "light"])
    cfg["runs"]["mine"]["csmpl"] *= 2
    assert resolved(cfg)["mine"]["roles"] == {"phonon": "phonon", "light": "light"}
    cfg["runs"]["mine"]["channels"] = ["a", "b"]
    assert resolved(cfg)["mine"]["roles"] == {}
    cfg["runs"]["mine"]["roles"] = {"phonon": "a", "light": "c"}
    with pytest.raises(ConfigError, match="roles.light 'c' is not one of its channels"):
        resolved(cfg)


def test_start_time_belongs_to_a_csmpl_stream_without_par(tmp_path):
    assert resolved(user_run(tmp_path, start_time=1.7e9))["mine"]["start_time"] == 1.7e9
    par = tmp_path / "r.par"
    write_par(par, start_time=1.6e9, record_length=4096, sample_frequency=25_000.0)
    with pytest.raises(ConfigError, match="start_time is for a csmpl stream without a par file"):
        resolved(user_run(tmp_path, start_time=1.7e9, par=str(par)))


@pytest.mark.slow  # runs Snakemake
def test_configured_start_time_gives_absolute_record_timestamps(tmp_path):
    """A plain csmpl stream (numpy pulses every 0.5 s at known samples) with `start_time`: the
    records' timestamps are start_time + trigger sample / fs (without it they count from 0)."""
    from cryopipe.io.stores import load_store
    from workflow_util import snakemake, write_config

    fs, n = 25_000.0, 25_000 * 40
    rng = np.random.default_rng(2)
    x = rng.normal(0.0, 0.002, n)
    t = np.arange(4096) / fs
    shape = np.exp(-t / 0.02) - np.exp(-t / 0.001)
    onsets = np.arange(int(0.3 * fs), n - 4096, int(0.5 * fs))
    for i in onsets:
        x[i:i + 4096] += 0.05 * shape / shape.max()
    (tmp_path / "a.csmpl").write_bytes(np.round(x / (20.0 / 2 ** 16)).astype("<i2").tobytes())
    start = 1_765_000_000.25
    cfg = {"results": str(tmp_path / "results"),
           "runs": {"s": {"csmpl": "a.csmpl", "sample_frequency": fs, "record_length": 4096, "start_time": start}},
           "efficiency": {"enabled": False}, "cleaning": {"enabled": False}, "trigger": {"noise_records": 30},
           "characterize": {"min_noise_records": 10}}
    conf = write_config(tmp_path / "c.yaml", cfg)
    snakemake(tmp_path, conf, str(tmp_path / "results/s/records.zarr"))
    rec = load_store(tmp_path / "results/s/records.zarr", "records")
    particle = rec["record_kind"].values.astype(str) == "particle"
    ts = rec["timestamp"].values[particle] - start
    assert particle.sum() >= 0.9 * onsets.size
    assert np.all(ts > 0) and np.all(ts < n / fs)
    # every particle record lies within a few ms of an injected onset
    gap = np.min(np.abs(ts[:, None] - onsets[None, :] / fs), axis=1)
    assert np.max(gap) < 0.005


@pytest.mark.parametrize("where, typo", [("top", "durration"), ("channel", "volts_per_kevv"), ("noise", "whit")])
def test_a_misspelt_simulation_key_is_a_config_error(where, typo):
    """The simulator's keys are checked when the config loads: a misspelt one (which would silently
    not apply, and rerun the whole simulated run) names itself and where it is."""
    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    sim = cfg["runs"]["sim"]["simulate"]
    assert resolved(cfg)["sim"]["simulate"] == sim                 # the demo itself loads
    target = {"top": sim, "channel": sim["channels"][0], "noise": sim["channels"][0]["noise"]}[where]
    target[typo] = 1.0
    with pytest.raises(ConfigError, match=rf"^config: run 'sim': simulation: unknown key\(s\) {typo} in "):
        resolved(cfg)
