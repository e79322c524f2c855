"""The Snakemake DAG: schema, dry run, a tiny real run, reruns after config changes, bad input."""
import json
from pathlib import Path
import subprocess
import sys

import numpy as np
import pytest
import yaml
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate as snakemake_validate

from cryopipe.io.stores import load_store, open_store
from cryopipe.runner import code_version
from cryopipe.simulate.stream import DEFAULT_SIMULATION
from workflow_util import REPO, planned_rules, snakemake, tiny_config, write_config

SCHEMA = str(REPO / "workflow" / "schemas" / "config.schema.yaml")
PASS1 = {"trigger_segment_pass1", "gather_triggers_pass1", "records_pass1"}
FINAL = {"trigger_segment", "gather_triggers", "records", "features_channel", "features"}
CHARACTERIZE = {"characterize_channel", "characterize"}
CLEANING = {"simulate_records", "train", "predict", "evaluate"}


def test_default_config_validates_and_embeds_the_default_simulation():
    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    snakemake_validate(cfg, SCHEMA, set_default=True)
    assert cfg["runs"]["sim"]["simulate"] == DEFAULT_SIMULATION
    assert cfg["trigger"]["threshold_sigma"] == 5.0


def test_user_csmpl_config_shape_validates_with_defaults():
    cfg = yaml.safe_load((REPO / "config" / "mock.yaml").read_text())
    snakemake_validate(cfg, SCHEMA, set_default=True)
    assert cfg["trigger"]["holdoff"] is None
    # polarity has no schema default (an LJH header's 'Inverted' must not clash with one): the run
    # settings give it, +1 unless set
    from cryopipe.config import load_schema, resolve_runs

    assert "polarity" not in cfg["runs"]["mock"]
    assert resolve_runs(cfg, load_schema(SCHEMA))["mock"]["polarity"] == 1


@pytest.mark.parametrize("bad, message", [
    ({"runs": {"r": {"csmpl": ["a"], "sample_frequency": 1, "record_length": 64, "colour": 3}}}, "'colour' was unexpected"),
    ({"runs": {"r": {"csmpl": ["a"], "sample_frequency": 0, "record_length": 64}}}, "less than or equal to the minimum of 0"),
    ({"runs": {"r": {"sample_frequency": 10, "record_length": 64}}}, "is not valid under any of the given schemas"),
    ({"runs": {"r": {"csmpl": ["a"], "sample_frequency": 10, "record_length": 64}}, "trigger": {"treshold": 5}},
     "'treshold' was unexpected"),
])
def test_schema_rejects_unknown_keys_and_bad_values(bad, message):
    with pytest.raises(WorkflowError, match=f"(?s)Error validating config file.*{message}"):
        snakemake_validate(bad, SCHEMA, set_default=True)


def test_code_version_changes_with_module_source(tmp_path, monkeypatch):
    mod = tmp_path / "stage_mod_xyz.py"
    mod.write_text("A = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    v1 = code_version("stage_mod_xyz")
    mod.write_text("A = 2\n")
    assert code_version("stage_mod_xyz") != v1


@pytest.mark.slow  # runs Snakemake
def test_dry_run_of_the_default_config(tmp_path):
    rules = planned_rules(tmp_path, REPO / "config" / "config.yaml")
    assert PASS1 | FINAL | CHARACTERIZE | CLEANING | {"simulate_stream", "labels", "all"} <= rules
    assert {"calibrate", "efficiency", "plot_characterization", "plot_noise", "plot_spectrum"} <= rules


@pytest.mark.slow  # runs Snakemake
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
    assert "of_amplitude" in features and "energy" in features
    # the calibration recovers the simulated volts per keV of the phonon channel (5.9 keV line)
    cal = load_store(res / "calibration.zarr", "calibration")
    vpk = DEFAULT_SIMULATION["channels"][0]["volts_per_kev"]
    assert abs(float(cal["kev_per_volt"].sel(channel="phonon")) * vpk - 1) < 0.05
    for model in ("universal", "cnn"):
        pred = load_store(res / "predictions" / f"{model}.zarr", "predictions")
        assert pred.sizes["event"] == records.sizes["event"]
        assert (work / "results" / "report" / "sim" / f"evaluation_{model}" / "targets.md").is_file()
        # the cleaning report: spectra and PCA figures, counts of the run's particle events
        rep = work / "results" / "report" / "sim" / f"cleaning_{model}"
        assert (rep / "spectrum.png").is_file() and (rep / "pca.png").is_file()
        summary = json.loads((rep / "summary.json").read_text())
        particle = records["record_kind"].values.astype(str) == "particle"
        assert summary["events"] == particle.sum()
        assert summary["after_model"] == pred["event_clean"].values[particle].sum()
        assert summary["after_cuts"] == labels["accepted"].values[:, particle].all(axis=0).sum()
        if model == "universal":   # calibrated: the report counts the events with an unsure channel
            assert summary["unsure"] == pred["unsure"].values[:, particle].any(axis=0).sum()
    assert len(list((work / "results" / "report" / "sim").glob("*.png"))) >= 9
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
    base = yaml.safe_load(cfg_path.read_text())

    def plan(name, change):
        cfg = yaml.safe_load(yaml.safe_dump(base))
        change(cfg)
        return planned_rules(work, write_config(work / f"{name}.yaml", cfg))

    # the same cuts from a file: nothing; an edited cut: the labels and the efficiency (which applies the cuts)
    same = str(REPO / "config" / "cuts_default.yaml")
    assert plan("cuts_same", lambda c: c.update(labels={"cuts_file": same})) == set()
    cuts = yaml.safe_load((REPO / "config" / "cuts_default.yaml").read_text())
    cuts["cuts"][next(iter(cuts["cuts"]))]["channels"] = "phonon"
    edited = str(write_config(work / "cuts.yaml", cuts))
    assert plan("cuts_edit", lambda c: c.update(labels={"cuts_file": edited})) == {
        "labels", "efficiency_channel", "efficiency", "plot_efficiency", "plot_light_yield", "cleaning_report", "all"}
    # efficiency settings: only the efficiency stage and its figures
    assert plan("eff", lambda c: c["efficiency"].update(n_per_amplitude=31)) == {
        "efficiency_channel", "efficiency", "plot_efficiency", "all"}
    # the cleaning cutoff: the decisions (predictions, evaluation) only, never a retraining
    assert plan("cutoff", lambda c: c["cleaning"].update(cutoff=0.6)) == {"predict", "evaluate", "cleaning_report", "all"}
    # the final-pass threshold: characterization and everything after, not the first pass
    final = plan("final", lambda c: c["characterize"].update(threshold_resolution=6.0))
    assert CHARACTERIZE | FINAL <= final and not (PASS1 | {"simulate_stream"}) & final
    # the first-pass threshold: both passes, not the simulation
    first = plan("first", lambda c: c["trigger"].update(threshold_sigma=6.0))
    assert PASS1 | CHARACTERIZE | FINAL <= first and "simulate_stream" not in first


@pytest.mark.slow
def test_html_report_collects_the_figures_by_stage(tiny_run):
    work, cfg_path = tiny_run
    snakemake(work, cfg_path, "--report", str(work / "report.html"))
    html = (work / "report.html").read_text(errors="replace")
    for category in ("Characterization", "Calibration", "Efficiency", "Cleaning"):
        assert category in html
    for name in ("sev_phonon.png", "nps.png", "spectrum_light.png", "efficiency_phonon.png", "loss_cnn.png", "pca.png",
                 "energy_dependence_phonon.png"):
        assert name in html


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


@pytest.mark.slow
def test_every_registered_architecture_trains_through_the_dag(tiny_run):
    """The registry (cleaning.architectures) drives the schema enum and the train rule's wildcard:
    every architecture trains for one tiny epoch through Snakemake and predicts on the run."""
    from cryopipe.cleaning.architectures import ARCHITECTURES

    work, cfg_path = tiny_run
    cfg = yaml.safe_load(cfg_path.read_text())
    cfg["cleaning"].update(models=list(ARCHITECTURES), evaluate=False,
                           simulate={"n_per_class": 8, "n_test_per_class": 4}, train={"epochs": 1})
    path = write_config(work / "all_models.yaml", cfg)
    targets = [f"{cfg['results']}/sim/predictions/{arch}.zarr" for arch in ARCHITECTURES]
    snakemake(work, path, *targets)
    for arch in ARCHITECTURES:
        assert (Path(cfg["results"]) / "models" / "sim" / f"{arch}.pt").is_file()
        assert (Path(cfg["results"]) / "sim" / "predictions" / f"{arch}.zarr").is_dir()
