"""Evaluation library: metrics on hand-made sets with known scores, figures and tables, test-set builders."""
import csv
import json

import numpy as np
import pytest
import torch
import xarray as xr

from cryopipe.cleaning import evaluate as ev
from cryopipe.cleaning.models import Classifier
from cryopipe.cleaning.preprocess import downsample
from cryopipe.errors import InputError
from cryopipe.simulate.records import EVENT_CLASSES, simulate_detector_records


class FirstSampleModel(Classifier):
    """Binary 'model' whose score is the first preprocessed sample of the record (min-max scaled)."""

    name = "first_sample"

    def __init__(self):
        super().__init__(1)
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x):
        s = x[:, 0].clamp(1e-6, 1 - 1e-6)
        return torch.log(s / (1 - s))[:, None] + 0 * self.dummy


def records_with_scores(scores, n=512):
    """Records whose preprocessed first sample equals `scores` (sample 1 is the min 0, sample 2 the max 1)."""
    x = np.zeros((len(scores), n), dtype=np.float32)
    x[:, 0] = scores
    x[:, 2] = 1.0
    return x


def simset(scores, classes, labels, **extra):
    ce = ("channel", "event")
    data = {"trace": (("channel", "event", "sample"), records_with_scores(scores)[None]),
            "event_class": ("event", np.asarray(classes, dtype=str)),
            "label": (ce, np.asarray(labels, bool)[None]),
            "snr": (ce, np.asarray(extra.pop("snr", np.zeros(len(scores))), float)[None])}
    data.update({k: (ce, np.asarray(v, float)[None]) for k, v in extra.items()})
    return xr.Dataset(data)


def hand_sets():
    # mixed set: 4 pulses (accepted) + 4 artifacts; at cutoff 0.5: TP 3, FN 1, FP 1, TN 3
    mixed = simset([0.9, 0.8, 0.3, 0.6, 0.1, 0.7, 0.2, 0.05],
                   ["event_pulse"] * 3 + ["carrier_event"] + ["spike", "spike", "pile_up", "pile_up"],
                   [1, 1, 1, 1, 0, 0, 0, 0])
    # pulses: one per SNR bin (33 log bins over 3..300), accepted in every bin but bins 0 and 5
    edges = np.geomspace(3, 300, 34)
    centres = np.sqrt(edges[:-1] * edges[1:])
    acc = np.ones(33, bool)
    acc[[0, 5]] = False
    pulses = simset(np.where(acc, 0.9, 0.1), ["event_pulse"] * 33, np.ones(33), snr=centres)
    # pile-ups: one per (onset, ratio) bin of a 2 x 2 map; rejected except in bin (1, 0)
    onset_edges = np.linspace(*ev.ONSET_SPAN, 3)
    ratio_edges = np.array([0.05, 0.5, 1.0])
    oc, rc = (onset_edges[:-1] + onset_edges[1:]) / 2, (ratio_edges[:-1] + ratio_edges[1:]) / 2
    o, r = np.meshgrid(oc, rc, indexing="ij")
    survive = np.array([[False, False], [True, False]])
    pile = simset(np.where(survive.ravel(), 0.8, 0.2), ["pile_up"] * 4, np.zeros(4), onset_difference=o.ravel(),
                  height_ratio=r.ravel())
    return {"mixed": mixed, "pulses": pulses, "pileups": pile}, edges, acc, onset_edges, ratio_edges, survive


def test_evaluate_model_metrics_by_hand(tmp_path):
    sets, edges, acc, onset_edges, ratio_edges, survive = hand_sets()
    res = ev.evaluate_model(FirstSampleModel(), {"name": "hand"}, sets, tmp_path, onset_bins=2,
                            ratio_edges=ratio_edges)
    c = res["classification"]
    assert c["recall"] == pytest.approx(0.75) and c["selectivity"] == pytest.approx(0.75)
    assert c["balanced_accuracy"] == pytest.approx(0.75) and c["precision"] == pytest.approx(0.75)
    assert c["n_records"] == 8
    # cutoff scan at 0.25: positives 0.9 0.8 0.3 0.6 all >= 0.25; negatives 0.7 only -> S = 3/4
    k = np.flatnonzero(np.isclose(c["scan"]["cutoff"], 0.25))[0]
    assert c["scan"]["recall"][k] == 1.0 and c["scan"]["selectivity"][k] == pytest.approx(0.75)
    assert res["survival"]["event_pulse"] == (2, 3, pytest.approx(2 / 3))
    assert res["survival"]["carrier_event"][:2] == (1, 1)
    assert res["survival"]["spike"][:2] == (1, 2) and res["survival"]["pile_up"][:2] == (0, 2)
    # IOR (linear in SNR): accepted bin widths / 297; the mixed set's event_pulse SNRs are 0 (outside)
    widths = np.diff(edges)
    assert res["snr"]["n_records"] == 33
    assert res["snr"]["ior_linear"] == pytest.approx(widths[acc].sum() / 297.0)
    assert res["snr"]["ior_log10"] == pytest.approx(31 / 33)
    area = np.outer(np.diff(onset_edges), np.diff(ratio_edges))
    assert res["pileup"]["ios"] == pytest.approx(area[~survive].sum() / area.sum())
    assert not res["pileup"]["snr_weighted"]          # the hand pile-ups have no SNR: unweighted
    assert res["pileup"]["ios_log_snr"] == res["pileup"]["ios"]
    rows = {r["target"]: r for r in res["targets"]}
    assert rows["balanced_accuracy"]["value"] == pytest.approx(0.75) and not rows["balanced_accuracy"]["passed"]
    assert rows["survival pile_up"]["passed"] and not rows["survival spike"]["passed"]
    assert rows["survival carrier_event"]["passed"] and not res["all_passed"]
    for name in ("ba_vs_cutoff.png", "precision_recall.png", "recall_vs_snr.png", "selectivity_map.png",
                 "survival.png", "targets.md", "targets.csv", "metrics_per_set.csv", "metrics.json"):
        assert (tmp_path / name).stat().st_size > 0, name
    with open(tmp_path / "targets.csv") as f:
        table = list(csv.DictReader(f))
    assert len(table) == 3 + 4 and {"target", "value", "passed"} <= set(table[0])
    assert "| balanced_accuracy | 0.7500 | >= 0.97 | NO |" in (tmp_path / "targets.md").read_text()
    assert json.loads((tmp_path / "metrics.json").read_text())["ios"] == pytest.approx(res["pileup"]["ios"])
    # throughput counts every scored record of every set
    assert res["n_scored"] == sum(s.sizes["event"] * s.sizes["channel"] for s in sets.values())
    assert res["throughput"] > 0 and "Prediction throughput" in (tmp_path / "targets.md").read_text()


def test_cutoff_from_meta_and_empty_bins_give_nan(tmp_path):
    sets, *_ = hand_sets()
    res = ev.evaluate_model(FirstSampleModel(), {"cutoff": 0.75}, {"mixed": sets["mixed"]}, tmp_path)
    assert res["cutoff"] == 0.75 and res["classification"]["recall"] == pytest.approx(0.5)
    assert np.isnan(res["snr"]["ior_linear"]) and np.isnan(res["pileup"]["ios"])
    with pytest.raises(InputError, match="more than one event class"):
        ev.evaluate_model(FirstSampleModel(), {}, {"pulses": sets["pulses"]}, tmp_path)


def test_ios_reweights_log_uniform_snr_to_uniform():
    # one map bin; rejected iff SNR >= 30. Log-uniform SNR in 3-300: half rejected; weighted by SNR
    # (uniform in 3-300): share of [30, 300] in [3, 300] = 270 / 297
    rng = np.random.default_rng(5)
    snr = np.exp(rng.uniform(np.log(3), np.log(300), 200_000))
    out = ev.pileup_selectivity(np.zeros(snr.size), np.full(snr.size, 0.5), snr >= 30, snr=snr, onset_bins=1,
                                ratio_edges=np.array([0.05, 1.0]))
    assert out["snr_weighted"]
    assert out["ios_log_snr"] == pytest.approx(0.5, abs=0.01)
    assert out["ios"] == pytest.approx(270 / 297, abs=0.01)


def test_pileup_pairs_superpose_a_second_pulse():
    rng = np.random.default_rng(3)
    det = ev.random_detector(rng, record_length=2048, sample_frequency=25e3)
    det["resolution"] = 1e-6
    ds = ev.pileup_pairs(60, det, rng, snr_range=(300.0, 300.0))
    n = det["sev"].size
    d, r = ds["onset_difference"].values[0], ds["height_ratio"].values[0]
    assert ds["trace"].shape == (1, 60, 512) and not ds["label"].values.any()
    assert np.all(np.abs(d) >= ev.PILEUP_MIN_SEPARATION - 1e-12) and np.all((r >= 0.05) & (r <= 1))
    assert set(ds["event_class"].values.tolist()) == {"pile_up"} and np.all(ds["n_pulses"].values == 2)
    # the same records without the second pulse: pileup_pairs seeds its event_pulse simulation from rng
    # (after random_detector's draws: replay them)
    replay = np.random.default_rng(3)
    ev.random_detector(replay, record_length=2048, sample_frequency=25e3)
    base = simulate_detector_records({"event_pulse": 60}, det["sev"], det["nps"], det["sample_frequency"],
                                     np.random.default_rng(replay.integers(2**63)),
                                     resolution=det["resolution"], snr_range=(300.0, 300.0))
    h1 = ds["pulse_height"].values[0]
    np.testing.assert_allclose(base["pulse_height"].values[0], h1)
    onset2 = ds["onset"].values[0] * det["sample_frequency"] + n // 4 + d * n
    grid = np.arange(n, dtype=float)
    second = np.array([r[i] * h1[i] * np.interp(grid - onset2[i] + n // 4, grid, det["sev"], left=0.0,
                                                right=det["sev"][-1]) for i in range(60)])
    extra = ds["trace"].values[0] - downsample(base["trace"].values[0])
    np.testing.assert_allclose(extra, downsample(second), atol=1e-3 * h1.max())
    assert np.all(extra.max(axis=1) > 0.5 * r * h1)


def test_build_test_sets_small():
    sets = ev.build_test_sets(3, 20, 20, record_length=1024, seed=7)
    assert set(sets) == {"universal", "detector_a", "detector_b", "pulses_a", "pulses_b", "pileups_a", "pileups_b"}
    assert sets["universal"].sizes["event"] == 3 * len(EVENT_CLASSES)
    assert sets["pulses_a"].sizes["event"] == 10 and sets["pileups_b"].sizes["event"] == 10
    snr = sets["pulses_b"]["snr"].values
    assert np.all((snr >= 3) & (snr <= 300))
    assert all(s.sizes["sample"] == 512 and s.attrs["downsampled_from"] == 1024 for s in sets.values())


def test_snr_table_by_hand():
    cls = np.array(["event_pulse"] * 4 + ["noise"] * 2 + ["pile_up"] * 2)
    snr = np.array([5, 20, 50, 1000, 0, 0, 30, 30.0])
    score = np.array([0.1, 0.9, 0.2, 0.8, 0.7, 0.1, 0.1, 0.1])
    table = ev.snr_table(cls, snr, score, 0.5)
    assert table["event_pulse"][0] == (3.0, 5.0, 0, 0) and table["event_pulse"][1] == (5.0, 10.0, 0, 1)
    assert table["event_pulse"][2] == (10.0, 30.0, 1, 1) and table["event_pulse"][3] == (30.0, 100.0, 0, 1)
    assert table["event_pulse"][5] == (300.0, 1000.0, 1, 1)   # SNR 1000: the top edge is inside the last bin
    assert table["pile_up"][3] == (30.0, 100.0, 0, 2)
