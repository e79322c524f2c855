"""Stage entry points: segmented (scaled-out) triggering equals the unsplit run; record batches."""
import copy

import numpy as np
import pytest

from cryopipe.io.sources import open_stream
from cryopipe.stages.trigger import gather_segments, record_batches, segment_bounds, trigger_one_channel
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
