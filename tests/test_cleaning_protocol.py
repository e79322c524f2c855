"""The evaluation protocol (cleaning.protocol, cleaning.evaluate_cli): figures by hand, selection never on a test set."""
import numpy as np
import pytest

from cryopipe.cleaning import evaluate_cli as cli
from cryopipe.cleaning import protocol as pr
from cryopipe.errors import InputError


def detector(classes, labels, snr, scores):
    return ({"records": np.zeros((len(classes), 512), np.float32), "event_class": np.asarray(classes),
             "label": np.asarray(labels, bool), "snr": np.asarray(snr, float),
             "saturated": np.zeros(len(classes), bool), "info": {}},
            {"score": np.asarray(scores, float), "ood": None})


def hand_set(role="selection", seed=None):
    # detector 0: pulses SNR 5 (score 0.4), 20 (0.9), 50 (0.6); pile_up SNR 20 (0.7); noise (0.1), spike (0.3)
    d0 = detector(["event_pulse"] * 3 + ["pile_up", "noise", "spike"], [1, 1, 1, 0, 0, 0],
                  [5, 20, 50, 20, 0, 0], [0.4, 0.9, 0.6, 0.7, 0.1, 0.3])
    # detector 1: all right at 0.5
    d1 = detector(["event_pulse", "pile_up", "noise"], [1, 0, 0], [30, 30, 0], [0.8, 0.2, 0.1])
    s = pr.EvalSet("hand", role, "independent", seed, [d0[0], d1[0]])
    return s, [d0[1], d1[1]]


def test_balanced_accuracy_by_hand():
    # T = 3 (2 kept), N = 3 (1 kept): BA = (2/3 + 2/3) / 2
    assert pr.balanced_accuracy_at([1, 1, 1, 0, 0, 0], [0.9, 0.6, 0.4, 0.7, 0.1, 0.3], 0.5) == pytest.approx(2 / 3)
    assert np.isnan(pr.balanced_accuracy_at([1, 1], [0.9, 0.1], 0.5))


def test_set_figures_by_hand():
    s, scores = hand_set()
    rows = pr.set_figures(s, scores, 0.5)
    r0 = rows[0]
    # all: T kept 2/3, N rejected 2/3 -> BA 2/3
    assert r0["balanced_accuracy"] == pytest.approx(2 / 3)
    # SNR >= 10 or no pulse: pulses SNR 20, 50 (both kept) vs pile_up (kept), noise, spike -> (1 + 2/3) / 2
    assert r0["balanced_accuracy_snr_ge_10"] == pytest.approx(5 / 6)
    assert r0["pulse_snr_ge_10"] == pytest.approx(1.0)
    assert r0["survival pile_up"] == 1.0 and r0["survival noise"] == 0.0 and r0["survival event_pulse"] == pytest.approx(2 / 3)
    assert rows[1]["balanced_accuracy"] == 1.0 and rows[1]["survival pile_up"] == 0.0
    summary = cli.summarise(rows)
    assert summary["balanced_accuracy"]["mean"] == pytest.approx((2 / 3 + 1) / 2)
    assert summary["balanced_accuracy"]["worst"] == pytest.approx(2 / 3) and summary["balanced_accuracy"]["worst_detector"] == 0
    # for a rejected class the worst detector is the one where most survive
    assert summary["survival pile_up"]["worst"] == 1.0 and summary["survival pile_up"]["mean"] == 0.5


def test_select_checkpoint_picks_the_best_allowed():
    s, good = hand_set()
    bad = [{"score": np.full_like(g["score"], 0.9), "ood": None} for g in good]   # accepts everything
    # no candidate meets the pile-up constraint at 0.5 / 0.65 (detector 0's pile-up, 0.7, survives): max BA
    res = pr.select_checkpoint({"good": good, "accept_all": bad}, s, cutoffs=(0.5, 0.65))
    assert res["checkpoint"] == "good" and res["set"] == "hand" and "no candidate" in res["rule"]
    rows = {(r["checkpoint"], r["cutoff"]): r for r in res["table"]}
    assert rows[("accept_all", 0.5)]["balanced_accuracy"] == pytest.approx(0.5)
    assert rows[("good", 0.5)]["balanced_accuracy"] == pytest.approx((2 / 3 + 1) / 2)
    assert rows[("good", 0.65)]["pileup_survival"] == pytest.approx(0.5)
    res2 = pr.select_checkpoint({"good": good}, s, cutoffs=(0.5, 0.75))
    # at 0.75 the pile-up (0.7) is removed: survival 0 <= 0.05, BA (1/3 + 1)/2 on detector 0, 1 on detector 1
    assert res2["cutoff"] == 0.75 and res2["pileup_survival"] == 0.0
    assert res2["balanced_accuracy"] == pytest.approx(((1 / 3 + 1) / 2 + 1) / 2)


def test_selection_refuses_test_sets():
    s, good = hand_set(role="test")
    with pytest.raises(InputError, match="test set"):
        pr.select_checkpoint({"good": good}, s)
    s2, _ = hand_set(role="selection", seed=pr.TEST_SEEDS["independent"][0])     # a test seed, whatever the role says
    with pytest.raises(InputError, match="test set"):
        pr.select_checkpoint({"good": good}, s2)
    with pytest.raises(InputError, match="test seed"):
        pr.independent_set(pr.TEST_SEEDS["independent"][1], n_detectors=1, n_per_class=2, role="selection")
    with pytest.raises(InputError, match="test seed"):
        pr.own_set(pr.TEST_SEEDS["own"][0], n_detectors=1, n_per_class=2, role="selection")
    assert not set(pr.SELECTION_SEEDS["independent"]) & set(pr.TEST_SEEDS["independent"])


def test_reported_figures_come_from_test_sets_only():
    s, _ = hand_set(role="selection")
    with pytest.raises(InputError, match="test sets only"):
        cli.evaluate_on_set(None, s, 0.5)


def test_selection_set_from_arrays_and_small_independent_set():
    held = pr.selection_set_from_arrays(np.zeros((3, 512)), ["event_pulse", "noise", "spike"], [1, 0, 0])
    assert held.role == "selection" and held.detectors[0]["snr"].tolist() == [0, 0, 0]
    with pytest.raises(InputError, match="selection set"):
        pr.selection_set_from_arrays(np.zeros((3, 512)), ["event_pulse"], [1, 0, 0])
    s = pr.independent_set(pr.SELECTION_SEEDS["independent"][0], n_detectors=1, n_per_class=2, role="selection")
    d = s.detectors[0]
    assert d["records"].shape == (2 * 12, 512) and d["label"].sum() == 6


def test_command_reports_both_generators_two_seeds_and_the_sets(tmp_path):
    res = cli.main(argv=["--quick", "--independent-detectors", "1", "--own-detectors", "1", "--detector-per-class", "3",
                    "--nist-dir", "", "--out", str(tmp_path)])
    text = (tmp_path / "protocol.md").read_text()
    assert text == res["markdown"]
    for gen in ("independent", "own"):
        (rs,) = res[gen].values()
        assert [r["seed"] for r in rs] == list(pr.TEST_SEEDS[gen])
        assert all(r["per_detector"][0]["n_records"] == 3 * (12 if gen == "independent" else 13) for r in rs)
    assert "## Sets used" in text and "never used to select" in text
    assert "balanced_accuracy_snr_ge_10" in text and "survival pile_up" in text


def test_worst_detectors_are_listed_lowest_balanced_accuracy_first_with_what_was_drawn():
    """Per seed the detectors of lowest BA, with their drawn parameters (hand-made results)."""
    rows = [{"balanced_accuracy": ba, "pulse_snr_ge_10": p} for ba, p in ((0.95, 1.0), (0.70, 0.5), (0.90, 0.8),
                                                                             (0.99, 1.0))]
    infos = [{"tau_n_ms": 1.0}, {"tau_n_ms": 0.25, "record_length": 4096}, {"tau_n_ms": 3.0}, {"tau_n_ms": 9.0}]
    lines = cli.worst_detectors_markdown([{"seed": 7, "per_detector": rows, "detectors": infos}], n=2)
    table = [line for line in lines if line.startswith("| 7 |")]
    assert table == ["| 7 | 1 | 0.700 | 0.500 | tau_n_ms 0.25, record_length 4096 |",
                     "| 7 | 2 | 0.900 | 0.800 | tau_n_ms 3 |"]


def test_visible_pileup_survival_counts_only_visible_pileups():
    # pile-ups: visible kept (0.9), visible rejected (0.1), invisible kept (0.8) -> visible 1/2, all 2/3
    d, s = detector(["pile_up"] * 3 + ["event_pulse"], [0, 0, 0, 1], [20, 20, 20, 20], [0.9, 0.1, 0.8, 0.9])
    d["pileup_visible"] = np.array([True, True, False, True])
    rows = pr.set_figures(pr.EvalSet("hand", "selection", "independent", None, [d]), [s], 0.5)
    assert rows[0]["survival pile_up"] == pytest.approx(2 / 3)
    assert rows[0]["survival pile_up (visible)"] == pytest.approx(1 / 2)
    # a set without the flag (our simulator draws only visible pile-ups): all of them count
    del d["pileup_visible"]
    rows = pr.set_figures(pr.EvalSet("hand", "selection", "own", None, [d]), [s], 0.5)
    assert rows[0]["survival pile_up (visible)"] == pytest.approx(2 / 3)
    assert cli.summarise(rows)["survival pile_up (visible)"]["worst"] == pytest.approx(2 / 3)
    assert cli.ISSUE_TARGETS["survival pile_up (visible)"] == ("<=", 0.05)


def test_unsure_fraction_and_share_of_wrong_by_hand():
    # kept at 0.5: 0.9, 0.6 (pulses), 0.7 (pile_up, wrong); lost: 0.4 (pulse, wrong), 0.1 (noise)
    d, s = detector(["event_pulse"] * 3 + ["pile_up", "noise"], [1, 1, 1, 0, 0], [20] * 4 + [0],
                    [0.9, 0.6, 0.4, 0.7, 0.1])
    s["unsure"] = np.array([False, True, True, False, False])
    rows = pr.set_figures(pr.EvalSet("hand", "selection", "independent", None, [d]), [s], 0.5)
    assert rows[0]["unsure_fraction"] == pytest.approx(2 / 5)
    assert rows[0]["unsure_share_of_wrong"] == pytest.approx(1 / 2)     # wrong: 0.4 (unsure), 0.7 (not)
