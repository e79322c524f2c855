"""Every analysis stage against the simulation's truth, through the workflow's stores.

One small simulated run per session (tests/truth_util.py: 3 minutes at 2 events/s, half in the
5.9 keV line, many spikes, SQUID jumps and resets); the stores it writes are compared with
`truth.zarr` and with what the simulator's own pulse and noise models predict. Simulated events are
matched to records by time: the trigger sits at N/4 of the record.
"""
from pathlib import Path

import numpy as np
import pytest

from cryopipe.io.stores import open_store
from truth_util import (Truth, adc_lsb, record_noise_spectrum, simulation, true_resolution, truth_run,
                        truth_run_config)

pytestmark = pytest.mark.slow

# A pulse counts as bright at this many true OF resolutions in every channel (about 3 keV; the
# final trigger threshold is 5), so that no cut or model may call it noise.
BRIGHT_RESOLUTIONS = 20.0


@pytest.fixture(scope="session")
def run(tmp_path_factory):
    return truth_run(tmp_path_factory)


def load(run, kind, name=None):
    path = run / (name or f"{kind}.zarr")
    return open_store(path, kind).load()


@pytest.fixture(scope="session")
def world(run):
    """Truth, records and the true resolution, shared by the tests below."""
    truth, records = load(run, "truth"), load(run, "records")
    t = Truth(truth, records)
    sigma = true_resolution(truth, t.n, adc_lsb())
    bright = (t.cls == "event") & np.all(t.amplitude > BRIGHT_RESOLUTIONS * sigma[:, None], axis=0)
    chosen = np.array([i for i in np.flatnonzero(bright) if t.inside(i) and t.isolated(i)])
    rec = np.array([t.record_of(i) for i in chosen])
    assert len(chosen) >= 50, len(chosen)
    # the tests below use the events that have a record at their onset (all of them, see the next test)
    return dict(truth=truth, records=records, t=t, sigma=sigma, bright=chosen[rec >= 0], bright_rec=rec[rec >= 0],
                all_bright=chosen, all_bright_rec=rec)


def test_every_bright_isolated_event_has_its_record(world):
    """Each bright isolated simulated event has a particle record whose trigger (at N/4) lies within
    20 samples of its onset, and no second one."""
    t = world["t"]
    missing = [(int(t.onset[i]), t.energy[i], int(np.min(np.abs(t.trigger - t.onset[i]) + 10**9 * (t.kind != "particle"))))
               for i, r in zip(world["all_bright"], world["all_bright_rec"]) if r < 0]
    assert not missing, f"{len(missing)} of {len(world['all_bright'])} without a record (onset, keV, nearest trigger): {missing}"
    near = [np.sum((t.kind == "particle") & (np.abs(t.trigger - t.onset[i]) <= 20)) for i in world["all_bright"]]
    assert max(near) == 1


def test_resolution_is_the_one_of_the_true_template_in_the_true_noise(run, world):
    """The measured OF resolution vs 1/sqrt(W) computed from the simulator's pulse model (onset at
    N/4) and its noise PSD turned into what N-sample records show (leakage, ADC rounding)."""
    char = load(run, "characterization")
    t, sigma = world["t"], world["sigma"]
    fs, n = t.fs, t.n
    sim = simulation(world["truth"])
    # Tolerance 12 %: the stored resolution is the spread of the OF amplitude over <= 300 noise
    # records (statistical error 1/sqrt(2 x 300) = 4 %), with a filter built from a measured SEV
    # and NPS; 3 such errors.
    np.testing.assert_allclose(char["resolution"].values, sigma, rtol=0.12)
    # the threshold of the final pass is threshold_resolution true resolutions (same tolerance)
    k = truth_run_config(Path("results"))["characterize"]["threshold_resolution"]
    np.testing.assert_allclose(char["threshold"].values, k * sigma, rtol=0.12)
    # the measured noise spectrum is the true one: median ratio over the bins within 5 %
    # (each bin averages ~300 periodograms: 6 % per bin, far less for the median of 2048 bins)
    for c, ch in enumerate(sim["channels"]):
        j = record_noise_spectrum(ch["noise"], fs, n, adc_lsb())
        measured = char["nps"].values[c] * np.where(np.arange(n // 2 + 1) == n // 2, 1.0, 0.5)
        ratio = measured[1:] / j[1:]
        assert abs(np.median(ratio) - 1) < 0.05, np.median(ratio)


def _x50(amplitude, efficiency):
    """Amplitude of the first upward crossing of 50 % (linear interpolation between points)."""
    k = int(np.flatnonzero(efficiency >= 0.5)[0])
    assert k > 0, "the curve starts above 50 %"
    a0, a1, e0, e1 = amplitude[k - 1], amplitude[k], efficiency[k - 1], efficiency[k]
    return a0 + (0.5 - e0) * (a1 - a0) / (e1 - e0)


@pytest.mark.parametrize("channel", [0, 1])
def test_efficiency_turns_on_at_the_threshold_and_reaches_a_plateau(run, world, channel):
    eff = load(run, "efficiency")
    char = load(run, "characterization")
    assert eff.attrs["units"] == "V"
    sigma = world["sigma"][channel]
    thr = float(char["threshold"].values[channel])   # the final trigger's threshold: the curve must use it
    amp = eff["amplitude"].values[channel]
    n_inj = eff["n_injected"].values[channel]
    trig = eff["n_triggered"].values[channel] / n_inj
    total = eff["n_survived"].values[channel] / n_inj
    # 50 % of the trigger efficiency within half a (true) resolution of the threshold, from the
    # measured points and from the stored fit
    assert abs(_x50(amp, trig) - thr) < 0.5 * sigma, (_x50(amp, trig), thr, sigma)
    assert abs(float(eff["trigger_x50"].values[channel]) - thr) < 0.5 * sigma
    # every point of the turn-on and below against an independent reference of the stage's trigger
    # decision: the SEV scaled to A on the run's noise records, the lag-searched OF amplitude
    # irfft(transfer x rfft(x))[n] over Cait's lags [-N/8, 5N/8) (numpy here, with the stored filter)
    # >= the stored threshold, 2000 injections per point. Two-sample binomial z of each point within
    # 3 resolutions of the threshold and below: |z| < 4 and sum z^2 below the 99.9 % chi^2 quantile.
    # A threshold 10 % (0.5 resolutions) off moves the points near it by ~0.2, z ~ 5 at 300 a point.
    import scipy.stats

    rec = load(run, "records")
    n = int(rec.attrs["record_length"])
    noise = rec["trace"].isel(channel=channel).values[rec["record_kind"].values.astype(str) == "noise"].astype(np.float64)
    sev = char["sev"].values[channel].astype(np.float64)
    transfer = char["filter_real"].values[channel] + 1j * char["filter_imag"].values[channel]
    lags = np.arange(-(n // 8), 5 * n // 8) % n
    rng = np.random.default_rng(11)
    s_m = float(char["resolution"].values[channel])
    near = amp < thr + 3 * s_m
    m = 2000
    p_ref = np.empty(near.sum())
    for j, a in enumerate(amp[near]):
        x = noise[rng.integers(0, len(noise), m)] + a * sev
        best = np.fft.irfft(transfer * np.fft.rfft(x, axis=1), n=n, axis=1)[:, lags].max(axis=1)
        p_ref[j] = np.mean(best >= thr)
    k = trig[near] * n_inj[near]
    pooled = np.clip((k + p_ref * m) / (n_inj[near] + m), 0.5 / m, 1 - 0.5 / m)
    z = (trig[near] - p_ref) / np.sqrt(pooled * (1 - pooled) * (1 / n_inj[near] + 1 / m))
    steep = (p_ref > 0.1) & (p_ref < 0.9)
    assert steep.sum() >= 2 and near.sum() >= 5, (p_ref, near.sum())
    assert np.max(np.abs(z)) < 4 and np.sum(z**2) < scipy.stats.chi2.ppf(0.999, near.sum()), (z, p_ref, trig[near])
    # a step of about one resolution: below threshold - 3 sigma (almost) nothing, above
    # threshold + 4 sigma (almost) everything; the cuts keep >= 90 % of the triggered pulses there
    far_below, far_above = amp < thr - 3 * sigma, amp > thr + 4 * sigma
    assert far_below.sum() >= 2 and far_above.sum() >= 5
    assert np.all(trig[far_below] <= 0.05), trig[far_below]
    # n_injected (300) per point: the plateau as a whole >= 99 %, no single point below 97 % (one
    # point's binomial 3-sigma band at 99.5 %); the Gaussian turn-on alone would give > 99.99 % there
    assert trig[far_above].mean() >= 0.99 and np.all(trig[far_above] >= 0.97), trig[far_above]
    assert np.all(total[far_above] >= 0.90), total[far_above]
    # the curve spans the run up to saturation: its top reaches the run's largest pulse in the
    # channel, ceiling x tanh(A / ceiling) for the largest simulated height A (the simulator's
    # saturation), and the points above the turn-on (log-spaced) keep the plateau (asserted above)
    ceiling = simulation(world["truth"])["channels"][channel]["saturation"]
    t = world["t"]
    largest = ceiling * np.tanh(t.amplitude[channel][np.isin(t.cls, ["event", "high_energy"])].max() / ceiling)
    assert amp.max() >= largest and (amp > 0.3 * largest).sum() >= 2, (amp.max(), largest)


def test_of_shift_is_the_true_onset_offset_in_seconds(run, world):
    """of_shift x fs = (true onset - trigger sample) - d, with one constant d per channel (where the
    SEV's onset lies relative to N/4): for bright isolated events (lag ~0) and for the records where a
    later, larger simulated pulse dominates the OF's search window (lag far from 0)."""
    feats = load(run, "features")
    t, rec, sel = world["t"], world["bright_rec"], world["bright"]
    assert feats["of_shift"].attrs["units"] == "s"
    shift = feats["of_shift"].values * t.fs                               # samples
    np.testing.assert_allclose(shift, np.rint(shift), atol=1e-3)          # an integer lag / fs
    n = t.n
    for c in range(shift.shape[0]):
        d = shift[c, rec] - (t.onset[sel] - t.trigger[rec])
        d0 = np.median(d)
        # timing jitter of the two argmax searches (trigger, OF) is a few samples at 20-150 sigma
        assert np.mean(np.abs(d - d0) <= 3) >= 0.95 and abs(d0) <= 5, np.unique(d, return_counts=True)
        displaced = []
        for r in np.flatnonzero(t.kind == "particle"):
            lag = t.onset - t.trigger[r]
            around = np.abs(lag - n // 4) < n                               # in or just before the record
            window = (lag >= -(n // 8)) & (lag < 5 * n // 8)                 # the OF's search window
            if np.any(around & (t.cls != "event")) or np.any(around & ~window):
                continue
            ev = np.flatnonzero(around)
            if ev.size == 0:
                continue
            a = np.sort(t.amplitude[c, ev])[::-1]
            big = ev[np.argmax(t.amplitude[c, ev])]
            if a[0] > BRIGHT_RESOLUTIONS * world["sigma"][c] and (a.size == 1 or a[0] > 3 * a[1]) and abs(lag[big]) > 50:
                displaced.append(shift[c, r] - lag[big] - d0)
        assert len(displaced) >= 2, displaced
        assert np.all(np.abs(displaced) <= 3), displaced


@pytest.mark.parametrize("channel", ["phonon", "light"])
def test_of_amplitude_is_the_true_pulse_height(run, world, channel):
    """The OF amplitude (fixed lag) of bright isolated events vs the simulated height (V, template
    max 1): median ratio within 2 % (the SEV averages >= 80 pulses; per-event noise < 1 % / sqrt(n))."""
    feats = load(run, "features")
    c = list(feats["channel"].values).index(channel)
    ratio = feats["of_amplitude"].values[c, world["bright_rec"]] / world["t"].amplitude[c, world["bright"]]
    assert abs(np.median(ratio) - 1) < 0.02, np.median(ratio)


def test_line_events_are_calibrated_to_the_line_energy(run, world):
    """Calibrated energy of the 5.9 keV line events: the per-event error (reconstructed - true keV)
    is centred on 0 and as wide as the true resolution in keV."""
    feats, cal = load(run, "features"), load(run, "calibration")
    t, sim = world["t"], simulation(world["truth"])
    line_energy = float(cal.attrs["line_energy"])
    assert line_energy == sim["line_energy"]
    in_line = np.abs(t.energy[world["bright"]] - line_energy) < 3 * sim["line_width"]
    sel, rec = world["bright"][in_line], world["bright_rec"][in_line]
    assert len(sel) >= 30
    assert feats["energy"].attrs["units"] == "keV"
    vpk = np.array([ch["volts_per_kev"] for ch in sim["channels"]])
    sigma_kev = world["sigma"] / vpk
    n = len(sel)
    for c in range(len(vpk)):
        energy = feats["energy"].values[c, rec]
        err = energy - t.energy[sel]
        # centre: the median error within 3 statistical errors (1.25 sigma / sqrt(n) per median; the
        # line fit of the calibration is made of the same events) plus 0.2 % for the saturation's
        # non-linearity (K tanh(x/K): 1e-4 at the line)
        tol = 3 * 1.25 * sigma_kev[c] / np.sqrt(n) + 0.002 * line_energy
        assert abs(np.median(err)) < tol, (c, np.median(err), tol)
        # the line itself sits at line_energy (its width adds to the spread)
        width = np.hypot(sigma_kev[c], sim["line_width"])
        assert abs(np.median(energy) - line_energy) < 3 * 1.25 * width / np.sqrt(n) + 0.002 * line_energy
        # ... and the spread: the true resolution within 25 % (std of ~60 values: 9 %; measured
        # filters are up to 12 % worse than the true one, see the resolution test)
        np.testing.assert_allclose(np.std(err), sigma_kev[c], rtol=0.25)


ARTIFACT_CLASSES = ("spike", "squid_jump", "reset")


def _decisions(run, source):
    """(per channel keep, per event keep) of the cut labels or of a cleaning model's predictions."""
    if source == "labels":
        lab = load(run, "labels")
        return lab["accepted"].values, lab["accepted"].values.all(axis=0)
    pred = load(run, "predictions", f"predictions/{source}.zarr")
    return pred["decision"].values, pred["event_clean"].values


@pytest.mark.parametrize("source", ["labels", "universal"])
def test_cuts_and_cleaning_keep_bright_events_and_reject_artifacts(run, world, source):
    """Bright isolated events are kept (every channel), records holding a spike, SQUID jump or
    reset are rejected in the channel that carries it: each >= 90 %."""
    keep_channel, keep_event = _decisions(run, source)
    t = world["t"]
    # an artifact counts where it stands out of the noise: at least 10 x the channel's white-noise rms
    # per sample, sqrt(white x fs / 2) (the simulator's spikes start at half a line height: 3 rms in
    # the light channel, invisible; the default spike cut is at 8 baseline sigmas)
    white = np.array([np.sqrt(ch["noise"]["white"] * t.fs / 2) for ch in simulation(world["truth"])["channels"]])
    kept = keep_event[world["bright_rec"]].mean()
    assert kept >= 0.90, f"{source}: {kept:.3f} of {len(world['bright_rec'])} bright isolated events kept"
    for cls in ARTIFACT_CLASSES:
        rejected = []
        for i in np.flatnonzero(t.cls == cls):
            carrying = np.flatnonzero(np.abs(t.amplitude[:, i]) >= 10 * white)   # a reset of no jumps: 0
            for c in carrying:
                rejected += [not keep_channel[c, r] for r in t.records_holding(i)]
        assert len(rejected) >= 8, (cls, len(rejected))
        assert np.mean(rejected) >= 0.90, f"{source}: {np.mean(rejected):.3f} of {len(rejected)} records holding a {cls} rejected"
