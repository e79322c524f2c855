"""The oracle of tools/experiments/independent_diagnosis.py on records whose truth is written here:
white noise, a known double-exponential pulse, heights in units of the filter's resolution."""
import collections

import numpy as np
import pytest

from tool_util import load_tool


@pytest.fixture(scope="module")
def diagnosis():
    return load_tool("tools/experiments/independent_diagnosis.py")


N, FS = 1024, 10e3


def template():
    t = np.arange(N) - N // 4
    p = np.where(t > 0, np.exp(-t / 40.0) - np.exp(-t / 4.0), 0.0)
    return p / p.max()


def white_resolution(sev, sigma):
    """sigma_OF of a max-1 template in white noise of per-sample rms `sigma` (DC excluded)."""
    s = np.fft.rfft(sev)
    w = np.full(s.size, 2.0)
    w[0], w[-1] = 0.0, 1.0
    return sigma / np.sqrt(np.sum(w * np.abs(s) ** 2) / N)


def records_with(heights, rng, sigma=1.0, shift=0):
    x = rng.normal(0.0, sigma, (len(heights), N))
    return x + np.asarray(heights)[:, None] * np.roll(template(), shift)


def run(diagnosis, snr_pulses, keep_noise_share, rng):
    sev, sigma = template(), 1.0
    res = white_resolution(sev, sigma)
    n_noise, n_art = 400, 200
    pulses = records_with(np.asarray(snr_pulses) * res, rng, shift=3)
    noise = records_with(np.zeros(n_noise), rng)
    artefact = records_with(np.zeros(n_art), rng) + np.linspace(0, 50, N)   # a drift: a rejected class
    x = np.vstack([pulses, noise, artefact])
    cls = np.array(["event_pulse"] * len(pulses) + ["noise"] * n_noise + ["reset"] * n_art)
    d = {"event_class": cls, "label": cls == "event_pulse", "saturated": np.zeros(cls.size, bool),
         "snr": np.r_[snr_pulses, np.zeros(n_noise + n_art)]}
    keep = np.zeros(cls.size, bool)
    keep[len(pulses):len(pulses) + int(keep_noise_share * n_noise)] = True      # the model's noise survival
    acc = collections.defaultdict(list)
    extra = records_with(np.zeros(400), np.random.default_rng(1))
    diagnosis._oracle_detector(x, [sev], extra, FS, 8, keep, d, acc)
    return acc


def test_oracle_keeps_strong_pulses_and_rejects_noise_at_the_model_rate(diagnosis):
    rng = np.random.default_rng(0)
    acc = run(diagnosis, np.full(300, 20.0), 0.02, rng)
    model, oracle = acc[("event_pulse", ">= 10 (all)")][0]
    assert model == 0.0                      # the "model" here keeps no pulse
    assert oracle > 0.99                     # 20 sigma: every pulse over a 2 % noise threshold
    assert acc["BA model"][0] == pytest.approx(0.5 * (0 + 1 - 8 / 600))
    assert acc["BA ceiling"][0] > 0.99
    assert acc["BA model + oracle below SNR 10"][0] == acc["BA model"][0]    # no pulse below SNR 10


def test_oracle_survival_at_threshold_snr_follows_the_gaussian_tail(diagnosis):
    """Threshold at the 90 % quantile of the noise's largest amplitude over 17 lags: between the
    one-lag quantile (1.28 sigma) and the Bonferroni bound for 17 independent lags (2.52 sigma), so
    an SNR-3 pulse passes with probability between Phi(3 - 2.52) = 0.68 and about Phi(3 - 1.28) = 0.96."""
    rng = np.random.default_rng(2)
    acc = run(diagnosis, np.r_[np.full(400, 3.0), np.full(400, 1.0)], 0.10, rng)
    (_, at3), = acc[("event_pulse", "3-5")]
    assert 0.62 < at3 < 0.99
    ba_low = acc["BA model + oracle below SNR 10"][0]
    assert acc["BA model"][0] < ba_low < acc["BA ceiling"][0] + 1e-9


def test_block_means_view_keeps_a_pulse_at_its_height_and_scales_the_lags(diagnosis):
    """1024 samples -> 512 block means of 2: the max-1 template stays max 1, sample frequency and
    lag window halve (rounded up, plus one), records <= 512 samples pass unchanged."""
    sev = template()
    x = records_with(np.full(3, 50.0), np.random.default_rng(3), sigma=0.0)
    bx, (bt,), bn, fs, jitter = diagnosis._to_block_means(x, [sev], x[:2], FS, 8)
    assert bx.shape == (3, 512) and bn.shape == (2, 512)
    assert bt.max() == pytest.approx(1.0) and fs == FS / 2 and jitter == 5
    np.testing.assert_allclose(bx / bx.max(axis=1, keepdims=True), np.broadcast_to(bt, bx.shape), rtol=1e-5)
    np.testing.assert_allclose(bx[0, ::64], 0.5 * (x[0, ::128] + x[0, 1::128]), rtol=1e-5)
    same = diagnosis._to_block_means(bx, [bt], bn, fs, jitter)
    assert same[0] is bx and same[3] == fs and same[4] == jitter
