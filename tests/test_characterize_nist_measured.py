"""The chain on measured NIST TES data (/work/shared/data/real/nist_mass, MIT licence).

regress_chan1.ljh (x-ray pulses) + regress_noise_chan1.ljh (noise records) go through the records
reader, the characterization and the features; the two back-to-back noise files of 2023-06-26
are triggered as streams. regress_chan3.ljh is evaluation data and is never read here.
The figures are printed by bench/nist_ljh_checks.py (the report quotes them).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from cryopipe.calibrate.line_stats import FWHM_PER_SIGMA, line_fwhm, rice_rate

from real_data import NIST_DIR as REAL
needs_real = pytest.mark.skipif(not (REAL / "regress_chan1.ljh").is_file(), reason="real NIST LJH files not present")
CHAR_CFG = {"max_noise_records": 2000, "max_pulses": 2000, "min_noise_records": 20, "min_pulses": 10,
            "min_pulse_snr": 10.0, "threshold_resolution": 5.0}


def test_line_fwhm_of_a_gaussian_line_on_background():
    rng = np.random.default_rng(0)
    x = np.r_[rng.normal(4.0, 0.01, 4000), rng.uniform(1.0, 5.0, 400)]
    centre, fwhm, n = line_fwhm(x)
    assert centre == pytest.approx(4.0, abs=1e-3)
    assert fwhm == pytest.approx(FWHM_PER_SIGMA * 0.01, rel=0.05)


def test_rice_rate_counts_upcrossings_of_gaussian_noise():
    rng = np.random.default_rng(1)
    fs = 10_000.0
    kernel = np.exp(-np.arange(40) / 8.0)
    y = np.convolve(rng.normal(size=2_000_000), kernel, mode="valid")
    u = 2.5 * np.std(y)
    up = np.count_nonzero((y[:-1] < u) & (y[1:] >= u)) / (y.size / fs)
    assert rice_rate(y, u, fs) == pytest.approx(up, rel=0.1)


@pytest.fixture(scope="module")
def regress_chan1():
    """records, characterization and features of regress_chan1 with its noise file."""
    from cryopipe.features.dataset import features_dataset
    from cryopipe.characterize.stage import characterize_channel
    from cryopipe.io.records import record_batches

    spec = {"ljh": [str(REAL / "regress_chan1.ljh")], "noise_ljh": [str(REAL / "regress_noise_chan1.ljh")],
            "ljh_mode": "records", "channels": ["ch0"], "polarity": 1, "adc_bits": 16, "adc_range": 20.0}
    first, more, _ = record_batches(spec)
    records = xr.concat([first, *more], "event")
    char = characterize_channel(records, CHAR_CFG, "regress_chan1")
    feats = features_dataset(records, characterization=char)
    return records, char, feats


@needs_real
def test_regress_chan1_every_record_and_trigger_at_presamples(regress_chan1):
    records, char, _ = regress_chan1
    kind = records["record_kind"].values
    assert (kind == "particle").sum() == 300 and (kind == "noise").sum() == 300
    # MATTER's header says Presamples 512; its trigger sample is 515 (Presamples + 3, as mass reads
    # MATTER files: the DASTARD copy of the same records says 515)
    assert records.attrs["pretrigger"] == 515 == char.attrs["pretrigger"]
    # the SEV rises right after the pretrigger (the DAQ's trigger), not at N/4 = 256
    sev = char["sev"].values[0]
    assert 505 <= int(np.flatnonzero(sev > 0.1)[0]) <= 530


@needs_real
def test_regress_chan1_of_resolutions(regress_chan1):
    """OF baseline resolution from the noise spectrum = the spread of the fixed-lag OF amplitude on
    the noise records (within 10 %); the x-ray line is wider, and the gap has a cause we can show:
    the OF amplitude at a fixed lag follows the pulses' sub-sample arrival time."""
    records, char, feats = regress_chan1
    kind = records["record_kind"].values
    expected = float(char["expected_resolution"].values[0])
    noise_amp = feats["of_amplitude"].values[0][kind == "noise"]
    measured = 1.4826 * np.median(np.abs(noise_amp - np.median(noise_amp)))
    assert measured == pytest.approx(expected, rel=0.10)
    amp = feats["of_amplitude"].values[0][kind == "particle"]
    centre, fwhm_of, n = line_fwhm(amp)
    assert n > 150 and fwhm_of > FWHM_PER_SIGMA * expected
    # the cause of the gap: arrival phase (fit_onset: fractional shift of the SEV fit, samples)
    phase = feats["fit_onset"].values[0][kind == "particle"] * float(records.attrs["sample_frequency"])
    in_line = np.abs(amp - centre) <= 3 * fwhm_of / FWHM_PER_SIGMA
    r = np.corrcoef(amp[in_line], phase[in_line])[0, 1]
    assert abs(r) > 3 / np.sqrt(in_line.sum())          # significant at 3 sigma
    basis = np.vander(phase[in_line] - phase[in_line].mean(), 3)
    resid = amp[in_line] - basis @ np.linalg.lstsq(basis, amp[in_line], rcond=None)[0]
    assert FWHM_PER_SIGMA * np.std(resid) < fwhm_of
    # the same cause seen by the OF itself: its sub-sample maximum gives a narrower line than the
    # best whole-sample lag
    _, fwhm_whole, _ = line_fwhm(feats["of_amplitude_shifted"].values[0][kind == "particle"])
    _, fwhm_sub, _ = line_fwhm(feats["of_amplitude_interpolated"].values[0][kind == "particle"])
    assert fwhm_sub < fwhm_whole


@needs_real
def test_chi2_cut_that_follows_the_amplitude(regress_chan1):
    """The cut language draws a chi2 bound rising with the OF amplitude (a polygon in the
    amplitude-chi2 plane): a large pulse with a chi2 that would fail at low amplitude passes."""
    from cryopipe.cuts.language import apply_cuts

    records, char, feats = regress_chan1
    amp = feats["of_amplitude"].values[0]
    chi2 = feats["of_chi2"].values[0]
    n = records.sizes["sample"]
    # bound: chi2 <= 2 N + (amplitude / 1 V)^2 * 2000, drawn as a polygon
    xs = np.linspace(-1.0, 6.0, 15)
    bound = 2 * n + 2000.0 * xs ** 2
    vertices = [[float(x), -1.0] for x in xs] + [[float(x), float(b)] for x, b in zip(xs[::-1], bound[::-1])]
    cuts = {"cuts": {"chi2_vs_amplitude": {"polygon": {"x": "of_amplitude", "y": "of_chi2", "vertices": vertices}}}}
    out = apply_cuts(feats, cuts=cuts)
    passed = out["accepted"].values[0]
    expect = (chi2 <= 2 * n + 2000.0 * amp ** 2) & (amp > -1.0) & (amp < 6.0) & (chi2 > -1.0)
    # points within a hair of the straight polygon edges may differ from the parabola
    near = np.abs(chi2 - (2 * n + 2000.0 * amp ** 2)) < 0.02 * (2 * n + 2000.0 * amp ** 2)
    assert np.array_equal(passed[~near], expect[~near])
    big = amp > 3.0
    assert (passed & big & (chi2 > 4 * n)).any()           # large pulses pass with chi2 > 4 N ...
    assert not (passed & (amp < 0.5) & (chi2 > 4 * n)).any()   # ... small ones with it do not


@needs_real
def test_noise_streams_trigger_rate_and_nps_stability():
    """The two noise files (DASTARD, back to back) as a two-channel stream: the 5-sigma trigger
    fires at most twice the rate Rice's formula predicts from the filtered noise itself (also
    checked at 3.5 and 4 sigma, where the counts are not zero); the NPS of the two halves agree."""
    from cryopipe.characterize.sev_nps import noise_power_spectrum
    from cryopipe.trigger.filters import filter_stream, generic_kernel, noise_estimate
    from cryopipe.io.ljh import open_ljh_run
    from cryopipe.io.sources import is_stream, open_stream
    from cryopipe.trigger.stage import trigger_one_channel

    files = [str(REAL / "20230626_run0000_chan4102.ljh"), str(REAL / "20230626_run0000_chan4109.ljh")]
    assert open_ljh_run(files).back_to_back
    spec = {"ljh": files, "ljh_mode": "stream", "sample_frequency": 244140.625, "record_length": 1000,
            "channels": ["chan4102", "chan4109"], "polarity": 1, "adc_bits": 16, "adc_range": 20.0}
    assert is_stream(spec)
    stream = open_stream(spec)
    assert stream.n_samples == 610 * 1000
    k, anchor = generic_kernel(1000)
    for c in range(2):
        sigma = noise_estimate(stream, c, k, anchor).sigma
        y = np.concatenate([v for _, v in filter_stream(stream, c, k, anchor)])[len(k):-len(k)]
        for ks in (3.5, 4.0, 5.0):
            predicted = rice_rate(y, ks * sigma, stream.sample_frequency)
            fired = trigger_one_channel(stream, c, spec, {"threshold_sigma": ks, "holdoff": None,
                                                          "chunk_size": 2**20}).sizes["trigger"]
            # at most 2x predicted, with the Poisson allowance of a small expected count
            allowed = 2 * predicted * stream.duration
            assert fired <= allowed + 3 * np.sqrt(allowed) + 1, (c, ks, fired, allowed)
        # NPS of the first and second half of the records, compared in 12 log-spaced bands
        x = stream.read(0, stream.n_samples, [c])[0].reshape(-1, 1000)
        half = x.shape[0] // 2
        fs = stream.sample_frequency
        p1 = noise_power_spectrum(x[:half], fs, clean=False)
        p2 = noise_power_spectrum(x[half:], fs, clean=False)
        edges = np.unique(np.geomspace(1, 501, 13).astype(int))
        for lo, hi in zip(edges[:-1], edges[1:]):
            ratio = p1[lo:hi].mean() / p2[lo:hi].mean()
            tol = 5 / np.sqrt(half * (hi - lo))          # 5 sigma of averaged periodograms
            assert abs(np.log(ratio)) < max(tol, 0.05) * 2, (c, lo, hi, ratio)
