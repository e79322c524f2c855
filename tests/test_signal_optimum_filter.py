"""Optimum filter against simulated truth and hand-computed formulas."""
import numpy as np
import pytest
import scipy.signal

from cryopipe.characterize.sev_nps import noise_power_spectrum
from cryopipe.errors import CryopipeError, InputError
from cryopipe.signal.optimum_filter import (build_optimum_filter, cait_shift_window, expected_resolution,
                                     measured_resolution, of_amplitudes, of_kernel)
from cryopipe.signal.spectra import noise_from_psd
from cryopipe.simulate.noise import psd_model
from cryopipe.signal.pulses import pulse_template

FS = 25_000.0
N = 2048


def true_psd(n):
    f = np.fft.rfftfreq(n, 1 / FS)
    psd = psd_model(f, white=1e-9, one_over_f=1e-8, f_ref=10.0, lines=((1000.0, 20.0, 1e-7),))
    psd[0] = psd[1]                                     # DC is unused by the filter
    return psd


@pytest.fixture(scope="module")
def template():
    return pulse_template(N, FS, 0.004, 0.0005, 0.02, at_over_an=0.5)


@pytest.fixture(scope="module")
def noise():
    return noise_from_psd(true_psd(N), N, FS, np.random.default_rng(7), size=9000)


@pytest.fixture(scope="module")
def of(template):
    return build_optimum_filter(template, true_psd(N), FS)


def test_norm_matches_full_spectrum_sum(of, template):
    # W from the full two-sided FFT: sum over k != 0 of |S_k|^2 / (N fs J_k), J two-sided
    s = np.fft.fft(template)
    one_sided = true_psd(N)
    j_full = np.concatenate([one_sided, one_sided[1:-1][::-1]]) / 2
    j_full[N // 2] = one_sided[-1]                       # Nyquist: not doubled in the one-sided PSD
    w = np.sum(np.abs(s[1:]) ** 2 / (N * FS * j_full[1:]))
    assert of.norm == pytest.approx(w, rel=1e-12)
    assert expected_resolution(of) == pytest.approx(1 / np.sqrt(w), rel=1e-12)


@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-10), (np.float32, 1e-5)])
def test_noiseless_pulse_gives_its_height(of, template, dtype, rtol):
    heights = np.array([0.01, 0.5, 3.0])
    x = (heights[:, None] * template + 0.7).astype(dtype)            # offset: DC is excluded
    r = of_amplitudes(of, x)
    np.testing.assert_allclose(r["amplitude"], heights, rtol=rtol)
    np.testing.assert_allclose(r["amplitude_shifted"], heights, rtol=rtol)
    np.testing.assert_array_equal(r["shift"], 0)
    assert np.all(np.abs(r["chi2"]) < 1e-6 * of.norm * heights ** 2)


def test_chi2_against_direct_sum(of, template, noise):
    x = noise[:3].astype(np.float64) + np.array([[0.0], [0.05], [0.2]]) * np.roll(template, 13)
    r = of_amplitudes(of, x, shift_window=(-50, 50))
    w = np.r_[0.0, np.full(N // 2 - 1, 2.0), 1.0]
    j = of.psd_two_sided
    s = np.fft.rfft(template)
    for i in range(3):
        X = np.fft.rfft(x[i])
        for lag, amp, chi2 in ((0, r["amplitude"][i], r["chi2"][i]),
                               (r["shift"][i], r["amplitude_shifted"][i], r["chi2_shifted"][i])):
            model = amp * s * np.exp(-2j * np.pi * np.arange(N // 2 + 1) * lag / N)
            direct = np.sum(w[1:] * np.abs(X[1:] - model[1:]) ** 2 / (N * FS * j[1:]))
            assert chi2 == pytest.approx(direct, rel=1e-9)
    assert r["shift"][2] == 13


def test_cait_window_is_max_over_all_lags(of, noise):
    x = noise[:50].astype(np.float64)
    lo, hi = cait_shift_window(N)
    assert (lo, hi) == (-N // 8, 5 * N // 8)
    r = of_amplitudes(of, x)
    every_lag = np.fft.irfft(np.fft.rfft(x, axis=1) * of.transfer, n=N, axis=1)   # A(n), n mod N
    lags = np.arange(lo, hi)
    window = every_lag[:, lags % N]
    np.testing.assert_allclose(r["amplitude_shifted"], window.max(axis=1), rtol=1e-10)
    np.testing.assert_array_equal(r["shift"], lags[np.argmax(window, axis=1)])
    np.testing.assert_allclose(r["amplitude"], every_lag[:, 0], rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("nps_source", ["true", "estimated"])
def test_resolution_and_chi2_on_noise(template, noise, nps_source):
    if nps_source == "true":
        of = build_optimum_filter(template, true_psd(N), FS)
        test = noise
    else:
        nps = noise_power_spectrum(noise[:3000], FS, clean=False)
        nps[0] = nps[1]
        of = build_optimum_filter(template, nps, FS)
        test = noise[3000:]
    r = of_amplitudes(of, test)
    sigma = expected_resolution(of)
    assert np.std(r["amplitude"]) / sigma == pytest.approx(1.0, abs=0.03)
    assert abs(np.mean(r["amplitude"])) < 4 * sigma / np.sqrt(len(test))
    assert np.mean(r["chi2"]) / (N - 2) == pytest.approx(1.0, abs=0.01)
    assert measured_resolution(of, test) == pytest.approx(np.std(r["amplitude"], ddof=1), rel=1e-12)
    # the searched amplitude on noise is the largest of many lags: biased far above 0, never a resolution
    assert np.mean(r["amplitude_shifted"]) > 2 * sigma


def test_amplitude_unbiased_fixed_and_shifted(of, template, noise):
    rng = np.random.default_rng(3)
    n = 2000
    sigma = expected_resolution(of)
    heights = rng.uniform(500, 1000, n) * sigma
    lags = rng.integers(-100, 300, n)
    base = noise[:n].astype(np.float64)
    aligned = base + heights[:, None] * template
    shifted = base + heights[:, None] * np.stack([np.roll(template, k) for k in lags])
    fixed = of_amplitudes(of, aligned.astype(np.float32), search=False)
    assert set(fixed) == {"amplitude", "chi2"}
    searched = of_amplitudes(of, shifted.astype(np.float32))
    for amp in (fixed["amplitude"], searched["amplitude_shifted"]):
        rel = amp / heights - 1
        assert abs(np.median(rel)) < 0.003
        assert np.median(np.abs(rel)) < 0.003
    assert np.mean(searched["shift"] == lags) > 0.95
    assert np.all(np.abs(searched["shift"] - lags) <= 1)


@pytest.mark.parametrize("offset", [37, -20])
def test_shift_search_finds_offset(of, template, noise, offset):
    sigma = expected_resolution(of)
    x = noise[:300] + np.float32(50 * sigma) * np.roll(template, offset).astype(np.float32)
    r = of_amplitudes(of, x, shift_window=(-64, 64))
    assert np.median(r["shift"]) == offset
    assert np.mean(np.abs(r["shift"] - offset) <= 2) > 0.95
    assert np.median(r["chi2_shifted"]) / (N - 2) == pytest.approx(1.0, abs=0.05)


def test_kernel_on_stream_reproduces_batch(of, template):
    rng = np.random.default_rng(9)
    n_stream = 20 * N
    stream_psd = true_psd(n_stream)
    onsets = np.array([3000, 9000, 15000, 27000, 33000])
    heights = np.array([0.05, 0.1, 0.2, 0.4, 0.8])
    clean = np.zeros(n_stream)
    for n0, a in zip(onsets, heights):
        clean[n0 - N // 4:n0 - N // 4 + N] += a * template
    noisy = clean + noise_from_psd(stream_psd, n_stream, FS, rng, dtype=np.float64)
    kernel, anchor = of_kernel(of)
    assert anchor == N // 4 and kernel.shape == (N,)
    for stream in (clean, noisy):
        valid = scipy.signal.correlate(stream, kernel, mode="valid")    # valid[j] = sum_m x[j+m] k[m]
        y = lambda n: valid[n - anchor]                                   # noqa: E731
        records = np.stack([stream[n0 - anchor:n0 - anchor + N] for n0 in onsets])
        batch = of_amplitudes(of, records, search=False)["amplitude"]
        np.testing.assert_allclose(y(onsets), batch, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(scipy.signal.correlate(clean, kernel, mode="valid")[onsets - anchor], heights,
                               rtol=1e-9)


def test_bad_inputs(template):
    psd = true_psd(N)
    with pytest.raises(InputError, match="noise power spectrum has shape"):
        build_optimum_filter(template, psd[:-1], FS)
    zero = psd.copy()
    zero[10:20] = 0.0
    with pytest.raises(CryopipeError, match="ch2: noise power spectrum has 10 non-positive"):
        build_optimum_filter(template, zero, FS, what="ch2")
    with pytest.raises(CryopipeError, match="no power above DC"):
        build_optimum_filter(np.ones(N), psd, FS)
    of = build_optimum_filter(template, psd, FS)
    with pytest.raises(InputError, match="shift_window"):
        of_amplitudes(of, np.zeros((2, N)), shift_window=(10, 10))
    with pytest.raises(InputError, match="records have shape"):
        of_amplitudes(of, np.zeros((2, N + 1)))
