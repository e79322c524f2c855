"""Coherent line pickup found in a run and removed before cleaning (cleaning.lines, predict.model_inputs).

Ground truth: records made here from white noise, an AR(1) process and a random walk (no code of
cryopipe), exponential pulses of known height at the trigger (N/4), and sinusoids of known
frequency (cycles per record) with a random phase per record.
"""
import re

import numpy as np
import pytest

from cryopipe.cleaning import lines
from cryopipe.errors import InputError
from cryopipe.cleaning.predict import model_inputs
from cryopipe.cleaning.preprocess import preprocess

N = 512


def noise(rng, n_records, kind="white"):
    w = rng.standard_normal((n_records, N))
    if kind == "white":
        return w
    if kind == "ar1":                       # 1/f^2 above a knee: x_t = 0.95 x_{t-1} + w_t
        x = np.zeros_like(w)
        for t in range(1, N):
            x[:, t] = 0.95 * x[:, t - 1] + w[:, t]
        return x / x.std()
    if kind == "walk":                      # 1/f^2 everywhere
        x = np.cumsum(w, axis=1)
        return x / x.std()
    raise ValueError(kind)


def pulses(rng, n_records, heights, decay=60.0):
    t = np.arange(N) - N // 4
    shape = np.where(t > 0, np.exp(-np.maximum(t, 0) / decay) - np.exp(-np.maximum(t, 0) / 4.0), 0.0)
    shape /= shape.max()
    return heights[:, None] * shape[None, :]


def sinusoid(rng, n_records, cycles, amplitude):
    phase = rng.uniform(0, 2 * np.pi, (n_records, 1))
    return amplitude * np.sin(2 * np.pi * cycles * np.arange(N) / N + phase)


def test_line_found_and_removed_pulses_kept():
    rng = np.random.default_rng(1)
    m = 200
    heights = np.where(rng.random(m) < 0.5, rng.uniform(5, 40, m), 0.0)
    base = noise(rng, m, "ar1") + pulses(rng, m, heights, decay=200.0)   # slow: most of the window
    line = sinusoid(rng, m, 21.3, 6.0) + sinusoid(rng, m, 63.9, 2.0)
    found = lines.find_lines(base + line)
    assert found.size == 2
    assert np.allclose(np.sort(found), [21.3, 63.9], atol=0.1)
    cleaned = lines.remove_lines(base + line, found)
    residual = cleaned - base
    # the residual is the fit error of the line plus the fitted offset/slope-free noise share: far
    # below the line itself (rms 4.5) and below the noise (rms 1)
    assert np.sqrt(np.mean(residual ** 2)) < 0.35
    # pulse heights (peak over the pre-trigger mean) are kept within the noise
    def height(x):
        return x[:, N // 4:N // 4 + 40].max(axis=1) - x[:, :N // 4].mean(axis=1)
    with_pulse = heights > 0
    err = height(cleaned)[with_pulse] - height(base)[with_pulse]
    assert np.median(np.abs(err)) < 0.5
    # nothing of the pulse leaks into the fitted sinusoids: the residual does not grow with the height
    big = heights > 25
    assert np.sqrt(np.mean(residual[big] ** 2)) < 0.35


def test_pickup_small_against_the_record_is_left_alone():
    # a pulse 40x the line: the line is < MIN_SHARE of the record's range, and a saturated pulse
    # would squash the pickup riding on it, so the record is left as it is
    rng = np.random.default_rng(2)
    m = 100
    heights = np.where(np.arange(m) < 30, 400.0, 0.0)
    x = noise(rng, m, "white") + pulses(rng, m, heights) + sinusoid(rng, m, 21.3, 3.0)
    cleaned = lines.remove_lines(x, lines.find_lines(x))
    assert np.array_equal(cleaned[:30], x[:30].astype(np.float32))
    assert np.abs(cleaned[30:] - x[30:]).max() > 2.0


@pytest.mark.parametrize("kind", ["white", "ar1", "walk"])
def test_no_line_in_power_law_noise(kind):
    for seed in range(5):
        rng = np.random.default_rng([seed, 7])
        x = noise(rng, 300, kind) + pulses(rng, 300, rng.uniform(0, 30, 300))
        assert lines.find_lines(x).size == 0
        assert np.array_equal(lines.remove_lines(x, []), x.astype(np.float32))


def test_small_runs_and_slow_lines_left_alone():
    rng = np.random.default_rng(3)
    x = noise(rng, lines.MIN_RECORDS - 1, "white") + sinusoid(rng, lines.MIN_RECORDS - 1, 30.0, 5.0)
    assert lines.find_lines(x).size == 0
    # 3 cycles per record: 0.56 cycles inside the fit window (3/16 of it), too few to fit
    y = noise(rng, 100, "white") + sinusoid(rng, 100, 3.0, 5.0)
    assert np.array_equal(lines.remove_lines(y, [3.0]), y.astype(np.float32))


def test_a_line_in_few_records_is_not_a_line_of_the_run():
    rng = np.random.default_rng(4)
    x = noise(rng, 200, "white")
    x[:80] += sinusoid(rng, 80, 40.0, 5.0)               # 40 % of the records
    assert lines.find_lines(x).size == 0


def test_model_inputs_remove_the_line_per_channel():
    rng = np.random.default_rng(5)
    m = 120
    heights = rng.uniform(3, 8, m)                       # small pulses: the line hides them
    base = noise(rng, m, "white") + pulses(rng, m, heights)
    picked = base + sinusoid(rng, m, 17.0, 4.0)
    records = np.stack([picked, base])                   # (channel, event, sample)
    valid = np.ones(2 * m, bool)
    inputs = model_inputs(records, valid).reshape(2, m, N)
    clean_view = preprocess(base)
    # channel 0: its line removed, close to the view without pickup; channel 1: untouched
    assert np.abs(inputs[0] - clean_view).mean() < 0.03
    assert np.abs(preprocess(picked) - clean_view).mean() > 0.1
    assert np.array_equal(inputs[1], clean_view)


def test_model_inputs_ignore_invalid_records():
    rng = np.random.default_rng(6)
    base = noise(rng, 60, "white")
    x = base + sinusoid(rng, 60, 25.0, 4.0)
    x[:40] = np.nan                                      # 2/3 invalid: the line still comes from the rest
    valid = np.all(np.isfinite(x), axis=1)
    inputs = model_inputs(x, valid)
    assert np.all(inputs[:40] == 0)
    assert np.abs(inputs[40:] - preprocess(base[40:])).mean() < 0.03


def _run_with_a_line(m=45):
    rng = np.random.default_rng(8)
    picked = noise(rng, m, "white") + pulses(rng, m, rng.uniform(3, 8, m)) + sinusoid(rng, m, 17.0, 4.0)
    plain = noise(rng, m, "white") + pulses(rng, m, rng.uniform(3, 8, m))
    return np.stack([picked, plain]).astype(np.float32)        # (channel, event, sample)


def _model():
    import torch

    from cryopipe.cleaning.models import build_model
    torch.manual_seed(0)
    return build_model("cnn").eval()


def test_predictions_store_uses_the_runs_lines_in_every_chunk():
    import xarray as xr

    from cryopipe.cleaning.predict import predict_scores, predictions_dataset
    model, records = _model(), _run_with_a_line()
    trace = xr.DataArray(records, dims=("channel", "event", "sample"))
    # chunks of 7 events leave a last chunk of 3 (< MIN_RECORDS): the run's lines are used there too
    chunked = predictions_dataset(model, trace, "cnn", event_chunk=7)
    whole = predictions_dataset(model, trace, "cnn", event_chunk=1000)
    np.testing.assert_allclose(chunked.score.values, whole.score.values, atol=1e-6)
    assert chunked.attrs["line_pickup"].startswith("channel 0: 17.0") and "channel 1: none" in chunked.attrs["line_pickup"]
    assert "Hz" not in chunked.attrs["line_pickup"]          # no sample frequency given
    # at 25.6 kHz the 512-sample window lasts 20 ms: 17 cycles are 850 Hz
    timed = predictions_dataset(model, trace, "cnn", sample_frequency=25_600.0)
    hz = re.match(r"channel 0: 17\.0 cycles per 512-sample window \(([0-9.]+) Hz\)", timed.attrs["line_pickup"])
    assert hz and float(hz.group(1)) == pytest.approx(850.0, rel=0.005)
    untouched = predict_scores(model, records, lines=[np.zeros(0), np.zeros(0)])
    assert not np.allclose(untouched[0], whole.score.values[0], atol=1e-4)
    np.testing.assert_allclose(untouched[1], whole.score.values[1], atol=1e-6)


def test_predict_file_finds_the_lines_on_the_whole_file(tmp_path):
    from cryopipe.cleaning.universal import predict_file
    model, records = _model(), _run_with_a_line()
    path = tmp_path / "run.npz"
    np.savez(path, records=records)
    small = predict_file(path, model, events_per_block=7)
    large = predict_file(path, model, events_per_block=8192)
    np.testing.assert_allclose(small["score"], large["score"], atol=1e-6)
    assert np.allclose(small["line_frequencies"], [17.0], atol=0.1) and list(small["line_channel"]) == [0]


def test_cli_predict_says_which_lines_it_removed(tmp_path, capsys):
    from cryopipe.cli import main
    path, out = tmp_path / "run.npz", tmp_path / "scores.npz"
    np.savez(path, records=_run_with_a_line())
    assert main(argv=["predict", str(path), "--model", "universal", "--output", str(out)]) in (0, None)
    err = capsys.readouterr().err
    assert "line pickup found" in err and "channel 0: 17.0" in err
    with np.load(out) as f:
        assert np.allclose(f["line_frequencies"], [17.0], atol=0.1)


def test_inputs_declare_their_sample_frequency(tmp_path):
    """LJH: 1 / Timebase (written by an independent writer); .npz declares none."""
    from ljh_util import write_ljh_by_hand

    from cryopipe.io.record_files import input_sample_frequency
    samples = np.full((3, 64), 1000, np.uint16)
    path = write_ljh_by_hand(tmp_path / "a.ljh", "2.2.0", samples, timebase=5.12e-6, row_counts=[0, 10, 20],
                             posix_usec=[0, 100, 200])
    assert input_sample_frequency(path) == pytest.approx(195312.5)
    np.savez(tmp_path / "r.npz", records=samples.astype(float))
    assert input_sample_frequency(tmp_path / "r.npz") is None
    np.savez(tmp_path / "f.npz", records=samples.astype(float), sample_frequency=25_000)
    assert input_sample_frequency(tmp_path / "f.npz") == 25_000.0
    np.savez(tmp_path / "bad.npz", records=samples.astype(float), sample_frequency=[1.0, 2.0])
    with pytest.raises(InputError, match="'sample_frequency' must be a positive number"):
        input_sample_frequency(tmp_path / "bad.npz")
