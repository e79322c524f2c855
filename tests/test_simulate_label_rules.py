"""Label rules of the record simulator (issue 19; `cryopipe.simulate.classes` module docstring).

Each rule is checked on thousands of simulated records of both simulators (detector mode, universal
mode with the default and the WIDE distribution) against the simulator's truth, with pulse shapes
evaluated here from their defining formulas, not by the simulator's own shape code.
"""
import numpy as np
import pytest
import scipy.fft

from cryopipe.errors import InputError
from cryopipe.signal.pulses import pulse_template
from cryopipe.simulate import records as R
from cryopipe.simulate.saturation import saturation_curve
from cryopipe.simulate.classes import (
    CARRIER_MIN_DECAY_BINS, KIND_EXP, KIND_TABLE, MAX_ACCEPTED_SHIFT, ONSET_GAP, PILEUP_MIN_RISES, PILEUP_MIN_SNR,
    TAIL_MAX_END_FRACTION, WIDE_OPTIONS, ClassOptions, ModelShape, TableShape, build_plan)
from cryopipe.simulate.noise import psd_model
from cryopipe.simulate.records import (DEFAULT_ACCEPTED, UNIVERSAL_RANGES, WIDE_RANGES, simulate_detector_records,
                                       simulate_universal_records)

N, FS = 4096, 25000.0
SEV = pulse_template(N, FS, 4e-3, 0.4e-3, 16e-3, at_over_an=0.5)
NPS = psd_model(scipy.fft.rfftfreq(N, 1 / FS), 1e-10, 1e-9, 10.0, ((50.0, 2.0, 1e-8),))
WIDE = ClassOptions(**WIDE_OPTIONS)
ONSET_CLASSES = sorted(DEFAULT_ACCEPTED) + ["decaying_baseline_with_event_pulse", "early_or_late_trigger"]


def _detector(counts, seed, options=None):
    return simulate_detector_records(counts, SEV, NPS, FS, np.random.default_rng(seed), options=options,
                                     saturation=20 * SEV.max() * 1e-3, workers=2)


def _universal(counts, seed, wide):
    return simulate_universal_records(counts, N, np.random.default_rng(seed), ranges=WIDE_RANGES if wide else None,
                                      options=WIDE if wide else None, workers=2)


SETS = {
    "detector": lambda counts, seed: _detector(counts, seed),
    "detector_wide_options": lambda counts, seed: _detector(counts, seed, WIDE),
    "universal": lambda counts, seed: _universal(counts, seed, False),
    "universal_wide": lambda counts, seed: _universal(counts, seed, True),
}


# ---------------------------------------------------------------------------------------------
# rule 1: accepted onsets and early/late onsets are apart, after any training shift
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(SETS))
def test_accepted_onsets_never_reach_early_or_late_after_shift(name):
    ds = SETS[name]({c: 1500 for c in ONSET_CLASSES}, 11).isel(channel=0)
    fs = ds.sample_frequency.values if "sample_frequency" in ds else np.full(ds.sizes["event"], FS)
    offset = np.abs(ds.onset.values * fs) / N                       # |onset - N/4|, fraction of N
    cls = ds.event_class.values
    accepted = np.isin(cls, ONSET_CLASSES[:-1])
    assert np.all(np.isfinite(offset))
    assert accepted.sum() >= 4 * 1500 - 1
    # worst case: an accepted record shifted away from N/4 and an early/late record shifted towards it
    widest_accepted = offset[accepted].max() + MAX_ACCEPTED_SHIFT
    nearest_early_late = offset[cls == "early_or_late_trigger"].min() - MAX_ACCEPTED_SHIFT
    assert nearest_early_late - widest_accepted >= ONSET_GAP - 1e-9


def test_rule_constants_meet_the_issue():
    """The specification (issue 19): visible pile-up at >= 5 sigma_OF and >= 1.5 onset-to-peak times
    (~2 rise times), carriers >= 2 of 512 bins, tails down to <= 1/2, a gap of >= 8 bins."""
    assert PILEUP_MIN_SNR >= 5 and PILEUP_MIN_RISES >= 1.5
    assert CARRIER_MIN_DECAY_BINS >= 2 and TAIL_MAX_END_FRACTION <= 0.5
    assert ONSET_GAP * 512 >= 8 and MAX_ACCEPTED_SHIFT * 512 >= 8


def test_options_that_overlap_are_refused():
    with pytest.raises(InputError, match="early_late_min"):
        _detector({"event_pulse": 2}, 0, ClassOptions(onset_jitter=1 / 16))


# ---------------------------------------------------------------------------------------------
# rule 2: pile-up pulses are visible: high enough and far enough apart
# ---------------------------------------------------------------------------------------------

def _peak_time(taus, coefs):
    """Onset-to-peak time (samples) of sum_j c_j exp(-t/tau_j), on a fine geometric grid (rel. step 1e-3)."""
    out = np.empty(len(taus))
    for a in range(0, len(taus), 256):
        tau, c = taus[a:a + 256], coefs[a:a + 256]
        lo, hi = tau.min(axis=1) / 100, 20 * tau.max(axis=1)
        t = lo[:, None] * (hi / lo)[:, None] ** np.linspace(0.0, 1.0, 20000)[None, :]
        v = sum(c[:, j:j + 1] * np.exp(-t / tau[:, j:j + 1]) for j in range(3))
        out[a:a + 256] = t[np.arange(len(t)), np.argmax(v, axis=1)]
    return out


def _universal_peak_time(ds):
    """Onset-to-peak time (samples) of each record's Proebst pulse, from its detector parameters."""
    return _peak_time(*_universal_shape(ds))


def _universal_shape(ds):
    """Time constants (samples) and coefficients of each record's Proebst pulse, from its detector parameters."""
    fs = ds.sample_frequency.values
    tn, ti, tt, r = (ds[k].values * f for k, f in (("tau_n", fs), ("tau_in", fs), ("tau_t", fs), ("at_over_an", 1)))
    taus = np.stack([tn, ti, tt], axis=1)
    if "an_sign" in ds:  # An (e^-t/tau_n - e^-t/tau_in) + At (e^-t/tau_t - e^-t/tau_in), An + At = 1
        an = ds.an_sign.values * (1 - r)
        coefs = np.stack([an, -(an + r), r], axis=1)
    else:                # e^-t/tau_n - e^-t/tau_in + At/An (e^-t/tau_t - e^-t/tau_n)
        coefs = np.stack([1 - r, -np.ones_like(r), r], axis=1)
    return taus, coefs


@pytest.mark.slow  # more than 5 s (the fast subset: pytest -m 'not slow')
@pytest.mark.parametrize("name", list(SETS))
def test_pile_up_pulses_are_high_and_separated(name):
    ds = SETS[name]({"pile_up": 3000}, 12).isel(channel=0)
    universal = "sample_frequency" in ds
    fs = ds.sample_frequency.values if universal else np.full(ds.sizes["event"], FS)
    onsets = ds.pulse_onsets.values * fs[:, None] + N // 4
    snr = ds.pulse_heights.values / ds.resolution.values[:, None]
    inside = np.isfinite(onsets)
    n = ds.n_pulses.values
    assert np.all(n >= 2) and np.array_equal(inside.sum(axis=1), n)
    assert np.all(snr[inside] >= PILEUP_MIN_SNR * (1 - 1e-6))
    t_peak = _universal_peak_time(ds) if universal else np.full(len(n), float(np.argmax(SEV) - N // 4))
    need = np.maximum(N / 128, PILEUP_MIN_RISES * t_peak)
    gaps = np.nanmin(np.diff(np.where(inside, onsets, np.nan), axis=1), axis=1)   # sorted by onset
    assert np.all(gaps >= need * (1 - 3e-3))
    assert np.all(onsets[inside] < N)
    # saturation hides no pulse: each adds >= PILEUP_MIN_SNR sigma_OF at its peak through the TES curve
    if universal:
        taus, coefs = _universal_shape(ds)
        coefs = coefs / np.sum(coefs * np.exp(-t_peak[:, None] / taus), axis=1, keepdims=True)

        def pulse(dt):   # (records, pulses) times after onsets -> normalised pulse values
            v = np.sum(coefs[:, None, :] * np.exp(-np.maximum(dt, 0)[:, :, None] / taus[:, None, :]), axis=2)
            return np.where(dt > 0, v, 0.0)
        nu = ds.saturation_nu.values
    else:
        def pulse(dt):
            return np.interp(N // 4 + dt, np.arange(N), SEV / SEV.max(), left=0.0)
        nu = np.ones(len(n))
    # universal mode judges visibility on the drawn ceiling, before it is rounded down to a multiple of
    # the ADC step (by less than one step): bound it from above (visibility grows with the ceiling)
    ceiling = (ds.saturation.values + (ds.adc_step.values if universal else 0.0)) / ds.resolution.values
    heights = np.where(inside, snr, 0.0)
    ons = np.where(inside, onsets, 0.0)
    lowest = np.full(len(n), np.inf)
    for j in range(heights.shape[1]):
        at = ons[:, j] + t_peak                                          # pulse j's peak
        x = np.sum(heights * pulse(at[:, None] - ons), axis=1) - heights[:, j] * pulse(t_peak[:, None])[:, 0]
        sat = np.isfinite(ceiling) & (ceiling > 0)
        vis = heights[:, j].copy()
        vis[sat] = (saturation_curve(x[sat] + heights[sat, j], ceiling[sat], nu=nu[sat])
                    - saturation_curve(x[sat], ceiling[sat], nu=nu[sat]))
        lowest = np.where(inside[:, j], np.minimum(lowest, vis), lowest)
    assert np.all(lowest >= PILEUP_MIN_SNR * 0.95), np.sort(lowest)[:5]


# ---------------------------------------------------------------------------------------------
# plan-level rules (tails, steps, carriers): the pulse rows evaluated here from their formulas
# ---------------------------------------------------------------------------------------------

def _shapes(n, count, seed):
    """(name, shape provider, options) of detector mode and of universal mode (default, WIDE)."""
    rng = np.random.default_rng(seed)
    sev = pulse_template(n, FS, 10e-3, 1e-3, 40e-3, at_over_an=0.5)
    out = [("detector", TableShape(sev), ClassOptions()), ("detector_wide", TableShape(sev), WIDE)]
    for name, rr, opts in (("universal", UNIVERSAL_RANGES, ClassOptions()),
                           ("universal_wide", {**UNIVERSAL_RANGES, **WIDE_RANGES}, WIDE)):
        det = R._draw_detectors(rng, count, n, None, rr)
        fs = det["sample_frequency"]
        shape = ModelShape(det["tau_n"] * fs, det["tau_in"] * fs, det["tau_t"] * fs, det["at_over_an"],
                           det.get("an_sign"))
        out.append((name, shape, opts))
    return out


def _evaluate(rows, dt, sev):
    """Pulse rows (kind, onset, shape columns) at times dt (rows, grid) after their onsets."""
    if rows[0, 0] == KIND_TABLE:
        c0 = sev.size // 4
        pos = c0 + dt * rows[:, 2:3]
        return np.interp(pos, np.arange(sev.size), sev)
    assert np.all(rows[:, 0] == KIND_EXP)
    return np.sum(rows[:, None, 5:8] * np.exp(-dt[:, :, None] / rows[:, None, 2:5]), axis=2)


@pytest.mark.slow  # more than 5 s (the fast subset: pytest -m 'not slow')
@pytest.mark.parametrize("n", [4096, 16384])
def test_tails_decay_within_the_window_and_steps_are_flat(n):
    m = 2000
    classes = np.array(["tail_event"] * m + ["decaying_baseline_with_tail_event"] * m + ["reset"] * m
                       + ["squid_jump"] * m)
    for name, shape, opts in _shapes(n, len(classes), 5):
        plan = build_plan(classes, shape, np.random.default_rng(6), opts, n)
        sev = getattr(shape, "sev", None)
        tail = np.isin(classes, ["tail_event", "decaying_baseline_with_tail_event"])
        # the tail component: the unphysical pulse row of a tail record
        slot = np.argmax(~plan.physical[tail] & (np.arange(5)[None, :] < plan.n_used[tail][:, None]), axis=1)
        rows = plan.pulses[tail, slot]
        rem = n - rows[:, 1]
        dt = np.linspace(0.0, 1.0, 6000)[None, :] * rem[:, None]
        v = _evaluate(rows, dt, sev)
        end_fraction = v[:, -1] / v.max(axis=1)
        assert np.all(end_fraction <= TAIL_MAX_END_FRACTION * 1.01), (name, end_fraction.max())
        # steps: resets and SQUID jumps are persistent read-out steps, or a persistent drop after a pulse
        steps = np.isin(classes, ["reset", "squid_jump"])
        is_step = plan.step[steps] != 0
        drop = ~is_step
        assert np.all(plan.step_pos[steps][is_step] < n)
        if drop.any():
            rows = plan.pulses[steps][drop][:, 1]
            assert np.all(rows[:, 0] == KIND_EXP) and np.all(rows[:, 2] >= 1e6 * n)   # no decay in the window


@pytest.mark.slow  # more than 5 s (the fast subset: pytest -m 'not slow')
@pytest.mark.parametrize("n", [4096, 16384])
def test_carriers_decay_over_at_least_two_bins(n):
    classes = np.array(["carrier_event"] * 6000)
    need = CARRIER_MIN_DECAY_BINS * n / 512
    for name, shape, opts in _shapes(n, len(classes), 8):
        plan = build_plan(classes, shape, np.random.default_rng(9), opts, n)
        rows = plan.pulses[:, 0]
        if rows[0, 0] == KIND_TABLE:
            fall = _table_fall(shape.sev, rows[:, 2])
        else:
            fall = np.concatenate([_exp_fall(rows[a:a + 500]) for a in range(0, len(rows), 500)])
        assert np.all(fall >= need * (1 - 2e-3)), (name, fall.min(), need)


def _exp_fall(rows):
    """1/e fall time (samples) of exponential-sum pulse rows: the first grid time after the peak below
    max/e, on a grid from the peak to 100 max(tau) refined once around the crossing (step 1e-4 max tau)."""
    t_peak = _peak_time(rows[:, 2:5], rows[:, 5:8])
    span = 100 * rows[:, 2:5].max(axis=1)
    lo, width = t_peak, span
    for _ in range(2):
        dt = lo[:, None] + np.linspace(0.0, 1.0, 2001)[None, :] * width[:, None]
        v = _evaluate(rows, dt, None)
        level = _evaluate(rows, t_peak[:, None], None) / np.e
        first = np.argmax(v < level, axis=1)
        step = width / 2000
        lo, width = dt[np.arange(len(dt)), first] - step, 2 * step
    return lo + width / 2 - t_peak


def _table_fall(sev, scale):
    """1/e fall time (samples) of the SEV compressed in time by `scale`."""
    peak = int(np.argmax(sev))
    below = np.nonzero(sev[peak:] < sev[peak] / np.e)[0][0]
    return below / scale
