"""Energy calibration against simulated amplitude spectra of known line position and width."""
import numpy as np
import pytest

from cryopipe.calibrate.lines import calibrate, calibrate_lines, find_line, to_energy
from cryopipe.errors import CryopipeError, InputError

MU, SIGMA, N_LINE = 1.0, 0.02, 2000          # V, V, events


def spectrum(seed, mu=MU, sigma=SIGMA, n_line=N_LINE, n_back=20000, scale=0.3):
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.exponential(scale, n_back), rng.normal(mu, sigma, n_line)])


def test_line_on_exponential_background_recovered_within_errors():
    r = find_line(spectrum(1))
    assert abs(r["position"] - MU) < 3 * r["position_err"]
    assert abs(r["sigma"] - SIGMA) < 3 * r["sigma_err"]
    assert abs(r["n_line"] - N_LINE) < 4 * r["n_line_err"]
    # the error of a Gaussian mean is about sigma / sqrt(n) (a little more with background)
    assert SIGMA / np.sqrt(N_LINE) <= r["position_err"] < 2 * SIGMA / np.sqrt(N_LINE)
    assert r["chi2"] < r["ndf"] + 5 * np.sqrt(2 * r["ndf"])


def test_pulls_over_many_spectra():
    pulls = []
    for seed in range(30):
        r = find_line(spectrum(100 + seed, n_line=800))
        pulls.append([(r["position"] - MU) / r["position_err"], (r["sigma"] - SIGMA) / r["sigma_err"]])
    pulls = np.array(pulls)
    assert np.all(np.abs(pulls.mean(axis=0)) < 0.6)
    assert np.all((pulls.std(axis=0) > 0.5) & (pulls.std(axis=0) < 1.5))


def test_hint_selects_the_line_among_two_and_threshold_cuts_noise():
    rng = np.random.default_rng(5)
    a = np.concatenate([spectrum(2), rng.normal(2.5, 0.05, 4000), rng.normal(0.0, 0.01, 50000)])
    hinted = find_line(a, expected=0.9, threshold=0.05)
    assert abs(hinted["position"] - MU) < 3 * hinted["position_err"]
    other = find_line(a, threshold=0.05)                           # most prominent: the 2.5 V line
    assert abs(other["position"] - 2.5) < 3 * other["position_err"]
    assert abs(other["sigma"] - 0.05) < 3 * other["sigma_err"]


@pytest.mark.parametrize("seed", range(6))
def test_hint_picks_the_weaker_of_two_close_lines(seed):
    """Mn K-alpha and K-beta: 10 % apart, 88:12, both inside the +-25 % search window of either hint:
    the hint picks the significant peak nearest to it, not the most prominent one; where that peak is
    too weak to be fitted as a line, the error names the other peak instead of calibrating on it."""
    rng = np.random.default_rng(seed)
    a = np.concatenate([rng.normal(0.300, 0.003, 2000), rng.normal(0.330, 0.003, 270), rng.uniform(0.01, 2.5, 3000)])
    beta, alpha = find_line(a, expected=0.33), find_line(a, expected=0.30)
    assert abs(beta["position"] - 0.330) < 4 * beta["position_err"]
    assert abs(alpha["position"] - 0.300) < 4 * alpha["position_err"]
    assert abs(beta["n_line"] - 270) < 4 * beta["n_line_err"]
    weak = np.concatenate([rng.normal(0.300, 0.003, 260), rng.normal(0.330, 0.003, 35), rng.uniform(0.01, 2.5, 400)])
    with pytest.raises(CryopipeError, match=r"nearest peak is no line, other peaks in the range at") as exc:
        find_line(weak, expected=0.33)            # too weak to fit: an error, never the K-alpha instead
    named = float(str(exc.value).split("other peaks in the range at ")[1].split()[0])
    assert abs(named - 0.300) < 0.003


def test_calibrate_through_zero_and_resolution_in_kev():
    cal = calibrate(spectrum(3), 5.9, expected=1.05, resolution=0.004)
    k = 5.9 / cal["line_position"][0]
    assert cal["kev_per_volt"] == pytest.approx(k, rel=1e-12)
    assert abs(cal["kev_per_volt"] - 5.9 / MU) < 3 * cal["kev_per_volt_err"]
    assert cal["kev_per_volt_err"] == pytest.approx(k * cal["line_position_err"][0] / cal["line_position"][0])
    assert cal["offset_kev"] == 0.0
    assert cal["resolution_kev"] == pytest.approx(0.004 * k)
    assert cal["line_sigma_kev"][0] == pytest.approx(cal["line_sigma"][0] * k)
    assert to_energy(cal["line_position"], cal)[0] == pytest.approx(5.9)
    assert np.isnan(calibrate(spectrum(3), 5.9)["resolution_kev"])


def test_two_lines_with_offset():
    rng = np.random.default_rng(9)
    # E = 2 keV/V * A + 1 keV: lines at 5 and 13 keV sit at 2 V and 6 V
    a = np.concatenate([rng.uniform(0.5, 8.0, 20000), rng.normal(2.0, 0.03, 3000), rng.normal(6.0, 0.06, 3000)])
    cal = calibrate(a, [5.0, 13.0], expected=[2.1, 5.8], through_zero=False)
    assert abs(cal["kev_per_volt"] - 2.0) < 4 * cal["kev_per_volt_err"]
    assert abs(cal["offset_kev"] - 1.0) < 4 * cal["offset_kev_err"]
    np.testing.assert_allclose(to_energy([2.0, 6.0], cal), [5.0, 13.0], atol=0.05)


def test_calibrate_lines_hand_values():
    zero = calibrate_lines([1.0, 2.0], [0.01, 0.01], [3.0, 6.0])
    assert zero["kev_per_volt"] == pytest.approx(3.0)
    # weights 1/(E da / A^2)^2: line 1 k=3 +- 0.03, line 2 k=3.5 +- 0.0175 -> weighted mean
    w = np.array([1 / 0.03 ** 2, 1 / 0.0175 ** 2])
    two = calibrate_lines([1.0, 2.0], [0.01, 0.01], [3.0, 7.0])
    assert two["kev_per_volt"] == pytest.approx(np.sum(w * [3.0, 3.5]) / w.sum())
    affine = calibrate_lines([1.0, 2.0, 3.0], [0.01] * 3, [3.0, 5.0, 7.0], through_zero=False)
    assert affine["kev_per_volt"] == pytest.approx(2.0) and affine["offset_kev"] == pytest.approx(1.0)


def test_errors_name_the_problem():
    with pytest.raises(CryopipeError, match="need at least 50"):
        find_line(np.full(20, 1.0))
    with pytest.raises(CryopipeError, match="no line found"):
        find_line(np.random.default_rng(4).exponential(0.3, 20000))
    with pytest.raises(CryopipeError, match="no line found"):
        find_line(spectrum(6), expected=3.0)                        # nothing near 3 V
    with pytest.raises(InputError, match="expected position of each line"):
        calibrate(spectrum(6), [1.0, 2.0])
    with pytest.raises(InputError, match="at least 2 lines"):
        calibrate(spectrum(6), 5.9, through_zero=False)
    with pytest.raises(InputError, match="kev_per_volt"):
        to_energy([1.0], {})


def _one_channel_features(amplitudes, name="phonon"):
    import xarray as xr

    n = amplitudes.size
    feats = xr.Dataset({"of_amplitude_shifted": (("channel", "event"), amplitudes[None, :]),
                        "record_kind": ("event", np.array(["particle"] * n))}, coords={"channel": [name]})
    char = xr.Dataset({"resolution": ("channel", [0.004])}, coords={"channel": [name]})
    return feats, char


@pytest.mark.parametrize("expected, found", [(None, 1.0), (0.3, 0.3), ({"phonon": 0.3}, 0.3),
                                             ({"light": 0.3}, 1.0)])
def test_calibrate_channel_takes_the_configured_line_hint(expected, found):
    """Two lines: without a hint the more prominent one (1 V, 2000 events) is the line; a hint for
    every channel or for this channel's name picks the other (0.3 V, 600 events); a hint for
    another channel does not apply."""
    from cryopipe.calibrate.stage import calibrate_channel

    rng = np.random.default_rng(9)
    amps = np.concatenate([spectrum(8), rng.normal(0.3, 0.006, 600)])
    feats, char = _one_channel_features(amps)
    cfg = {"line_energy": 5.9, "expected": expected, "amplitude": "of_amplitude_shifted", "min_line_events": 20,
           "min_significance": 3.0}
    ds = calibrate_channel(feats, char, cfg, what="test")
    assert float(ds["line_position"][0]) == pytest.approx(found, rel=0.01)
    assert float(ds["kev_per_volt"][0]) == pytest.approx(5.9 / found, rel=0.01)
