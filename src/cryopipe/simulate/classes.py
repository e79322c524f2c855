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

Label rules (issue 19): the classes do not contradict each other, for every shape provider and
every `ClassOptions` that `check_label_rules` accepts (both simulators call `build_plan`, which checks):

1. Onsets. Accepted pulses (event_pulse, carrier_event, tail_event: `records.DEFAULT_ACCEPTED`, and
   the pulse of decaying_baseline_with_event_pulse) start within N/4 +- onset_jitter*N (default N/64,
   WIDE N/32). The training shift augmentation moves any record by at most `MAX_ACCEPTED_SHIFT`*N
   = N/32 (16 of 512 bins; `cleaning.augment` must shift an L-bin record by at most
   MAX_ACCEPTED_SHIFT*L). early_or_late_trigger pulses start at least early_late_min*N = N/8 from
   N/4. So after any shift an accepted onset is within (J + S) N = 3/64 N (default) or 1/16 N (WIDE),
   and an early/late onset is at least (E - S) N = 3/32 N away: a gap of at least
   `ONSET_GAP`*N = N/32 (16 bins; 24 bins with the default jitter) separates the two classes.
2. Pile-up is visible. Every pulse of a pile_up record has SNR >= `PILEUP_MIN_SNR` = 5 (height /
   sigma_OF), and any two onsets are at least max(pileup_min_separation*N, `PILEUP_MIN_RISES` = 1.5
   onset-to-peak times) apart. Too-close or too-small pulses are never drawn (the pile-up is drawn
   visible, not relabelled). Fewer pulses are drawn where the window cannot hold k such onsets.
   Where the TES saturates (`build_plan`'s ceiling), each pulse must still add >= 5 sigma_OF at its
   peak through the saturation curve (`pileup_visible_heights`); pile-ups that it hides are redrawn
   (before: 3 % of default universal pile-ups, 10 % of WIDE ones, N=4096); universal mode gives the rare
   record still hidden after PILEUP_REDRAWS rounds (0.02 % of WIDE) an unsaturated detector. The
   ceiling judged is the one drawn, before its rounding down to a multiple of the ADC step.
3. Tails decay, steps are flat. The slow tail component of tail_event (and
   decaying_baseline_with_tail_event) falls to at most `TAIL_MAX_END_FRACTION` = 1/2 of its maximum
   by the window end (slower tails, including the persistent "step" tails of WIDE_OPTIONS, are
   shortened to that limit; the tail's rise time is capped at a quarter of the rest of the window,
   so that the limit can always be met). squid_jump and reset are steps: instantaneous (or, for a reset pulse,
   within 2 min(tau_in, tau_n)) and persistent (no decay in the window, `STEP_TAU`).
4. Carriers are not spikes. A carrier_event pulse falls from its maximum to 1/e in at least
   `CARRIER_MIN_DECAY_BINS` = 2 bins of the 512-bin preprocessed record (2N/512 samples): its speed-up
   over the detector's event pulse is capped at (event-pulse 1/e fall time) / (2N/512); where the
   event pulse itself falls faster than that, the carrier is slower than it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from .saturation import saturation_curve

MAX_PULSES = 5
KIND_NONE, KIND_TABLE, KIND_EXP = 0, 1, 2

#: Largest time shift the training augmentation may apply to a record, fraction of N (16 of 512 bins).
MAX_ACCEPTED_SHIFT = 1 / 32
#: Smallest distance between shifted accepted onsets and shifted early/late onsets, fraction of N.
ONSET_GAP = 1 / 32
#: Smallest SNR (height / sigma_OF) of every pulse of a pile-up: a 5 sigma_OF pulse stands above
#: the largest noise excursion of the optimum filter over a window of ~1000 independent positions
#: (chance ~ 1000 x 2.9e-7 = 3e-4), so the extra pulse is there to be seen, not a noise fluctuation.
PILEUP_MIN_SNR = 5.0
#: Smallest onset distance of piled-up pulses in onset-to-peak times (~2 10-90 % rise times): the
#: first pulse has peaked half a rise before the second starts, so the sum rises in two visible steps.
PILEUP_MIN_RISES = 1.5
#: Largest value of a tail component at the window end, fraction of its maximum (a tail decays visibly).
TAIL_MAX_END_FRACTION = 0.5
#: Smallest 1/e fall time of a carrier pulse, in bins of the 512-bin preprocessed record.
CARRIER_MIN_DECAY_BINS = 2.0
PREPROCESSED_BINS = 512


@dataclass
class ClassOptions:
    """Knobs of the class shapes (fractions of the record length N unless stated).

    snr_range : (lo, hi) pulse height / sigma_OF, drawn log-uniformly
    onset_jitter : accepted pulses start within N/4 +- onset_jitter*N
    early_late_min : early/late trigger onsets are at least this far from N/4; with onset_jitter it
        must leave room for the shift augmentation and the gap (`check_label_rules`)
    pileup_min_separation : onsets of piled-up pulses are at least this far apart (and at least
        PILEUP_MIN_RISES onset-to-peak times)
    pileup_min_ratio : smaller piled-up pulses are at least this fraction of the largest (and at least
        PILEUP_MIN_SNR sigma_OF high)
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


def check_label_rules(opts: ClassOptions) -> None:
    """Raise InputError where the options make accepted and early/late onsets overlap (rule 1).

    Needs onset_jitter + 2 MAX_ACCEPTED_SHIFT + ONSET_GAP <= early_late_min (fractions of N).
    """
    need = opts.onset_jitter + 2 * MAX_ACCEPTED_SHIFT + ONSET_GAP
    if need > opts.early_late_min + 1e-12:
        raise InputError(f"options: early_late_min {opts.early_late_min:.4g} N must be >= onset_jitter "
                         f"+ 2 MAX_ACCEPTED_SHIFT + ONSET_GAP = {need:.4g} N, else accepted and "
                         "early_or_late_trigger onsets overlap after the training shift")


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
        self.hidden = np.zeros(n, dtype=bool)   # pile-ups still hidden by saturation (build_plan)

    def add_pulse(self, idx, entries, onset, *, a_of=0.0, a_bl=0.0, physical=True, main=False):
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
        above = np.nonzero(self.sev > TAIL_MAX_END_FRACTION)[0]
        self.end_time = float(above[-1] + 1 - self.c0) if above[-1] < n - 1 else np.inf  # falls below the fraction

    def entries(self, idx, variant: str, rng: np.random.Generator, opts: ClassOptions, *,
                remaining=None) -> np.ndarray:
        """Pulse rows of `variant` (main, carrier, slow) for records `idx`.

        remaining : slow only, samples from onset to the window end: the stretch is capped so that the
            tail falls to TAIL_MAX_END_FRACTION of its maximum within them (where the SEV does)
        """
        m = len(idx)
        rows = np.zeros((m, 8))
        rows[:, 0] = KIND_TABLE
        if variant == "main":
            rows[:, 2] = 1.0
        elif variant == "carrier":
            rows[:, 2] = log_uniform(rng, *opts.carrier_speedup, m)
        elif variant == "slow":
            stretch = log_uniform(rng, *opts.tail_stretch, m)
            if remaining is not None and np.isfinite(self.end_time):
                stretch = np.minimum(stretch, np.asarray(remaining, float) / self.end_time)
            rows[:, 2] = 1.0 / stretch
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

    def fall_time(self, entries) -> np.ndarray:
        """Samples from the maximum until the pulse falls below 1/e of it."""
        return self.decay / entries[:, 2]

    @staticmethod
    def speed_up(entries, factor) -> np.ndarray:
        """The pulse rows compressed in time by `factor` (per row)."""
        rows = entries.copy()
        rows[:, 2] *= factor
        return rows


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

    def entries(self, idx, variant: str, rng: np.random.Generator, opts: ClassOptions, *,
                remaining=None) -> np.ndarray:
        """Pulse rows of `variant` (main, carrier, slow, step, drop) for records `idx`.

        remaining : slow and step only, samples from onset to the window end: the tail's decay time is
            capped so that it falls to TAIL_MAX_END_FRACTION of its maximum within them
        """
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
        elif variant in ("slow", "step"):   # e^-t/slow - e^-t/lead; step: a persistent step rising with the pulse
            if variant == "slow":
                slow, lead = np.maximum(tn, tt) * log_uniform(rng, *opts.tail_stretch, len(idx)), tn
            else:
                slow, lead = np.full_like(tn, STEP_TAU), np.maximum(np.maximum(tn, ti), 0.3)
            if remaining is not None:
                rem = np.broadcast_to(np.asarray(remaining, float), tn.shape)
                lead = np.minimum(lead, rem / 4)
                slow = cap_tail_tau(slow, lead, rem, TAIL_MAX_END_FRACTION)
            taus = np.stack([slow, lead, np.ones_like(tn)], axis=1)
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

    @staticmethod
    def speed_up(entries, factor) -> np.ndarray:
        """The pulse rows compressed in time by `factor` (per row; the peak value is unchanged)."""
        rows = entries.copy()
        rows[:, 2:5] /= np.asarray(factor, float)[:, None]
        return rows

    @staticmethod
    def fall_time(entries, *, n_iter: int = 48) -> np.ndarray:
        """Samples from the maximum until the pulse falls below 1/e of it (bisection)."""
        t_peak = ModelShape.peak_delay(entries)
        lo = np.zeros(len(entries))
        hi = 50.0 * np.max(entries[:, 2:5], axis=1)
        level = np.exp(-1.0) * ModelShape.value_at(entries, t_peak)
        for _ in range(n_iter):
            mid = 0.5 * (lo + hi)
            above = ModelShape.value_at(entries, t_peak + mid) > level
            lo, hi = np.where(above, mid, lo), np.where(above, hi, mid)
        return hi


def cap_tail_tau(slow, lead, remaining, fraction, *, n_iter: int = 48) -> np.ndarray:
    """Largest decay time <= `slow` of f(t) = e^-t/slow - e^-t/lead (slow > lead, samples) with
    f(remaining) <= fraction * max f (bisection in log(slow); needs remaining >= ~2.7 lead)."""
    slow, lead, rem = (np.asarray(a, float) for a in (slow, lead, remaining))

    def end_ratio(s):
        t_p = np.log(s / lead) * s * lead / (s - lead)
        with np.errstate(over="ignore", under="ignore"):
            return (np.exp(-rem / s) - np.exp(-rem / lead)) / (np.exp(-t_p / s) * (1.0 - lead / s))

    bad = end_ratio(slow) > fraction
    if not bad.any():
        return slow
    lo, hi = np.log(1.01 * lead[bad]), np.log(slow[bad])
    ls, lr = lead, rem
    lead, rem = ls[bad], lr[bad]
    for _ in range(n_iter):
        mid = 0.5 * (lo + hi)
        ok = end_ratio(np.exp(mid)) <= fraction
        lo, hi = np.where(ok, mid, lo), np.where(ok, hi, mid)
    out = slow.copy()
    out[bad] = np.exp(lo)
    return out


def exp_sum_peak(taus, coefs, *, n_grid: int = 512, n_newton: int = 6):
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
    """A pulse at the trigger plus a slower tail component that decays visibly (label rule 3)."""
    m = len(idx)
    onset = _trigger_onset(rng, opts, n_samples, m)
    snr = _snr(rng, opts, m)
    plan.add_pulse(idx, shape.entries(idx, "main", rng, opts), onset, a_of=snr, main=True)
    frac = rng.uniform(*opts.tail_fraction, m)
    remaining = n_samples - onset
    slow = shape.entries(idx, "slow", rng, opts, remaining=remaining)
    if opts.tail_step_fraction > 0 and isinstance(shape, ModelShape):
        use = rng.random(m) < opts.tail_step_fraction
        slow[use] = shape.entries(idx[use], "step", rng, opts, remaining=remaining[use])
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
    """2 to 5 visible pulses (label rule 2), one of them where the trigger puts a pulse (N/4 +- onset
    jitter), the others anywhere in [0, 15N/16), pairwise at least
    gap = max(pileup_min_separation N, PILEUP_MIN_RISES x onset-to-peak time) apart; fewer where the
    window cannot hold them (at least 2: the second pulse then lies after the trigger pulse).

    The record was triggered by the pulse at N/4: it is the largest one (the main pulse) with
    probability pileup_trigger_largest, else a smaller one with a larger pulse elsewhere. The others
    are between pileup_min_ratio and 1 times the largest height, and every pulse is at least
    max(PILEUP_MIN_SNR, lower SNR bound) sigma_OF high.
    """
    m = len(idx)
    entries = shape.entries(idx, "main", rng, opts)
    stop = n_samples * 15 / 16
    gap = np.maximum(opts.pileup_min_separation * n_samples, PILEUP_MIN_RISES * shape.peak_delay(entries))
    fit = np.ceil(stop / gap).astype(np.int64) - 1            # others drawn below: stop - k gap > 0
    k = np.minimum(rng.integers(2, MAX_PULSES + 1, m), np.maximum(fit, 2))
    trigger = _trigger_onset(rng, opts, n_samples, m)
    wide = fit < 2                                             # one other pulse, after the trigger pulse
    g = np.where(wide, 0.0, gap)
    others = _separated_onsets(rng, k - 1, 0.0, stop - 2 * g, g)
    others = np.where(others < (trigger - g)[:, None], others, others + 2 * g[:, None])   # skip the trigger's gap
    late = trigger + gap
    others[:, 0] = np.where(wide, late + rng.uniform(0.0, 1.0, m) * np.maximum(stop - late, 0.0), others[:, 0])
    onsets = np.concatenate([trigger[:, None], others[:, :-1]], axis=1)             # slot 0: the trigger pulse
    floor = max(opts.snr_range[0], PILEUP_MIN_SNR)
    largest = log_uniform(rng, floor, max(opts.snr_range[1], floor), m)
    lo_ratio = np.clip(np.maximum(opts.pileup_min_ratio, floor / largest), None, 1.0)
    main_slot = np.where(rng.random(m) < opts.pileup_trigger_largest, 0, rng.integers(1, k))
    anyr = rng.random(m) < opts.pileup_any_ratio if opts.pileup_any_ratio > 0 else np.zeros(m, dtype=bool)
    main_slot = np.where(anyr, 0, main_slot)
    for j in range(MAX_PULSES):
        has = j < k
        sub = idx[has]
        ratio = np.where(main_slot[has] == j, 1.0, log_uniform(rng, lo_ratio[has], 1.0, has.sum()))
        if anyr.any():   # Cait: every piled-up pulse has its own height (here 0.02-3 x, >= the SNR floor)
            free = log_uniform(rng, np.maximum(0.02, floor / largest[has]), 3.0, has.sum())
            ratio = np.where(anyr[has] & (j > 0), free, ratio)
        plan.add_pulse(sub, entries[has], onsets[has, j], a_of=largest[has] * ratio)
    plan.main[idx] = main_slot


def _separated_onsets(rng, k, start, stop, min_sep):
    """Onsets (m, MAX_PULSES) in [start, stop), first k[i] of row i used, pairwise >= min_sep apart, random order."""
    m = len(k)
    used = np.arange(MAX_PULSES)[None, :] < k[:, None]
    min_sep = np.broadcast_to(np.asarray(min_sep, float), (m,))[:, None]
    span = stop - start - (k - 1) * min_sep[:, 0]
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
    """A faster pulse than the detector's event pulse, at least CARRIER_MIN_DECAY_BINS bins of the
    512-bin record long from its maximum to 1/e (label rule 4)."""
    main = shape.entries(idx, "main", rng, opts)
    cap = shape.fall_time(main) / (CARRIER_MIN_DECAY_BINS * n_samples / PREPROCESSED_BINS)
    speedup = np.minimum(log_uniform(rng, *opts.carrier_speedup, len(idx)), cap)
    plan.add_pulse(idx, shape.speed_up(main, speedup),
                   _trigger_onset(rng, opts, n_samples, len(idx)), a_of=_snr(rng, opts, len(idx)), main=True)


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


PILEUP_REDRAWS = 30  # rounds of redrawing pile-ups that saturation makes invisible


def pileup_visible_heights(plan: RecordPlan, idx, shape, *, ceiling=None, nu=None) -> np.ndarray:
    """Visible height (sigma_OF) of each pulse of the pile-up records `idx`, (len(idx), MAX_PULSES), inf unused.

    The rise that pulse j adds at its own peak time through the TES saturation curve: f(x + a_j) - f(x),
    x the other pulses there; ceiling (sigma_OF units, per record of the plan; None or inf: no
    saturation) and nu as in `saturation.saturation_curve`.
    """
    idx = np.asarray(idx)
    rows, amps = plan.pulses[idx], plan.a_of[idx]
    used = np.arange(MAX_PULSES)[None, :] < plan.n_used[idx][:, None]
    out = np.full((len(idx), MAX_PULSES), np.inf)
    t_peak = rows[:, :, 1] + shape.peak_delay(rows[:, 0])[:, None]   # the pulses of a record share one shape
    for j in range(MAX_PULSES):
        has = np.nonzero(used[:, j])[0]
        if not has.size:
            continue
        x = np.zeros(has.size)
        for i in range(MAX_PULSES):
            both = used[has, i]
            if i != j and both.any():
                on = has[both]
                x[both] += amps[on, i] * shape.value_at(rows[on, i], np.maximum(t_peak[on, j] - rows[on, i, 1], 0.0))
        a = amps[has, j]
        if ceiling is None:
            out[has, j] = a
        else:
            c, v = np.asarray(ceiling, float)[idx[has]], np.asarray(nu, float)[idx[has]]
            sat = np.isfinite(c)
            vis = a.copy()
            vis[sat] = saturation_curve(x[sat] + a[sat], c[sat], nu=v[sat]) - saturation_curve(x[sat], c[sat],
                                                                                               nu=v[sat])
            out[has, j] = vis
    return out


def _reset_rows(plan: RecordPlan, idx) -> None:
    plan.pulses[idx] = 0.0
    plan.a_of[idx] = 0.0
    plan.a_bl[idx] = 0.0
    plan.physical[idx] = False
    plan.main[idx] = -1
    plan.n_used[idx] = 0


def build_plan(classes: np.ndarray, shape, rng: np.random.Generator, opts: ClassOptions, n_samples: int, *,
               ceiling=None, nu=None) -> RecordPlan:
    """Plan for records of the given class names (one per record), drift included (label rules checked).

    ceiling, nu : optional per-record TES saturation ceiling (sigma_OF units, inf: none) and asymmetry;
        pile-ups with a pulse that the saturation makes invisible (< PILEUP_MIN_SNR) are redrawn
        (up to PILEUP_REDRAWS rounds); those still hidden are marked in `plan.hidden`.
    """
    check_label_rules(opts)
    plan = RecordPlan(len(classes))
    for name, builder in CLASS_BUILDERS.items():
        idx = np.nonzero(classes == name)[0]
        if idx.size:
            builder(plan, idx, shape, rng, opts, n_samples)
    idx = np.nonzero(classes == "pile_up")[0]
    if ceiling is not None and idx.size:
        ceiling = np.broadcast_to(np.asarray(ceiling, float), (plan.n,))
        nu = np.broadcast_to(np.asarray(nu, float), (plan.n,))
        idx = idx[np.isfinite(ceiling[idx])]
        for round_ in range(PILEUP_REDRAWS + 1):
            if not idx.size:
                break
            idx = idx[np.min(pileup_visible_heights(plan, idx, shape, ceiling=ceiling, nu=nu), axis=1) < PILEUP_MIN_SNR]
            if idx.size and round_ < PILEUP_REDRAWS:
                _reset_rows(plan, idx)
                _pile_up(plan, idx, shape, rng, opts, n_samples)
        plan.hidden[idx] = True
    plan.drift = rng.normal(0.0, opts.drift, (plan.n, 2))
    return plan
