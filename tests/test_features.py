"""Per-event features against analytic pulses, hand-computed formulas and numpy/scipy."""
import json

import numpy as np
import pytest
import scipy.stats
import xarray as xr
from scipy.optimize import brentq

from cryopipe.errors import InputError
from cryopipe.features.dataset import features_dataset
from cryopipe.features.main import compute_features
from cryopipe.features.main import UNITS as FEATURE_UNITS
from cryopipe.io.stores import open_store, provenance, validate, write_store
from cryopipe.signal.pulses import proebst_pulse

FS = 25_000.0
N = 8192
TRIG = N // 4


def box50(x):
    """Cait's box_car_smoothing: 50-sample mean over x[k-25 : k+25], edge padded (cumsum version)."""
    xp = np.pad(np.asarray(x, np.float64), 50, mode="edge")
    c = np.concatenate([[0.0], np.cumsum(xp)])
    k = np.arange(len(x)) + 50
    return (c[k + 25] - c[k - 25]) / 50


def single_exp_pulse(height, tau_in, tau_n, onset=TRIG, offset=0.0, n=N):
    """Noiseless Proebst pulse with only the non-thermal component (one rise, one decay exponential)."""
    t = (np.arange(n) - onset) / FS
    return (offset + height * proebst_pulse(t, 0.0, 1.0, 0.0, tau_n, tau_in, tau_n)).astype(np.float32), t


def model_peak(tau_in, tau_n):
    """Analytic time (s) and value of the maximum of exp(-t/tau_n) - exp(-t/tau_in)."""
    tp = np.log(tau_n / tau_in) * tau_in * tau_n / (tau_n - tau_in)
    return tp, np.exp(-tp / tau_n) - np.exp(-tp / tau_in)


def crossing(f, level, a, b):
    return brentq(lambda t: f(t) - level, a, b, xtol=1e-12)


# ---------------------------------------------------------------- pulses of known shape

def test_pulse_height_and_offset_of_noiseless_pulse():
    tau_in, tau_n = 20 / FS, 800 / FS
    tp, peak = model_peak(tau_in, tau_n)
    height = 0.5 / peak  # true maximum 0.5 V
    x, t = single_exp_pulse(height, tau_in, tau_n, offset=0.3)
    f = compute_features(x[None], FS)
    assert f["offset"][0] == pytest.approx(0.3, abs=1e-7)
    # expected: maximum of the 50-sample-averaged analytic model
    expected = box50(height * proebst_pulse(t, 0.0, 1.0, 0.0, tau_n, tau_in, tau_n)).max()
    assert f["pulse_height"][0] == pytest.approx(expected, rel=1e-5)
    # and the smoothing bias on the true height is small and negative
    assert 0.5 * 0.97 < f["pulse_height"][0] < 0.5
    assert f["peak_time"][0] == pytest.approx(tp, abs=26 / FS)
    assert f["maximum"][0] == pytest.approx(0.8, abs=1e-4)


def test_rise_time_of_single_exponential_rise():
    tau_in, tau_n = 100 / FS, 1e6 / FS  # exponential rise, practically no decay
    x, _ = single_exp_pulse(1.0, tau_in, tau_n)
    f = compute_features(x[None], FS)
    tp, h = model_peak(tau_in, tau_n)
    model = lambda s: np.exp(-s / tau_n) - np.exp(-s / tau_in)
    t20, t80 = crossing(model, 0.2 * h, 0, tp), crossing(model, 0.8 * h, 0, tp)
    # t_zero is the last sample below, t_rise the first above: up to 2 samples of quantisation
    assert t80 - t20 - 0.5 / FS <= f["rise_time"][0] <= t80 - t20 + 2.5 / FS
    assert f["rise_time"][0] == pytest.approx(tau_in * np.log(4), abs=3 / FS)


def test_decay_time_of_single_exponential_decay():
    tau_in, tau_n = 5 / FS, 1000 / FS
    x, _ = single_exp_pulse(0.2, tau_in, tau_n)
    f = compute_features(x[None], FS)
    assert f["decay_time"][0] == pytest.approx(tau_n * np.log(0.9 / 0.368), abs=2.5 / FS)


def test_onset_matches_averaged_model_and_truth():
    tau_in, tau_n = 5 / FS, 1000 / FS
    onset = TRIG + 300
    x, t = single_exp_pulse(0.2, tau_in, tau_n, onset=onset)
    f = compute_features(x[None], FS)
    s = box50(x.astype(np.float64))  # offset is 0 here
    t_max = np.argmax(s)
    expected_zero = np.nonzero(s[:t_max] < 0.2 * s[t_max])[0][-1]
    assert f["onset"][0] == pytest.approx((expected_zero - TRIG) / FS, abs=1.01 / FS)
    # the 50-sample average moves the 20 % point at most half a window before the true onset
    assert (onset - TRIG - 26) / FS <= f["onset"][0] <= (onset - TRIG + 2) / FS


def test_step_gives_hand_computed_times():
    m = TRIG + 100
    x = np.full(N, 0.25, np.float32)
    x[m] = 0.5  # half-way sample: no smoothed value falls exactly on a threshold
    x[m + 1:] = 0.75
    f = compute_features(x[None], FS)
    # s[k] = 0.5 (k + 24.5 - m) / 50 near the step: < 20 % up to m-15, > 80 % from m+16, 100 % from m+26
    assert f["pulse_height"][0] == 0.5
    assert f["onset"][0] == pytest.approx((m - 15 - TRIG) / FS)
    assert f["rise_time"][0] == pytest.approx(31 / FS)
    assert f["peak_time"][0] == pytest.approx((m + 26 - TRIG) / FS)
    # never decays: t_end at the record end, so t_half = t_decaystart = t_end
    assert f["decay_time"][0] == 0.0
    # derivative (x[k+25] - x[k-25]) fs / 50: plateau of 0.5 fs / 50 on k = m-24 .. m+24, first taken
    assert f["max_derivative"][0] == pytest.approx(0.5 * FS / 50)
    assert f["max_derivative_time"][0] == pytest.approx((m - 24 - TRIG) / FS)
    assert f["min_derivative"][0] == 0.0
    assert f["offset_difference"][0] == 0.5


def test_record_starting_at_its_maximum_puts_onset_at_record_start():
    x = (0.3 * np.exp(-np.arange(N) / 400.0)).astype(np.float32)[None]
    g = compute_features(x, FS)  # decays below the offset: the maximum is at the start, no t_zero
    assert g["onset"][0] == pytest.approx(-TRIG / FS)
    assert g["peak_time"][0] == pytest.approx(-TRIG / FS)
    f = compute_features(0.3 - x, FS)  # rises and never decays: t_end falls back to the record end
    assert f["decay_time"][0] == 0.0
    # height above the offset: 0.3 V times the mean of exp(-k/400) over the first eighth (geometric series)
    mean_first = (1 - np.exp(-1024 / 400)) / (1 - np.exp(-1 / 400)) / 1024
    assert f["pulse_height"][0] == pytest.approx(0.3 * mean_first, rel=1e-5)


# ---------------------------------------------------------------- formulas on random data

def test_moments_slope_extrema_match_numpy_scipy():
    rng = np.random.default_rng(1)
    x = (rng.gamma(2.0, 0.01, (5, N)) + 1.5 + 1e-4 * np.arange(N)).astype(np.float32)
    f = compute_features(x, FS)
    x64 = x.astype(np.float64)
    n8 = N // 8
    for suffix, seg in (("", x64), ("_first", x64[:, :n8]), ("_last", x64[:, -n8:])):
        np.testing.assert_allclose(f["mean" + suffix], seg.mean(axis=1), rtol=1e-12)
        np.testing.assert_allclose(f["variance" + suffix], seg.var(axis=1), rtol=1e-8)
        np.testing.assert_allclose(f["skewness" + suffix], scipy.stats.skew(seg, axis=1), rtol=1e-6)
    np.testing.assert_allclose(f["offset"], x64[:, :n8].mean(axis=1), rtol=1e-12)
    np.testing.assert_allclose(f["offset_difference"], x64[:, -n8:].mean(1) - x64[:, :n8].mean(1), atol=1e-10)
    np.testing.assert_array_equal(f["maximum"], x.max(axis=1))
    np.testing.assert_array_equal(f["minimum"], x.min(axis=1))
    t = np.arange(N) / FS
    slopes = np.polyfit(t, x64.T, 1)[0]
    np.testing.assert_allclose(f["slope"], slopes, rtol=1e-8)
    assert np.allclose(f["slope"], 1e-4 * FS, rtol=0.05)


def test_derivative_extrema_on_ramp():
    start, length, rate = 3000, 400, 2e-4  # V per sample
    k = np.arange(N)
    x = (np.clip(k - start, 0, length) * rate).astype(np.float32)
    x[6000:] -= 0.01  # a downward step
    f = compute_features(x[None], FS)
    assert f["max_derivative"][0] == pytest.approx(rate * FS, rel=1e-4)
    assert (start + 25 - TRIG) / FS <= f["max_derivative_time"][0] <= (start + length - 25 - TRIG) / FS
    assert f["min_derivative"][0] == pytest.approx(-0.01 * FS / 50, rel=1e-4)
    assert (6000 - 25 - TRIG) / FS <= f["min_derivative_time"][0] <= (6000 + 24 - TRIG) / FS


def test_offset_difference_on_noisy_step():
    rng = np.random.default_rng(2)
    x = rng.normal(0.0, 1e-3, (3, N)) + np.where(np.arange(N) >= N // 2, 0.04, -0.01)
    x = x.astype(np.float32)
    f = compute_features(x, FS)
    n8 = N // 8
    expected = x[:, -n8:].mean(1, dtype=np.float64) - x[:, :n8].mean(1, dtype=np.float64)
    np.testing.assert_allclose(f["offset_difference"], expected, atol=1e-9)
    np.testing.assert_allclose(f["offset_difference"], 0.05, atol=2e-4)


def reference_main_parameters(x, fs):
    """Straight numpy transcription of the documented definitions (Cait's calc_main_parameters)."""
    n = len(x)
    offset = x[: n // 8].mean(dtype=np.float64)
    xp = np.pad(x.astype(np.float64) - offset, 50, mode="edge")
    s = (np.convolve(xp, np.ones(50), "same") / 50)[50:-50]
    t_max = int(np.argmax(s))
    h = s[t_max]
    below = np.nonzero(s[:t_max] < 0.2 * h)[0]
    t_zero = below[-1] if below.size else 0
    t_rise = t_zero + np.nonzero(s[t_zero:] > 0.8 * h)[0][0]
    after = np.nonzero(s[t_max:] < 0.368 * h)[0]
    t_end = after[0] + t_max if after.size else n - 1
    t_half = np.nonzero(s[: t_end + 1] > 0.736 * h)[0][-1]
    t_decay = np.nonzero(s[: t_half + 1] > 0.9 * h)[0][-1]
    der = np.diff(s) * fs
    return {"pulse_height": h, "onset": (t_zero - n // 4) / fs, "rise_time": (t_rise - t_zero) / fs,
            "decay_time": (t_end - t_decay) / fs, "peak_time": (t_max - n // 4) / fs,
            "max_derivative": der.max(), "min_derivative": der.min(),
            "max_derivative_time": (np.argmax(der) - n // 4) / fs,
            "min_derivative_time": (np.argmin(der) - n // 4) / fs}


def test_noisy_pulses_match_reference_transcription():
    rng = np.random.default_rng(3)
    n_ev, n = 150, 2048  # not a multiple of the parallel chunk size
    t = (np.arange(n) - n // 4 - rng.integers(-100, 300, n_ev)[:, None]) / FS
    heights = rng.uniform(0.005, 0.5, n_ev)[:, None]
    x = heights * proebst_pulse(t, 0.0, 1.0, 0.5, 2e-3, 2e-4, 8e-3) + rng.normal(0, 1e-3, (n_ev, n)) + 0.2
    x = x.astype(np.float32)
    f = compute_features(x, FS)
    for i in range(n_ev):
        ref = reference_main_parameters(x[i], FS)
        for name, value in ref.items():
            assert f[name][i] == pytest.approx(value, rel=1e-5, abs=1e-9), (i, name)


@pytest.mark.parametrize("n", [8, 37, 64, 101, 257])
def test_short_records_match_reference_transcription(n):
    """Edge padding, the parallel lanes of the running sum and block searches at small N."""
    rng = np.random.default_rng(n)
    k = np.arange(n)
    x = rng.normal(0, 0.01, (5, n)) + np.exp(-0.5 * ((k - n / 2) / (n / 8)) ** 2)
    x = x.astype(np.float32)
    f = compute_features(x, FS)
    for i in range(5):
        for name, value in reference_main_parameters(x[i], FS).items():
            if n <= 50 and name.endswith("derivative_time"):
                continue  # every increment is x[-1] - x[0]: a tie that the reference's rounding breaks
            assert f[name][i] == pytest.approx(value, rel=1e-5, abs=1e-9), (i, name)
        assert f["maximum"][i] == x[i].max() and f["minimum"][i] == x[i].min()


def test_flat_constant_and_noise_records_are_finite():
    rng = np.random.default_rng(4)
    x = np.stack([np.zeros(N), np.full(N, 1.7), -np.ones(N), rng.normal(0, 1e-3, N)]).astype(np.float32)
    f = compute_features(x, FS)
    for name, v in f.items():
        assert np.isfinite(v).all(), name
    for i in range(3):
        assert f["pulse_height"][i] == 0.0
        assert f["variance"][i] == 0.0 and f["skewness"][i] == 0.0 and f["skewness_first"][i] == 0.0
        assert f["slope"][i] == 0.0 and f["offset_difference"][i] == 0.0
        assert f["decay_time"][i] == 0.0 and f["rise_time"][i] == 0.0
        assert f["onset"][i] == pytest.approx(-TRIG / FS)
    assert f["offset"][1] == pytest.approx(1.7, rel=1e-7)
    assert compute_features(np.empty((0, N), np.float32), FS)["pulse_height"].shape == (0,)


@pytest.mark.parametrize("bad, message", [(np.zeros(N, np.float32), "expected a 2-d"),
                                          (np.zeros((2, N), np.int16), "expected float volts"),
                                          (np.zeros((2, 4), np.float32), "too short")])
def test_bad_traces_raise(bad, message):
    with pytest.raises(InputError, match=message):
        compute_features(bad, FS)


def test_bad_sample_frequency_raises():
    with pytest.raises(InputError, match="sample_frequency"):
        compute_features(np.zeros((1, N), np.float32), 0.0)


# ---------------------------------------------------------------- Dataset wrapper

def make_records(n_channels=2, n_events=300, n=1024, fs=FS):
    rng = np.random.default_rng(5)
    t = (np.arange(n) - n // 4) / fs
    trace = rng.normal(0, 1e-3, (n_channels, n_events, n))
    trace += rng.uniform(0.01, 0.3, (n_channels, n_events, 1)) * proebst_pulse(t, 0.0, 1, 0.5, 2e-3, 2e-4, 8e-3)
    kinds = np.where(np.arange(n_events) % 5 == 0, "noise", "particle")
    data = {
        "trace": (("channel", "event", "sample"), trace.astype(np.float32)),
        "trigger_sample": (("event",), np.arange(n_events, dtype=np.int64) * 5000),
        "trigger_time": (("event",), np.arange(n_events) * 5000 / fs),
        "timestamp": (("event",), np.arange(n_events) * 5000 / fs),
        "tpa": (("event",), np.where(kinds == "noise", -1.0, 0.0)),
        "record_kind": (("event",), kinds),
        "trigger_channel": (("event",), np.zeros(n_events, np.int64)),
        "trigger_amplitude": (("channel", "event"), np.ones((n_channels, n_events))),
        "time": (("sample",), t),
    }
    coords = {"channel": [f"ch{i}" for i in range(n_channels)], "event": np.arange(n_events) + 1000}
    attrs = provenance("records", parameters={"threshold": 1e-3}, inputs=["stream.csmpl"], sample_frequency=fs,
                       record_length=n, live_time=1.0, stream_duration=1.0, threshold=[1e-3] * n_channels)
    return xr.Dataset(data, coords=coords, attrs=attrs)


def test_features_dataset_validates_and_round_trips(tmp_path):
    records = make_records()
    calls = []
    ds = features_dataset(records, batch=128, progress=lambda done, total: calls.append((done, total)))
    validate(ds, "features")
    assert calls == [(128, 300), (256, 300), (300, 300)]
    assert list(ds.channel.values) == ["ch0", "ch1"]
    np.testing.assert_array_equal(ds.event.values, records.event.values)
    assert json.loads(ds.attrs["units"]) == FEATURE_UNITS
    assert set(FEATURE_UNITS) <= set(ds.data_vars)
    for name, unit in FEATURE_UNITS.items():
        assert ds[name].dims == ("channel", "event") and ds[name].attrs["units"] == unit
    for c in range(2):
        expected = compute_features(records.trace.values[c], FS)
        for name in FEATURE_UNITS:
            np.testing.assert_array_equal(ds[name].values[c], expected[name])
    np.testing.assert_array_equal(ds.record_kind.values, records.record_kind.values)
    np.testing.assert_array_equal(ds.trigger_sample.values, records.trigger_sample.values)
    assert ds.attrs["sample_frequency"] == FS and ds.attrs["record_length"] == 1024

    path = write_store(ds, tmp_path / "features.zarr", "features")
    back = open_store(path, "features").load()
    xr.testing.assert_equal(back.drop_vars("record_kind"), ds.drop_vars("record_kind"))
    assert list(back.record_kind.values) == list(ds.record_kind.values)
    assert back.attrs["units"] == ds.attrs["units"]


def test_features_dataset_from_lazy_store(tmp_path):
    records = make_records(n_channels=1, n_events=70, n=512)
    path = write_store(records, tmp_path / "records.zarr", "records", event_chunk=32)
    lazy = open_store(path, "records")
    ds = features_dataset(lazy, batch=50)
    expected = compute_features(records.trace.values[0], FS)
    np.testing.assert_array_equal(ds.pulse_height.values[0], expected["pulse_height"])
    validate(ds, "features")


def test_features_dataset_rejects_non_records():
    with pytest.raises(InputError, match="trace"):
        features_dataset(xr.Dataset({"x": (("event",), np.zeros(3))}))
    records = make_records(n_channels=1, n_events=4, n=256)
    records.attrs["record_length"] = 512
    with pytest.raises(InputError, match="record_length"):
        features_dataset(records)
