"""Temperature scaling and OOD scores (cleaning.calibration) against ground truth."""
import numpy as np
import pytest
from scipy.special import softmax

from cryopipe.cleaning import calibration as cal
from cryopipe.errors import InputError


def _overconfident(rng, n, k=5, factor=3.0):
    z = rng.normal(0, 1.5, (n, k))
    y = np.array([rng.choice(k, p=p) for p in softmax(z, axis=1)])
    return factor * z, y


def test_temperature_scaling_lowers_held_out_nll_and_recovers_the_true_temperature():
    rng = np.random.default_rng(0)
    z_fit, y_fit = _overconfident(rng, 4000)
    z_test, y_test = _overconfident(rng, 4000)
    t = cal.fit_temperature(z_fit, y_fit)
    assert t == pytest.approx(3.0, rel=0.1)
    assert cal.nll(z_test, y_test, temperature=t) < cal.nll(z_test, y_test, temperature=1.0) - 0.05


def test_calibrated_probability_matches_frequencies():
    rng = np.random.default_rng(1)
    z, y = _overconfident(rng, 20000, k=4, factor=0.5)   # under-confident
    t = cal.fit_temperature(z, y)
    assert t < 1
    p = cal.calibrated_probability(z, [0, 1], temperature=t)
    hit = np.isin(y, [0, 1])
    for lo, hi in ((0.1, 0.3), (0.4, 0.6), (0.7, 0.9)):
        m = (p >= lo) & (p < hi)
        assert abs(hit[m].mean() - p[m].mean()) < 0.03


def test_energy_and_max_softmax_flag_unfamiliar_inputs():
    rng = np.random.default_rng(2)
    familiar = rng.normal(0, 1, (1000, 6))
    familiar[np.arange(1000), rng.integers(0, 6, 1000)] += 8     # confident, one class stands out
    unfamiliar = rng.normal(0, 1, (1000, 6))                      # no class stands out
    thr = cal.ood_threshold(cal.energy(familiar))
    assert np.mean(cal.energy(familiar) > thr) == pytest.approx(0.01, abs=0.005)
    assert np.mean(cal.energy(unfamiliar) > thr) > 0.9
    assert np.median(cal.max_softmax(unfamiliar)) < np.median(cal.max_softmax(familiar))


def test_calibration_meta_and_errors():
    rng = np.random.default_rng(3)
    z, y = _overconfident(rng, 500)
    meta = cal.calibration_meta(z, y)
    assert meta["nll_calibrated"] <= meta["nll_uncalibrated"] and meta["ood_score"] == "energy"
    with pytest.raises(InputError, match="logits: need"):
        cal.nll(np.zeros(3), [0, 1, 2])
    with pytest.raises(InputError, match="classes: need"):
        cal.nll(np.zeros((3, 2)), [0, 1])


def test_unsure_band_by_hand():
    from cryopipe.cleaning.calibration import UNSURE_BAND, is_unsure

    assert UNSURE_BAND == (0.2, 0.8)
    p = np.array([0.1, 0.2, 0.5, 0.8, 0.81, np.nan])
    assert is_unsure(p).tolist() == [False, True, True, True, False, False]
