"""Continuous stream of a virtual detector module, written block by block as csmpl files.

Every channel carries, in volts:

    offset + saturate(pulses + temperature rises) + SQUID steps + spikes + noise

then the ADC rounds and clips it (int16 via ``write_csmpl``).

- **noise**: coloured Gaussian noise drawn from the channel's PSD (``psd_model``; the channel's
  ``noise`` mapping is passed to it, so ``f_ref`` and ``exponent`` may be given too) with the
  Carrettoni-Cremonesi method (``noise_from_psd``). Blocks are joined without a discontinuity:
  noise segment k has ``block_size + overlap`` samples and covers stream samples
  ``[k B, (k+1) B + overlap)``; inside ``[k B, k B + overlap)`` the output is
  ``cos(theta) * tail(k-1) + sin(theta) * head(k)`` with theta rising from 0 to pi/2. For independent
  segments of equal variance, cos^2 + sin^2 = 1 keeps the variance, and the covariance at lag tau is
  ``cos(theta(t + tau) - theta(t)) R(tau)``, i.e. unchanged while tau << overlap (overlap = block/4,
  10 s for the default 2**20 samples at 25 kHz).
- **particle events** (all channels): Poisson arrivals, energy from a Gaussian calibration line
  (share ``line_fraction``) or a falling exponential between ``energy_min`` and ``energy_max``;
  amplitude ``energy * volts_per_kev`` per channel; the Proebst pulse of the channel's time constants,
  scaled so that its sampled maximum equals the amplitude, added across block borders until its tail
  stays below ``TAIL_VOLTS`` (~20 decay times for large pulses; pile-up follows from the rate).
- **high-energy events** (all channels): the same, energy uniform in ``[energy_max, 20 energy_max]``.
- **saturation** (optional, per channel; absent or null: none): the generalised logistic
  ``2K / (1 + exp(-2x/K)) - K`` (= K tanh(x/K); value 0 and slope 1 at 0, ceiling K = ``saturation`` V) applied to the thermal
  signal (pulses and temperature rises together), so large pulses flatten and decay slowly.
- **artifacts** (Poisson, rates in Hz):
  spike (one random channel; 1-4 samples of height +-[0.5, 20] line heights, log-uniform),
  squid_jump (one random channel; a persistent step of +-1..3 flux quanta, one flux quantum =
  ``FLUX_QUANTUM_LINE_HEIGHTS`` line heights), reset (one random channel; a step back to the
  channel's starting level, amplitude = minus the accumulated jumps, possibly 0),
  temperature_rise (all channels, like heat: [1, 10] line energies log-uniform times volts_per_kev;
  linear rise over T in [1, 10] s, then exponential relaxation with time constant T).
  A "line height" is ``line_energy * volts_per_kev`` of the channel. Jumps random-walk the
  baseline between resets; keep resets at a fair share of the jump rate for long streams.

Truth (``pulse`` dimension, sorted by onset): onset_sample, amplitude (channel, pulse) in V
(unsaturated model height; step size for jumps/resets; spike height; peak of a temperature rise),
energy (keV, NaN for artifacts), pulse_class, duration (s: spike length, temperature-rise ramp
time, NaN otherwise). The truth depends only on the configuration and seed, not on ``block_size``;
the noise depends on ``block_size`` too (segment length).
"""
from __future__ import annotations

import copy
import inspect
import math
from pathlib import Path
from typing import Callable

import numpy as np
import xarray as xr

from ..errors import CryopipeError
from ..io.csmpl import write_csmpl
from ..io.stores import provenance
from ..signal.spectra import noise_from_psd
from .noise import psd_model
from ..signal.pulses import proebst_pulse

PULSE_CLASSES = ("event", "high_energy", "spike", "squid_jump", "reset", "temperature_rise")
ARTIFACTS = ("spike", "squid_jump", "reset", "temperature_rise")
TAIL_VOLTS = 1e-7                 # a pulse is added until its tail stays below this (V), ...
PULSE_EXTENT_TAUS = 40.0          # ... but over at most this many of its longest time constant
FLUX_QUANTUM_LINE_HEIGHTS = 5.0   # one SQUID flux quantum, in line heights of the channel
SPIKE_SAMPLES = (1, 4)            # spike length range in samples
SPIKE_LINE_HEIGHTS = (0.5, 20.0)  # spike height range (log-uniform) in line heights
JUMP_QUANTA = (1, 3)              # flux quanta per SQUID jump
TEMPERATURE_RISE_LINE_ENERGIES = (1.0, 10.0)  # peak height (log-uniform) in line energies
TEMPERATURE_RISE_SECONDS = (1.0, 10.0)        # ramp time T (uniform); relaxation time constant = T
TEMPERATURE_RISE_EXTENT = 11.0                # a rise is added over T + 10 T
HIGH_ENERGY_FACTOR = 20.0

# Designed for 25 kHz and 16384-sample records: noise rms ~0.9 mV (phonon) and ~1.4 mV (light),
# i.e. 3-5 ADC counts of 0.3 mV; optimum-filter resolution ~0.2 mV, so the 5.9 keV line stands at
# SNR ~150 (phonon) and ~40 (light) and the 5-sigma threshold is near 0.2 keV; background events
# reach down to 0.05 keV. High-energy events (40-800 keV) saturate towards 2.5 V / 1 V.
DEFAULT_SIMULATION: dict = {
    "duration": 900.0,
    "seed": 1,
    "event_rate": 0.25,
    "line_energy": 5.9,
    "line_width": 0.1,
    "line_fraction": 0.3,
    "background_scale": 2.0,
    "energy_min": 0.05,
    "energy_max": 40.0,
    "high_energy_rate": 0.005,
    "artifacts": {"spike": 0.01, "squid_jump": 0.003, "reset": 0.001, "temperature_rise": 0.002},
    "channels": [
        {"volts_per_kev": 0.005, "offset": 0.2, "tau_n": 0.010, "tau_in": 0.0008, "tau_t": 0.060,
         "at_over_an": 0.5, "saturation": 2.5,
         "noise": {"white": 6.0e-11, "one_over_f": 1.0e-8,
                   "lines": [[50.0, 0.5, 4.0e-8], [150.0, 0.5, 1.0e-8], [3210.0, 2.0, 2.0e-9]]}},
        {"volts_per_kev": 0.0015, "offset": -0.1, "tau_n": 0.004, "tau_in": 0.0003, "tau_t": 0.025,
         "at_over_an": 0.2, "saturation": 1.0,
         "noise": {"white": 1.5e-10, "one_over_f": 5.0e-9, "lines": [[50.0, 0.5, 2.0e-8]]}},
    ],
}

_TOP_KEYS = ("duration", "seed", "event_rate", "line_energy", "line_width", "line_fraction",
             "background_scale", "energy_min", "energy_max", "high_energy_rate", "artifacts", "channels")
_CHANNEL_KEYS = ("volts_per_kev", "offset", "tau_n", "tau_in", "tau_t", "at_over_an", "noise")
_OPTIONAL_CHANNEL_KEYS = ("saturation",)
_NOISE_KEYS = tuple(inspect.signature(psd_model).parameters)[1:]    # white, one_over_f, f_ref, lines, exponent


def _refuse_unknown(given, known, where: str) -> None:
    """CryopipeError naming keys of the mapping `given` that are not in `known` (a misspelt key
    would silently not apply)."""
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise CryopipeError(f"simulation: unknown key(s) {', '.join(unknown)} in {where}; "
                            f"allowed: {', '.join(known)}")


# ----------------------------------------------------------------------------------------------
# validation

def _number(value, name: str, low: float | None = None, strict: bool = False) -> float:
    """`value` as a finite float, at least (or above, if `strict`) `low`; CryopipeError otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise CryopipeError(f"simulation: {name} must be a number, got {value!r}")
    x = float(value)
    if not math.isfinite(x):
        raise CryopipeError(f"simulation: {name} must be finite, got {value!r}")
    if low is not None and (x <= low if strict else x < low):
        raise CryopipeError(f"simulation: {name} must be {'>' if strict else '>='} {low}, got {value!r}")
    return x


def _validate_noise(noise, where: str) -> None:
    if not isinstance(noise, dict):
        raise CryopipeError(f"simulation: {where}.noise must be a mapping, got {noise!r}")
    _refuse_unknown(noise, _NOISE_KEYS, f"{where}.noise")
    _number(noise.get("white"), f"{where}.noise.white", 0.0)
    _number(noise.get("one_over_f", 0.0), f"{where}.noise.one_over_f", 0.0)
    for i, line in enumerate(noise.get("lines", []) or []):
        if not isinstance(line, (list, tuple)) or len(line) != 3:
            raise CryopipeError(f"simulation: {where}.noise.lines[{i}] must be [frequency Hz, width Hz, "
                                f"peak V^2/Hz], got {line!r}")
        _number(line[0], f"{where}.noise.lines[{i}] frequency", 0.0, strict=True)
        _number(line[1], f"{where}.noise.lines[{i}] width", 0.0, strict=True)
        _number(line[2], f"{where}.noise.lines[{i}] peak", 0.0)


def _validate_channel(ch, where: str) -> None:
    if not isinstance(ch, dict):
        raise CryopipeError(f"simulation: {where} must be a mapping, got {ch!r}")
    missing = [k for k in _CHANNEL_KEYS if k not in ch]
    if missing:
        raise CryopipeError(f"simulation: {where} lacks {', '.join(missing)}")
    _refuse_unknown(ch, _CHANNEL_KEYS + _OPTIONAL_CHANNEL_KEYS, where)
    _number(ch["volts_per_kev"], f"{where}.volts_per_kev", 0.0, strict=True)
    _number(ch["offset"], f"{where}.offset")
    for tau in ("tau_n", "tau_in", "tau_t"):
        _number(ch[tau], f"{where}.{tau}", 0.0, strict=True)
    _number(ch["at_over_an"], f"{where}.at_over_an", 0.0)
    if ch.get("saturation") is not None:
        _number(ch["saturation"], f"{where}.saturation", 0.0, strict=True)
    _validate_noise(ch["noise"], where)


def validate_simulation(sim: dict, channels: list[str], sample_frequency: float) -> None:
    """Check a simulation config against the channel names; raise CryopipeError naming the problem."""
    if not isinstance(sim, dict):
        raise CryopipeError(f"simulation: config must be a mapping, got {type(sim).__name__}")
    missing = [k for k in _TOP_KEYS if k not in sim]
    if missing:
        raise CryopipeError(f"simulation: missing key(s) {', '.join(missing)}")
    _refuse_unknown(sim, _TOP_KEYS, "simulate")
    fs = _number(sample_frequency, "sample_frequency", 0.0, strict=True)
    duration = _number(sim["duration"], "duration", 0.0, strict=True)
    if round(duration * fs) < 1:
        raise CryopipeError(f"simulation: duration {duration} s is shorter than one sample")
    seed = sim["seed"]
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise CryopipeError(f"simulation: seed must be a non-negative integer, got {seed!r}")
    for key in ("event_rate", "high_energy_rate", "line_width"):
        _number(sim[key], key, 0.0)
    for key in ("line_energy", "background_scale", "energy_min"):
        _number(sim[key], key, 0.0, strict=True)
    if _number(sim["energy_max"], "energy_max") <= float(sim["energy_min"]):
        raise CryopipeError(f"simulation: energy_max ({sim['energy_max']}) must exceed energy_min "
                            f"({sim['energy_min']})")
    if not 0.0 <= _number(sim["line_fraction"], "line_fraction") <= 1.0:
        raise CryopipeError(f"simulation: line_fraction must be in [0, 1], got {sim['line_fraction']}")
    artifacts = sim["artifacts"] or {}
    if not isinstance(artifacts, dict):
        raise CryopipeError(f"simulation: artifacts must be a mapping of rates, got {artifacts!r}")
    unknown = sorted(set(artifacts) - set(ARTIFACTS))
    if unknown:
        raise CryopipeError(f"simulation: unknown artifact(s) {', '.join(unknown)}; "
                            f"known: {', '.join(ARTIFACTS)}")
    for name, rate in artifacts.items():
        _number(rate, f"artifacts.{name}", 0.0)
    names = list(channels)
    if not names or len(set(names)) != len(names) or not all(isinstance(n, str) and n for n in names):
        raise CryopipeError(f"simulation: channel names must be distinct non-empty strings, got {names!r}")
    if any("/" in n or "\\" in n for n in names):
        raise CryopipeError(f"simulation: channel names become file names, no path separators: {names!r}")
    entries = sim["channels"]
    if not isinstance(entries, (list, tuple)) or len(entries) != len(names):
        n = len(entries) if isinstance(entries, (list, tuple)) else "no"
        raise CryopipeError(f"simulation: {n} channel entries for {len(names)} channels {names}")
    for name, ch in zip(names, entries):
        _validate_channel(ch, f"channels[{name}]")


# ----------------------------------------------------------------------------------------------
# shapes

def saturate(volts: np.ndarray, ceiling: float) -> np.ndarray:
    """Generalised logistic saturation 2K / (1 + exp(-2v/K)) - K = K tanh(v/K) (V).

    Value 0 and slope 1 at v = 0, approaching the ceiling K (V) for large v.
    """
    return ceiling * np.tanh(np.asarray(volts) / ceiling)


def channel_template(ch: dict, sample_frequency: float) -> np.ndarray:
    """Sampled Proebst pulse of a channel with onset at sample 0, maximum 1.

    Covers PULSE_EXTENT_TAUS times the longest time constant.
    """
    taus = (ch["tau_n"], ch["tau_in"], ch["tau_t"])
    length = int(math.ceil(PULSE_EXTENT_TAUS * max(taus) * sample_frequency)) + 1
    t = np.arange(length) / sample_frequency
    shape = proebst_pulse(t, 0.0, 1.0, ch["at_over_an"], *taus)
    peak = shape.max()
    if not peak > 0:
        raise CryopipeError(f"simulation: pulse of tau_n={taus[0]}, tau_in={taus[1]}, tau_t={taus[2]}, "
                            f"at_over_an={ch['at_over_an']} has no positive maximum")
    return shape / peak


def pulse_extents(template: np.ndarray, amplitudes: np.ndarray) -> np.ndarray:
    """Samples after which amplitude * template stays below TAIL_VOLTS (at least 1)."""
    tail = np.maximum.accumulate(np.abs(template)[::-1])       # max |template| from k on, reversed
    inside = len(template) - np.searchsorted(tail, TAIL_VOLTS / np.maximum(np.abs(amplitudes), 1e-300))
    return np.maximum(inside, 1)


def temperature_rise_shape(k: np.ndarray, ramp_samples: float) -> np.ndarray:
    """Unit temperature rise at sample offsets k >= 0: linear to 1 over the ramp, then exp decay."""
    k = np.asarray(k, dtype=np.float64)
    return np.where(k < ramp_samples, k / ramp_samples, np.exp(-(k - ramp_samples) / ramp_samples))


# ----------------------------------------------------------------------------------------------
# truth

def _poisson_onsets(rng: np.random.Generator, rate: float, n_samples: int, fs: float) -> np.ndarray:
    """Sorted onsets (samples) of a Poisson process of `rate` Hz over the stream."""
    count = rng.poisson(rate * n_samples / fs)
    return np.sort(rng.integers(0, n_samples, size=count)).astype(np.int64)


def _event_energies(rng: np.random.Generator, sim: dict, count: int) -> np.ndarray:
    """keV: calibration line (Gaussian) with probability line_fraction, else truncated exponential."""
    in_line = rng.random(count) < sim["line_fraction"]
    line = rng.normal(sim["line_energy"], sim["line_width"], count)
    lo, hi, scale = sim["energy_min"], sim["energy_max"], sim["background_scale"]
    u = rng.random(count)
    background = lo - scale * np.log1p(-u * -np.expm1(-(hi - lo) / scale))
    return np.where(in_line, line, background)


def _log_uniform(rng, bounds, size) -> np.ndarray:
    return np.exp(rng.uniform(np.log(bounds[0]), np.log(bounds[1]), size))


def _single_channel(amps: np.ndarray, chan: np.ndarray, n_channels: int) -> np.ndarray:
    out = np.zeros((n_channels, len(amps)))
    out[chan, np.arange(len(amps))] = amps
    return out


def draw_truth(sim: dict, sample_frequency: float, n_samples: int, rng: np.random.Generator) -> dict:
    """Draw every pulse and artifact of the stream; dict of arrays sorted by onset.

    Keys: onset (samples), amplitude (channel, pulse) V, energy keV, pulse_class, duration s.
    """
    fs, n_ch = sample_frequency, len(sim["channels"])
    vpk = np.array([c["volts_per_kev"] for c in sim["channels"]])
    line_height = sim["line_energy"] * vpk
    parts = []

    def add(cls, onset, amplitude, energy=None, duration=None):
        n = len(onset)
        parts.append(dict(onset=onset, amplitude=amplitude, pulse_class=np.full(n, cls, dtype="<U16"),
                          energy=np.full(n, np.nan) if energy is None else energy,
                          duration=np.full(n, np.nan) if duration is None else duration))

    onset = _poisson_onsets(rng, sim["event_rate"], n_samples, fs)
    energy = _event_energies(rng, sim, len(onset))
    add("event", onset, vpk[:, None] * energy, energy)

    emax = sim["energy_max"]
    onset = _poisson_onsets(rng, sim["high_energy_rate"], n_samples, fs)
    energy = rng.uniform(emax, HIGH_ENERGY_FACTOR * emax, len(onset))
    add("high_energy", onset, vpk[:, None] * energy, energy)

    rates = {name: (sim["artifacts"] or {}).get(name, 0.0) for name in ARTIFACTS}
    onset = _poisson_onsets(rng, rates["spike"], n_samples, fs)
    chan = rng.integers(0, n_ch, len(onset))
    height = rng.choice([-1.0, 1.0], len(onset)) * _log_uniform(rng, SPIKE_LINE_HEIGHTS, len(onset))
    width = rng.integers(SPIKE_SAMPLES[0], SPIKE_SAMPLES[1] + 1, len(onset))
    add("spike", onset, _single_channel(height * line_height[chan], chan, n_ch), duration=width / fs)

    parts.extend(_squid_steps(rng, rates, n_samples, fs, line_height))

    onset = _poisson_onsets(rng, rates["temperature_rise"], n_samples, fs)
    heat = _log_uniform(rng, TEMPERATURE_RISE_LINE_ENERGIES, len(onset)) * sim["line_energy"]
    ramp = rng.uniform(*TEMPERATURE_RISE_SECONDS, len(onset))
    add("temperature_rise", onset, vpk[:, None] * heat, duration=ramp)

    truth = {k: np.concatenate([p[k] for p in parts], axis=-1) for k in parts[0]}
    order = np.argsort(truth["onset"], kind="stable")
    return {k: v[..., order] for k, v in truth.items()}


def _squid_steps(rng, rates: dict, n_samples: int, fs: float, line_height: np.ndarray) -> list[dict]:
    """SQUID jumps (+-n flux quanta) and resets (back to the starting level), single channel each."""
    n_ch = len(line_height)
    jumps = _poisson_onsets(rng, rates["squid_jump"], n_samples, fs)
    jump_chan = rng.integers(0, n_ch, len(jumps))
    quanta = rng.choice([-1, 1], len(jumps)) * rng.integers(JUMP_QUANTA[0], JUMP_QUANTA[1] + 1, len(jumps))
    jump_size = quanta * FLUX_QUANTUM_LINE_HEIGHTS * line_height[jump_chan]
    resets = _poisson_onsets(rng, rates["reset"], n_samples, fs)
    reset_chan = rng.integers(0, n_ch, len(resets))
    # walk through jumps and resets in time order: a reset undoes the channel's accumulated jumps
    onset = np.concatenate([jumps, resets])
    chan = np.concatenate([jump_chan, reset_chan])
    is_reset = np.r_[np.zeros(len(jumps), bool), np.ones(len(resets), bool)]
    size = np.concatenate([jump_size, np.zeros(len(resets))])
    level = np.zeros(n_ch)
    for i in np.argsort(onset, kind="stable"):
        if is_reset[i]:
            size[i] = -level[chan[i]]
        level[chan[i]] += size[i]
    out = []
    for cls, sel in (("squid_jump", ~is_reset), ("reset", is_reset)):
        n = int(sel.sum())
        out.append(dict(onset=onset[sel], amplitude=_single_channel(size[sel], chan[sel], n_ch),
                        pulse_class=np.full(n, cls, dtype="<U16"), energy=np.full(n, np.nan),
                        duration=np.full(n, np.nan)))
    return out


def truth_dataset(truth: dict, channels: list[str], sim: dict, sample_frequency: float,
                  n_samples: int) -> xr.Dataset:
    """The truth Dataset (store kind "truth") of drawn pulses and artifacts."""
    vpk = [float(c["volts_per_kev"]) for c in sim["channels"]]
    return xr.Dataset(
        {
            "onset_sample": ("pulse", truth["onset"].astype(np.int64)),
            "amplitude": (("channel", "pulse"), truth["amplitude"].astype(np.float32),
                          {"units": "V"}),
            "energy": ("pulse", truth["energy"].astype(np.float32), {"units": "keV"}),
            "pulse_class": ("pulse", truth["pulse_class"].astype(str)),
            "duration": ("pulse", truth["duration"].astype(np.float32), {"units": "s"}),
        },
        coords={"channel": list(channels)},
        attrs=provenance("truth", parameters=sim, inputs=[], sample_frequency=float(sample_frequency),
                         n_samples=int(n_samples), volts_per_kev=vpk),
    )


# ----------------------------------------------------------------------------------------------
# block synthesis

def _in_block(onsets: np.ndarray, a: int, b: int, extent: int) -> range:
    """Indices of sorted `onsets` whose [onset, onset + extent) meets [a, b)."""
    return range(int(np.searchsorted(onsets, a - extent, "right")), int(np.searchsorted(onsets, b, "left")))


def _add_pulses(out: np.ndarray, a: int, onsets, amplitudes, templates, extents) -> None:
    """Add amplitude * template of each pulse over its part inside out's window [a, a + len).

    extents : (channel, pulse) samples over which each pulse is added
    """
    b = a + out.shape[1]
    for i in _in_block(onsets, a, b, int(extents.max()) if extents.size else 0):
        on = int(onsets[i])
        for c, tmpl in enumerate(templates):
            lo, hi = max(on, a), min(on + int(extents[c, i]), b)
            if hi > lo:
                out[c, lo - a:hi - a] += amplitudes[c, i] * tmpl[lo - on:hi - on]


def _add_temperature_rises(out: np.ndarray, a: int, onsets, amplitudes, ramps) -> None:
    """Add temperature rises (ramp samples `ramps`) over their part inside [a, a + len)."""
    b = a + out.shape[1]
    extent = int(math.ceil(TEMPERATURE_RISE_EXTENT * ramps.max())) if len(ramps) else 0
    for i in _in_block(onsets, a, b, extent):
        on = int(onsets[i])
        lo, hi = max(on, a), min(on + int(math.ceil(TEMPERATURE_RISE_EXTENT * ramps[i])), b)
        if hi > lo:
            shape = temperature_rise_shape(np.arange(lo - on, hi - on), ramps[i])
            out[:, lo - a:hi - a] += amplitudes[:, i:i + 1] * shape


def _add_steps(out: np.ndarray, a: int, onsets, cumulative) -> None:
    """Add the SQUID step level: sum of all step sizes with onset <= sample.

    cumulative : (channel, steps + 1) running sums of step sizes, starting with 0.
    """
    b = a + out.shape[1]
    j0, j1 = np.searchsorted(onsets, [a, b], "left")
    delta = np.zeros_like(out)
    delta[:, 0] = cumulative[:, j0]
    step_sizes = np.diff(cumulative[:, j0:j1 + 1], axis=1)
    np.add.at(delta.T, onsets[j0:j1] - a, step_sizes.T)
    out += np.cumsum(delta, axis=1)


def _add_spikes(out: np.ndarray, a: int, onsets, amplitudes, widths) -> None:
    """Add rectangular spikes of `widths` samples."""
    b = a + out.shape[1]
    for i in _in_block(onsets, a, b, int(widths.max()) if len(widths) else 0):
        lo, hi = max(int(onsets[i]), a), min(int(onsets[i] + widths[i]), b)
        out[:, lo - a:hi - a] += amplitudes[:, i:i + 1]


def crossfade_overlap(block_size: int) -> int:
    """Samples over which consecutive noise segments are crossfaded (a quarter block)."""
    return max(int(block_size) // 4, 1)


class _NoiseJoiner:
    """Continuous coloured noise, one block at a time, segments joined by a sin/cos crossfade."""

    def __init__(self, psd: np.ndarray, block_size: int, sample_frequency: float, rng):
        self.psd, self.block, self.fs, self.rng = psd, block_size, sample_frequency, rng
        self.overlap = crossfade_overlap(block_size)
        theta = 0.5 * np.pi * (np.arange(self.overlap) + 0.5) / self.overlap
        self.fade_out, self.fade_in = np.cos(theta), np.sin(theta)
        self.tail = None

    def next_block(self) -> np.ndarray:
        """Noise (channel, block_size) V continuing the previous block."""
        n_ch = self.psd.shape[0]
        seg = noise_from_psd(self.psd, self.block + self.overlap, self.fs, self.rng, size=n_ch,
                             dtype=np.float64)
        out = seg[:, :self.block].copy()
        if self.tail is not None:
            out[:, :self.overlap] = self.tail * self.fade_out + out[:, :self.overlap] * self.fade_in
        self.tail = seg[:, self.block:]
        return out


def channel_psd(ch: dict, n_samples: int, sample_frequency: float) -> np.ndarray:
    """One-sided noise PSD (V^2/Hz) of a channel config at the rfft frequencies of n_samples."""
    noise = dict(ch["noise"])
    noise["lines"] = tuple(tuple(map(float, line)) for line in noise.get("lines", []) or [])
    try:
        return psd_model(np.fft.rfftfreq(n_samples, 1.0 / sample_frequency), **noise)
    except TypeError as exc:
        raise CryopipeError(f"simulation: bad noise parameters {sorted(ch['noise'])}: {exc}") from None


class _Sources:
    """The truth split by kind, prepared once, adding its signals to blocks of the stream."""

    def __init__(self, truth: dict, templates: list[np.ndarray], sample_frequency: float):
        def pick(*classes):
            sel = np.isin(truth["pulse_class"], classes)
            return truth["onset"][sel], truth["amplitude"][:, sel], truth["duration"][sel] * sample_frequency

        self.templates = templates
        self.pulse_onset, self.pulse_amp, _ = pick("event", "high_energy")
        self.pulse_extent = np.array([pulse_extents(t, self.pulse_amp[c]) for c, t in enumerate(templates)],
                                     dtype=np.int64).reshape(self.pulse_amp.shape)
        self.rise_onset, self.rise_amp, self.rise_ramp = pick("temperature_rise")
        self.spike_onset, self.spike_amp, widths = pick("spike")
        self.spike_width = np.rint(widths).astype(np.int64)
        self.step_onset, steps, _ = pick("squid_jump", "reset")
        self.step_cumulative = np.concatenate([np.zeros((len(steps), 1)), np.cumsum(steps, axis=1)], axis=1)

    def thermal(self, a: int, m: int) -> np.ndarray:
        """Pulses and temperature rises (channel, m) V in samples [a, a + m), before saturation."""
        out = np.zeros((len(self.templates), m))
        _add_pulses(out, a, self.pulse_onset, self.pulse_amp, self.templates, self.pulse_extent)
        _add_temperature_rises(out, a, self.rise_onset, self.rise_amp, self.rise_ramp)
        return out

    def add_electronics(self, volts: np.ndarray, a: int) -> None:
        """Add SQUID steps and spikes to `volts` (channel, m) holding samples [a, a + m)."""
        _add_steps(volts, a, self.step_onset, self.step_cumulative)
        _add_spikes(volts, a, self.spike_onset, self.spike_amp, self.spike_width)


def simulate_stream(out_dir, sim: dict, sample_frequency: float, channels: list[str], *,
                    block_size: int = 2**20, progress: Callable[[float], None] | None = None,
                    adc_bits: int = 16, adc_range: float = 20.0) -> tuple[list[Path], xr.Dataset]:
    """Write out_dir/<channel>.csmpl for a simulated module; return the paths and the truth Dataset.

    Parameters
    ----------
    out_dir : folder for the csmpl files (created)
    sim : simulation config (see DEFAULT_SIMULATION)
    sample_frequency : Hz
    channels : channel names, one per entry of sim["channels"]
    block_size : samples synthesised at once (peak memory ~110 bytes per sample and channel:
        ~230 MB for 2**20 samples and 2 channels, independent of the duration)
    progress : called with the fraction done (0..1] after each block
    adc_bits, adc_range : ADC of the written int16 files (bits, V peak to peak)
    """
    validate_simulation(sim, channels, sample_frequency)
    if isinstance(block_size, bool) or not isinstance(block_size, (int, np.integer)) or block_size < 1:
        raise CryopipeError(f"simulation: block_size must be a positive integer, got {block_size!r}")
    sim = copy.deepcopy(sim)
    fs, block_size = float(sample_frequency), int(block_size)
    n_samples = int(round(sim["duration"] * fs))
    seeds = np.random.SeedSequence(int(sim["seed"])).spawn(2)       # truth and noise: independent
    truth_rng, noise_rng = (np.random.default_rng(s) for s in seeds)
    truth = draw_truth(sim, fs, n_samples, truth_rng)
    segment = block_size + crossfade_overlap(block_size)
    psd = np.stack([channel_psd(ch, segment, fs) for ch in sim["channels"]])
    noise = _NoiseJoiner(psd, block_size, fs, noise_rng)
    offsets = np.array([[float(ch["offset"])] for ch in sim["channels"]])
    ceilings = [ch.get("saturation") for ch in sim["channels"]]
    sources = _Sources(truth, [channel_template(ch, fs) for ch in sim["channels"]], fs)

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{name}.csmpl" for name in channels]
    for a in range(0, n_samples, block_size):
        m = min(block_size, n_samples - a)
        thermal = sources.thermal(a, m)
        for c, ceiling in enumerate(ceilings):
            if ceiling is not None:
                thermal[c] = saturate(thermal[c], float(ceiling))
        volts = noise.next_block()[:, :m]
        volts += thermal
        volts += offsets
        sources.add_electronics(volts, a)
        for c, path in enumerate(paths):
            write_csmpl(path, volts[c], adc_bits=adc_bits, adc_range=adc_range, append=a > 0)
        if progress is not None:
            progress((a + m) / n_samples)
    return paths, truth_dataset(truth, channels, sim, fs, n_samples)
