"""Event classes of Cait's Box 1 as parameter plans: which pulses, steps, spikes and ramps a record holds.

A plan (`RecordPlan`) describes every record of a simulated set before any sample is drawn:
pulse components (shape, onset, amplitude), a linear temperature ramp, a post-saturation step
(SQUID jump, reset), a digitiser spike and a slow polynomial drift. Amplitudes are kept in noise
units and turned into volts per record when the record is rendered (`records.py`):
``a_of`` in units of the optimum-filter resolution sigma_OF (i.e. the SNR of a pulse) and
``a_bl`` (and all non-pulse amplitudes) in units of the baseline noise rms sigma_BL.

Pulse shapes come from a shape provider: `TableShape` (a measured SEV, detector mode) or
`ModelShape` (the Proebst model with per-record time constants, universal mode). Time is in
samples throughout this module; the record window has N samples and its trigger sits at N/4.

Pulse component row layout (8 float columns, see `records._add_pulse`):
  kind (0 none, 1 table, 2 sum of exponentials), onset (sample), then for kind 1: scale (time
  compression of the SEV), for kind 2: tau_1..tau_3 (samples), c_1..c_3 (coefficients, peak 1).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputError

MAX_PULSES = 5
KIND_NONE, KIND_TABLE, KIND_EXP = 0, 1, 2


@dataclass
class ClassOptions:
    """Knobs of the class shapes (fractions of the record length N unless stated).

    snr_range : (lo, hi) pulse height / sigma_OF, drawn log-uniformly
    onset_jitter : accepted pulses start within N/4 +- onset_jitter*N
    early_late_min : early/late trigger onsets are at least this far from N/4
    pileup_min_separation : onsets of piled-up pulses are at least this far apart
    pileup_min_ratio : smaller piled-up pulses are at least this fraction of the largest
    pileup_trigger_largest : probability that the pile-up pulse at the trigger position is the largest
    drift : std of the slow drift coefficients, sigma_BL
    """

    snr_range: tuple = (3.0, 1000.0)
    onset_jitter: float = 1 / 64
    early_late_min: float = 1 / 8
    pileup_min_separation: float = 1 / 128
    pileup_min_ratio: float = 0.05
    pileup_trigger_largest: float = 0.5
    drift: float = 1.0
    decaying_level: tuple = (10.0, 1000.0)     # sigma_BL at the window start
    ramp_level: tuple = (10.0, 300.0)          # sigma_BL at the window end
    spike_height: tuple = (8.0, 300.0)         # sigma_BL, either sign
    spike_width: tuple = (1, 4)                # samples
    jump_height: tuple = (5.0, 100.0)          # sigma_BL, either sign
    reset_height: tuple = (300.0, 5000.0)      # sigma_BL, upwards
    carrier_speedup: tuple = (2.0, 6.0)        # carrier shape is this many times faster
    tail_stretch: tuple = (3.0, 10.0)          # slow tail component is this many times slower
    tail_fraction: tuple = (0.1, 0.5)          # slow tail height / prompt height
    # wide physics (issue 15; the defaults keep the original classes, WIDE_OPTIONS switches them on)
    tail_step_fraction: float = 0.0            # share of tail events whose tail is a persistent step
    reset_pulse_fraction: float = 0.0          # share of resets that are a pulse dropping below baseline
    pileup_any_ratio: float = 0.0              # share of pile-ups whose extra pulses have any height (0.02-3x)


#: Class options of the wide universal distribution (issue 15): ranges at least as wide as Cait's
#: public parameter sampler (onset +- 20 ms of a ~0.65 s window; spikes 0.1-1 ms, up to 2 V; SQUID
#: jumps 0.1-10 V; resets as a pulse followed by a drop of 0.3-0.9 of its height; tails as a
#: persistent step of 0.15-0.4 of the pulse height; decaying baselines of 5-30 V before saturation).
WIDE_OPTIONS = {
    "onset_jitter": 1 / 32, "spike_height": (5.0, 3000.0), "spike_width": (1, 12), "jump_height": (5.0, 5000.0),
    "decaying_level": (10.0, 30000.0), "ramp_level": (5.0, 3000.0), "carrier_speedup": (1.5, 10.0),
    "tail_stretch": (3.0, 300.0), "tail_fraction": (0.1, 0.5), "tail_step_fraction": 0.5,
    "reset_pulse_fraction": 0.5, "pileup_any_ratio": 0.5,
}


def log_uniform(rng: np.random.Generator, lo, hi, size) -> np.ndarray:
    """Draw log-uniformly in [lo, hi] (lo, hi > 0, broadcast against size)."""
    lo, hi = np.asarray(lo, float), np.asarray(hi, float)
    return np.exp(rng.uniform(np.log(lo), np.log(hi), size))


class RecordPlan:
    """Per-record parameters of a simulated set (see module docstring for units)."""

    def __init__(self, n: int):
        self.n = n
        self.pulses = np.zeros((n, MAX_PULSES, 8))
        self.a_of = np.zeros((n, MAX_PULSES))
        self.a_bl = np.zeros((n, MAX_PULSES))
        self.physical = np.zeros((n, MAX_PULSES), dtype=bool)
        self.main = np.full(n, -1, dtype=np.int64)
        self.n_used = np.zeros(n, dtype=np.int64)
        self.ramp = np.zeros(n)
        self.step_pos = np.zeros(n, dtype=np.int64)
        self.step = np.zeros(n)
        self.spike_pos = np.zeros(n, dtype=np.int64)
        self.spike_width = np.zeros(n, dtype=np.int64)
        self.spike = np.zeros(n)
        self.drift = np.zeros((n, 2))

    def add_pulse(self, idx, entries, onset, a_of=0.0, a_bl=0.0, physical=True, main=False):
        """Append one pulse component to each record in `idx` (entries from a shape provider)."""
        slot = self.n_used[idx]
        if np.any(slot >= MAX_PULSES):
            raise ValueError("more than MAX_PULSES pulse components in a record")
        rows = np.array(entries, dtype=float, copy=True)
        rows[:, 1] = onset
        self.pulses[idx, slot] = rows
        self.a_of[idx, slot] = a_of
        self.a_bl[idx, slot] = a_bl
        self.physical[idx, slot] = physical
        if main:
            self.main[idx] = slot
        self.n_used[idx] += 1

    def permute(self, order) -> None:
        """Reorder the records (in place) by index array `order`."""
        for name, value in vars(self).items():
            if isinstance(value, np.ndarray):
                setattr(self, name, value[order])


class TableShape:
    """Pulse shapes from a standard event (SEV, max 1, onset at N/4): detector mode.

    Carrier pulses are the SEV compressed in time, the slow tail component the SEV stretched.
    """

    def __init__(self, sev: np.ndarray):
        self.sev = np.asarray(sev, dtype=np.float64)
        n = self.sev.size
        self.c0 = float(n // 4)
        self.tail_tau = sev_tail_decay(self.sev)
        self.peak_index = int(np.argmax(self.sev))
        below = np.nonzero(self.sev[self.peak_index:] < np.exp(-1.0))[0]
        self.decay = float(below[0]) if below.size else float(n - self.peak_index)

    def entries(self, idx, variant: str, rng: np.random.Generator, opts: ClassOptions) -> np.ndarray:
        m = len(idx)
        rows = np.zeros((m, 8))
        rows[:, 0] = KIND_TABLE
        if variant == "main":
            rows[:, 2] = 1.0
        elif variant == "carrier":
            rows[:, 2] = log_uniform(rng, *opts.carrier_speedup, m)
        elif variant == "slow":
            rows[:, 2] = 1.0 / log_uniform(rng, *opts.tail_stretch, m)
        else:
            raise ValueError(f"unknown pulse variant {variant!r}")
        return rows

    def value_at(self, entries, dt) -> np.ndarray:
        """Normalised pulse value `dt` samples after onset."""
        pos = self.c0 + np.asarray(dt) * entries[:, 2]
        last = self.sev.size - 1
        inside = np.interp(np.minimum(pos, last), np.arange(self.sev.size), self.sev)
        beyond = self.sev[-1] * np.exp(-np.maximum(pos - last, 0.0) / self.tail_tau)
        return np.where(pos < 0, 0.0, np.where(pos > last, beyond, inside))

    def peak_delay(self, entries) -> np.ndarray:
        return (self.peak_index - self.c0) / entries[:, 2]

    def decay_time(self, entries) -> np.ndarray:
        return self.decay / entries[:, 2]


def sev_tail_decay(sev: np.ndarray) -> float:
    """Exponential decay time (samples) of the last eighth of a SEV, for extrapolating past the window.

    Returns inf (hold the last value) when the tail is not a positive, decreasing curve.
    """
    tail = sev[-max(sev.size // 8, 8):]
    if np.any(tail <= 0):
        return np.inf
    slope = np.polyfit(np.arange(tail.size), np.log(tail), 1)[0]
    return -1.0 / slope if slope < 0 else np.inf


STEP_TAU = 1e12  # samples: the "decay" of a persistent step


class ModelShape:
    """Proebst pulse shapes with per-record time constants (samples): universal mode.

    tau_n, tau_in, tau_t : non-thermal decay, rise, thermal decay; at_over_an : At / An.
    an_sign : optional per-record sign of the non-thermal component (-1 where tau_n < tau_in, as in
    Cait's sampler: An (e^-t/tau_n - e^-t/tau_in) stays positive); then at_over_an is At's share in [0, 1].
    """

    def __init__(self, tau_n, tau_in, tau_t, at_over_an, an_sign=None):
        self.tau_n, self.tau_in, self.tau_t = (np.asarray(a, dtype=np.float64) for a in (tau_n, tau_in, tau_t))
        self.ratio = np.asarray(at_over_an, dtype=np.float64)
        self.an_sign = None if an_sign is None else np.asarray(an_sign, dtype=np.float64)

    def entries(self, idx, variant: str, rng: np.random.Generator, opts: ClassOptions) -> np.ndarray:
        idx = np.asarray(idx)
        tn, ti, tt, r = self.tau_n[idx], self.tau_in[idx], self.tau_t[idx], self.ratio[idx]
        taus = np.stack([tn, ti, tt], axis=1)
        if self.an_sign is None:
            coefs = np.stack([1.0 - r, -np.ones_like(r), r], axis=1)
        else:
            an = self.an_sign[idx] * (1.0 - r)
            coefs = np.stack([an, -(an + r), r], axis=1)
        if variant == "carrier":
            taus = taus / log_uniform(rng, *opts.carrier_speedup, len(idx))[:, None]
        elif variant == "slow":
            slow = np.maximum(tn, tt) * log_uniform(rng, *opts.tail_stretch, len(idx))
            taus = np.stack([slow, tn, np.ones_like(tn)], axis=1)
            coefs = np.stack([np.ones_like(r), -np.ones_like(r), np.zeros_like(r)], axis=1)
        elif variant == "step":   # a persistent step rising with the pulse: 1 - e^-t/tau
            rise = np.maximum(np.maximum(tn, ti), 0.3)
            taus = np.stack([np.full_like(tn, STEP_TAU), rise, np.ones_like(tn)], axis=1)
            coefs = np.stack([np.ones_like(r), -np.ones_like(r), np.zeros_like(r)], axis=1)
        elif variant == "drop":   # a fast persistent step (reset): 1 - e^-t/tau, tau = 2 min(tau_in, tau_n)
            fall = np.maximum(2.0 * np.minimum(tn, ti), 0.3)
            taus = np.stack([np.full_like(tn, STEP_TAU), fall, np.ones_like(tn)], axis=1)
            coefs = np.stack([np.ones_like(r), -np.ones_like(r), np.zeros_like(r)], axis=1)
        elif variant != "main":
            raise ValueError(f"unknown pulse variant {variant!r}")
        _, peak = exp_sum_peak(taus, coefs)
        rows = np.zeros((len(idx), 8))
        rows[:, 0] = KIND_EXP
        rows[:, 2:5] = taus
        rows[:, 5:8] = coefs / peak[:, None]
        return rows

    @staticmethod
    def value_at(entries, dt) -> np.ndarray:
        dt = np.asarray(dt, dtype=float)[:, None]
        v = np.sum(entries[:, 5:8] * np.exp(-dt / entries[:, 2:5]), axis=1)
        return np.where(dt[:, 0] > 0, v, 0.0)

    @staticmethod
    def peak_delay(entries) -> np.ndarray:
        return exp_sum_peak(entries[:, 2:5], entries[:, 5:8])[0]

    @staticmethod
    def decay_time(entries) -> np.ndarray:
        return np.max(np.where(entries[:, 5:8] > 0, entries[:, 2:5], 0.0), axis=1)


def exp_sum_peak(taus, coefs, n_grid: int = 512, n_newton: int = 6):
    """Time and value of the maximum of f(t) = sum_j c_j exp(-t/tau_j), t >= 0, per row.

    A geometric grid from min(tau)/100 to 20 max(tau) locates the peak; Newton steps on f' = 0 refine it.
    """
    taus, coefs = np.asarray(taus, float), np.asarray(coefs, float)
    lo = np.min(taus, axis=1) / 100.0
    hi = np.max(taus, axis=1) * 20.0
    grid = lo[:, None] * (hi / lo)[:, None] ** np.linspace(0.0, 1.0, n_grid)[None, :]
    values = np.einsum("rj,rgj->rg", coefs, np.exp(-grid[:, :, None] / taus[:, None, :]))
    t = grid[np.arange(len(grid)), np.argmax(values, axis=1)]
    for _ in range(n_newton):
        e = np.exp(-t[:, None] / taus)
        d1 = np.sum(-coefs / taus * e, axis=1)
        d2 = np.sum(coefs / taus**2 * e, axis=1)
        step = np.where(d2 < 0, d1 / d2, 0.0)
        t = np.clip(t - step, lo, hi)
    peak = np.sum(coefs * np.exp(-t[:, None] / taus), axis=1)
    return t, peak


# ---------------------------------------------------------------------------------------------
# class builders: fill the plan rows `idx` of one class
# ---------------------------------------------------------------------------------------------

def _snr(rng, opts, m):
    return log_uniform(rng, *opts.snr_range, m)


def _trigger_onset(rng, opts, n_samples, m):
    q = n_samples // 4
    return q + rng.uniform(-opts.onset_jitter, opts.onset_jitter, m) * n_samples


def _event_pulse(plan, idx, shape, rng, opts, n_samples, variant="main"):
    plan.add_pulse(idx, shape.entries(idx, variant, rng, opts), _trigger_onset(rng, opts, n_samples, len(idx)),
                   a_of=_snr(rng, opts, len(idx)), main=True)


def _tail_event(plan, idx, shape, rng, opts, n_samples):
    m = len(idx)
    onset = _trigger_onset(rng, opts, n_samples, m)
    snr = _snr(rng, opts, m)
    plan.add_pulse(idx, shape.entries(idx, "main", rng, opts), onset, a_of=snr, main=True)
    frac = rng.uniform(*opts.tail_fraction, m)
    slow = shape.entries(idx, "slow", rng, opts)
    if opts.tail_step_fraction > 0 and isinstance(shape, ModelShape):
        use = rng.random(m) < opts.tail_step_fraction
        slow[use] = shape.entries(idx[use], "step", rng, opts)
    plan.add_pulse(idx, slow, onset, a_of=snr * frac, physical=False)


def _decaying_baseline(plan, idx, shape, rng, opts, n_samples):
    """A large pulse whose peak lies before the window: only its decay is seen."""
    m = len(idx)
    entries = shape.entries(idx, "main", rng, opts)
    delay = shape.peak_delay(entries) + rng.uniform(0.05, 2.0, m) * shape.decay_time(entries)
    level = log_uniform(rng, *opts.decaying_level, m)
    value = np.maximum(shape.value_at(entries, delay), 1e-3)
    plan.add_pulse(idx, entries, -delay, a_bl=level / value)


def _noise(plan, idx, shape, rng, opts, n_samples):
    return None


def _temperature_rise(plan, idx, shape, rng, opts, n_samples):
    plan.ramp[idx] = log_uniform(rng, *opts.ramp_level, len(idx))


def _spike(plan, idx, shape, rng, opts, n_samples):
    m = len(idx)
    plan.spike_pos[idx] = rng.integers(n_samples // 16, n_samples - n_samples // 16, m)
    plan.spike_width[idx] = rng.integers(opts.spike_width[0], opts.spike_width[1] + 1, m)
    plan.spike[idx] = log_uniform(rng, *opts.spike_height, m) * rng.choice([-1.0, 1.0], m)


def _step(plan, idx, rng, n_samples, height):
    plan.step_pos[idx] = rng.integers(n_samples // 8, n_samples - n_samples // 8, len(idx))
    plan.step[idx] = height


def _squid_jump(plan, idx, shape, rng, opts, n_samples):
    m = len(idx)
    _step(plan, idx, rng, n_samples, log_uniform(rng, *opts.jump_height, m) * rng.choice([-1.0, 1.0], m))


def _reset(plan, idx, shape, rng, opts, n_samples):
    """An upward read-out step; with probability reset_pulse_fraction (model shapes only) instead a
    pulse at the trigger whose baseline drops by 0.3-0.9 of its height soon after its onset."""
    m = len(idx)
    pulse = np.zeros(m, dtype=bool)
    if opts.reset_pulse_fraction > 0 and isinstance(shape, ModelShape):
        pulse = rng.random(m) < opts.reset_pulse_fraction
    step_idx = idx[~pulse]
    _step(plan, step_idx, rng, n_samples, log_uniform(rng, *opts.reset_height, len(step_idx)))
    sub = idx[pulse]
    if sub.size:
        k = len(sub)
        entries = shape.entries(sub, "main", rng, opts)
        onset = _trigger_onset(rng, opts, n_samples, k)
        snr = _snr(rng, opts, k)
        plan.add_pulse(sub, entries, onset, a_of=snr)
        delay = np.minimum(shape.tau_in[sub], shape.tau_n[sub])
        plan.add_pulse(sub, shape.entries(sub, "drop", rng, opts), onset + delay,
                       a_of=-snr * rng.uniform(0.3, 0.9, k), physical=False)


def _pile_up(plan, idx, shape, rng, opts, n_samples):
    """2 to 5 pulses, one of them where the trigger puts a pulse (N/4 +- onset jitter), the others
    anywhere in [0, 15N/16), pairwise at least the minimum separation apart.

    The record was triggered by the pulse at N/4: it is the largest one (the main pulse) with
    probability pileup_trigger_largest, else a smaller one with a larger pulse elsewhere. The others
    are between pileup_min_ratio and 1 times the largest height (and not below the lower SNR bound).
    """
    m = len(idx)
    k = rng.integers(2, MAX_PULSES + 1, m)
    gap = opts.pileup_min_separation * n_samples
    trigger = _trigger_onset(rng, opts, n_samples, m)
    others = _separated_onsets(rng, k - 1, 0.0, n_samples * 15 / 16 - 2 * gap, gap)
    others = np.where(others < (trigger - gap)[:, None], others, others + 2 * gap)   # skip the trigger's gap
    onsets = np.concatenate([trigger[:, None], others[:, :-1]], axis=1)             # slot 0: the trigger pulse
    largest = _snr(rng, opts, m)
    lo_ratio = np.clip(np.maximum(opts.pileup_min_ratio, opts.snr_range[0] / largest), None, 1.0)
    main_slot = np.where(rng.random(m) < opts.pileup_trigger_largest, 0, rng.integers(1, k))
    anyr = rng.random(m) < opts.pileup_any_ratio if opts.pileup_any_ratio > 0 else np.zeros(m, dtype=bool)
    main_slot = np.where(anyr, 0, main_slot)
    for j in range(MAX_PULSES):
        has = j < k
        sub = idx[has]
        ratio = np.where(main_slot[has] == j, 1.0, log_uniform(rng, lo_ratio[has], 1.0, has.sum()))
        if anyr.any():   # Cait: every piled-up pulse has its own height (here 0.02-3 x, >= the SNR floor)
            free = log_uniform(rng, np.maximum(0.02, opts.snr_range[0] / largest[has]), 3.0, has.sum())
            ratio = np.where(anyr[has] & (j > 0), free, ratio)
        plan.add_pulse(sub, shape.entries(sub, "main", rng, opts), onsets[has, j], a_of=largest[has] * ratio)
    plan.main[idx] = main_slot


def _separated_onsets(rng, k, start, stop, min_sep):
    """Onsets (m, MAX_PULSES) in [start, stop), first k[i] of row i used, pairwise >= min_sep apart, random order."""
    m = len(k)
    used = np.arange(MAX_PULSES)[None, :] < k[:, None]
    span = stop - start - (k - 1) * min_sep
    if np.any(span <= 0):
        raise InputError("pile_up: record too short for the minimum pulse separation")
    u = np.sort(np.where(used, rng.uniform(0.0, 1.0, (m, MAX_PULSES)), np.inf), axis=1)
    onsets = start + np.where(used, u, 0.0) * span[:, None] + np.arange(MAX_PULSES)[None, :] * min_sep
    order = np.argsort(np.where(used, rng.uniform(size=(m, MAX_PULSES)), np.inf), axis=1)
    return np.where(used, np.take_along_axis(onsets, order, axis=1), 0.0)


def _early_or_late(plan, idx, shape, rng, opts, n_samples):
    """One pulse starting at least early_late_min*N before (early) or after (late) N/4."""
    m = len(idx)
    q = n_samples / 4
    gap = opts.early_late_min * n_samples
    early = rng.uniform(n_samples / 64, q - gap, m)
    late = rng.uniform(q + gap, 0.75 * n_samples, m)
    onset = np.where(rng.random(m) < 0.5, early, late)
    plan.add_pulse(idx, shape.entries(idx, "main", rng, opts), onset, a_of=_snr(rng, opts, m), main=True)


def _decaying_with_pulse(plan, idx, shape, rng, opts, n_samples):
    _decaying_baseline(plan, idx, shape, rng, opts, n_samples)
    _event_pulse(plan, idx, shape, rng, opts, n_samples)


def _decaying_with_tail(plan, idx, shape, rng, opts, n_samples):
    _decaying_baseline(plan, idx, shape, rng, opts, n_samples)
    _tail_event(plan, idx, shape, rng, opts, n_samples)


def _carrier(plan, idx, shape, rng, opts, n_samples):
    _event_pulse(plan, idx, shape, rng, opts, n_samples, variant="carrier")


CLASS_BUILDERS = {
    "event_pulse": _event_pulse,
    "noise": _noise,
    "decaying_baseline": _decaying_baseline,
    "temperature_rise": _temperature_rise,
    "spike": _spike,
    "squid_jump": _squid_jump,
    "reset": _reset,
    "carrier_event": _carrier,
    "tail_event": _tail_event,
    "decaying_baseline_with_event_pulse": _decaying_with_pulse,
    "decaying_baseline_with_tail_event": _decaying_with_tail,
    "pile_up": _pile_up,
    "early_or_late_trigger": _early_or_late,
}


def build_plan(classes: np.ndarray, shape, rng: np.random.Generator, opts: ClassOptions, n_samples: int) -> RecordPlan:
    """Plan for records of the given class names (one per record), drift included."""
    plan = RecordPlan(len(classes))
    for name, builder in CLASS_BUILDERS.items():
        idx = np.nonzero(classes == name)[0]
        if idx.size:
            builder(plan, idx, shape, rng, opts, n_samples)
    plan.drift = rng.normal(0.0, opts.drift, (plan.n, 2))
    return plan
