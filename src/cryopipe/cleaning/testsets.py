"""Simulated test sets of the cleaning evaluation ("simset" Datasets, `cryopipe.simulate.records`).

Universal sets of a new seed, detector-mode sets of random SEV/NPS (`random_detector`), pulse sets
(event_pulse only, SNR 3-300, for recall vs SNR and IOR) and two-pulse pile-up sets (`pileup_pairs`,
for the selectivity map and IOS; the CRESST paper's simulation, seed 000 section 4.2: first pulse at
N/4, second anywhere in the window). Sets are stored downsampled to 512 samples (`compact`): the
models downsample every record to 512 block means, so the scores are identical.
"""
from __future__ import annotations

import numpy as np
import scipy.fft
import xarray as xr

from ..signal.pulses import pulse_template
from ..simulate.noise import psd_model
from ..simulate.records import EVENT_CLASSES, simulate_detector_records, simulate_universal_records
from .preprocess import LENGTH, downsample

SNR_RANGE = (3.0, 300.0)                       # IOR range (CRESST paper section 4.2)
PILEUP_RATIO = (0.05, 1.0)                     # second / first pulse height (the simulator's pileup_min_ratio)
PILEUP_MIN_SEPARATION = 1 / 128                # |onset difference| >= this fraction of N (simulator's pile_up)
SIMSET_CHUNK = 10_000                          # records simulated at a time before `compact`


def compact(ds: xr.Dataset, *, length: int = LENGTH) -> xr.Dataset:
    """The set with its traces downsampled to `length` block means (what every model sees first)."""
    out = ds.drop_vars([n for n, v in ds.variables.items() if "sample" in v.dims and n != "trace"])
    trace = downsample(ds["trace"].values, length=length)
    return out.assign(trace=(("channel", "event", "sample"), trace)).assign_attrs(
        downsampled_from=int(ds.sizes["sample"]))


def _concat(parts: list[xr.Dataset]) -> xr.Dataset:
    ds = xr.concat(parts, dim="event", data_vars="minimal", coords="minimal", compat="override",
                   combine_attrs="override", join="override")
    return ds.assign_coords(event=np.arange(ds.sizes["event"]))


def _in_chunks(n_per_class: dict, make, rng: np.random.Generator) -> xr.Dataset:
    """Simulate `n_per_class` in pieces of about SIMSET_CHUNK records (each `compact`ed), concatenated."""
    total = sum(n_per_class.values())
    pieces = max(1, -(-total // SIMSET_CHUNK))
    parts = []
    for p in range(pieces):
        counts = {c: k // pieces + (p < k % pieces) for c, k in n_per_class.items()}
        counts = {c: k for c, k in counts.items() if k}
        if counts:
            parts.append(compact(make(counts, np.random.default_rng(rng.integers(2**63)))))
    return _concat(parts)


def random_detector(rng: np.random.Generator, *, record_length: int = 4096,
                    sample_frequency: float | None = None) -> dict:
    """A random detector: SEV (Proebst model, max 1, onset N/4), NPS (white + 1/f + lines, V^2/Hz), fs (Hz).

    Time constants are drawn as fractions of the record duration, so any record length gives a
    plausible window; resolution (sigma_OF) log-uniform in [0.1, 5] mV.
    """
    n = int(record_length)
    fs = float(sample_frequency or np.exp(rng.uniform(np.log(10e3), np.log(50e3))))
    duration = n / fs
    tau_n = duration * np.exp(rng.uniform(np.log(1 / 200), np.log(1 / 15)))
    tau_in = tau_n * np.exp(rng.uniform(np.log(1 / 30), np.log(1 / 4)))
    tau_t = tau_n * rng.uniform(1.5, 6.0)
    sev = pulse_template(n, fs, tau_n, tau_in, tau_t, at_over_an=float(rng.uniform(0.1, 2.0)))
    freqs = scipy.fft.rfftfreq(n, 1 / fs)
    lines = tuple((50.0 * k, 2 * fs / n, 1e-11 * rng.uniform(1, 100)) for k in rng.integers(1, 8, rng.integers(0, 4)))
    nps = psd_model(freqs, 1e-12, 1e-12 * np.exp(rng.uniform(0, np.log(500))), 1.0, lines, rng.uniform(0.7, 1.5))
    return {"sev": sev, "nps": nps, "sample_frequency": fs, "resolution": float(np.exp(rng.uniform(np.log(1e-4),
                                                                                                 np.log(5e-3)))),
            "tau_n": tau_n, "tau_in": tau_in, "tau_t": tau_t}


def detector_set(n_per_class: dict, detector: dict, rng: np.random.Generator, *, snr_range=(3.0, 1000.0),
                 **kwargs) -> xr.Dataset:
    """Detector-mode simset of `detector` (`random_detector`), compacted, simulated in chunks."""
    def make(counts, gen):
        return simulate_detector_records(counts, detector["sev"], detector["nps"], detector["sample_frequency"], gen,
                                         resolution=detector["resolution"], snr_range=snr_range, **kwargs)
    return _in_chunks(dict(n_per_class), make, rng)


def universal_set(n_per_class: dict, record_length: int, rng: np.random.Generator, *, snr_range=(3.0, 1000.0),
                  **kwargs) -> xr.Dataset:
    """Universal-mode simset (every record its own detector), compacted, simulated in chunks."""
    def make(counts, gen):
        return simulate_universal_records(counts, record_length, gen, snr_range=snr_range, **kwargs)
    return _in_chunks(dict(n_per_class), make, rng)


def pileup_pairs(n: int, detector: dict, rng: np.random.Generator, *, snr_range=SNR_RANGE, ratio_range=PILEUP_RATIO,
                 min_separation: float = PILEUP_MIN_SEPARATION) -> xr.Dataset:
    """Two-pulse pile-ups: a simulated event_pulse record (onset N/4 +- N/64, SNR log-uniform in
    `snr_range`) plus a second SEV pulse, height ratio r = h2/h1 log-uniform in
    [max(r_lo, 3/SNR1), r_hi] (the simulator's pile_up rule), onset anywhere in [N/64, 15N/16) at least
    `min_separation` * N from the first. No saturation (pulses add linearly).

    Returns a compacted simset (event_class 'pile_up', label False) with the extra variables
    onset_difference ((onset2 - onset1) / N) and height_ratio (channel, event), and n_pulses = 2.
    """
    sev, fs = detector["sev"], detector["sample_frequency"]
    n_samples = sev.size
    parts, left = [], int(n)
    grid = np.arange(n_samples, dtype=np.float64)
    while left > 0:
        m = min(left, SIMSET_CHUNK)
        gen = np.random.default_rng(rng.integers(2**63))
        ds = simulate_detector_records({"event_pulse": m}, sev, detector["nps"], fs, gen,
                                       resolution=detector["resolution"], snr_range=snr_range)
        onset1 = ds["onset"].values[0] * fs + n_samples // 4                       # samples
        snr1 = ds["snr"].values[0].astype(float)
        lo = np.clip(np.maximum(ratio_range[0], SNR_RANGE[0] / snr1), None, ratio_range[1])
        ratio = np.exp(gen.uniform(np.log(lo), np.log(ratio_range[1])))
        onset2 = _second_onsets(gen, onset1, n_samples, min_separation)
        h2 = ratio * ds["pulse_height"].values[0]
        trace = ds["trace"].values[0].astype(np.float64)
        sev_onset = n_samples // 4                                                    # as the simulator's SEV
        for i in range(m):
            trace[i] += h2[i] * np.interp(grid - onset2[i] + sev_onset, grid, sev, left=0.0, right=sev[-1])
        ds["trace"] = (("channel", "event", "sample"), trace[None].astype(np.float32))
        ds["event_class"] = ("event", np.full(m, "pile_up"))
        ds["label"] = (("channel", "event"), np.zeros((1, m), dtype=bool))
        ds["n_pulses"] = (("channel", "event"), np.full((1, m), 2, dtype=np.int64))
        ds["onset_difference"] = (("channel", "event"), ((onset2 - onset1) / n_samples)[None])
        ds["height_ratio"] = (("channel", "event"), ratio[None])
        parts.append(compact(ds))
        left -= m
    return _concat(parts)


def _second_onsets(rng, onset1, n_samples, min_separation):
    """Onsets (samples) uniform in [N/64, 15N/16) excluding |onset - onset1| < min_separation N."""
    lo, hi, gap = n_samples / 64, n_samples * 15 / 16, min_separation * n_samples
    a0, a1 = onset1 - gap, onset1 + gap                    # excluded interval
    left_len = np.clip(a0 - lo, 0, None)
    u = rng.uniform(0, 1, onset1.size) * (left_len + np.clip(hi - a1, 0, None))
    return np.where(u < left_len, lo + u, a1 + (u - left_len))


def build_test_sets(n_per_class: int, n_pulses: int, n_pileups: int, *, record_length: int = 4096,
                    seed: int = 1000) -> dict[str, xr.Dataset]:
    """The standard test sets: universal (seed), two random detectors (all classes), pulses and
    two-pulse pile-ups split over the two detectors. Sizes: records per class per mixed set,
    total pulses, total pile-ups."""
    rng = np.random.default_rng(seed)
    every = {c: int(n_per_class) for c in EVENT_CLASSES}
    sets = {"universal": universal_set(every, record_length, rng)}
    for name in ("a", "b"):
        det = random_detector(rng, record_length=record_length)
        sets[f"detector_{name}"] = detector_set(every, det, rng)
        sets[f"pulses_{name}"] = detector_set({"event_pulse": n_pulses // 2}, det, rng, snr_range=SNR_RANGE)
        sets[f"pileups_{name}"] = pileup_pairs(n_pileups // 2, det, rng)
    return sets
