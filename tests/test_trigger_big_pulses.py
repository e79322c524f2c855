"""Every pulse up to saturation gets exactly one record, and no record sits on a filter side lobe
(issue 21, item 1): both trigger passes of the workflow, run through the library on a simulated
stream with 1/f noise and pulses of 150-3000 ADC counts and beyond saturation, against the
simulator's truth.

The final pass's optimum filter is built from the measured SEV and NPS, as in the workflow: its
mismatch with the true pulses gives side lobes ~0.6 % (phonon) and ~1 % (light) of a pulse's
height up to ~0.48 s before it, far above a 5-sigma threshold for the large pulses. Before the fix
those lobes fired (397 of 1032 records of a 20-minute run), and the dead time and the channel
merge behind them lost pulses (86 of the 96 largest got a record).
"""
from __future__ import annotations

import copy

import numpy as np
import pytest
import xarray as xr

from cryopipe.io.sources import open_stream
from cryopipe.signal.optimum_filter import of_kernel
from cryopipe.simulate.stream import DEFAULT_SIMULATION, simulate_stream
from cryopipe.characterize.channel import optimum_filter_from
from cryopipe.characterize.stage import characterize_channel
from cryopipe.trigger.stage import holdoff_samples, record_batches, trigger_one_channel

FS = 25_000.0
N = 16384
LSB = 20.0 / 2**16            # V per ADC count
TOL = 20                      # samples: a record is "at" a pulse when its trigger is this close to the onset
CHANNELS = ["phonon", "light"]
CHAR_CFG = dict(max_pulses=2000, max_noise_records=2000, min_pulses=10, min_pulse_snr=5.0, min_noise_records=20,
                threshold_resolution=5.0)


def simulation(duration: float) -> dict:
    """The default module with a flat spectrum of 150-3000 ADC counts on the phonon channel
    (9-183 keV at 5 mV/keV), a phonon ceiling of 0.8 V (pulses above ~0.5 V flatten), and
    saturating high-energy events; no artifacts."""
    sim = copy.deepcopy(DEFAULT_SIMULATION)
    vpk = sim["channels"][0]["volts_per_kev"]
    sim.update(duration=duration, seed=7, event_rate=0.5, line_fraction=0.0, energy_min=150 * LSB / vpk,
               energy_max=3000 * LSB / vpk, background_scale=1e6, high_energy_rate=0.03, artifacts={})
    sim["channels"][0]["saturation"] = 0.8
    return sim


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("big_pulses")
    sim = simulation(300.0)
    paths, truth = simulate_stream(folder, sim, FS, CHANNELS)
    spec = dict(csmpl=[str(p) for p in paths], sample_frequency=FS, record_length=N, channels=CHANNELS)
    stream = open_stream(spec)
    stream_cfg = dict(record_length=N, channels=CHANNELS)
    trigger_cfg = dict(threshold_sigma=5.0, holdoff=None, chunk_size=2**20, noise_records=300, seed=0)
    # pass 1: generic kernel; characterization from its records
    pass1 = [trigger_one_channel(stream, c, stream_cfg, trigger_cfg) for c in range(2)]
    first, rest, _ = record_batches(stream, pass1, stream_cfg, {**trigger_cfg, "pulser_records": False})
    records1 = xr.concat([first, *rest], dim="event")
    char = xr.concat([characterize_channel(records1.sel(channel=[ch]), CHAR_CFG, ch) for ch in CHANNELS],
                     dim="channel")
    # final pass: each channel's optimum filter at 5 x its resolution
    final = []
    for c, ch in enumerate(CHANNELS):
        of = optimum_filter_from(char, ch)
        template = (char["sev"].sel(channel=ch).values, of.onset, char["sev_fit"].sel(channel=ch).values)
        final.append(trigger_one_channel(stream, c, stream_cfg, trigger_cfg, kernel=of_kernel(of),
                                         threshold=float(char["threshold"].sel(channel=ch)), template=template))
    first, rest, _ = record_batches(stream, final, stream_cfg, trigger_cfg)
    records = xr.concat([first, *rest], dim="event")
    return dict(truth=truth, records=records, holdoff=holdoff_samples(stream_cfg, trigger_cfg), sim=sim,
                n_samples=stream.n_samples, triggers=final)


def pulses(run):
    """Onsets, phonon heights (V, before saturation) and the record-sized neighbourhood of every
    simulated pulse whose record fits into the stream."""
    t = run["truth"]
    cls = t["pulse_class"].values.astype(str)
    sel = np.isin(cls, ["event", "high_energy"])
    onset = t["onset_sample"].values[sel].astype(np.int64)
    height = t["amplitude"].values[0, sel].astype(np.float64)
    inside = (onset >= N) & (onset < run["n_samples"] - N)
    return onset, height, inside


def particle_triggers(run):
    rec = run["records"]
    kind = rec["record_kind"].values.astype(str)
    return np.sort(rec["trigger_sample"].values[np.isin(kind, ["particle", "saturated"])].astype(np.int64))


def test_the_stream_has_what_the_issue_describes(run):
    """Pulses of 150-3000 ADC counts on the phonon channel, ~0.5 per second, some saturated (the
    test is meaningless without them)."""
    onset, height, inside = pulses(run)
    events = run["truth"]["pulse_class"].values.astype(str)[np.isin(run["truth"]["pulse_class"].values.astype(str),
                                                                     ["event", "high_energy"])] == "event"
    assert 130 <= inside.sum() <= 190
    assert height[events].min() >= 150 * LSB * 0.999 and height[events].max() <= 3000 * LSB * 1.001
    ceiling = run["sim"]["channels"][0]["saturation"]
    assert (height[inside] > 2 * ceiling).sum() >= 5          # far into saturation


def test_every_pulse_gets_exactly_one_record_at_its_onset(run):
    """Each simulated pulse without another pulse within a hold-off (those share one record by
    design) has exactly one particle/saturated record whose trigger lies within 20 samples of its
    onset, saturated ones included."""
    onset, height, inside = pulses(run)
    trig = particle_triggers(run)
    gap = np.diff(onset)
    alone = np.r_[True, gap >= run["holdoff"]] & np.r_[gap >= run["holdoff"], True]
    chosen = np.flatnonzero(inside & alone)
    assert len(chosen) >= 100
    near = np.array([np.sum(np.abs(trig - onset[i]) <= TOL) for i in chosen])
    missing = [(int(onset[i]), round(float(height[i]), 3), int(np.min(np.abs(trig - onset[i]))))
               for i, k in zip(chosen, near) if k == 0]
    assert not missing, f"{len(missing)} of {len(chosen)} pulses without a record (onset, V, nearest trigger): {missing}"
    assert near.max() == 1
    # the 20 % largest by name: the ones the issue lost
    big = chosen[height[chosen] >= np.quantile(height[inside], 0.8)]
    assert len(big) >= 20 and all(np.any(np.abs(trig - onset[i]) <= TOL) for i in big)


def test_no_record_sits_on_a_side_lobe(run):
    """Every particle/saturated record within a record length of a pulse lies at a pulse onset (a
    record on a side lobe has no pulse at its trigger position). Records far from every pulse are
    noise triggers at the 5-sigma threshold: a handful in 5 minutes."""
    onset, _, _ = pulses(run)
    trig = particle_triggers(run)
    idx = np.clip(np.searchsorted(onset, trig), 1, len(onset) - 1)
    dist = np.minimum(np.abs(trig - onset[idx - 1]), np.abs(onset[idx] - trig))
    stray = trig[(dist > TOL) & (dist < N)]
    after = onset[np.clip(np.searchsorted(onset, stray), 0, len(onset) - 1)]
    assert stray.size == 0, (f"{stray.size} records away from the pulses near them, s before the next pulse: "
                             f"{np.round((stray - after) / FS, 3).tolist()}")
    assert np.sum(dist >= N) <= 5
