"""The Snakemake DAG: schema, dry run, a tiny real run, reruns after config changes, bad input."""
import subprocess
import sys

import numpy as np
import pytest
import yaml
from snakemake.utils import validate as snakemake_validate

from cryopipe.io.stores import load_store, open_store
from cryopipe.runner import code_version
from cryopipe.simulate.stream import DEFAULT_SIMULATION
from workflow_util import REPO, planned_rules, snakemake, tiny_config, write_config

SCHEMA = str(REPO / "workflow" / "schemas" / "config.schema.yaml")
PASS1 = {"trigger_segment_pass1", "trigger_channel_pass1", "records_pass1"}
FINAL = {"trigger_segment", "trigger_channel", "records", "features_channel", "features"}
CHARACTERIZE = {"characterize_channel", "characterize"}


def test_default_config_validates_and_embeds_the_default_simulation():
    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    snakemake_validate(cfg, SCHEMA, set_default=True)
    assert cfg["runs"]["sim"]["simulate"] == DEFAULT_SIMULATION
    assert cfg["trigger"]["threshold_sigma"] == 5.0


def test_user_csmpl_config_shape_validates_with_defaults():
    cfg = yaml.safe_load((REPO / "config" / "mock.yaml").read_text())
    snakemake_validate(cfg, SCHEMA, set_default=True)
    assert cfg["runs"]["mock"]["polarity"] == 1 and cfg["trigger"]["holdoff"] is None


@pytest.mark.parametrize("bad", [
    {"runs": {"r": {"csmpl": ["a"], "sample_frequency": 1, "record_length": 64, "colour": 3}}},
    {"runs": {"r": {"csmpl": ["a"], "sample_frequency": 0, "record_length": 64}}},
    {"runs": {"r": {"sample_frequency": 10, "record_length": 64}}},
    {"runs": {"r": {"csmpl": ["a"], "sample_frequency": 10, "record_length": 64}}, "trigger": {"treshold": 5}},
])
def test_schema_rejects_unknown_keys_and_bad_values(bad):
    with pytest.raises(Exception):
        snakemake_validate(bad, SCHEMA, set_default=True)


def test_code_version_changes_with_module_source(tmp_path, monkeypatch):
    mod = tmp_path / "stage_mod_xyz.py"
    mod.write_text("A = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    v1 = code_version("stage_mod_xyz")
    mod.write_text("A = 2\n")
    assert code_version("stage_mod_xyz") != v1


def test_dry_run_of_the_default_config(tmp_path):
    rules = planned_rules(tmp_path, REPO / "config" / "config.yaml")
    assert PASS1 | FINAL | {"simulate_stream", "characterize_channel", "characterize", "labels", "all"} == rules


def test_lint_is_clean():
    proc = subprocess.run([sys.executable, "-m", "snakemake", "--lint", "-s", str(REPO / "Snakefile"),
                           "-d", str(REPO)], capture_output=True, text=True, timeout=300)
    assert "Congratulations" in proc.stdout + proc.stderr, proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    work = tmp_path_factory.mktemp("wf")
    cfg = write_config(work / "tiny.yaml", tiny_config(work / "results"))
    snakemake(work, cfg)
    return work, cfg


@pytest.mark.slow
def test_tiny_run_writes_valid_stores_that_find_the_simulated_pulses(tiny_run):
    work, _ = tiny_run
    res = work / "results" / "sim"
    records = open_store(res / "records.zarr", "records")
    features = load_store(res / "features.zarr", "features")
    truth = load_store(res / "truth.zarr", "truth")
    n_rec = records.attrs["record_length"]
    assert records.sizes["sample"] == n_rec == 4096
    assert features.sizes["event"] == records.sizes["event"]
    assert list(features.channel.values) == ["phonon", "light"]
    kinds = records["record_kind"].values.astype(object)
    assert (kinds == "noise").sum() == 60
    labels = load_store(res / "labels.zarr", "labels")
    assert labels["cut_flags"].sizes["cut"] >= 5 and labels.sizes["event"] == records.sizes["event"]
    char = load_store(res / "characterization.zarr", "characterization")
    # final pass: the optimum filter at 5 x its measured resolution, close to the expected one
    np.testing.assert_allclose(char["threshold"], 5 * char["resolution"])
    np.testing.assert_allclose(char["resolution"], char["expected_resolution"], rtol=0.15)
    assert "of_amplitude" in features
    # every bright, isolated particle event of the truth has a particle record within a few samples
    onsets = truth["onset_sample"].values
    cls = np.array([str(c) for c in truth["pulse_class"].values])
    bright = (cls == "event") & (truth["amplitude"].values[0] > 3 * records.attrs["threshold"][0])
    gaps = np.diff(np.concatenate([[-10**9], onsets, [10**12]]))
    isolated = (gaps[:-1] > n_rec) & (gaps[1:] > n_rec)
    inside = (onsets > n_rec) & (onsets < records.attrs["stream_duration"] * 25000 - n_rec)
    wanted = onsets[bright & isolated & inside]
    trig = records["trigger_sample"].values[kinds == "particle"]
    dist = np.abs(trig[None, :] - wanted[:, None]).min(axis=1)
    assert len(wanted) >= 10
    assert np.all(dist <= 20), dist
    assert 0 < records.attrs["live_time"] <= records.attrs["stream_duration"]


@pytest.mark.slow
def test_rerun_after_config_change_redoes_exactly_the_rules_that_use_it(tiny_run):
    work, cfg_path = tiny_run
    assert planned_rules(work, cfg_path) == set()
    cfg = yaml.safe_load(cfg_path.read_text())

    cfg["features"]["batch"] = 77
    assert planned_rules(work, write_config(work / "c1.yaml", cfg)) == {"features_channel", "features",
                                                                          "labels", "all"}
    cfg["features"]["batch"] = 4096
    cfg["labels"] = {"cuts_file": str(REPO / "config" / "cuts_default.yaml")}
    # the same cuts from a file: no rerun; an edited cut reruns only labels
    assert planned_rules(work, write_config(work / "c2.yaml", cfg)) == set()
    cuts = yaml.safe_load((REPO / "config" / "cuts_default.yaml").read_text())
    first = next(iter(cuts["cuts"]))
    cuts["cuts"][first]["channels"] = "phonon"
    cfg["labels"]["cuts_file"] = str(write_config(work / "cuts.yaml", cuts))
    assert planned_rules(work, write_config(work / "c3.yaml", cfg)) == {"labels", "all"}
    del cfg["labels"]

    cfg["characterize"]["threshold_resolution"] = 6.0   # final pass only
    assert planned_rules(work, write_config(work / "c4.yaml", cfg)) == CHARACTERIZE | FINAL | {"labels", "all"}
    cfg["characterize"]["threshold_resolution"] = 5.0
    cfg["trigger"]["threshold_sigma"] = 6.0               # both passes
    assert planned_rules(work, write_config(work / "c5.yaml", cfg)) == (
        PASS1 | CHARACTERIZE | FINAL | {"labels", "all"})


@pytest.mark.slow
def test_bad_csmpl_fails_with_the_file_named_and_leaves_no_store(tmp_path):
    bad = tmp_path / "bad.csmpl"
    bad.write_bytes(b"\x00" * 40001)
    cfg = {"results": str(tmp_path / "results"),
           "runs": {"mock": {"csmpl": [str(bad)], "sample_frequency": 25000, "record_length": 4096}}}
    proc = snakemake(tmp_path, write_config(tmp_path / "bad.yaml", cfg), check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert f"{bad}: odd byte count" in out
    assert not (tmp_path / "results" / "mock" / "records.zarr").exists()
    assert not list((tmp_path / "results" / "mock").glob("triggers/*.zarr"))
