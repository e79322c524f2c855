"""Stage entry points: segmented (scaled-out) triggering equals the unsplit run; record batches."""
import copy

import numpy as np
import pytest

from cryopipe.io.sources import open_stream
from cryopipe.trigger.stage import gather_segments, record_batches, segment_bounds, trigger_one_channel
from cryopipe.simulate.stream import DEFAULT_SIMULATION, simulate_stream

FS = 25000.0
N = 4096


@pytest.fixture(scope="module")
def busy_stream(tmp_path_factory):
    """60 s of the default module at a high event and artifact rate (many triggers near segment borders)."""
    sim = copy.deepcopy(DEFAULT_SIMULATION)
    sim.update(duration=60.0, seed=11, event_rate=3.0, high_energy_rate=0.05)
    out = tmp_path_factory.mktemp("stream")
    paths, truth = simulate_stream(out, sim, FS, ["phonon", "light"])
    cfg = {"csmpl": [str(p) for p in paths], "sample_frequency": FS, "record_length": N,
           "channels": ["phonon", "light"], "polarity": 1, "adc_bits": 16, "adc_range": 20.0}
    return cfg, truth


TRIGGER = {"threshold_sigma": 5.0, "holdoff": None, "chunk_size": 2**16, "segment_duration": None,
           "noise_records": 30, "seed": 4}


def test_segment_bounds_cover_the_stream_once():
    b = segment_bounds(1000, 10.0, 7.3)
    assert b[0][0] == 0 and b[-1][1] == 1000 and all(x[1] == y[0] for x, y in zip(b, b[1:]))
    assert segment_bounds(1000, 10.0, None) == [(0, 1000)]


@pytest.mark.slow  # more than 5 s (the fast subset: pytest -m 'not slow')
@pytest.mark.parametrize("segment_duration", [1.0, 3.7])
def test_segmented_trigger_equals_unsplit(busy_stream, segment_duration):
    cfg, _ = busy_stream
    stream = open_stream(cfg)
    for ch in range(2):
        whole = trigger_one_channel(stream, ch, cfg, TRIGGER)
        bounds = segment_bounds(stream.n_samples, FS, segment_duration)
        parts = [trigger_one_channel(stream, ch, cfg, TRIGGER, segment=seg) for seg in bounds]
        joined = gather_segments(parts)
        assert whole.sizes["trigger"] > 100
        np.testing.assert_array_equal(joined["trigger_sample"].values, whole["trigger_sample"].values)
        np.testing.assert_array_equal(joined["trigger_amplitude"].values, whole["trigger_amplitude"].values)
        assert joined.attrs["threshold"] == whole.attrs["threshold"]


def test_record_batches_are_sorted_and_complete(busy_stream):
    cfg, _ = busy_stream
    stream = open_stream(cfg)
    trig = [trigger_one_channel(stream, ch, cfg, TRIGGER) for ch in range(2)]
    first, more, summary = record_batches(stream, trig, cfg, TRIGGER, batch=64)
    parts = [first, *more]
    samples = np.concatenate([p["trigger_sample"].values for p in parts])
    events = np.concatenate([p["event"].values for p in parts])
    kinds = np.concatenate([np.array([str(k) for k in p["record_kind"].values]) for p in parts])
    assert np.all(np.diff(samples) > 0) and np.array_equal(events, np.arange(len(samples)))
    assert (kinds == "noise").sum() == 30 and "live time" in summary
    # records hold the stream with the trigger at N/4
    i = len(parts[1]["event"]) // 2
    s = int(parts[1]["trigger_sample"].values[i])
    np.testing.assert_array_equal(parts[1]["trace"].values[:, i], stream.read(s - N // 4, s - N // 4 + N))


def test_first_pass_sampling_cuts_a_random_subset_and_keeps_noise_and_live_time(busy_stream):
    """max_particle_records: a subset of the full run's particle records (spread over the run), the
    same noise records and live time; pulser_records false drops DAQ pulses (none here: unchanged)."""
    cfg, _ = busy_stream
    stream = open_stream(cfg)
    trig = [trigger_one_channel(stream, ch, cfg, TRIGGER) for ch in range(2)]

    def cut(extra):
        first, more, summary = record_batches(stream, trig, cfg, {**TRIGGER, **extra}, batch=64)
        parts = [first, *more]
        kinds = np.concatenate([np.array([str(k) for k in p["record_kind"].values]) for p in parts])
        samples = np.concatenate([p["trigger_sample"].values for p in parts])
        return samples, kinds, first.attrs["live_time"], summary

    full, full_kind, full_live, _ = cut({})
    n_particles = int((full_kind == "particle").sum())
    limit = n_particles // 3
    some, some_kind, some_live, summary = cut({"max_particle_records": limit, "pulser_records": False})
    assert n_particles > 60 and (some_kind == "particle").sum() == limit
    assert f"{limit} of {n_particles} particle triggers drawn at random" in summary
    assert set(some[some_kind == "particle"]) < set(full[full_kind == "particle"])
    np.testing.assert_array_equal(some[some_kind == "noise"], full[full_kind == "noise"])
    assert some_live == full_live
    chosen = some[some_kind == "particle"] / stream.n_samples
    assert chosen.min() < 0.2 and chosen.max() > 0.8          # drawn over the whole run, not its start
    again, again_kind, _, _ = cut({"max_particle_records": limit})
    np.testing.assert_array_equal(again, some)                 # reproducible (seeded)


def test_sampled_first_pass_scans_spread_stretches_and_equals_the_full_scan_there(busy_stream):
    """sampling: stretches scanned in spread order until the targets are met; the triggers inside
    the scanned stretches are the unsplit scan's; an unreachable target scans everything."""
    from cryopipe.trigger.segments import scanned_stretches

    cfg, _ = busy_stream
    stream = open_stream(cfg)
    whole = trigger_one_channel(stream, 0, cfg, TRIGGER)
    n_all = whole.sizes["trigger"]
    stretch = int(5 * FS)                                        # 12 stretches of 5 s
    part = trigger_one_channel(stream, 0, cfg, TRIGGER, sampling={
        "min_triggers": n_all // 4, "min_samples": int(10 * FS), "stretch_samples": stretch})
    scanned = part.attrs["scanned"]
    covered = sum(b - a for a, b in scanned)
    assert int(10 * FS) <= covered < stream.n_samples // 2 and part.sizes["trigger"] >= n_all // 4
    assert scanned[0][0] == 0 and scanned[-1][1] > stream.n_samples // 2     # prefix spread over the run
    ws = whole["trigger_sample"].values
    inside = np.zeros(len(ws), bool)
    for a, b in scanned:
        inside |= (ws >= a) & (ws < b)
    np.testing.assert_array_equal(part["trigger_sample"].values, ws[inside])
    everything = trigger_one_channel(stream, 0, cfg, TRIGGER, sampling={
        "min_triggers": 10 * n_all, "min_samples": 0, "stretch_samples": stretch})
    assert everything.attrs["scanned"] == [[0, stream.n_samples]]
    np.testing.assert_array_equal(everything["trigger_sample"].values, ws)
    # the records job: noise records only where every channel was scanned
    other = trigger_one_channel(stream, 1, cfg, TRIGGER, sampling={
        "min_triggers": 1, "min_samples": int(10 * FS), "stretch_samples": stretch})
    common = scanned_stretches([part, other], stream.n_samples)
    assert common and sum(b - a for a, b in common) <= sum(b - a for a, b in other.attrs["scanned"])
    first, more, summary = record_batches(stream, [part, other], cfg, TRIGGER, batch=64)
    ds = [first, *more]
    kind = np.concatenate([np.array([str(k) for k in d["record_kind"].values]) for d in ds])
    starts = np.concatenate([d["trigger_sample"].values for d in ds])[kind == "noise"] - N // 4
    assert len(starts) > 0 and "scanned by every channel" in summary
    assert all(any(a <= s and s + N <= b for a, b in common) for s in starts)
