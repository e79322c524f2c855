"""The independent test generator (cleaning.independent_sim): classes, labels, SNR, sigma_OF, saturation,
and that it shares no code with the training simulator."""
import ast
from pathlib import Path

import numpy as np
import pytest

from cryopipe.cleaning import independent_sim as ind


@pytest.fixture(scope="module")
def sets():
    rng = np.random.default_rng(7)
    out = []
    for _ in range(3):
        det = ind.draw_detector(rng)
        out.append((det, ind.simulate(det, {c: 12 for c in ind.CLASSES}, rng)))
    return out


def test_imports_nothing_from_the_training_simulator():
    tree = ast.parse(Path(ind.__file__).read_text())
    mods = [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    mods += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    assert mods and all(m in ("__future__", "numpy") for m in mods), mods


def test_classes_labels_and_snr(sets):
    for det, d in sets:
        n = det["record_length"]
        assert d["records"].shape == (12 * len(ind.CLASSES), n) and np.isfinite(d["records"]).all()
        assert sorted(set(d["event_class"])) == sorted(ind.CLASSES)
        assert np.array_equal(d["label"], np.isin(d["event_class"], ["event_pulse", "carrier_event", "tail_event"]))
        with_pulse = np.isin(d["event_class"], ["event_pulse", "carrier_event", "tail_event", "pile_up",
                                                "early_or_late_trigger"])
        assert np.all((d["snr"][with_pulse] >= 3.0) & (d["snr"][with_pulse] <= 1000.0))
        assert np.all(d["snr"][d["event_class"] == "noise"] == 0)
        # ADC rounding to the 16-bit +-10 V digitiser
        q = d["records"].astype(np.float64) / ind.ADC_STEP
        assert np.allclose(q, np.round(q), atol=1e-2 * np.abs(q).max() * 1e-3 + 1e-3)


def test_sigma_of_is_the_optimum_filter_resolution():
    """The OF amplitude estimate on stationary noise-only records scatters by the drawn sigma_OF."""
    rng = np.random.default_rng(3)
    det = ind.draw_detector(rng)
    det["mains"] = np.zeros(3)
    n = det["record_length"]
    w = rng.standard_normal((400, n))
    x = np.fft.irfft(np.fft.rfft(w, axis=1) * det["psd_scale"], n=n, axis=1)
    t = (np.arange(n) - n // 4) / det["sample_frequency"] * 1e3
    p = det["pulse"]
    s = np.fft.rfft(ind.proebst(t, 0.0, p["an"], p["at"], p["tau_n"], p["tau_in"], p["tau_t"]))
    psd = det["psd_scale"] ** 2
    k = slice(1, n // 2)
    num = np.real(np.sum(np.conj(s[k]) * np.fft.rfft(x, axis=1)[:, k] / psd[k], axis=1))
    a_hat = num / np.sum(np.abs(s[k]) ** 2 / psd[k])
    assert np.std(a_hat) == pytest.approx(det["sigma_of"], rel=0.15)


def test_saturation_flattens_large_pulses():
    rng = np.random.default_rng(11)
    for _ in range(50):
        det = ind.draw_detector(rng)
        if np.isfinite(det["ceiling"]):
            break
    d = ind.simulate(det, {"event_pulse": 30}, rng, snr_range=(5000.0, 10000.0))
    assert d["saturated"].all()
    assert d["records"].max() <= det["ceiling"] + 10 * ind.ADC_STEP + 5 * det["sigma_bl"]


def test_richards_curve_slope_one_and_ceiling():
    x = np.array([0.0, 1e-6, 1e6])
    y = ind.richards(x, 2.0, 0.7, 1.8)
    assert y[0] == pytest.approx(0.0, abs=1e-12)
    assert y[1] / 1e-6 == pytest.approx(1.0, rel=1e-3)
    assert y[2] == pytest.approx(2.0, rel=1e-9)


def _unsaturated(det):
    return {**det, "ceiling": np.inf}


def test_pileup_visibility_by_hand():
    """Label rule 2 as the independent generator reports it: heights and gaps computed by hand."""
    det = _unsaturated(ind.draw_detector(np.random.default_rng(21)))
    p, sig = det["pulse"], det["sigma_of"]
    far = 3 * p["t_peak"] + 5 * p["tau_t"]          # the first pulse has decayed to < e^-5 there
    # two pulses far apart, 8 and 20 sigma: each adds its own height at its own peak
    low, sep = ind.pileup_visibility(det, [0.0, far], [8 * sig, 20 * sig])
    assert low == pytest.approx(8.0, rel=0.02) and sep == pytest.approx(far / p["t_peak"])
    # a 4 sigma second pulse is below PILEUP_MIN_SNR; onsets one onset-to-peak time apart are too close
    assert ind.pileup_visibility(det, [0.0, far], [50 * sig, 4 * sig])[0] < ind.PILEUP_MIN_SNR
    assert ind.pileup_visibility(det, [0.0, p["t_peak"]], [50 * sig, 50 * sig])[1] == pytest.approx(1.0)


def test_pileup_visibility_through_saturation():
    """On a saturated pulse a second pulse adds almost nothing: sat(a + b) - sat(a), by hand."""
    det = ind.draw_detector(np.random.default_rng(21))
    det.update(ceiling=20 * det["sigma_of"], sat_q=1.0, sat_nu=1.0)
    p, sig = det["pulse"], det["sigma_of"]
    gap = 2 * p["t_peak"]
    low, _ = ind.pileup_visibility(det, [0.0, gap], [1000 * sig, 50 * sig])
    first_at_second = 1000 * sig * ind.proebst(np.array([gap + p["t_peak"]]), 0.0, p["an"], p["at"], p["tau_n"],
                                               p["tau_in"], p["tau_t"])[0]
    sat = lambda y: ind.richards(y, det["ceiling"], 1.0, 1.0)
    expected_second = (sat(first_at_second + 50 * sig) - sat(first_at_second)) / sig
    assert expected_second < ind.PILEUP_MIN_SNR          # hidden: the detector is still saturated there
    main = sat(1000 * sig) / sig                          # the second pulse starts after the first one's peak
    assert low == pytest.approx(min(expected_second, main), rel=1e-6)


def test_pileup_visible_truth_and_rule_constants():
    """Generated pile-ups carry the flag (both kinds occur), other classes are True; the rule's numbers
    are the training simulator's (one definition)."""
    from cryopipe.simulate import classes

    assert (ind.PILEUP_MIN_SNR, ind.PILEUP_MIN_RISES) == (classes.PILEUP_MIN_SNR, classes.PILEUP_MIN_RISES)
    rng = np.random.default_rng(5)
    flags = []
    for _ in range(4):
        det = ind.draw_detector(rng)
        d = ind.simulate(det, {"pile_up": 25, "noise": 5}, rng)
        assert d["pileup_visible"].shape == d["label"].shape and d["pileup_visible"][d["event_class"] == "noise"].all()
        flags.append(d["pileup_visible"][d["event_class"] == "pile_up"])
    flags = np.concatenate(flags)
    assert flags.any() and not flags.all()
