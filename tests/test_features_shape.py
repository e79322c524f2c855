"""The shape family's numba kernels equal the plain numpy formulation (kept here as the reference, in
float64): up to float32 FFT rounding for the optimum-filter features (and the lag of exact near-ties on
noise), to float64 rounding for the rest."""
import numpy as np
import pytest
import scipy.fft

from cryopipe.features.shape import _BINS, MAD_TO_SIGMA, SCALE_STRIDE, SPIKE_WIDTH, UNITS, _median, shape_features
from cryopipe.signal.optimum_filter import build_optimum_filter, expected_resolution
from cryopipe.signal.pulses import pulse_template

FS = 25_000.0


def ref_main_and_second_pulse(x, of, sigma_of, response):
    """of_snr, onset lag (samples), second_pulse_snr, second pulse lag (samples) for records x (B, N) float64, V,
    and the amplitudes (B, N) (sigma_OF) searched for each, by circular lag index."""
    b, n = x.shape
    edge = max(n // 128, 1)
    ramp = np.linspace(0.0, 1.0, n)
    start, end = x[:, :edge].mean(axis=1), x[:, -edge:].mean(axis=1)
    detrended = x - start[:, None] - (end - start)[:, None] * ramp[None, :]
    amp = scipy.fft.irfft(scipy.fft.rfft(detrended, axis=1) * of.transfer, n=n, axis=1) / sigma_of
    lags = np.arange(n)
    lags = np.where(lags >= n - of.onset, lags - n, lags)          # lag = onset - N/4, in [-N/4, 3N/4)
    onset = lags + of.onset
    valid = (onset >= n // 64) & (onset < n - n // 16)
    i0 = np.argmax(np.where(valid[None, :], amp, -np.inf), axis=1)
    a0 = amp[np.arange(b), i0]
    rolled = response[(np.arange(n)[None, :] - i0[:, None]) % n]   # main pulse's response at its lag
    rest = amp - a0[:, None] * rolled
    far = np.abs(lags[None, :] - lags[i0][:, None]) >= max(n // 256, 1)
    rest = np.where(valid[None, :] & far, rest, -np.inf)
    i1 = np.argmax(rest, axis=1)
    return a0, lags[i0], rest[np.arange(b), i1], lags[i1], np.where(valid[None, :], amp, -np.inf), rest


def ref_spike_features(x):
    """spike_snr, spike_fraction of records x (B, N) float64 (see module docstring)."""
    n = x.shape[1]
    w = SPIKE_WIDTH
    c = np.concatenate([np.zeros((x.shape[0], 1)), np.cumsum(x, axis=1)], axis=1)
    k = np.arange(2 * w, n - 2 * w)
    left = (c[:, k - w] - c[:, k - 2 * w]) / w          # mean of x[k-2w : k-w]
    right = (c[:, k + 2 * w + 1] - c[:, k + w + 1]) / w  # mean of x[k+w+1 : k+2w+1]
    xk = x[:, k]
    up = np.minimum(xk - left, xk - right)
    down = np.minimum(left - xk, right - xk)
    biggest = np.max(np.maximum(up, down), axis=1)
    centred = xk - 0.5 * (left + right)
    scale = MAD_TO_SIGMA * np.median(np.abs(centred[:, ::SCALE_STRIDE]), axis=1)
    excursion = np.max(np.abs(x - x[:, :n // 8].mean(axis=1, keepdims=True)), axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return biggest / scale, biggest / excursion


def ref_pretrigger_drop(x):
    """Signed largest of mean(x[:L]) - mean(x[N/8 : 7N/32]) for L = N/64, N/32, N/16 (V)."""
    n = x.shape[1]
    ref = x[:, n // 8:7 * n // 32].mean(axis=1)
    drops = np.stack([x[:, :n // k].mean(axis=1) - ref for k in (64, 32, 16)])
    return np.take_along_axis(drops, np.argmax(np.abs(drops), axis=0)[None], axis=0)[0]


def reference(traces, fs, sev, nps, batch=256):
    """The numpy formulation the shape family was written in first."""
    n = traces.shape[1]
    of = build_optimum_filter(sev, nps, fs)
    sigma_of = expected_resolution(of)
    sigma_bl = float(np.sqrt(np.sum(np.asarray(nps, float)[1:]) * fs / n))
    response = scipy.fft.irfft(of.template_fft * of.transfer, n=n)
    out = {k: np.empty(traces.shape[0]) for k in UNITS}
    searched = {"main": np.empty(traces.shape), "second": np.empty(traces.shape)}
    n8 = n // 8
    for a in range(0, traces.shape[0], batch):
        sl = slice(a, min(a + batch, traces.shape[0]))
        x = traces[sl].astype(np.float64)
        a0, lag, second, lag2, searched["main"][sl], searched["second"][sl] = ref_main_and_second_pulse(
            x, of, sigma_of, response)
        end = x[:, -n8:].mean(axis=1) - x[:, :n8].mean(axis=1)
        out["of_snr"][sl] = a0
        out["of_onset"][sl] = lag / fs
        out["second_pulse_snr"][sl] = second
        out["second_pulse_fraction"][sl] = second / np.maximum(a0, 1.0)
        out["second_pulse_delay"][sl] = (lag2 - lag) / fs
        out["end_snr"][sl] = end / sigma_bl
        height = x.max(axis=1) - x[:, :n8].mean(axis=1)
        out["end_fraction"][sl] = end / np.maximum(height, sigma_bl)
        out["spike_snr"][sl], out["spike_fraction"][sl] = ref_spike_features(x)
        out["pretrigger_drop_snr"][sl] = ref_pretrigger_drop(x) / sigma_bl
        base = x[:, :n8].mean(axis=1)
        top = base + 0.95 * (x.max(axis=1) - base)
        out["top_plateau"][sl] = np.mean(x >= top[:, None], axis=1)
    return out, searched


OF_FEATURES = ("of_snr", "second_pulse_snr", "second_pulse_fraction")
OF_ATOL = 1e-3  # sigma_OF: float32 FFTs (the cuts' thresholds are several sigma_OF)


def assert_matches_reference(got, ref, searched, fs):
    """got equals the float64 reference: OF amplitudes within OF_ATOL; lags equal, or a lag whose
    reference amplitude ties the reference maximum within OF_ATOL (noise); the rest to rounding."""
    for k in UNITS:
        if k in OF_FEATURES:
            np.testing.assert_allclose(got[k], ref[k], rtol=0, atol=OF_ATOL, err_msg=k)
        elif k not in ("of_onset", "second_pulse_delay"):
            np.testing.assert_allclose(got[k], ref[k], rtol=1e-9, atol=0, err_msg=k)
    n = searched["main"].shape[1]
    rows = np.arange(len(got["of_snr"]))
    lag = np.rint(got["of_onset"] * fs).astype(int)
    same = lag == np.rint(ref["of_onset"] * fs).astype(int)
    assert np.all(searched["main"][rows, lag % n] >= ref["of_snr"] - OF_ATOL), "of_onset: not a maximum"
    assert same.mean() >= 0.9
    lag2 = lag + np.rint(got["second_pulse_delay"] * fs).astype(int)
    ok = searched["second"][rows, lag2 % n] >= ref["second_pulse_snr"] - OF_ATOL
    assert np.all(ok[same]), "second_pulse_delay: not a maximum"


def records(n_events, n, seed):
    rng = np.random.default_rng(seed)
    sev = pulse_template(n, FS, 0.002, 0.0003, 0.01, at_over_an=0.5)
    x = rng.normal(0, 1e-3, (n_events, n)) + rng.uniform(-1, 1, (n_events, 1))
    x += rng.uniform(0, 0.05, (n_events, 1)) * sev
    late = rng.integers(0, n - 100, n_events)
    for i in range(0, n_events, 3):                                  # pile-up
        x[i, late[i]:] += 0.02 * sev[:n - late[i]]
    x[1::5, rng.integers(10, n - 10)] += 0.05                        # spikes
    x[2::7, n // 2:] += 0.01                                        # steps
    x[4::11] = np.round(x[4::11], 2)                                # many ties
    nps = np.full(n // 2 + 1, 2e-6 / FS)
    return x.astype(np.float32), sev, nps


@pytest.mark.slow  # more than 5 s (the fast subset: pytest -m 'not slow')
@pytest.mark.parametrize("n_events, n, seed", [(300, 1024, 0), (70, 1024, 6), (33, 2048, 1), (40, 16384, 2),
                                                (5, 256, 3)])
def test_kernel_equals_numpy_reference(n_events, n, seed):
    """Any number of threads, any record length, float32 and float64 records."""
    x, sev, nps = records(n_events, n, seed)
    ref, searched = reference(x, FS, sev, nps)
    for workers in (1, 2):
        got = shape_features(x, FS, sev, nps, workers=workers)
        assert set(got) == set(ref) == set(UNITS)
        assert_matches_reference(got, ref, searched, FS)
    got64 = shape_features(x.astype(np.float64), FS, sev, nps)
    assert_matches_reference(got64, ref, searched, FS)
    np.testing.assert_allclose(got64["of_snr"], ref["of_snr"], rtol=0, atol=1e-9)   # float64: no FFT rounding


def test_records_with_nan_or_inf_get_nan_features():
    x, sev, nps = records(6, 1024, 5)
    x[1, 10] = np.nan
    x[3, 500] = np.inf
    got = shape_features(x, FS, sev, nps)
    for k in UNITS:
        assert np.isnan(got[k][[1, 3]]).all() and np.isfinite(got[k][[0, 2, 5]]).all(), k


def test_spike_snr_of_one_sample_spike_on_white_noise():
    """A spike of height h on one sample over white noise sigma: lift ~ h, and the residual x_k minus the
    mean of two 4-sample side windows has rms sigma sqrt(1 + 2/16), so spike_snr ~ h / (sigma sqrt(9/8))."""
    n, sigma, h = 16384, 1e-3, 0.02
    rng = np.random.default_rng(7)
    x = (0.3 + rng.normal(0, sigma, (40, n))).astype(np.float32)
    x[:, 5000] += h
    sev = pulse_template(n, FS, 0.002, 0.0003, 0.01, at_over_an=0.5)
    got = shape_features(x, FS, sev, np.full(n // 2 + 1, 2 * sigma ** 2 / FS))
    expected = h / (sigma * np.sqrt(9 / 8))
    assert np.median(got["spike_snr"]) == pytest.approx(expected, rel=0.03)
    assert np.all(np.abs(got["spike_snr"] / expected - 1) < 0.25)
    assert np.all(np.abs(got["spike_fraction"] - 1) < 0.25)        # the spike is the largest excursion


def test_median_equals_numpy():
    rng = np.random.default_rng(4)
    for n in (1, 7, 8, 100, 128, 129, 1000, 2048, 16383):
        a = rng.standard_normal(n + 10) * 1e-3 + 0.7
        assert _median(a, n, np.empty(n), np.empty(_BINS, np.int64)) == np.median(a[:n])
    for values in (np.round(rng.standard_normal(1000), 1),                       # ties
                   np.concatenate([rng.standard_normal(999) * 1e-9, [1e9]]),      # one far outlier
                   np.full(1000, 0.25), np.arange(1000.0)[::-1],                  # constant, sorted
                   np.r_[rng.standard_normal(500) * 1e-3 + 1, rng.standard_normal(501) * 1e-3 - 1]):
        n = values.size
        assert _median(values, n, np.empty(n), np.empty(_BINS, np.int64)) == np.median(values)
    with_nan = np.r_[1.0, np.nan, 2.0]
    assert np.isnan(_median(with_nan, 3, np.empty(3), np.empty(_BINS, np.int64)))
