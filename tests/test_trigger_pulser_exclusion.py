"""Test and control pulses of a CRESST stream run are recorded once, as such, and never as particle
records (issue 21, "tests that can fail": switching the pulser exclusion off put fake particle
records into the test-pulse run while every test passed).

The run comes from `cresst_util.write_cresst_stream_run`, whose truth lists every pulse's
onset and kind; the records are compared with it.
"""
from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from cryopipe.io.sources import open_stream
from cryopipe.trigger.stage import pulser_exclusion_samples, record_batches, trigger_one_channel
from cresst_util import write_cresst_stream_run

N = 4096
TOL = 20          # samples


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    truth = write_cresst_stream_run(tmp_path_factory.mktemp("pulser"), duration=30.0, pulser_interval=0.5,
                                    record_length=N, particle_rate=1.0, particle_amplitude=(0.1, 1.0), seed=4)
    paths = truth["paths"]
    spec = dict(csmpl=[str(p) for p in paths["csmpl"]], sample_frequency=truth["sample_frequency"], record_length=N,
                channels=["phonon", "light"], par=str(paths["par"]), test_stamps=str(paths["test_stamps"]),
                dig_stamps=str(paths["dig_stamps"]))
    stream = open_stream(spec)
    stream_cfg = dict(record_length=N, channels=["phonon", "light"])
    trigger_cfg = dict(threshold_sigma=5.0, holdoff=None, chunk_size=2**20, noise_records=50, seed=0)
    trig = [trigger_one_channel(stream, c, stream_cfg, trigger_cfg) for c in range(2)]
    first, rest, _ = record_batches(stream, trig, stream_cfg, trigger_cfg)
    return dict(truth=truth, records=xr.concat([first, *rest], dim="event"),
                reach=pulser_exclusion_samples(stream_cfg, trigger_cfg))


def test_every_particle_record_is_a_particle_pulse(run):
    """No particle record at a test or control pulse (nor on its tail or filter lobes): each lies
    within 20 samples of a simulated particle's onset."""
    t, rec = run["truth"], run["records"]
    particles = np.sort(t["samples"][t["kind"] == "particle"])
    kind = rec["record_kind"].values.astype(str)
    part = rec["trigger_sample"].values[np.isin(kind, ["particle", "saturated"])]
    dist = np.array([np.min(np.abs(particles - s)) for s in part])
    assert part.size >= 10
    fake = part[dist > TOL]
    assert fake.size == 0, f"{fake.size} particle records away from every particle: {fake.tolist()}"


def test_each_pulser_pulse_has_one_record_of_its_kind(run):
    t, rec = run["truth"], run["records"]
    pulser = ~np.isin(t["kind"], ["particle"])
    inside = (t["samples"] >= N // 4) & (t["samples"] + 3 * N // 4 <= t["n_samples"])
    kind = rec["record_kind"].values.astype(str)
    ts = rec["trigger_sample"].values
    for s, k in zip(t["samples"][pulser & inside], t["kind"][pulser & inside]):
        near = (np.abs(ts - s) < run["reach"]) & (kind != "noise")     # noise records keep out of pulses anyway
        assert near.sum() == 1 and kind[near][0] == k and ts[near][0] == s, (s, k, kind[near], ts[near] - s)


def test_isolated_particles_all_have_their_record(run):
    """Particles farther than the exclusion (plus N/8) from every pulser pulse, and without
    another particle within a hold-off, are recorded (the exclusion takes out what is near a pulser
    pulse, nothing else)."""
    t, rec = run["truth"], run["records"]
    pulser = np.sort(t["samples"][t["kind"] != "particle"])
    kind = rec["record_kind"].values.astype(str)
    part = rec["trigger_sample"].values[np.isin(kind, ["particle", "saturated"])]
    onsets = t["samples"][t["kind"] == "particle"]
    far = np.array([np.min(np.abs(pulser - s)) > run["reach"] + N // 8 for s in onsets])
    far &= (onsets >= N) & (onsets < t["n_samples"] - N)
    far &= np.array([np.sum(np.abs(onsets - s) < N // 2) == 1 for s in onsets])   # pile-ups share a record
    assert far.sum() >= 3
    for s in onsets[far]:
        assert np.min(np.abs(part - s)) <= TOL, s
