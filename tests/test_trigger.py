"""Stream trigger against ground truth: simulated pulses of known height/onset in noise of known PSD."""
from __future__ import annotations

import numpy as np
import pytest

from cryopipe.errors import CryopipeError, InputError
from cryopipe.trigger.filters import (filter_block, filter_stream, filtered_noise_sigma, generic_kernel,
                              matched_kernel)
from cryopipe.io.csmpl import open_csmpl, write_csmpl
from cryopipe.io.stores import open_store, validate, write_store
from cryopipe.signal.spectra import noise_from_psd
from cryopipe.simulate.noise import psd_model
from cryopipe.signal.pulses import generic_template, pulse_template
from cryopipe.trigger.scan import (live_time, merge_triggers, noise_trigger_samples, records_dataset,
                              scan_channel, select_triggers, side_lobe_envelope, valid_windows)

FS = 25_000.0
T_LEN = 512                      # template / kernel length (samples), onset at 128
N_STREAM = 2**21
SPACING = 2048                   # samples between simulated pulses
HOLDOFF = 256


def template():
    return pulse_template(T_LEN, FS, tau_n=2e-3, tau_in=2e-4, tau_t=4e-3, at_over_an=0.3)


def coloured_psd(n):
    freqs = np.fft.rfftfreq(n, 1 / FS)
    white = (3e-3) ** 2 / (FS / 2)                # ~3 mV white noise
    return psd_model(freqs, white, one_over_f=10 * white, f_ref=10.0, lines=((50.0, 1.0, 50 * white),))


def filtered_sigma_truth(psd, kernel, n):
    """Expected std (V) of the filtered noise: sum_k PSD_k |K_k|^2 df, K the kernel's DFT."""
    gain = np.abs(np.fft.rfft(kernel, n)) ** 2
    return float(np.sqrt(np.sum(psd * gain) * FS / n))


def python_trigger(y, threshold, holdoff):
    """Independent reference of the trigger rule on a whole filtered array: the first maximum of
    every excursion above threshold, taken by descending value; none closer than `holdoff` samples
    to a larger accepted one."""
    above = np.r_[False, y > threshold, False].astype(np.int8)
    edges = np.flatnonzero(np.diff(above))
    candidates = [int(a + np.argmax(y[a:b])) for a, b in zip(edges[::2], edges[1::2])]
    accepted = []
    for t in sorted(candidates, key=lambda t: (-y[t], t)):
        if all(abs(t - u) >= holdoff for u in accepted):
            accepted.append(t)
    return np.array(sorted(accepted), dtype=np.int64)


@pytest.fixture(scope="module")
def pulse_stream(tmp_path_factory):
    """Coloured noise plus template pulses at known onsets, amplitudes in filtered-noise sigmas."""
    rng = np.random.default_rng(7)
    psd = coloured_psd(N_STREAM)
    kernel, anchor = matched_kernel(template())
    sigma = filtered_sigma_truth(psd, kernel, N_STREAM)
    x = noise_from_psd(psd, N_STREAM, FS, rng).astype(np.float64)
    onsets = np.arange(1000, N_STREAM - T_LEN, SPACING) + rng.integers(-200, 200, size=1)
    levels = np.array([3.0, 3.5, 4.0, 4.5, 5.0, 5.5, 6.0, 6.5, 7.0, 7.5, 8.5, 10.0, 20.0])
    amp_sigma = levels[np.arange(onsets.size) % levels.size]
    for n0, a in zip(onsets, amp_sigma):
        x[n0 - T_LEN // 4 : n0 - T_LEN // 4 + T_LEN] += a * sigma * template()
    path = tmp_path_factory.mktemp("pulses") / "ch0.csmpl"
    write_csmpl(path, x)
    stream = open_csmpl([path], FS, 1024)
    return dict(stream=stream, kernel=kernel, anchor=anchor, sigma=sigma, onsets=onsets, amp_sigma=amp_sigma,
                levels=levels, psd=psd)


@pytest.fixture(scope="module")
def pulse_triggers(pulse_stream):
    """Triggers at 5 sigma (true filtered-noise sigma) with the matched kernel."""
    s = pulse_stream
    return scan_channel(s["stream"], 0, s["kernel"], s["anchor"], 5 * s["sigma"], HOLDOFF)


def match(onsets, samples, tol):
    """Index of the nearest trigger for each onset, -1 where none within tol samples."""
    pos = np.clip(np.searchsorted(samples, onsets), 1, max(samples.size - 1, 1))
    near = np.where(np.abs(samples[pos - 1] - onsets) <= np.abs(samples[pos] - onsets), pos - 1, pos)
    return np.where(np.abs(samples[near] - onsets) <= tol, near, -1)


# ---------------------------------------------------------------- kernels and filtering

def test_matched_kernel_gives_height_at_onset_and_ignores_baseline():
    t = template()
    kernel, anchor = matched_kernel(t)
    assert anchor == T_LEN // 4
    assert abs(kernel.sum()) < 1e-12
    x = np.full(4000, 0.37)                       # baseline offset must not matter
    n0, height = 1500, 0.0123
    x[n0 - anchor : n0 - anchor + T_LEN] += height * t
    y = filter_block(x, kernel, anchor)
    assert y[n0] == pytest.approx(height, rel=1e-9)
    assert abs(y[100]) < 1e-12                    # flat baseline far from the pulse -> 0


def test_generic_kernel_truncated_and_exact_on_generic_pulse():
    n_rec = 16384
    kernel, anchor = generic_kernel(n_rec)
    assert kernel.size < n_rec // 3                # truncated for speed
    g = generic_template(n_rec)
    x = np.zeros(3 * n_rec)
    n0 = n_rec
    x[n0 - n_rec // 4 : n0 - n_rec // 4 + n_rec] = 0.5 * g
    y = filter_block(x, kernel, anchor)
    assert y[n0] == pytest.approx(0.5, rel=1e-9)
    assert abs(int(np.argmax(y)) - n0) <= 2


def test_bad_kernel_and_channel_raise():
    with pytest.raises(InputError, match="template is constant"):
        matched_kernel(np.ones(100))
    with pytest.raises(InputError, match="anchor 4 is not an index"):
        filter_block(np.zeros(10), np.ones(4), 4)


@pytest.mark.parametrize("chunk", [997, 4099, 2**20])
def test_chunked_filter_equals_whole_array(pulse_stream, chunk):
    s = pulse_stream
    stream = s["stream"]
    ref = filter_block(stream.read(0, stream.n_samples)[0], s["kernel"], s["anchor"])
    parts = list(filter_stream(stream, 0, s["kernel"], s["anchor"], chunk_size=chunk))
    starts = [a for a, _ in parts]
    y = np.concatenate([v for _, v in parts])
    assert y.size == stream.n_samples and starts[0] == 0
    assert np.all(np.diff(starts) == [v.size for _, v in parts[:-1]])
    assert np.max(np.abs(y - ref)) < 1e-5 * np.max(np.abs(ref))
    # a sub-range gives the same values as the whole-stream filter (borders included)
    sub = np.concatenate([v for _, v in filter_stream(stream, 0, s["kernel"], s["anchor"], chunk_size=chunk,
                                                      start=12_345, stop=54_321)])
    assert np.max(np.abs(sub - ref[12_345:54_321])) < 1e-5 * np.max(np.abs(ref))
    with pytest.raises(InputError, match="channel 3 not in stream"):
        next(filter_stream(stream, 3, s["kernel"], s["anchor"]))


def test_filtered_noise_sigma_matches_psd_despite_pulses(tmp_path):
    """Robust sigma of the filtered stream equals the PSD prediction, though 1 Hz of 50 sigma pulses
    inflate the plain standard deviation."""
    rng = np.random.default_rng(21)
    n = 2**20
    psd = coloured_psd(n)
    kernel, anchor = matched_kernel(template())
    truth = filtered_sigma_truth(psd, kernel, n)
    x = noise_from_psd(psd, n, FS, rng).astype(np.float64)
    for n0 in np.arange(1000, n - T_LEN, int(FS)) + rng.integers(0, 5000):
        x[n0 - anchor : n0 - anchor + T_LEN] += 50 * truth * template()
    write_csmpl(tmp_path / "s.csmpl", x)
    stream = open_csmpl([tmp_path / "s.csmpl"], FS, 1024)
    assert np.std(filter_block(x, kernel, anchor)) > 1.2 * truth
    for n_chunks, chunk in [(4, 2**16), (8, 2**18)]:
        est = filtered_noise_sigma(stream, 0, kernel, anchor, n_chunks=n_chunks, chunk_size=chunk)
        assert est == pytest.approx(truth, rel=0.03)
    write_csmpl(tmp_path / "neg.csmpl", -x)
    neg = open_csmpl([tmp_path / "neg.csmpl"], FS, 1024)
    est = filtered_noise_sigma(neg, 0, kernel, anchor, n_chunks=4, chunk_size=2**16, polarity=-1)
    assert est == pytest.approx(truth, rel=0.03)


# ---------------------------------------------------------------- trigger

def test_efficiency_and_threshold_point(pulse_stream, pulse_triggers):
    s = pulse_stream
    samples, _ = pulse_triggers
    found = match(s["onsets"], samples, tol=HOLDOFF // 2) >= 0
    eff = np.array([found[s["amp_sigma"] == lv].mean() for lv in s["levels"]])
    assert found[s["amp_sigma"] >= 7.5].mean() >= 0.99
    # 50 % point by linear interpolation of efficiency vs amplitude: at the 5 sigma threshold
    i = int(np.flatnonzero(eff >= 0.5)[0])
    a50 = np.interp(0.5, eff[i - 1 : i + 1], s["levels"][i - 1 : i + 1])
    assert abs(a50 - 5.0) < 0.5
    assert eff[0] < 0.2                          # 3 sigma pulses are mostly missed
    # (almost) every trigger is a pulse: 5 sigma noise upcrossings are rare
    assert samples.size <= found.sum() + 3


def test_trigger_position_and_amplitude_with_matched_kernel(pulse_stream, pulse_triggers):
    s = pulse_stream
    samples, amps = pulse_triggers
    big = s["amp_sigma"] >= 10
    idx = match(s["onsets"][big], samples, tol=HOLDOFF // 2)
    assert np.all(idx >= 0)
    offset = samples[idx] - s["onsets"][big]
    assert np.max(np.abs(offset)) <= 3
    assert np.median(np.abs(offset)) <= 1
    # amplitude at the trigger is the height plus noise (searched maximum: biased up by < 1 sigma)
    ratio = amps[idx] / s["sigma"] - s["amp_sigma"][big]
    assert -1.0 < np.median(ratio) < 1.0


@pytest.mark.parametrize("chunk", [1000, 7777, 2**20])
def test_chunking_neither_loses_nor_doubles_triggers(pulse_stream, chunk):
    s = pulse_stream
    stream = s["stream"]
    y = filter_block(stream.read(0, stream.n_samples)[0], s["kernel"], s["anchor"])
    threshold = 4.0 * s["sigma"]
    expected = python_trigger(y, threshold, HOLDOFF * 5)   # hold-off longer than the small chunks
    got, amps = scan_channel(stream, 0, s["kernel"], s["anchor"], threshold, HOLDOFF * 5, chunk_size=chunk)
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_allclose(amps, y[expected], rtol=1e-4)


def test_negative_polarity_and_no_trigger_on_negative_lobes(tmp_path):
    """Large positive pulses have negative filter lobes: a |y| threshold would fire on them."""
    t = template()
    kernel, anchor = matched_kernel(t)
    rng = np.random.default_rng(3)
    x = rng.normal(0, 1e-3, 200_000)
    onsets = np.arange(5_000, 195_000, 10_000)
    for n0 in onsets:
        x[n0 - anchor : n0 - anchor + T_LEN] += 0.5 * t
    y = filter_block(x, kernel, anchor)
    assert y.min() < -0.05                        # lobes far below -threshold
    write_csmpl(tmp_path / "pos.csmpl", x)
    write_csmpl(tmp_path / "neg.csmpl", -x)
    pos = open_csmpl([tmp_path / "pos.csmpl"], FS, 1024)
    neg = open_csmpl([tmp_path / "neg.csmpl"], FS, 1024)
    s_pos, a_pos = scan_channel(pos, 0, kernel, anchor, 0.05, HOLDOFF)
    s_neg, a_neg = scan_channel(neg, 0, kernel, anchor, 0.05, HOLDOFF, polarity=-1)
    np.testing.assert_array_equal(s_pos, onsets)
    np.testing.assert_array_equal(s_neg, onsets)
    np.testing.assert_allclose(a_neg, 0.5, atol=0.01)
    np.testing.assert_allclose(a_pos, a_neg, rtol=1e-3)


def test_noise_trigger_rate_follows_rice_formula(tmp_path):
    rng = np.random.default_rng(11)
    n = 2**21
    x = noise_from_psd(coloured_psd(n), n, FS, rng)
    write_csmpl(tmp_path / "noise.csmpl", x)
    stream = open_csmpl([tmp_path / "noise.csmpl"], FS, 1024)
    kernel, anchor = matched_kernel(template())
    y = filter_block(stream.read(0, n)[0], kernel, anchor)
    u = 3.0
    threshold = u * y.std()
    samples, _ = scan_channel(stream, 0, kernel, anchor, threshold, holdoff=1)
    # with a one-sample hold-off every upcrossing triggers
    upcrossings = np.count_nonzero((y[1:] > threshold) & (y[:-1] <= threshold)) + int(y[0] > threshold)
    assert samples.size == upcrossings
    rice_rate = FS / (2 * np.pi) * np.sqrt(np.var(np.diff(y)) / np.var(y)) * np.exp(-u**2 / 2)
    expected = rice_rate * n / FS
    assert expected > 100
    assert abs(samples.size - expected) < 3 * np.sqrt(expected) + 0.15 * expected


def test_trigger_input_errors(pulse_stream):
    s = pulse_stream
    with pytest.raises(InputError, match="holdoff must be a positive integer"):
        scan_channel(s["stream"], 0, s["kernel"], s["anchor"], 1.0, 0)
    with pytest.raises(InputError, match="polarity must be"):
        scan_channel(s["stream"], 0, s["kernel"], s["anchor"], 1.0, 10, polarity=2)


# ---------------------------------------------------------------- merging, windows, live time, noise

def test_merge_triggers_keeps_earliest_and_firing_channel():
    samples, channel = merge_triggers([np.array([100, 500, 1000]), np.array([90, 520, 2000]),
                                       np.array([], dtype=np.int64)], holdoff=50)
    np.testing.assert_array_equal(samples, [90, 500, 1000, 2000])
    np.testing.assert_array_equal(channel, [1, 0, 0, 1])
    s2, c2 = merge_triggers([np.array([100]), np.array([100]), np.array([149, 150])], holdoff=50)
    np.testing.assert_array_equal(s2, [100, 150])
    np.testing.assert_array_equal(c2, [0, 2])


def test_valid_windows_and_live_time():
    # window [t - 25, t + 75) of 100 samples must lie in [0, 200)
    np.testing.assert_array_equal(valid_windows([24, 25, 125, 126], 200, 100), [False, True, True, False])
    # dead: [10,60) U [30,80) = 70, [200,250) = 50, [995,1000) = 5 -> 125 of 1000 samples at 100 Hz
    assert live_time(np.array([200, 10, 30, 995]), 50, 1000, 100.0) == pytest.approx(8.75)
    assert live_time(np.array([], dtype=np.int64), 50, 1000, 100.0) == pytest.approx(10.0)


def test_noise_triggers_avoid_particles_and_are_reproducible():
    rng = np.random.default_rng(5)
    n_samples, n_rec = 2_000_000, 1024
    particle = np.sort(rng.integers(0, n_samples, 300))
    a = noise_trigger_samples(500, particle, n_samples, n_rec, 42)
    b = noise_trigger_samples(500, particle, n_samples, n_rec, np.random.default_rng(42))
    c = noise_trigger_samples(500, particle, n_samples, n_rec, 43)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert a.size == 500 and np.unique(a).size == 500
    assert valid_windows(a, n_samples, n_rec).all()
    d = a[:, None] - particle[None, :]
    # no trigger in the window nor within N/32 after its end (the pulse's rise), and not within one
    # record after a trigger: t <= p - 3N/4 - N/32 or t >= p + 5N/4
    assert np.all((d <= -3 * n_rec // 4 - n_rec // 32) | (d >= 5 * n_rec // 4))
    assert np.diff(a).min() >= n_rec              # distinct stretches of noise: windows never overlap
    assert a.min() < n_samples // 10 and a.max() > 9 * n_samples // 10   # spread over the stream
    assert noise_trigger_samples(10, np.arange(0, n_samples, n_rec), n_samples, n_rec, 0).size == 0


def test_noise_triggers_never_overlap_when_room_is_short():
    """Periodic test pulses leave short stretches: fewer records, but every one its own noise."""
    n_samples, n_rec = 3_000_000, 4096
    pulser = np.arange(12_500, n_samples, 12_500)
    a = noise_trigger_samples(500, pulser, n_samples, n_rec, 1)
    assert 200 <= a.size < 500 and np.diff(a).min() >= n_rec
    d = a[:, None] - pulser[None, :]
    assert np.all((d <= -3 * n_rec // 4 - n_rec // 32) | (d >= 5 * n_rec // 4))


# ---------------------------------------------------------------- records

def test_records_dataset_validates_and_cuts_stream(tmp_path):
    rng = np.random.default_rng(9)
    n, n_rec = 50_000, 1024
    volts = rng.normal(0, 5e-3, (2, n))
    paths = []
    for c in range(2):
        paths.append(tmp_path / f"ch{c}.csmpl")
        write_csmpl(paths[-1], volts[c])
    stream = open_csmpl(paths, FS, n_rec)
    particle = np.array([100, 5000, 20_000, 49_900])   # first and last windows leave the stream
    firing = np.array([0, 1, 0, 1])
    amps = np.array([0.1, 0.2, 0.3, 0.4])
    noise = np.array([12_000, 35_000])
    ds = records_dataset(stream, particle, firing, noise, n_rec, ["phonon", "light"], amps,
                         {"k_sigma": 5}, ["run1"], live_time=1.5, threshold=[1e-3, 2e-3])
    validate(ds, "records")
    np.testing.assert_array_equal(ds.trigger_sample.values, [5000, 12_000, 20_000, 35_000])
    np.testing.assert_array_equal(ds.record_kind.values, ["particle", "noise", "particle", "noise"])
    np.testing.assert_array_equal(ds.trigger_channel.values, [1, -1, 0, -1])
    np.testing.assert_array_equal(ds.event.values, np.arange(4))
    assert ds.trigger_amplitude.values[1, 0] == pytest.approx(0.2)
    assert np.isnan(ds.trigger_amplitude.values[0, 0]) and np.isnan(ds.trigger_amplitude.values[:, 1]).all()
    np.testing.assert_allclose(ds.trigger_time.values, ds.trigger_sample.values / FS)
    assert ds.time.values[n_rec // 4] == 0.0
    for e, t in enumerate(ds.trigger_sample.values):
        np.testing.assert_array_equal(ds.trace.values[:, e], stream.read(t - n_rec // 4, t - n_rec // 4 + n_rec))
    assert ds.attrs["threshold"] == [1e-3, 2e-3]
    assert ds.attrs["stream_duration"] == pytest.approx(n / FS)
    back = open_store(write_store(ds, tmp_path / "records.zarr", "records"), "records")
    np.testing.assert_array_equal(back.trace.values, ds.trace.values)


@pytest.mark.parametrize("chunk", [4096, 5000, 1 << 16])
def test_huge_pulse_is_triggered_at_its_maximum_not_where_its_filter_output_first_crosses(tmp_path, chunk):
    """A pulse 10^4 x the threshold: its matched-filter output crosses the threshold far more than a
    hold-off before the pulse. The trigger must still sit on the pulse (the filter's maximum), and
    small pulses after it still fire; the same for every chunk size."""
    rng = np.random.default_rng(3)
    n = 1 << 17
    kernel, anchor = matched_kernel(template())
    tpl = template()
    x = rng.normal(0.0, 2e-2, n)
    onsets, heights = [20_000, 60_000, 61_500], [50.0, 0.5, 0.5]   # V: one huge, two small pulses
    for t0, h in zip(onsets, heights):
        x[t0 - T_LEN // 4 : t0 - T_LEN // 4 + T_LEN] += h * tpl
    write_csmpl(tmp_path / "c.csmpl", x, adc_range=120.0)
    stream = open_csmpl([tmp_path / "c.csmpl"], FS, T_LEN, adc_range=120.0)
    y = np.concatenate([v for _, v in filter_stream(stream, 0, kernel, anchor, chunk_size=chunk)])
    thr = 10 * filtered_noise_sigma(stream, 0, kernel, anchor)
    holdoff = 32
    assert np.flatnonzero(y > thr)[0] < onsets[0] - 2 * holdoff     # crosses long before the pulse
    samples, _ = scan_channel(stream, 0, kernel, anchor, thr, holdoff, chunk_size=chunk)
    np.testing.assert_array_equal(samples, python_trigger(y, thr, holdoff))
    assert np.min(np.abs(samples - onsets[0])) <= 2
    for t0 in onsets[1:]:
        assert np.min(np.abs(samples - t0)) <= 3


# ---------------------------------------------------------------- side lobes and the merge (issue 21)

def lobed_kernel(lag: int, eps: float):
    """Matched kernel of the template plus eps x the same kernel looking `lag` samples further
    ahead: a pulse of height A gives y = A at its onset and a side lobe ~eps A `lag` samples before."""
    k, anchor = matched_kernel(template())
    out = np.zeros(lag + k.size)
    out[: k.size] += k
    out[lag:] += eps * k
    return out, anchor


def test_side_lobes_of_large_pulses_never_trigger_but_pulses_on_them_do(tmp_path):
    """A 1 V pulse has a 20 mV side lobe 1500 samples early (kernel of known shape); threshold 5 mV.
    Without the envelope the lobe fires; with it the lobe is gone, and a 0.1 V pulse sitting at the
    lobe of another 1 V pulse still gets its trigger, at its onset."""
    lag, eps = 1500, 0.02
    kernel, anchor = lobed_kernel(lag, eps)
    tpl = template()
    rng = np.random.default_rng(5)
    x = rng.normal(0.0, 2e-4, 60_000)
    big = [10_000, 40_000]
    small = 40_000 - lag                      # on the lobe of the second big pulse
    for t0, h in ((big[0], 1.0), (big[1], 1.0), (small, 0.1)):
        x[t0 - T_LEN // 4: t0 - T_LEN // 4 + T_LEN] += h * tpl
    write_csmpl(tmp_path / "l.csmpl", x, adc_range=4.0)
    stream = open_csmpl([tmp_path / "l.csmpl"], FS, T_LEN, adc_range=4.0)
    y = filter_block(stream.read(0, stream.n_samples)[0], kernel, anchor)
    assert y[big[0] - lag] > 3 * 5e-3                           # the lobe is far above threshold
    plain, _ = scan_channel(stream, 0, kernel, anchor, 5e-3, HOLDOFF)
    assert np.any(np.abs(plain - (big[0] - lag)) <= 3)           # and fires without the envelope
    env = side_lobe_envelope(kernel, anchor, tpl, T_LEN // 4)
    assert env[0] <= -lag and env[1][-lag - env[0]] == pytest.approx(eps, rel=0.2)
    samples, amps = scan_channel(stream, 0, kernel, anchor, 5e-3, HOLDOFF, envelope=env)
    np.testing.assert_array_equal(np.abs(samples[:, None] - np.array([big[0], small, big[1]])[None]).min(axis=0) <= 2,
                                  [True, True, True])
    assert samples.size == 3


def test_select_triggers_by_value_with_holdoff_either_side():
    """The larger of two candidates closer than the hold-off wins, whichever comes first."""
    keep = select_triggers(np.array([0, 100, 1000, 1050, 5000]), np.array([1.0, 5.0, 3.0, 2.0, 0.5]), 200)
    np.testing.assert_array_equal(keep, [False, True, True, False, True])


def test_merge_drops_weak_triggers_next_to_strong_ones_then_takes_the_earliest():
    """Channel 1 fires early and weakly (a side lobe or noise, 5.5 against 300) within the hold-off
    before channel 0's pulse: the module trigger is channel 0's. A strong artifact of channel 1
    (significance 40) 100 samples after a clear pulse of channel 0 (6) does not take its trigger.
    Without significances: the earliest."""
    per_channel = [np.array([1000, 5000]), np.array([700, 5100])]
    sig = [np.array([300.0, 6.0]), np.array([5.5, 40.0])]
    samples, fired = merge_triggers(per_channel, 500, significance=sig)
    np.testing.assert_array_equal(samples, [1000, 5000])
    np.testing.assert_array_equal(fired, [0, 0])
    early, _ = merge_triggers(per_channel, 500)
    np.testing.assert_array_equal(early, [700, 5000])
    # a trigger 50x weaker than one 600 samples away (beyond the hold-off) stays
    s2, _ = merge_triggers([np.array([0]), np.array([600])], 500, significance=[np.array([1.0]), np.array([50.0])])
    np.testing.assert_array_equal(s2, [0, 600])
