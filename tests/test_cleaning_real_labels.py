"""The semi-automatic labelling of measured records (cleaning.real_labels) and the stored NIST hand labels."""
import json
from pathlib import Path

import numpy as np
import pytest

from cryopipe.cleaning import real_labels as rl
from cryopipe.errors import InputError

from real_data import NIST_DIR as NIST
N, PRE, SIGMA = 1024, 512, 20.0


def pulse(t0, height, n=N, rise=3.0, decay=150.0):
    t = np.arange(n) - t0
    return np.where(t > 0, height * (np.exp(-t / decay) - np.exp(-t / rise)), 0.0) / 0.94


def synthetic_pulse_file(seed=0):
    """60 clean pulses at the pretrigger (heights 5000-15000), then one record of each rejected kind."""
    rng = np.random.default_rng(seed)
    rows = [pulse(PRE + rng.uniform(-1, 1), rng.uniform(5000, 15000)) for _ in range(60)]
    rows.append(pulse(PRE, 12000) + pulse(PRE + 200, 3000))           # second pulse: pile_up
    rows.append(pulse(PRE, 12000) + pulse(PRE - 300, 3000))           # pulse before the trigger: pile_up
    rows.append(pulse(PRE + N / 4, 12000))                            # onset N/4 late: early_or_late_trigger
    rows.append(pulse(PRE, 12000) + pulse(PRE - 700, 20000))          # on the tail of an earlier pulse
    rows.append(np.zeros(N))                                          # no pulse
    x = 3000 + np.asarray(rows) + rng.normal(0, SIGMA, (len(rows), N))
    truth = ["event_pulse"] * 60 + ["pile_up", "pile_up", "early_or_late_trigger",
                                     "decaying_baseline_with_event_pulse", "noise"]
    return x, np.asarray(truth)


def test_pulse_procedure_finds_each_kind():
    x, truth = synthetic_pulse_file()
    a = rl.label_pulse_records(x, PRE)
    assert list(a["event_class"]) == list(truth)
    assert not a["doubtful"][:60].any()
    assert a["features"]["polarity"] == 1
    # negative pulses: the same labels with the polarity found from the data
    b = rl.label_pulse_records(-x, PRE)
    assert b["features"]["polarity"] == -1 and list(b["event_class"]) == list(truth)


def test_onset_rule_follows_the_simulators_label_rule():
    lo, hi, early, late = rl.onset_window(1024, 512)
    assert (lo, hi, early, late) == (512 - 32, 512 + 32, 512 - 128, 512 + 128)
    x, _ = synthetic_pulse_file()
    y = x[:8].copy()
    y[0] = 3000 + pulse(PRE + 64, 12000) + np.random.default_rng(1).normal(0, SIGMA, N)   # between N/32 and N/8
    a = rl.label_pulse_records(y, PRE)
    assert a["doubtful"][0] and "onset?" in a["reason"][0] and a["event_class"][0] == "event_pulse"


def test_noise_procedure_finds_pulses_spikes_and_drifts():
    rng = np.random.default_rng(2)
    x = rng.normal(0, SIGMA, (40, N))
    x[1, 300] += 20 * SIGMA                                # one-sample spike
    x[2] += pulse(PRE, 40 * SIGMA)                         # pulse at the trigger
    x[3] += pulse(100, 40 * SIGMA)                         # pulse far from the trigger
    x[4] += np.linspace(0, 12 * SIGMA, N)                  # rising baseline
    x[5] -= np.linspace(0, 12 * SIGMA, N)                  # falling baseline
    template = pulse(PRE, 1.0)
    a = rl.label_noise_records(x, template / template.max(), PRE)
    expect = ["noise", "spike", "event_pulse", "early_or_late_trigger", "temperature_rise", "decaying_baseline"]
    assert list(a["event_class"][:6]) == expect
    assert set(a["event_class"][6:]) == {"noise"}


def test_decisions_and_categories():
    auto = {"event_class": np.array(["noise", "spike", "event_pulse"])}
    cls = rl.apply_decisions(auto, [{"record": 1, "class": "noise"}])
    assert list(cls) == ["noise", "noise", "event_pulse"] and list(auto["event_class"])[1] == "spike"
    assert [rl.category(c) for c in ("event_pulse", "tail_event", "noise", "pile_up")] == [
        "clean_pulse", "clean_pulse", "clean_noise", "rejected"]
    with pytest.raises(InputError, match="not a Box-1 class"):
        rl.apply_decisions(auto, [{"record": 0, "class": "glitch"}])
    with pytest.raises(InputError, match="outside"):
        rl.apply_decisions(auto, [{"record": 3, "class": "noise"}])


def test_label_file_errors(tmp_path):
    with pytest.raises(InputError, match="no such labels file"):
        rl.load_label_file(path=tmp_path / "none.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(InputError, match="cannot read"):
        rl.load_label_file(path=bad)
    bad.write_text(json.dumps({"format": rl.LABELS_FORMAT, "files": {"a.ljh": {"n_records": 2, "event_class": ["x"]}}}))
    with pytest.raises(InputError, match="a.ljh"):
        rl.load_label_file(path=bad)


def test_stored_labels_are_consistent():
    data = rl.load_label_file()
    chan1, noise = data["files"]["regress_chan1.ljh"], data["files"]["regress_noise_chan1.ljh"]
    assert chan1["n_records"] == 300 and noise["n_records"] == 300
    assert chan1["counts"] == {"clean_pulse": 299, "clean_noise": 0, "rejected": 1}
    assert chan1["event_class"][129] == "pile_up"
    # every eye decision concerns a doubtful record and is the stored class
    for e in (chan1, noise):
        assert {d["record"] for d in e["decisions"]} <= set(e["doubtful"])
        assert all(e["event_class"][d["record"]] == d["class"] for d in e["decisions"])
        assert all(d.get("reason") for d in e["decisions"])
    assert "regress_chan3.ljh" not in data["files"]


@pytest.mark.skipif(not (NIST / "regress_chan1.ljh").is_file(), reason="NIST example files not present")
def test_procedure_reproduces_the_stored_hand_labels():
    pytest.importorskip("cryopipe.io.ljh")
    stored = rl.load_label_file()["files"]
    dec = {k: v["decisions"] for k, v in stored.items()}
    again = rl.label_files(NIST / "regress_chan1.ljh", noise_path=NIST / "regress_noise_chan1.ljh",
                           pulse_decisions=dec["regress_chan1.ljh"], noise_decisions=dec["regress_noise_chan1.ljh"])
    for name, e in again.items():
        for key in ("sha256", "automatic_class", "doubtful", "event_class", "pretrigger"):
            assert e[key] == stored[name][key], (name, key)
