"""Metrics against hand-computed values on small arrays."""
import math

import numpy as np
import pytest

from cryopipe.cleaning import metrics
from cryopipe.errors import InputError

LABELS = np.array([1, 1, 1, 0, 0], dtype=bool)
SCORES = np.array([0.9, 0.6, 0.2, 0.7, 0.1])


def test_scalar_metrics_by_hand():
    # cutoff 0.5: accepted = [1, 1, 0, 1, 0]; TP 2 of T 3, TN 1 of N 2, FP 1
    assert metrics.recall(LABELS, SCORES) == pytest.approx(2 / 3)
    assert metrics.selectivity(LABELS, SCORES) == pytest.approx(1 / 2)
    assert metrics.balanced_accuracy(LABELS, SCORES) == pytest.approx((2 / 3 + 1 / 2) / 2)
    assert metrics.precision(LABELS, SCORES) == pytest.approx(2 / 3)
    # cutoff 0.65: accepted = [1, 0, 0, 1, 0]
    assert metrics.recall(LABELS, SCORES, cutoff=0.65) == pytest.approx(1 / 3)
    assert metrics.precision(LABELS, SCORES, cutoff=0.65) == pytest.approx(1 / 2)


def test_score_equal_to_cutoff_is_accepted():
    assert metrics.recall([True], [0.5], cutoff=0.5) == 1.0


def test_cutoff_scan_matches_scalar_metrics():
    rng = np.random.default_rng(0)
    y = rng.random(300) < 0.6
    s = np.clip(y * 0.3 + rng.random(300) * 0.7, 0, 1).round(2)       # ties at the cutoffs on purpose
    scan = metrics.cutoff_scan(y, s)
    assert scan["cutoff"][0] == pytest.approx(0.05) and scan["cutoff"][-1] == pytest.approx(0.95)
    for i, c in enumerate(scan["cutoff"]):
        assert scan["recall"][i] == pytest.approx(metrics.recall(y, s, cutoff=c))
        assert scan["selectivity"][i] == pytest.approx(metrics.selectivity(y, s, cutoff=c))
        assert scan["balanced_accuracy"][i] == pytest.approx(metrics.balanced_accuracy(y, s, cutoff=c))
        assert scan["precision"][i] == pytest.approx(metrics.precision(y, s, cutoff=c))


def test_precision_recall_curve_ends():
    pr = metrics.precision_recall(LABELS, SCORES)
    assert pr["recall"][0] == 1.0 and pr["precision"][0] == pytest.approx(3 / 5)   # lowest cutoff: all accepted
    assert pr["recall"][-1] == 0.0


def test_ior_of_a_step_recall_curve():
    edges = np.array([1.0, 10.0, 100.0, 1000.0])
    rec = np.array([0.0, 0.5, 1.0])
    # linear in SNR over [3, 300]: 7*0 + 90*0.5 + 200*1, divided by 297
    assert metrics.integral_over_recall(edges, rec) == pytest.approx(245 / 297)
    # over log10 SNR: (1 - log10 3)*0 + 1*0.5 + (log10 300 - 2)*1, divided by 2
    expected = (0.5 + math.log10(300) - 2) / 2
    assert metrics.integral_over_recall(edges, rec, scale="log10") == pytest.approx(expected)
    assert metrics.integral_over_recall(edges, np.ones(3)) == pytest.approx(1.0)


def test_ior_from_events():
    snr = np.linspace(3, 300, 5000, endpoint=False)
    accepted = snr >= 30
    assert metrics.ior(snr, accepted, edges=[3, 30, 300]) == pytest.approx(270 / 297)
    assert metrics.ior(snr, accepted, edges=[3, 30, 300], scale="log10") == pytest.approx(0.5)


def test_ior_rejects_empty_bins_and_short_ranges():
    with pytest.raises(InputError, match="empty bins"):
        metrics.integral_over_recall([3, 30, 300], [np.nan, 1.0])
    with pytest.raises(InputError, match="is not inside the bins"):
        metrics.integral_over_recall([10, 30, 300], [1.0, 1.0])          # does not reach SNR 3


def test_recall_vs_snr_counts():
    r = metrics.recall_vs_snr([1.5, 2.5, 2.6, 5.0], [True, False, True, True], edges=[1, 2, 3, 10])
    np.testing.assert_array_equal(r["counts"], [1, 2, 1])
    np.testing.assert_allclose(r["recall"], [1.0, 0.5, 1.0])


def test_selectivity_map_and_ios_by_hand():
    onset = np.array([0.5, 0.5, 1.5, 0.5, 1.5, 1.5, 1.5])
    ratio = np.array([0.2, 0.2, 0.2, 0.7, 0.7, 0.7, 0.7])
    rejected = np.array([True, False, True, True, True, False, False])
    m = metrics.selectivity_map(onset, ratio, rejected, [0, 1, 2], [0, 0.5, 1.0])
    np.testing.assert_allclose(m["selectivity"], [[0.5, 1.0], [1.0, 1 / 3]])
    np.testing.assert_array_equal(m["counts"], [[2, 1], [1, 3]])
    # equal-area bins: IOS = mean of the map
    assert metrics.integral_over_selectivity(m["onset_edges"], m["ratio_edges"], m["selectivity"]) == \
        pytest.approx((0.5 + 1 + 1 + 1 / 3) / 4)
    # unequal widths weigh by area: onset bins of width 1 and 3
    assert metrics.integral_over_selectivity([0, 1, 4], [0, 1], [[1.0], [0.0]]) == pytest.approx(0.25)
    # weights: bin (1, 1) holds 1 rejected of weight 3 and 2 kept of weights 1 and 2 -> 3 / 6
    w = np.array([1, 1, 1, 1, 3, 1, 2], float)
    mw = metrics.selectivity_map(onset, ratio, rejected, [0, 1, 2], [0, 0.5, 1.0], weights=w)
    np.testing.assert_allclose(mw["selectivity"], [[0.5, 1.0], [1.0, 0.5]])
    np.testing.assert_array_equal(mw["counts"], m["counts"])
    with pytest.raises(InputError, match="weights"):
        metrics.selectivity_map(onset, ratio, rejected, [0, 1, 2], [0, 0.5, 1.0], weights=np.zeros(7))


def test_survival_rates_by_class():
    classes = ["pulse", "spike", "pulse", "pile_up", "pulse", "spike"]
    accepted = [True, False, True, True, False, False]
    out = metrics.survival_rates(classes, accepted)
    assert out["pulse"] == (2, 3, pytest.approx(2 / 3))
    assert out["spike"] == (0, 2, 0.0)
    assert out["pile_up"] == (1, 1, 1.0)
