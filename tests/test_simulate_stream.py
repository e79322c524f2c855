"""Stream simulator: noise spectrum across blocks, Poisson truth, exact pulses, artifacts, seeds, memory."""
import copy
import tracemalloc

import numpy as np
import pytest
import xarray as xr
from scipy import signal, stats

from cryopipe.errors import CryopipeError
from cryopipe.io.csmpl import open_csmpl, volts_per_adc
from cryopipe.io.stores import load_store, validate, write_store
from cryopipe.simulate.noise import psd_model
from cryopipe.signal.pulses import proebst_pulse, pulse_template
from cryopipe.simulate.stream import (DEFAULT_SIMULATION, FLUX_QUANTUM_LINE_HEIGHTS, PULSE_CLASSES,
                                      crossfade_overlap, saturate, simulate_stream)

LSB = volts_per_adc(adc_bits=16, adc_range=20.0)
QUIET = {"white": 0.0, "one_over_f": 0.0, "lines": []}
NAMES = ["phonon", "light"]


def make_sim(duration=4.0, seed=3, event_rate=0.0, high_energy_rate=0.0, artifacts=None,
             noises=(QUIET, QUIET), saturation=(None, None), **top):
    sim = copy.deepcopy(DEFAULT_SIMULATION)
    sim.update(duration=duration, seed=seed, event_rate=event_rate, high_energy_rate=high_energy_rate,
               artifacts=artifacts or {k: 0.0 for k in DEFAULT_SIMULATION["artifacts"]}, **top)
    taus = [(0.005, 0.0005, 0.020, 0.5), (0.002, 0.0002, 0.008, 0.2)]
    for ch, noise, sat, (tn, ti, tt, ratio), vpk, off in zip(sim["channels"], noises, saturation, taus,
                                                            (0.1, 0.03), (0.5, -0.3)):
        ch.update(noise=copy.deepcopy(noise), saturation=sat, tau_n=tn, tau_in=ti, tau_t=tt,
                  at_over_an=ratio, volts_per_kev=vpk, offset=off)
    return sim


def run(tmp_path, sim, fs, block_size, name="s"):
    paths, truth = simulate_stream(tmp_path / name, sim, fs, NAMES, block_size=block_size)
    stream = open_csmpl(paths, fs, 64)
    return stream.read(0, stream.n_samples).astype(np.float64), truth, paths


def pulse_shape(ch, n, fs):
    """Independent evaluation of the channel's pulse (max 1 over samples) at sample offsets 0..n-1."""
    v = proebst_pulse(np.arange(n) / fs, 0.0, 1.0, ch["at_over_an"], ch["tau_n"], ch["tau_in"], ch["tau_t"])
    return v / v.max()


# ------------------------------------------------------------------------------------------ noise

NOISE_A = {"white": 1e-9, "one_over_f": 2e-8, "lines": [[500.0, 50.0, 5e-8]]}   # short correlation
NOISE_B = {"white": 1e-11, "one_over_f": 1e-4, "exponent": 2.0, "lines": []}  # 1/f^2: long memory
FS_NOISE, BLOCK_NOISE, N_BLOCKS = 10000.0, 2048, 64


@pytest.fixture(scope="module")
def noise_stream(tmp_path_factory):
    sim = make_sim(duration=BLOCK_NOISE * N_BLOCKS / FS_NOISE, noises=(NOISE_A, NOISE_B))
    x, truth, _ = run(tmp_path_factory.mktemp("noise"), sim, FS_NOISE, BLOCK_NOISE)
    offsets = np.array([[c["offset"]] for c in sim["channels"]])
    return x - offsets, truth


def band_ratios(x, noise, seg_len, n_bands=8, first_bin=8):
    """Hann periodogram (scipy) / model PSD, averaged over segments and in frequency bands.

    The Hann window keeps leakage from the steep 1/f^2 spectrum out; bins below `first_bin` are
    left out, where the window's main lobe still biases a steep spectrum.
    """
    _, measured = signal.periodogram(x, FS_NOISE, window="hann", detrend=False, axis=-1)
    measured = measured.reshape(-1, measured.shape[-1]).mean(axis=0)
    params = {**noise, "lines": tuple(map(tuple, noise["lines"]))}
    quantisation = LSB**2 / 12 / (FS_NOISE / 2)          # ADC rounding: white, variance LSB^2/12
    model = psd_model(np.fft.rfftfreq(seg_len, 1 / FS_NOISE), **params) + quantisation
    bands = zip(np.array_split(measured[first_bin:-1], n_bands), np.array_split(model[first_bin:-1], n_bands))
    return np.array([m.mean() / p.mean() for m, p in bands])


def test_noise_only_stream_has_no_truth(noise_stream):
    assert noise_stream[1].sizes["pulse"] == 0


@pytest.mark.parametrize("chan, noise", [(0, NOISE_A), (1, NOISE_B)])
def test_noise_periodogram_matches_psd(noise_stream, chan, noise):
    x = noise_stream[0][chan]
    seg = 1024
    every = band_ratios(x.reshape(-1, seg), noise, seg)
    np.testing.assert_allclose(every, 1.0, atol=0.1)
    # only the segments that straddle a block border (each holds a whole crossfade)
    ov = crossfade_overlap(BLOCK_NOISE)
    starts = np.arange(1, N_BLOCKS) * BLOCK_NOISE - (seg - ov) // 2
    border = band_ratios(x[starts[:, None] + np.arange(seg)], noise, seg)
    np.testing.assert_allclose(border, 1.0, atol=0.12)


def test_variance_across_block_border_undisturbed(noise_stream):
    x = noise_stream[0][0].reshape(N_BLOCKS, BLOCK_NOISE)[1:]
    ov = crossfade_overlap(BLOCK_NOISE)
    mid_fade = np.mean(x[:, ov // 4: 3 * ov // 4] ** 2)      # a linear crossfade would halve this
    interior = np.mean(x[:, ov:] ** 2)
    assert mid_fade / interior == pytest.approx(1.0, abs=0.06)


def test_no_step_at_block_border(noise_stream):
    """1/f^2 noise: a hard join would make the border difference ~200x larger in variance."""
    x = noise_stream[0][1]
    d = np.diff(x)
    border = d[np.arange(1, N_BLOCKS) * BLOCK_NOISE - 1]       # x[kB] - x[kB - 1]
    assert np.mean(border**2) / np.mean(d**2) < 1.6
    assert np.mean(x[: BLOCK_NOISE * N_BLOCKS // 2] ** 2) > 20 * np.mean(d**2)  # the test has teeth


# ------------------------------------------------------------------------------------------ truth

def test_truth_counts_are_poisson_and_onsets_uniform(tmp_path):
    fs, duration = 2000.0, 20.0
    rates = {"spike": 10.0, "squid_jump": 5.0, "reset": 5.0, "temperature_rise": 2.0}
    sim = make_sim(duration=duration, event_rate=40.0, high_energy_rate=10.0, artifacts=rates)
    paths, truth = simulate_stream(tmp_path, sim, fs, NAMES, block_size=8192)
    validate(truth, "truth")
    onset = truth.onset_sample.values
    assert np.all(np.diff(onset) >= 0) and onset.min() >= 0 and onset.max() < duration * fs
    expected = {"event": 40.0, "high_energy": 10.0, **rates}
    for cls, rate in expected.items():
        count = int((truth.pulse_class.values == cls).sum())
        mean = rate * duration
        assert abs(count - mean) < 4 * np.sqrt(mean), cls
    events = onset[truth.pulse_class.values == "event"]
    assert stats.kstest(events / (duration * fs), "uniform").pvalue > 1e-3
    assert set(truth.pulse_class.values) <= set(PULSE_CLASSES)


def test_truth_energies_and_amplitudes(tmp_path):
    sim = make_sim(duration=200.0, event_rate=20.0, high_energy_rate=1.0, artifacts={"spike": 1.0})
    _, truth = simulate_stream(tmp_path, sim, 500.0, NAMES, block_size=2**16)
    cls, energy = truth.pulse_class.values, truth.energy.values
    vpk = np.array([c["volts_per_kev"] for c in sim["channels"]])
    pulses = np.isin(cls, ["event", "high_energy"])
    np.testing.assert_allclose(truth.amplitude.values[:, pulses], vpk[:, None] * energy[pulses], rtol=1e-6)
    assert np.all(np.isnan(energy[~pulses]))
    ev = energy[cls == "event"]
    in_line = np.abs(ev - sim["line_energy"]) < 4 * sim["line_width"]
    assert in_line.mean() == pytest.approx(sim["line_fraction"], abs=0.05)
    background = ev[~in_line]
    assert background.min() >= sim["energy_min"] and background.max() <= sim["energy_max"]
    # exponential of scale 2 keV above energy_min (the line window removes a little)
    assert np.median(background - sim["energy_min"]) == pytest.approx(2.0 * np.log(2), rel=0.15)
    high = energy[cls == "high_energy"]
    assert high.min() >= sim["energy_max"] and high.max() <= 20 * sim["energy_max"]
    assert truth.attrs["volts_per_kev"] == list(vpk) and truth.attrs["n_samples"] == 100000


def test_truth_store_roundtrip(tmp_path):
    sim = make_sim(event_rate=5.0, artifacts={"spike": 2.0, "squid_jump": 1.0})
    _, truth = simulate_stream(tmp_path / "s", sim, 1000.0, NAMES, block_size=512)
    back = load_store(write_store(truth, tmp_path / "truth.zarr", "truth"), "truth")
    np.testing.assert_array_equal(back.onset_sample.values, truth.onset_sample.values)
    assert [str(v) for v in back.pulse_class.values] == list(truth.pulse_class.values)
    assert list(back.channel.values) == NAMES


# ------------------------------------------------------------------------------------------ pulses

def test_noiseless_stream_holds_exact_pulses(tmp_path):
    fs, block = 10000.0, 1000        # pulses (2400 samples) span several blocks
    sim = make_sim(duration=4.0, event_rate=5.0)
    x, truth, _ = run(tmp_path, sim, fs, block)
    n = x.shape[1]
    assert truth.sizes["pulse"] > 5
    for c, ch in enumerate(sim["channels"]):
        shape = pulse_shape(ch, n, fs)
        expected = np.full(n, ch["offset"])
        for on, amp in zip(truth.onset_sample.values, truth.amplitude.values[c]):
            expected[on:] += amp * shape[: n - on]
        expected = np.clip(expected, -10.0, 10.0 - LSB)          # the ADC clips
        np.testing.assert_allclose(x[c], expected, rtol=0, atol=LSB / 2 + 1e-5)
    # amplitude is the pulse height: an isolated pulse peaks at offset + amplitude
    gaps = np.diff(np.r_[-10**9, truth.onset_sample.values, 10**9])
    isolated = np.flatnonzero((gaps[:-1] > 3000) & (gaps[1:] > 3000))
    assert len(isolated) >= 1
    for i in isolated:
        on = int(truth.onset_sample[i])
        for c, ch in enumerate(sim["channels"]):
            peak = x[c, on: on + 3000].max() - ch["offset"]
            assert peak == pytest.approx(float(truth.amplitude[c, i]), abs=LSB)


def test_saturation_is_generalised_logistic():
    v = np.linspace(-3, 30, 1001)
    k = 2.5
    np.testing.assert_allclose(saturate(v, k), 2 * k / (1 + np.exp(-2 * v / k)) - k, atol=1e-12)
    assert saturate(1e-4, k) == pytest.approx(1e-4, rel=1e-6)
    assert np.all(np.diff(saturate(v, k)) > 0) and saturate(30.0, k) < k


def test_high_energy_pulses_saturate(tmp_path):
    fs = 5000.0
    sim = make_sim(duration=20.0, high_energy_rate=1.0, saturation=(0.8, 0.3))
    x, truth, _ = run(tmp_path, sim, fs, 4096)
    assert truth.sizes["pulse"] > 5
    assert float(truth.amplitude[0].max()) > 2.0       # model heights far above the ceiling
    for c, ch in enumerate(sim["channels"]):
        above = x[c] - ch["offset"]
        assert above.max() <= ch["saturation"] + LSB
        assert above.max() > 0.9 * ch["saturation"]
        shape = pulse_shape(ch, x.shape[1], fs)
        unsat = sum(a * np.r_[np.zeros(on), shape[: x.shape[1] - on]]
                    for on, a in zip(truth.onset_sample.values, truth.amplitude.values[c]))
        np.testing.assert_allclose(above, ch["saturation"] * np.tanh(unsat / ch["saturation"]),
                                   atol=LSB / 2 + 1e-5)


# ------------------------------------------------------------------------------------------ artifacts

def test_squid_jumps_persist_and_resets_return(tmp_path):
    fs = 1000.0
    sim = make_sim(duration=30.0, artifacts={"squid_jump": 1.5, "reset": 0.3})
    for ch, vpk in zip(sim["channels"], (0.005, 0.002)):        # flux quanta well inside the ADC
        ch["volts_per_kev"] = vpk
    x, truth, _ = run(tmp_path, sim, fs, 777)
    cls = truth.pulse_class.values
    assert (cls == "squid_jump").sum() > 10 and (cls == "reset").sum() > 2
    amp, onset = truth.amplitude.values.astype(np.float64), truth.onset_sample.values
    assert np.all((amp != 0).sum(axis=0) <= 1)                        # single channel
    for c, ch in enumerate(sim["channels"]):
        quantum = FLUX_QUANTUM_LINE_HEIGHTS * sim["line_energy"] * ch["volts_per_kev"]
        quanta = np.abs(amp[c, cls == "squid_jump"]) / quantum
        np.testing.assert_allclose(quanta[quanta > 0], np.rint(quanta[quanta > 0]), atol=1e-5)
        assert set(np.rint(quanta[quanta > 0]).astype(int)) <= {1, 2, 3}
        level = np.full(x.shape[1], ch["offset"])
        for on, a in zip(onset, amp[c]):
            level[on:] += a
        np.testing.assert_allclose(x[c], level, atol=LSB / 2 + 1e-5)
        for on in onset[(cls == "reset") & (amp[c] != 0)]:
            assert x[c, on] == pytest.approx(ch["offset"], abs=LSB / 2 + 1e-5)


def test_spikes_and_temperature_rises(tmp_path):
    fs = 1000.0
    sim = make_sim(duration=40.0, artifacts={"spike": 1.0, "temperature_rise": 0.1})
    for ch, vpk in zip(sim["channels"], (0.01, 0.004)):          # artifacts well inside the ADC
        ch["volts_per_kev"] = vpk
    x, truth, _ = run(tmp_path, sim, fs, 1500)
    cls, amp = truth.pulse_class.values, truth.amplitude.values.astype(np.float64)
    onset, dur = truth.onset_sample.values, truth.duration.values.astype(np.float64)
    assert (cls == "spike").sum() > 15 and (cls == "temperature_rise").sum() >= 1
    spikes = cls == "spike"
    assert np.all((amp[:, spikes] != 0).sum(axis=0) == 1)
    assert np.any(amp[:, spikes].sum(axis=0) < 0) and np.any(amp[:, spikes].sum(axis=0) > 0)
    widths = np.rint(dur[spikes] * fs)
    assert widths.min() >= 1 and widths.max() <= 4
    rises = cls == "temperature_rise"
    vpk = np.array([c["volts_per_kev"] for c in sim["channels"]])
    heat = amp[:, rises] / vpk[:, None]                 # keV-equivalent, equal in all channels
    np.testing.assert_allclose(heat, np.broadcast_to(heat[0], heat.shape), rtol=1e-5)
    n = x.shape[1]
    k = np.arange(n, dtype=np.float64)
    for c, ch in enumerate(sim["channels"]):
        expected = np.full(n, ch["offset"])
        for on, a, w in zip(onset[spikes], amp[c, spikes], widths):
            expected[on: on + int(w)] += a
        for on, a, t in zip(onset[rises], amp[c, rises], dur[rises]):
            ramp = t * fs
            rel = k[on:] - on
            rise = np.where(rel < ramp, rel / ramp, np.exp(-(rel - ramp) / ramp))
            expected[on:] += a * rise * (rel < 11 * ramp)
        assert np.abs(expected).max() < 9.0
        np.testing.assert_allclose(x[c], expected, atol=LSB / 2 + 1e-5)


# ------------------------------------------------------------------------------------------ seeds

def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    sim = make_sim(duration=3.0, event_rate=3.0, noises=(NOISE_A, NOISE_B),
                   artifacts={"spike": 1.0, "squid_jump": 0.5, "reset": 0.5, "temperature_rise": 0.5})
    fs = 5000.0
    p1, t1 = simulate_stream(tmp_path / "a", sim, fs, NAMES, block_size=4000)
    p2, t2 = simulate_stream(tmp_path / "b", copy.deepcopy(sim), fs, NAMES, block_size=4000)
    for a, b in zip(p1, p2):
        assert a.read_bytes() == b.read_bytes()
    xr.testing.assert_identical(t1, t2)
    p3, t3 = simulate_stream(tmp_path / "c", {**sim, "seed": sim["seed"] + 1}, fs, NAMES, block_size=4000)
    assert all(a.read_bytes() != c.read_bytes() for a, c in zip(p1, p3))
    assert not np.array_equal(t1.onset_sample.values, t3.onset_sample.values)
    _, t4 = simulate_stream(tmp_path / "d", sim, fs, NAMES, block_size=999)   # truth ignores blocks
    xr.testing.assert_identical(t1, t4)


def test_progress_reaches_one(tmp_path):
    seen = []
    simulate_stream(tmp_path, make_sim(duration=1.0), 1000.0, NAMES, block_size=300, progress=seen.append)
    assert len(seen) == 4 and np.all(np.diff(seen) > 0) and seen[-1] == 1.0


# ------------------------------------------------------------------------------------------ memory

def peak_bytes(tmp_path, duration, block):
    """Peak Python-side allocation (bytes) of a simulation, and its number of truth entries."""
    sim = make_sim(duration=duration, event_rate=1.0, noises=(NOISE_A, NOISE_B),
                   artifacts={"spike": 0.5, "squid_jump": 0.2, "reset": 0.1, "temperature_rise": 0.05})
    tracemalloc.start()
    try:
        _, truth = simulate_stream(tmp_path / f"m{duration}", sim, 1000.0, NAMES, block_size=block)
        return tracemalloc.get_traced_memory()[1], truth.sizes["pulse"]
    finally:
        tracemalloc.stop()


def test_memory_is_per_block(tmp_path):
    """8x the samples (and pulses): memory grows only by the truth table (< 1 kB per entry)."""
    block = 1024
    short, n_short = peak_bytes(tmp_path, 64 * block / 1000.0, block)
    long, n_long = peak_bytes(tmp_path, 512 * block / 1000.0, block)
    stream_bytes = 2 * 512 * block * 8           # the long stream as float64
    assert long < 1.2 * short + 1000 * (n_long - n_short)
    assert long < stream_bytes / 10


# ------------------------------------------------------------------------------------------ defaults

def test_default_stream_runs_with_configured_noise(tmp_path):
    sim = {**copy.deepcopy(DEFAULT_SIMULATION), "duration": 4.0}
    fs, block = 25000.0, 2**15
    x, truth, paths = run(tmp_path, sim, fs, block)
    validate(truth, "truth")
    assert x.shape == (2, 100000) and all(p.stat().st_size == 200000 for p in paths)
    n_psd = block + crossfade_overlap(block)
    f = np.fft.rfftfreq(n_psd, 1 / fs)
    for c, ch in enumerate(sim["channels"]):
        noise = ch["noise"]
        psd = psd_model(f, noise["white"], noise["one_over_f"], lines=tuple(map(tuple, noise["lines"])))
        rms = np.sqrt(psd.sum() * fs / n_psd + LSB**2 / 12)
        robust = 1.4826 * np.median(np.abs(x[c] - np.median(x[c])))      # insensitive to pulses
        assert robust == pytest.approx(rms, rel=0.15)
        assert np.median(x[c]) == pytest.approx(ch["offset"], abs=5 * rms)


def test_default_gives_line_far_above_threshold():
    fs, n = 25000.0, 16384
    f = np.fft.rfftfreq(n, 1 / fs)
    w = np.r_[0.0, np.full(len(f) - 2, 2.0), 1.0]
    for ch in DEFAULT_SIMULATION["channels"]:
        noise = ch["noise"]
        psd = psd_model(f, noise["white"], noise["one_over_f"], lines=tuple(map(tuple, noise["lines"])))
        s = np.fft.rfft(pulse_template(n, fs, ch["tau_n"], ch["tau_in"], ch["tau_t"], ch["at_over_an"]))
        sigma = 1 / np.sqrt(np.sum(w[1:] * np.abs(s[1:]) ** 2 / (n * fs * psd[1:] / 2)))
        snr = DEFAULT_SIMULATION["line_energy"] * ch["volts_per_kev"] / sigma
        rms = np.sqrt(psd.sum() * fs / n)
        assert 20 < snr < 500
        assert 2 * LSB < rms < 10e-3
        threshold_kev = 5 * sigma / ch["volts_per_kev"]
        assert DEFAULT_SIMULATION["energy_min"] < threshold_kev < 1.0


# ------------------------------------------------------------------------------------------ config

def _bad(mutate):
    sim = make_sim()
    mutate(sim)
    return sim


BAD = {
    "one channel entry": lambda s: s["channels"].pop(),
    "negative rate": lambda s: s.update(event_rate=-1.0),
    "negative artifact rate": lambda s: s["artifacts"].update(spike=-0.1),
    "unknown artifact": lambda s: s["artifacts"].update(glitch=1.0),
    "zero tau": lambda s: s["channels"][0].update(tau_t=0.0),
    "negative saturation": lambda s: s["channels"][1].update(saturation=-1.0),
    "energy range": lambda s: s.update(energy_max=0.01),
    "line fraction": lambda s: s.update(line_fraction=1.5),
    "seed": lambda s: s.update(seed=-2),
    "missing key": lambda s: s.pop("line_energy"),
    "bad noise line": lambda s: s["channels"][0]["noise"].update(lines=[[50.0, 1.0]]),
    "noise key": lambda s: s["channels"][0]["noise"].update(pink=1.0),
    "duration": lambda s: s.update(duration=0.0),
    "volts per keV": lambda s: s["channels"][0].update(volts_per_kev="big"),
}


# what each bad config's error names (regular expressions)
BAD_MESSAGE = {
    "one channel entry": r"1 channel entries for 2 channels",
    "negative rate": r"event_rate must be >= 0",
    "negative artifact rate": r"artifacts\.spike must be >= 0",
    "unknown artifact": r"unknown artifact\(s\) glitch",
    "zero tau": r"tau_t must be > 0",
    "negative saturation": r"saturation must be > 0",
    "energy range": r"energy_max \(0\.01\) must exceed energy_min",
    "line fraction": r"line_fraction must be in \[0, 1\]",
    "seed": r"seed must be a non-negative integer",
    "missing key": r"missing key\(s\) line_energy",
    "bad noise line": r"noise\.lines\[0\] must be \[frequency Hz, width Hz, peak",
    "noise key": r"unknown key\(s\) pink in channels\[.*\]\.noise; allowed: white, one_over_f, f_ref",
    "duration": r"duration must be > 0",
    "volts per keV": r"volts_per_kev must be a number",
}


@pytest.mark.parametrize("name", list(BAD))
def test_bad_config_raises(tmp_path, name):
    with pytest.raises(CryopipeError, match=BAD_MESSAGE[name]):
        simulate_stream(tmp_path, _bad(BAD[name]), 1000.0, NAMES, block_size=256)
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("fs, names, block, message", [
    (0.0, NAMES, 256, "sample_frequency must be > 0"),
    (1000.0, ["a", "a"], 256, "channel names must be distinct"),
    (1000.0, NAMES, 0, "block_size must be a positive integer"),
    (1000.0, ["x/y", "z"], 256, "no path separators"),
])
def test_bad_arguments_raise(tmp_path, fs, names, block, message):
    with pytest.raises(CryopipeError, match=message):
        simulate_stream(tmp_path, make_sim(), fs, names, block_size=block)
