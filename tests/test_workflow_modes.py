"""Workflow modes the default run never uses: one pass, no calibration line, several trigger
segments, negative polarity. A dry run of each, and tiny real runs on the stream of the session's
simulated run (tests/truth_util.py), compared with that run and with the simulation's truth."""
import numpy as np
import pytest

from cryopipe.io.stores import open_store
from truth_util import (DURATION, SEGMENT, Truth, adc_lsb, run_targets, snakemake, true_resolution,
                        truth_run, write_config)
from workflow_util import tiny_config

CHANNELS = ["phonon", "light"]


def csmpl_config(results, run, files, **extra):
    """A config of one csmpl run (the files' channels named like the simulated run's)."""
    cfg = {"results": str(results),
           "runs": {run: {"csmpl": [str(f) for f in files], "sample_frequency": 25000, "record_length": 4096,
                          "channels": CHANNELS, **extra}},
           "trigger": {"noise_records": 300, "segment_duration": None},
           "efficiency": {"n_per_amplitude": 100},
           "cleaning": {"enabled": False}}
    return cfg


def plan(workdir, cfg, *targets):
    """{rule: job count} of a dry run."""
    path = write_config(workdir / "plan.yaml", cfg)
    proc = snakemake(workdir, path, *targets, "-n", "--quiet", "rules")     # --quiet takes several values
    counts = {}
    for line in proc.stdout.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit() and parts[0] not in ("job", "total"):
            counts[parts[0]] = int(parts[1])
    return counts


# ------------------------------------------------------------------------------------ dry runs

@pytest.mark.slow  # runs Snakemake
def test_dry_run_one_pass(tmp_path):
    cfg = tiny_config(tmp_path / "results")
    cfg["characterize"] = {"enabled": False}
    rules = plan(tmp_path, cfg)
    # one trigger pass (the generic kernel) straight into the final records
    assert {"simulate_stream", "trigger_segment", "records", "features_channel", "features"} <= set(rules)
    # no characterization, hence no second pass, calibration, efficiency, cuts or cleaning
    for absent in ("trigger_segment_pass1", "records_pass1", "characterize_channel", "characterize",
                   "calibrate", "efficiency", "labels", "predict", "train"):
        assert absent not in rules, absent


@pytest.mark.slow  # runs Snakemake
def test_dry_run_without_calibration_line(tmp_path):
    cfg = tiny_config(tmp_path / "results")
    cfg["calibrate"] = {"line_energy": None}
    rules = plan(tmp_path, cfg)
    assert not {"calibrate_channel", "calibrate"} & set(rules)
    assert {"characterize", "features", "labels", "efficiency", "predict"} <= set(rules)


@pytest.mark.slow  # runs Snakemake
def test_dry_run_several_trigger_segments(tmp_path):
    cfg = tiny_config(tmp_path / "results", duration=60.0)
    cfg["trigger"]["segment_duration"] = 25.0              # 60 s: segments of 25, 25 and 10 s
    rules = plan(tmp_path, cfg)
    assert rules["trigger_segment_pass1"] == rules["trigger_segment"] == 3 * 2
    assert rules["gather_triggers_pass1"] == rules["gather_triggers"] == 2


@pytest.mark.slow  # runs Snakemake
def test_dry_run_negative_polarity_csmpl_run(tmp_path):
    files = []
    for name in CHANNELS:
        files.append(tmp_path / f"{name}.csmpl")
        np.zeros(25000 * 4, dtype="<i2").tofile(files[-1])
    cfg = csmpl_config(tmp_path / "results", "neg", files, polarity=-1)
    cfg["calibrate"] = {"line_energy": 5.9}
    rules = plan(tmp_path, cfg, *run_targets(tmp_path / "results", "neg", ("labels",), ()))
    assert "simulate_stream" not in rules
    assert {"trigger_segment_pass1", "characterize", "trigger_segment", "features", "calibrate", "labels"} <= set(rules)


# --------------------------------------------------------------------------------- tiny runs

@pytest.fixture(scope="session")
def run(tmp_path_factory):
    return truth_run(tmp_path_factory)


def load(path, kind):
    return open_store(path, kind).load()


@pytest.mark.slow
def test_negative_polarity_without_calibration_line_reproduces_the_run(run, tmp_path):
    """The session run's stream, negated, analysed with polarity -1, no calibration line and one
    trigger job per channel: the same records, characterization and features as the run itself
    (which has a line and three trigger segments), and no energy."""
    files = []
    for name in CHANNELS:
        files.append(tmp_path / f"{name}.csmpl")
        (-np.fromfile(run / "stream" / f"{name}.csmpl", dtype="<i2").astype(np.int32)).astype("<i2").tofile(files[-1])
    results = tmp_path / "results"
    cfg = csmpl_config(results, "neg", files, polarity=-1)
    cfg["calibrate"] = {"line_energy": None}
    snakemake(tmp_path, write_config(tmp_path / "neg.yaml", cfg),
              *run_targets(results, "neg", ("records", "features", "labels"), ()))
    neg = results / "neg"
    assert not (neg / "calibration.zarr").exists()
    # the first pass: split into segments or not, negated or not, the same triggers
    for name in CHANNELS:
        a, b = load(run / "pass1" / "triggers" / f"{name}.zarr", "triggers"), load(neg / "pass1" / "triggers" / f"{name}.zarr", "triggers")
        np.testing.assert_array_equal(a["trigger_sample"].values, b["trigger_sample"].values)
    ref, got = load(run / "records.zarr", "records"), load(neg / "records.zarr", "records")
    np.testing.assert_array_equal(ref["trigger_sample"].values, got["trigger_sample"].values)
    np.testing.assert_array_equal(ref["record_kind"].values, got["record_kind"].values)
    np.testing.assert_array_equal(ref["trace"].values, got["trace"].values)     # positive pulses again
    char_ref, char_got = load(run / "characterization.zarr", "characterization"), load(neg / "characterization.zarr", "characterization")
    np.testing.assert_allclose(char_got["resolution"].values, char_ref["resolution"].values, rtol=1e-6)
    np.testing.assert_allclose(char_got["sev"].values, char_ref["sev"].values, atol=1e-6)
    f_ref, f_got = load(run / "features.zarr", "features"), load(neg / "features.zarr", "features")
    for name in ("of_amplitude", "of_shift", "pulse_height"):
        np.testing.assert_allclose(f_got[name].values, f_ref[name].values, rtol=1e-5, atol=1e-9, err_msg=name)
    assert "energy" in f_ref and ("energy" not in f_got or np.all(np.isnan(f_got["energy"].values)))
    lab_ref, lab_got = load(run / "labels.zarr", "labels"), load(neg / "labels.zarr", "labels")
    np.testing.assert_array_equal(lab_got["accepted"].values, lab_ref["accepted"].values)


@pytest.mark.slow
def test_one_pass_run_triggers_like_the_first_pass_and_finds_the_bright_events(run, tmp_path):
    """characterize.enabled false on the session run's stream, unsplit: its records are the split
    first pass's, every bright isolated simulated event has one, and there are no OF features."""
    files = [run / "stream" / f"{name}.csmpl" for name in CHANNELS]
    results = tmp_path / "results"
    cfg = csmpl_config(results, "onepass", files)
    cfg["characterize"] = {"enabled": False}
    snakemake(tmp_path, write_config(tmp_path / "onepass.yaml", cfg),
              *run_targets(results, "onepass", ("records", "features"), ()))
    got = load(results / "onepass" / "records.zarr", "records")
    first = load(run / "pass1" / "records.zarr", "records")
    assert int(DURATION / SEGMENT) >= 3                 # the session run's trigger had several segments
    np.testing.assert_array_equal(got["trigger_sample"].values, first["trigger_sample"].values)
    feats = load(results / "onepass" / "features.zarr", "features")
    assert not [v for v in feats.data_vars if str(v).startswith("of_")] and "energy" not in feats
    # truth: each bright isolated event (>= 50 true OF resolutions in the phonon channel, ~2 keV)
    # has exactly one particle record triggered within 20 samples of its onset
    truth = load(run / "truth.zarr", "truth")
    t = Truth(truth, got)
    sigma = true_resolution(truth, t.n, adc_lsb())
    bright = [i for i in np.flatnonzero(t.cls == "event")
              if t.amplitude[0, i] > 50 * sigma[0] and t.inside(i) and t.isolated(i)]
    assert len(bright) >= 30
    near = [np.sum((t.kind == "particle") & (np.abs(t.trigger - t.onset[i]) <= 20)) for i in bright]
    assert near == [1] * len(bright), near
