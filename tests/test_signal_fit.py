"""Per-event SEV fit against pulses of known height, onset and baseline."""
import numpy as np
import pytest

from cryopipe.errors import InputError
from cryopipe.signal.fit import default_shift_window, fit_sev
from cryopipe.signal.pulses import proebst_pulse, pulse_template

FS = 25_000.0
N = 2048
TAUS = (0.004, 0.0005, 0.02)          # tau_n, tau_in, tau_t (s)


@pytest.fixture(scope="module")
def sev():
    return pulse_template(N, FS, *TAUS, at_over_an=0.5)


def model_pulse(onset_samples, height):
    """Pulse of the analytic model with onset at N/4 + onset_samples (fractional), max = height."""
    t = (np.arange(N) - N // 4) / FS
    fine = proebst_pulse((np.arange(N * 8) / 8 - N // 4) / FS, 0.0, 1.0, 0.5, TAUS[0], TAUS[1], TAUS[2])
    return height * proebst_pulse(t, onset_samples / FS, 1.0, 0.5, *TAUS) / fine.max()


def baseline(c, order):
    t = (np.arange(N) - N // 4) / FS
    return sum(c[j] * t ** j for j in range(order + 1))


def test_noiseless_fractional_onsets_heights_and_quadratic_baseline(sev):
    onsets = np.array([0.0, 3.0, -7.3, 12.6, 0.5, -40.25])
    heights = np.array([1.0, 0.2, 2.0, 0.05, 0.7, 3.0])
    coef = (0.3, 2.0, -5.0)                                   # V, V/s, V/s^2
    x = np.array([model_pulse(d, h) for d, h in zip(onsets, heights)]) + baseline(coef, 2)
    r = fit_sev(x, sev, FS, baseline_order=2)
    np.testing.assert_allclose(r["fit_height"], heights, rtol=2e-4)
    np.testing.assert_allclose(r["fit_onset"] * FS, onsets, atol=0.03)
    fitted = np.array([baseline([r[f"fit_baseline_{j}"][i] for j in range(3)], 2) for i in range(onsets.size)])
    # the fitted baseline curve deviates from the true one by < 5e-4 of the pulse height
    assert np.all(np.max(np.abs(fitted - baseline(coef, 2)), axis=1) < 5e-4 * heights)
    np.testing.assert_allclose(r["fit_baseline_1"][:5], coef[1], rtol=1e-3)
    assert np.all(r["fit_rms"] < 3e-4 * heights)            # linear interpolation of the SEV
    assert set(r) == {"fit_height", "fit_onset", "fit_rms", "fit_n_truncated",
                      "fit_baseline_0", "fit_baseline_1", "fit_baseline_2"}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_integer_shifts_of_the_sev_are_exact(sev, dtype):
    shifts = np.array([-20, -1, 0, 1, 5, 33])
    heights = np.linspace(0.1, 2.0, shifts.size)
    idx = np.clip(np.arange(N)[None, :] - shifts[:, None], 0, N - 1)
    x = (heights[:, None] * sev[idx] - 0.4).astype(dtype)
    r = fit_sev(x, sev, FS, baseline_order=0)
    tol = 1e-7 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(r["fit_height"], heights, rtol=tol)
    np.testing.assert_allclose(r["fit_onset"] * FS, shifts, atol=1e-3)  # parabola vertex: ~2e-5
    np.testing.assert_allclose(r["fit_baseline_0"], -0.4, atol=tol)


def test_noisy_heights_unbiased_with_least_squares_spread(sev):
    rng = np.random.default_rng(3)
    n, sigma, h = 600, 0.01, 0.5
    x = h * sev + 0.02 + rng.normal(0.0, sigma, (n, N))
    r = fit_sev(x, sev, FS, baseline_order=1, batch=64)          # several blocks, two threads
    # least-squares height error at the true onset: sigma / sqrt(s^T R s), R removes offset and slope
    v = np.vander(np.arange(N) - N / 2, 2, increasing=True)
    resid = sev - v @ np.linalg.lstsq(v, sev, rcond=None)[0]
    expected = sigma / np.sqrt(sev @ resid)
    assert np.std(r["fit_height"]) == pytest.approx(expected, rel=0.12)
    assert abs(np.mean(r["fit_height"]) - h) < 4 * expected / np.sqrt(n)
    assert abs(np.mean(r["fit_onset"])) * FS < 0.2
    assert np.mean(r["fit_rms"]) == pytest.approx(sigma, rel=0.01)
    assert np.mean(r["fit_baseline_0"]) == pytest.approx(0.02, abs=1e-3)
    single = fit_sev(x[:70], sev, FS, baseline_order=1, batch=1000, workers=1)
    np.testing.assert_allclose(single["fit_height"], r["fit_height"][:70], rtol=1e-12)


@pytest.mark.parametrize("height, noise", [(3.0, 0.0), (5.0, 0.005)])
def test_truncation_recovers_saturated_height(sev, height, noise):
    rng = np.random.default_rng(11)
    level = 1.2                                                 # saturation, V above baseline
    x = np.minimum(model_pulse(2.4, height), level) + 0.1 + 0.5 * (np.arange(N) - N // 4) / FS
    x = x[None, :] + rng.normal(0.0, noise, (4, N))
    naive = fit_sev(x, sev, FS)
    trunc = fit_sev(x, sev, FS, truncation_level=1.0)
    assert np.all(np.abs(naive["fit_height"] / height - 1) > 0.2)      # clipped pulse looks smaller
    np.testing.assert_allclose(trunc["fit_height"], height, rtol=0.015)
    np.testing.assert_allclose(trunc["fit_onset"] * FS, 2.4, atol=0.5)
    np.testing.assert_allclose(trunc["fit_baseline_1"], 0.5, rtol=0.05)
    assert np.all(trunc["fit_n_truncated"] > 0)
    assert np.all(trunc["fit_rms"] < max(2 * noise, 1e-3 * height))


def test_truncation_leaves_unsaturated_records_alone(sev):
    x = np.array([0.3 * sev, 2.0 * sev])
    r = fit_sev(x, sev, FS, truncation_level=1.0)
    np.testing.assert_array_equal(r["fit_n_truncated"], [0, np.sum(2.0 * sev > 1.0)])
    np.testing.assert_allclose(r["fit_height"], [0.3, 2.0], rtol=1e-6)


def test_default_window_and_bad_input(sev):
    lo, hi = default_shift_window(N)
    assert lo == -(N // 32) and hi == N // 32 + 1
    with pytest.raises(InputError, match="records have shape"):
        fit_sev(np.zeros((3, N + 1)), sev, FS)
    with pytest.raises(InputError, match="baseline_order"):
        fit_sev(np.zeros((3, N)), sev, FS, baseline_order=5)
    with pytest.raises(InputError, match="shift_window"):
        fit_sev(np.zeros((3, N)), sev, FS, shift_window=(5, 5))
    with pytest.raises(InputError, match="float"):
        fit_sev(np.zeros((3, N), dtype=np.int16), sev, FS)


@pytest.mark.parametrize("n", [1500, 4096])
def test_cubic_baseline_any_record_length(n):
    """All baseline orders up to 3 on a record length that is not a power of two: the baseline
    polynomial and the pulse are recovered (noiseless, integer and fractional onsets)."""
    s = pulse_template(n, FS, *TAUS, at_over_an=0.5)
    t = (np.arange(n) - n // 4) / FS
    coef = (0.8, -3.0, 40.0, 500.0)                           # V, V/s, V/s^2, V/s^3
    onsets, heights = np.array([0.0, 4.0, -9.0]), np.array([0.5, 1.5, 0.1])
    idx = np.clip(np.arange(n)[None, :] - onsets[:, None].astype(int), 0, n - 1)
    for order in range(4):
        base = sum(coef[j] * t ** j for j in range(order + 1))
        x = heights[:, None] * s[idx] + base
        r = fit_sev(x, s, FS, baseline_order=order)
        np.testing.assert_allclose(r["fit_height"], heights, rtol=1e-6)
        np.testing.assert_allclose(r["fit_onset"] * FS, onsets, atol=1e-3)
        fitted = np.array([sum(r[f"fit_baseline_{j}"][i] * t ** j for j in range(order + 1)) for i in range(3)])
        assert np.all(np.max(np.abs(fitted - base), axis=1) < 1e-4 * heights)
        np.testing.assert_allclose(r["fit_baseline_0"], coef[0], rtol=1e-5)
        # the parabola vertex is biased by <~5e-4 samples at the template's kink: a tiny residual
        assert np.all(r["fit_rms"] < 1e-5 * heights)


def test_float32_records_with_large_offset(sev):
    """float32 records far from zero (5 V offset, 1 mV noise, 20 mV pulses): heights as precise as
    in float64, within the least-squares spread."""
    rng = np.random.default_rng(5)
    n, sigma, h = 300, 1e-3, 0.02
    x = h * sev + 5.0 + rng.normal(0.0, sigma, (n, N))
    r64 = fit_sev(x, sev, FS)
    r32 = fit_sev(x.astype(np.float32), sev, FS)
    v = np.vander(np.arange(N) - N / 2, 2, increasing=True)
    expected = sigma / np.sqrt(sev @ (sev - v @ np.linalg.lstsq(v, sev, rcond=None)[0]))
    for r in (r64, r32):
        assert np.std(r["fit_height"]) == pytest.approx(expected, rel=0.15)
        assert abs(np.mean(r["fit_height"]) - h) < 4 * expected / np.sqrt(n)
        assert np.mean(r["fit_rms"]) == pytest.approx(sigma, rel=0.02)
        assert np.mean(r["fit_baseline_0"]) == pytest.approx(5.0, abs=1e-4)
    # float32 input rounding (~2e-7 of 5 V) is far below the noise
    assert np.max(np.abs(r32["fit_height"] - r64["fit_height"])) < 0.05 * expected


def test_templates_and_windows_do_not_mix(sev):
    """Fits with different templates, orders and windows in turn (the record-independent part is
    kept between calls) each recover their own pulses."""
    other = pulse_template(N, FS, 0.001, 0.0002, 0.005, at_over_an=0.3)
    for s, order, window in ((sev, 1, None), (other, 1, None), (sev, 0, None), (other, 2, (-10, 30)), (sev, 1, None)):
        x = np.array([0.7 * s, 0.2 * s[np.clip(np.arange(N) - 6, 0, N - 1)] + 0.1])
        r = fit_sev(x, s, FS, baseline_order=order, shift_window=window)
        np.testing.assert_allclose(r["fit_height"], [0.7, 0.2], rtol=1e-6)
        np.testing.assert_allclose(r["fit_onset"] * FS, [0.0, 6.0], atol=1e-3)
        np.testing.assert_allclose(r["fit_baseline_0"], [0.0, 0.1], atol=1e-7)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_non_finite_record_leaves_the_others_alone(sev, dtype):
    x = np.array([0.3 * sev, 0.5 * sev, 0.9 * sev]).astype(dtype)
    x[1, 100] = np.nan
    r = fit_sev(x, sev, FS, batch=2)
    assert np.isnan(r["fit_height"][1])
    np.testing.assert_allclose(r["fit_height"][[0, 2]], [0.3, 0.9], rtol=1e-5)
    np.testing.assert_allclose(r["fit_onset"][[0, 2]] * FS, 0.0, atol=1e-3)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_public_scipy_fft_path_gives_the_same_fit(sev, dtype, monkeypatch):
    """Without scipy's private pocketfft binding (another scipy: `parallel.pocketfft_with_output`
    returns None) the fit runs on scipy.fft and finds the same heights and onsets."""
    import cryopipe.signal.fit as fit_module

    rng = np.random.default_rng(5)
    heights = rng.uniform(0.1, 1.0, 40)
    x = np.stack([model_pulse(s, h) for s, h in zip(rng.uniform(-5, 5, 40), heights)]).astype(dtype)
    x += rng.normal(0.0, 1e-3, x.shape).astype(dtype)
    fast = fit_sev(x, sev, FS, batch=16)
    monkeypatch.setattr(fit_module, "_pocketfft", None)
    plain = fit_sev(x, sev, FS, batch=16)
    np.testing.assert_allclose(plain["fit_height"], fast["fit_height"], rtol=1e-4)
    np.testing.assert_allclose(plain["fit_onset"], fast["fit_onset"], atol=0.01 / FS)
    np.testing.assert_allclose(plain["fit_height"], heights, atol=0.01)


def test_pocketfft_binding_is_checked_before_use(monkeypatch):
    """A binding whose call signature differs (a scipy release changing its private module) is not used."""
    import scipy.fft._pocketfft as private

    from cryopipe.parallel import pocketfft_with_output

    class Changed:
        def r2c(self, *args):
            raise TypeError("r2c() takes 5 positional arguments")

    assert pocketfft_with_output() is not None                 # this scipy's binding passes the check
    monkeypatch.setattr(private, "pypocketfft", Changed())
    assert pocketfft_with_output() is None
