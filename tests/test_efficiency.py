"""Trigger and cut efficiency of injected pulses on noise of known spectrum."""
import numpy as np
import pytest

from cryopipe.efficiency.injection import (efficiency_curve, erf_efficiency, fit_threshold, inject, noise_records_from_nps,
                                 trigger_and_cut)
from cryopipe.errors import CryopipeError, InputError
from cryopipe.signal.optimum_filter import build_optimum_filter, expected_resolution
from cryopipe.simulate.noise import psd_model
from cryopipe.signal.pulses import pulse_template

FS = 25_000.0
N = 1024


@pytest.fixture(scope="module")
def sev():
    return pulse_template(N, FS, 0.002, 0.0003, 0.01, at_over_an=0.5)


def spectrum(kind):
    f = np.fft.rfftfreq(N, 1 / FS)
    psd = np.full(f.size, 1e-9) if kind == "white" else psd_model(f, 1e-9, 1e-8, 10.0, lines=((1000.0, 20.0, 1e-7),))
    psd[0] = psd[1]
    return psd


def test_inject_adds_scaled_shifted_sev(sev):
    noise = np.random.default_rng(0).normal(0, 1e-3, (5, N))
    out = inject(noise, sev, [0.1, 0.2, 0.3])                                    # in order, no rng
    np.testing.assert_allclose(out - noise[:3], np.array([0.1, 0.2, 0.3])[:, None] * sev, atol=1e-6)
    shifted = inject(np.zeros((1, N)), sev, [1.0, 1.0], shifts=[0, 7])
    np.testing.assert_allclose(shifted[1, 7:], sev[:-7], atol=1e-7)
    picked = inject(noise, sev, np.zeros(5), rng=np.random.default_rng(1))      # without replacement
    assert sorted(map(tuple, np.round(picked, 6))) == sorted(map(tuple, np.round(noise.astype(np.float32), 6)))
    with pytest.raises(InputError, match="noise records"):
        inject(np.zeros((2, N + 1)), sev, [1.0])


@pytest.mark.parametrize("kind", ["white", "coloured"])
def test_trigger_threshold_at_five_sigma(sev, kind):
    psd = spectrum(kind)
    of = build_optimum_filter(sev, psd, FS)
    sigma = expected_resolution(of)
    rng = np.random.default_rng(2)
    noise = noise_records_from_nps(psd, 3000, FS, rng)
    amps = np.arange(1.5, 8.51, 0.25) * sigma
    ds = efficiency_curve(of, sev, noise, amps, 5 * sigma, n_per_amplitude=300, rng=rng)
    x50, width = ds.attrs["trigger_x50"] / sigma, ds.attrs["trigger_width"] / sigma
    # measured: x50 = 4.8-4.9 sigma: the lag search lets near-threshold pulses trigger on a noise
    # excursion next to the true lag, which lowers the 50 % point a little below the threshold
    assert -0.3 < x50 - 5.0 < 0.0
    assert 0.85 < width < 1.15
    assert ds.attrs["trigger_x50_err"] / sigma < 0.05
    assert np.all(ds["n_injected"].values == 300)
    assert np.all(ds["trigger_efficiency"].values[amps > 8 * sigma] > 0.99)
    assert np.all(ds["cut_efficiency"].values[ds["n_triggered"].values > 0] == 1.0)      # no cut


def test_cut_on_fixed_lag_amplitude_gives_exact_erf(sev):
    psd = spectrum("coloured")
    of = build_optimum_filter(sev, psd, FS)
    sigma = expected_resolution(of)
    rng = np.random.default_rng(3)
    noise = noise_records_from_nps(psd, 3000, FS, rng)
    seen = {}

    def cut(records, features):
        seen["keys"] = set(features)
        seen["n"] = records.shape[0]
        return features["of_amplitude"] >= 7 * sigma      # fixed-lag amplitude ~ N(A, sigma) exactly

    amps = np.arange(3.0, 10.01, 0.25) * sigma
    ds = efficiency_curve(of, sev, noise, amps, 4 * sigma, cut=cut, n_per_amplitude=300, rng=rng,
                          kev_per_volt=2.0)
    assert {"pulse_height", "rise_time", "of_amplitude", "of_amplitude_shifted", "of_shift"} <= seen["keys"]
    # P(A_fixed >= 7 sigma) needs the trigger too, which is ~1 there: total = erf step at 7 sigma, width sigma
    assert ds.attrs["total_x50"] / sigma == pytest.approx(7.0, abs=0.12)
    assert ds.attrs["total_width"] / sigma == pytest.approx(1.0, abs=0.12)
    assert ds.attrs["total_plateau"] > 0.97
    np.testing.assert_allclose(ds["energy"].values, 2.0 * amps)
    assert np.all(ds["n_survived"].values <= ds["n_triggered"].values)


def test_fit_threshold_on_binomial_counts():
    rng = np.random.default_rng(4)
    x = np.linspace(0.0, 10.0, 21)
    n = np.full(x.size, 400)
    pulls = []
    for _ in range(40):
        k = rng.binomial(n, erf_efficiency(x, 4.0, 1.5, plateau=0.9))
        r = fit_threshold(x, k, n, fit_plateau=True)
        pulls.append([(r["x50"] - 4.0) / r["x50_err"], (r["width"] - 1.5) / r["width_err"],
                      (r["plateau"] - 0.9) / r["plateau_err"]])
    pulls = np.array(pulls)
    assert np.all(np.abs(pulls.mean(axis=0)) < 0.6)
    assert np.all((pulls.std(axis=0) > 0.6) & (pulls.std(axis=0) < 1.4))
    fixed = fit_threshold(x, rng.binomial(n, erf_efficiency(x, 4.0, 1.5)), n)
    assert fixed["plateau"] == 1.0 and abs(fixed["x50"] - 4.0) < 4 * fixed["x50_err"]


def test_errors(sev):
    of = build_optimum_filter(sev, spectrum("white"), FS)
    noise = np.zeros((4, N), np.float32)
    with pytest.raises(CryopipeError, match="cut returned shape"):
        trigger_and_cut(of, noise + sev, 0.0, cut=lambda r, f: np.ones(2, bool))
    with pytest.raises(CryopipeError, match="does not rise"):
        fit_threshold([1, 2, 3, 4], [5, 5, 5, 5], [10, 10, 10, 10])
    with pytest.raises(InputError, match="amplitudes"):
        efficiency_curve(of, sev, noise, [[1.0]], 1.0)


def test_injected_amplitudes_span_the_run_up_to_its_largest_pulse_so_big_pulse_losses_show(sev):
    """The efficiency stage's amplitudes: the turn-on in resolution steps, then up to 1.2 x the
    largest filter amplitude of the run's particle/saturated records (issue 21: a curve that stops
    at 15 resolutions showed a plateau of 1.0 while large pulses were lost). A cut that loses every
    pulse above 0.1 V must show as a drop of the total efficiency to 0 at the high points."""
    import xarray as xr

    from cryopipe.efficiency.injection import injected_amplitudes, injection_template

    psd = spectrum("white")
    of = build_optimum_filter(sev, psd, FS)
    sigma = expected_resolution(of)
    kinds = np.array(["noise", "particle", "saturated", "particle", "testpulse"])
    largest = 0.5                                                # V, the saturated record's
    records = xr.Dataset({"record_kind": ("event", kinds),
                          "trigger_amplitude": (("channel", "event"), [[np.nan, 0.02, largest, np.nan, 3.0]])},
                         coords={"channel": ["ch0"]})
    cfg = {"n_amplitudes": 12, "max_resolutions": 15.0, "n_high_amplitudes": 6}
    amps = injected_amplitudes(sigma, records, cfg)
    np.testing.assert_allclose(amps[:12], np.linspace(0.5, 15.0, 12) * sigma)
    assert amps.size == 18 and np.all(np.diff(amps) > 0)
    assert amps[-1] == pytest.approx(1.2 * largest)              # not the test pulse's 3 V
    np.testing.assert_allclose(np.diff(np.log(amps[11:])), np.log(1.2 * largest / amps[11]) / 6)
    # with the channel's features store: its pulse heights (saturated records too) set the top
    feats = xr.Dataset({"record_kind": ("event", kinds),
                        "pulse_height": (("channel", "event"), [[0.01, 0.02, 0.8, 0.3, 3.0]])}, coords={"channel": ["ch0"]})
    assert injected_amplitudes(sigma, records, cfg, features=feats)[-1] == pytest.approx(1.2 * 0.8)
    # the injected shape: the SEV with a flat (zero) pre-trigger, unchanged from the trigger on
    noisy = sev + np.random.default_rng(3).normal(0, 0.01, sev.size)
    flat = injection_template(noisy, N // 4)
    assert np.all(flat[: N // 4] == 0) and np.array_equal(flat[N // 4:], noisy[N // 4:])
    # no larger pulses than the turn-on: the turn-on alone
    small = records.assign(trigger_amplitude=(("channel", "event"), [[np.nan, 2 * sigma, 3 * sigma, np.nan, 3.0]]))
    np.testing.assert_allclose(injected_amplitudes(sigma, small, cfg), np.linspace(0.5, 15.0, 12) * sigma)
    noise = noise_records_from_nps(psd, 500, FS, np.random.default_rng(4))
    ds = efficiency_curve(of, sev, noise, amps, 5 * sigma, n_per_amplitude=50, rng=np.random.default_rng(5),
                          cut=lambda rec, feats: np.asarray(feats["of_amplitude"]) < 0.1)
    high = amps > 0.11
    assert high.sum() >= 2 and np.all(ds["efficiency"].values[high] == 0.0)
    assert np.all(ds["efficiency"].values[(amps > 8 * sigma) & (amps < 0.09)] > 0.95)
