"""Labelled record simulator: each event class has its defining property; noise, saturation, ADC, labels."""
import numpy as np
import pytest
import scipy.fft
from scipy.ndimage import median_filter

from cryopipe.errors import InputError
from cryopipe.io.stores import validate
from cryopipe.simulate import records as R
from cryopipe.simulate.classes import ClassOptions, exp_sum_peak
from cryopipe.signal.optimum_filter import expected_resolutions
from cryopipe.signal.spectra import periodogram_psd
from cryopipe.simulate.noise import psd_model
from cryopipe.signal.pulses import proebst_pulse, pulse_template
from cryopipe.simulate.saturation import saturation_curve
from cryopipe.simulate.records import (DEFAULT_ACCEPTED, EVENT_CLASSES,
                                       simulate_detector_records, simulate_universal_records)

N, FS = 2048, 25000.0
Q = N // 4
SEV = pulse_template(N, FS, 2e-3, 0.2e-3, 8e-3, at_over_an=0.5)
NPS = psd_model(scipy.fft.rfftfreq(N, 1 / FS), 1e-10, 1e-9, 10.0, ((50.0, 2.0, 1e-8),))
SIGMA_BL = np.sqrt(NPS[1:].sum() * FS / N)
OPTS = ClassOptions(spike_height=(20.0, 300.0), jump_height=(20.0, 100.0), ramp_level=(30.0, 300.0),
                    decaying_level=(50.0, 1000.0))


@pytest.fixture(scope="module")
def detector_set():
    return simulate_detector_records({c: 30 for c in EVENT_CLASSES}, SEV, NPS, FS, np.random.default_rng(7),
                                     snr_range=(100.0, 300.0), options=OPTS, workers=2)


def records_of(ds, name):
    sel = ds.sel(event=ds.event_class == name).isel(channel=0)
    return sel.trace.values.astype(np.float64), sel


def shifted_sev(onset_sample):
    """SEV placed with its onset at a (fractional) sample, zero before it (independent of the kernel)."""
    return np.interp(np.arange(N) - onset_sample + Q, np.arange(N), SEV, left=0.0, right=SEV[-1])


def test_class_names_and_default_labels():
    assert set(EVENT_CLASSES) == {
        "event_pulse", "noise", "decaying_baseline", "temperature_rise", "spike", "squid_jump", "reset",
        "carrier_event", "tail_event", "decaying_baseline_with_event_pulse", "decaying_baseline_with_tail_event",
        "pile_up", "early_or_late_trigger"}
    assert DEFAULT_ACCEPTED == {"event_pulse", "carrier_event", "tail_event"}


def test_store_schema_and_labels(detector_set):
    ds = validate(detector_set, "simset")
    assert ds.trace.dtype == np.float32 and ds.trace.shape == (1, 30 * len(EVENT_CLASSES), N)
    assert ds.attrs["sample_frequency"] == FS and ds.attrs["record_length"] == N
    cls = ds.event_class.values
    assert np.array_equal(ds.label.values[0], np.isin(cls, list(DEFAULT_ACCEPTED)))
    assert len(set(cls[:30])) > 3  # shuffled, not class blocks


def test_custom_label_mapping_and_class_blocks():
    ds = simulate_detector_records({"noise": 3, "pile_up": 2, "event_pulse": 2}, SEV, NPS, FS,
                                   np.random.default_rng(1), accepted={"noise": True, "event_pulse": False},
                                   shuffle=False)
    assert list(ds.event_class.values) == ["event_pulse"] * 2 + ["noise"] * 3 + ["pile_up"] * 2
    assert list(ds.label.values[0]) == [False] * 2 + [True] * 3 + [False] * 2


def test_reproducible_by_seed_and_independent_of_workers():
    counts = {c: 3 for c in EVENT_CLASSES}
    a = simulate_detector_records(counts, SEV, NPS, FS, np.random.default_rng(3), workers=1)
    b = simulate_detector_records(counts, SEV, NPS, FS, np.random.default_rng(3), workers=2)
    c = simulate_detector_records(counts, SEV, NPS, FS, np.random.default_rng(4), workers=1)
    assert np.array_equal(a.trace.values, b.trace.values)
    assert np.array_equal(a.event_class.values, b.event_class.values)
    assert not np.array_equal(a.trace.values, c.trace.values)
    u1 = simulate_universal_records(counts, 1024, np.random.default_rng(5), workers=1)
    u2 = simulate_universal_records(counts, 1024, np.random.default_rng(5), workers=2)
    assert np.array_equal(u1.trace.values, u2.trace.values)


def test_event_pulse_onset_and_height(detector_set):
    x, sel = records_of(detector_set, "event_pulse")
    onset = sel.onset.values
    assert np.all(np.abs(onset) <= N / 64 / FS)
    height = sel.pulse_height.values
    base = np.median(x[:, : Q - N // 16], axis=1)
    assert np.allclose(x.max(axis=1) - base, height, atol=5 * SIGMA_BL, rtol=0.02)
    # the whole record is the SEV at the true onset, scaled to the true height, plus noise of the NPS's rms
    model = np.stack([h * shifted_sev(Q + o * FS) for h, o in zip(height, onset)])
    residual = x - model - base[:, None]
    assert np.sqrt(np.mean(residual**2)) < 3 * SIGMA_BL
    assert np.all(sel.n_pulses.values == 1)
    assert np.allclose(sel.snr.values, height / sel.resolution.values, rtol=1e-5)
    assert sel.snr.values.min() >= 100 and sel.snr.values.max() <= 300


def test_early_or_late_trigger_far_from_quarter(detector_set):
    x, sel = records_of(detector_set, "early_or_late_trigger")
    assert np.all(np.abs(sel.onset.values) >= N / 8 / FS - 1e-12)
    peak_expected = Q + sel.onset.values * FS + (np.argmax(SEV) - Q)
    assert np.all(np.abs(np.argmax(x, axis=1) - peak_expected) < 15)
    assert np.any(sel.onset.values < 0) and np.any(sel.onset.values > 0)


def test_pile_up_has_several_visible_pulses(detector_set):
    x, sel = records_of(detector_set, "pile_up")
    n = sel.n_pulses.values
    onsets = sel.pulse_onsets.values * FS + Q
    heights = sel.pulse_heights.values
    assert np.all((n >= 2) & (n <= 5))
    assert np.array_equal(np.sum(np.isfinite(onsets), axis=1), n)
    assert n.min() == 2 and n.max() == 5
    assert np.nanmin(onsets) >= 0 and np.nanmax(onsets) < N
    assert np.all(np.nanmin(np.diff(onsets, axis=1), axis=1) >= N / 128 - 1e-9)
    assert np.allclose(sel.pulse_height.values, heights.max(axis=1))
    # the record was triggered by one of its pulses: one onset lies at N/4 within the trigger jitter
    assert np.all(np.nanmin(np.abs(onsets - Q), axis=1) <= N / 64 + 1e-9)
    for rec, on, h, k in zip(x, onsets, heights, n):  # the baseline is at 0 V
        pulses = [hj * shifted_sev(oj) for oj, hj in zip(on[:k], h[:k])]
        assert np.sqrt(np.mean((rec - sum(pulses)) ** 2)) < 4 * SIGMA_BL
        # the second pulse in time is visible: without it the residual shows a bump of its height
        rest = rec - sum(pulses) + pulses[1]
        i0 = int(on[1])
        assert rest[i0: i0 + 3 * (np.argmax(SEV) - Q)].max() == pytest.approx(h[1], abs=6 * SIGMA_BL, rel=0.03)


def test_spike_is_short_excursion(detector_set):
    x, _ = records_of(detector_set, "spike")
    for rec in x:
        dev = np.abs(rec - median_filter(rec, 31))
        hot = np.nonzero(dev > 10 * SIGMA_BL)[0]
        assert 1 <= hot.size <= 4 and hot[-1] - hot[0] == hot.size - 1
        assert N // 16 <= hot[0] < N - N // 16


def eighth_levels(x):
    return np.median(x[:, : N // 8], axis=1), np.median(x[:, -N // 8:], axis=1)


def step_position(x):
    smooth = median_filter(x, size=(1, 9))
    return np.argmax(np.abs(smooth[:, 8:] - smooth[:, :-8]), axis=1) + 4


def test_squid_jump_and_reset_are_steps(detector_set):
    jumps, _ = records_of(detector_set, "squid_jump")
    resets, _ = records_of(detector_set, "reset")
    first, last = eighth_levels(jumps)
    jump = last - first
    assert np.all(np.abs(jump) > 15 * SIGMA_BL) and np.any(jump > 0) and np.any(jump < 0)
    first, last = eighth_levels(resets)
    reset = last - first
    assert np.all(reset > 250 * SIGMA_BL) and reset.min() > np.abs(jump).max()
    for x in (jumps, resets):
        pos = step_position(x)
        assert np.all((pos >= N // 8 - 4) & (pos <= N - N // 8 + 4))


def test_temperature_rise_is_linear_upward(detector_set):
    x, _ = records_of(detector_set, "temperature_rise")
    t = np.arange(N)
    for rec in x:
        slope, icpt = np.polyfit(t, rec, 1)
        assert slope * N > 25 * SIGMA_BL
        assert np.std(rec - (slope * t + icpt)) < 3 * SIGMA_BL


def test_decaying_baseline_decreases_without_rise(detector_set):
    x, sel = records_of(detector_set, "decaying_baseline")
    blocks = x.reshape(len(x), 32, -1).mean(axis=2)
    assert np.all(blocks[:, 0] - blocks[:, -1] > 20 * SIGMA_BL)
    assert np.all(np.diff(blocks, axis=1) < 2 * SIGMA_BL)
    assert np.all(sel.n_pulses.values == 0) and np.all(sel.pulse_height.values == 0)
    assert np.all(np.isnan(sel.onset.values))
    assert np.all(sel.pulse_onsets.values[:, 0] < -Q / FS)  # the pulse happened before the window
    xp, selp = records_of(detector_set, "decaying_baseline_with_event_pulse")
    assert np.all(selp.n_pulses.values == 1) and np.all(np.abs(selp.onset.values) <= N / 64 / FS)
    assert not selp.label.values.any()


def test_carrier_faster_and_tail_slower_than_event_pulse(detector_set):
    def normalised(name):
        x, sel = records_of(detector_set, name)
        return (x - np.median(x[:, : Q - N // 16], axis=1)[:, None]) / sel.pulse_height.values[:, None]

    width = [np.sum(normalised(c) > 0.5, axis=1) for c in ("event_pulse", "carrier_event")]
    assert width[1].max() < width[0].min()
    late = [normalised(c)[:, -N // 4:].mean(axis=1) for c in ("event_pulse", "tail_event")]
    assert np.median(late[1]) > np.median(late[0]) + 0.02


def test_noise_records_follow_the_nps():
    ds = simulate_detector_records({"noise": 400}, SEV, NPS, FS, np.random.default_rng(11),
                                   options=ClassOptions(drift=0.0))
    psd = periodogram_psd(ds.trace.values[0], FS)
    assert np.median(psd[1:-1] / NPS[1:-1]) == pytest.approx(1.0, abs=0.05)
    # fixed-lag optimum-filter amplitude of noise has the std of the stated resolution (NOTES.md convention)
    x = scipy.fft.rfft(ds.trace.values[0].astype(np.float64), axis=-1)
    s = scipy.fft.rfft(SEV)
    j = NPS * np.where((np.arange(NPS.size) == 0) | (np.arange(NPS.size) == N // 2), 1.0, 0.5)
    j[0] = np.inf
    w = np.sum(np.r_[0, np.full(N // 2 - 1, 2.0), 1.0] * np.abs(s) ** 2 / (N * FS * j))
    amp = scipy.fft.irfft(np.conj(s) * x / j, n=N, axis=-1)[:, 0] / (FS * w)
    assert np.std(amp) == pytest.approx(float(ds.resolution[0, 0]), rel=0.1)
    assert float(ds.resolution[0, 0]) == pytest.approx(1 / np.sqrt(w), rel=1e-9)


def test_resolution_argument_rescales_noise():
    ds = simulate_detector_records({"noise": 200}, SEV, NPS, FS, np.random.default_rng(2), resolution=1e-3,
                                   options=ClassOptions(drift=0.0))
    ratio = 1e-3 / expected_resolutions(SEV, NPS, FS)
    assert float(ds.baseline_rms[0, 0]) == pytest.approx(SIGMA_BL * ratio, rel=1e-9)
    assert np.std(ds.trace.values) == pytest.approx(SIGMA_BL * ratio, rel=0.05)


def test_saturation_curve_shape():
    x = np.linspace(-1.0, 50.0, 20001)
    for nu in (0.5, 1.0, 2.0):
        f = saturation_curve(x, 2.0, nu=nu)
        assert saturation_curve(0.0, 2.0, nu=nu) == pytest.approx(0.0, abs=1e-12)
        assert (saturation_curve(1e-6, 2.0, nu=nu) - saturation_curve(-1e-6, 2.0, nu=nu)) / 2e-6 == pytest.approx(1,
                                                                                                                  1e-6)
        assert np.all(np.diff(f) >= 0) and f.max() <= 2.0 and f[-1] > 1.99
        assert saturation_curve(-1e4, 2.0, nu=nu) == pytest.approx(-2.0 / (2 ** (1 / nu) - 1), rel=1e-6)


def test_saturation_kernel_matches_curve_and_never_exceeds_ceiling():
    for nu in (0.5, 1.0, 3.0):
        x = np.concatenate([np.linspace(-3.0, 30.0, 5001), np.linspace(-0.05, 0.05, 5001)])
        buf = x.copy()
        R._saturate(buf, np.empty_like(buf), 1.5, nu)
        assert np.allclose(buf, saturation_curve(x, 1.5, nu=nu), rtol=1e-9, atol=1e-13)
        assert buf.max() <= 1.5
    ceiling = 30 * expected_resolutions(SEV, NPS, FS)
    step = ceiling / 200.3
    ds = simulate_detector_records({"event_pulse": 20, "pile_up": 10, "noise": 5, "tail_event": 10}, SEV, NPS, FS,
                                   np.random.default_rng(5), snr_range=(10, 1000), saturation=ceiling, adc_step=step)
    tr = ds.trace.values[0]
    ceil = ds.saturation.values[0, 0]
    assert ceil <= ceiling and ceil == pytest.approx(200 * step)
    assert tr.max() <= ceil
    big = ds.pulse_height.values[0] > 3 * ceiling
    assert big.sum() > 3 and np.all(tr[big].max(axis=1) > 0.9 * ceil)


def test_adc_rounding_gives_multiples_of_the_step():
    step = 0.4 * SIGMA_BL
    ds = simulate_detector_records({c: 2 for c in EVENT_CLASSES}, SEV, NPS, FS, np.random.default_rng(6),
                                   adc_step=step)
    counts = ds.trace.values.astype(np.float64) / step
    assert np.allclose(counts, np.round(counts), atol=1e-3)
    assert np.unique(np.round(counts)).size > 20


def test_universal_mode_spans_parameter_space():
    counts = {c: 30 for c in EVENT_CLASSES}
    ds = validate(simulate_universal_records(counts, 4096, np.random.default_rng(9), snr_range=(1, 3000)), "simset")
    assert ds.trace.shape == (1, 30 * len(EVENT_CLASSES), 4096) and np.isfinite(ds.trace.values).all()
    fs = ds.sample_frequency.values[0]
    assert fs.min() >= 10e3 and fs.max() <= 50e3 and fs.min() < 15e3 and fs.max() > 35e3
    assert ds.tau_in.values.min() < 1e-4 and ds.tau_n.values.max() > 5e-3 and ds.tau_n.values.min() < 1e-3
    assert np.all(ds.tau_in.values < ds.tau_n.values)
    snr = ds.snr.values[0][ds.n_pulses.values[0] > 0]
    assert snr.min() < 3 and snr.max() > 1000
    res = ds.resolution.values[0]
    assert res.max() / res.min() > 10
    sat = np.isfinite(ds.saturation.values[0])
    assert 0.5 < sat.mean() < 0.9
    pulse = ds.n_pulses.values[0] > 0
    tes_only = sat & ~np.isin(ds.event_class.values, ["spike", "squid_jump", "reset"])  # read-out effects
    assert np.all(ds.trace.values[0][tes_only].max(axis=1) <= ds.saturation.values[0][tes_only])
    assert np.array_equal(ds.label.values[0], np.isin(ds.event_class.values, list(DEFAULT_ACCEPTED)))
    assert pulse.sum() > 100


def test_universal_event_pulse_matches_its_proebst_shape():
    ds = simulate_universal_records({"event_pulse": 20}, 4096, np.random.default_rng(12), snr_range=(500, 1000),
                                    ranges={"saturation_probability": 0.0}, sample_frequency=25e3)
    d = ds.isel(channel=0)
    t = (np.arange(4096) - 1024) / 25e3
    for i in range(20):
        shape = proebst_pulse(t, float(d.onset[i]), 1.0, float(d.at_over_an[i]), float(d.tau_n[i]),
                              float(d.tau_in[i]), float(d.tau_t[i]))
        fine = proebst_pulse(np.linspace(0, 0.2, 200001), 0.0, 1.0, float(d.at_over_an[i]), float(d.tau_n[i]),
                             float(d.tau_in[i]), float(d.tau_t[i])).max()
        model = float(d.pulse_height[i]) * shape / fine
        rec = d.trace.values[i].astype(np.float64)
        assert np.std(rec - model) < 3 * float(d.baseline_rms[i])
        fitted = np.dot(rec, shape) / np.dot(shape, shape) * fine
        assert fitted == pytest.approx(float(d.pulse_height[i]), rel=0.03)


def test_exp_sum_peak_matches_dense_grid():
    taus = np.array([[10.0, 1.0, 40.0], [3.0, 0.2, 30.0]])
    coefs = np.array([[0.5, -1.0, 0.5], [-1.0, -1.0, 2.0]])
    t, peak = exp_sum_peak(taus, coefs)
    grid = np.linspace(0, 400, 400001)
    dense = (coefs[:, None, :] * np.exp(-grid[None, :, None] / taus[:, None, :])).sum(-1)
    assert np.allclose(peak, dense.max(axis=1), rtol=1e-9)
    assert np.allclose(t, grid[dense.argmax(axis=1)], atol=2e-3)


def test_bad_inputs_raise():
    with pytest.raises(InputError, match="unknown event classes"):
        simulate_detector_records({"glitch": 3}, SEV, NPS, FS, np.random.default_rng(0))
    with pytest.raises(InputError, match="noise power spectrum has shape"):
        simulate_detector_records({"noise": 3}, SEV, NPS[:-1], FS, np.random.default_rng(0))
    with pytest.raises(InputError, match="accepted"):
        simulate_detector_records({"noise": 3}, SEV, NPS, FS, np.random.default_rng(0), accepted={"glitch"})
    with pytest.raises(InputError, match="ranges"):
        simulate_universal_records({"noise": 3}, 1024, np.random.default_rng(0), ranges={"tau": (1, 2)})


def test_wide_universal_records():
    """Issue 15's wide distribution: finite records, tau_in/tau_n in either order up to 0.9 tau_t,
    persistent-step tails and pulse-then-drop resets, low-passed noise."""
    from cryopipe.simulate.classes import WIDE_OPTIONS, ClassOptions
    from cryopipe.simulate.records import WIDE_RANGES

    n = 2048
    ds = simulate_universal_records({"event_pulse": 60, "tail_event": 60, "reset": 60}, n,
                                    np.random.default_rng(4), ranges=WIDE_RANGES,
                                    options=ClassOptions(**WIDE_OPTIONS), snr_range=(200.0, 300.0), shuffle=False)
    tr = ds["trace"].values[0].astype(float)
    assert np.isfinite(tr).all() and ds["wide"].values.all()
    tau_n, tau_in, tau_t = (ds[k].values[0] for k in ("tau_n", "tau_in", "tau_t"))
    assert np.all(tau_n <= 0.9 * tau_t * (1 + 1e-9) + 1e-12) and np.any(tau_in > tau_n)
    assert np.array_equal(ds["an_sign"].values[0] < 0, tau_n < tau_in)
    assert np.isfinite(ds["lowpass"].values[0]).any() and np.isinf(ds["lowpass"].values[0]).any()
    cls = ds["event_class"].values
    pulses = tr[cls == "event_pulse"]
    peak = pulses.max(axis=1)
    assert np.all(peak > 0)                                   # every pulse points up, whatever tau order
    ends = tr[:, -n // 16:].mean(axis=1) / tr.max(axis=1)
    # some tails end on a persistent step; some resets end below the baseline (pulse, then drop)
    assert np.mean(ends[cls == "tail_event"] > 0.1) > 0.2
    assert np.mean(tr[cls == "reset", -n // 16:].mean(axis=1) < -0.1 * np.abs(tr[cls == "reset"]).max(axis=1)) > 0.2


def test_wide_off_keeps_the_original_stream():
    a = simulate_universal_records({"event_pulse": 5, "noise": 5}, 512, np.random.default_rng(9))
    b = simulate_universal_records({"event_pulse": 5, "noise": 5}, 512, np.random.default_rng(9),
                                   ranges={"wide_probability": 0.0})
    assert np.array_equal(a["trace"].values, b["trace"].values) and "wide" not in a
