"""Bad inputs of issue 14: each either works with a clear flag or fails with one line naming the file
and the problem; never a silently wrong number, never a raw traceback."""
import warnings
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from cryopipe.characterize.sev_nps import pulse_features
from cryopipe.cli import main
from cryopipe.errors import CryopipeError, InputError, StoreError
from cryopipe.trigger.filters import (MIN_FLAT_RUN, filtered_noise_sigma, flat_mask, generic_kernel, has_flat_run,
                              noise_estimate, robust_sigma)
from cryopipe.io.csmpl import open_csmpl, write_csmpl
from cryopipe.io.stores import validate, write_store
from cryopipe.signal.pulses import generic_template
from cryopipe.trigger.scan import records_dataset, scan_channel
from cryopipe.validity import describe_invalid, finite_records

FS, N = 25000.0, 16384
SIGMA = 0.002          # V, white noise of the test streams
AMP = 0.05             # V, pulse height (25 sigma of the raw noise)
FULL_SCALE = 32767 * 20.0 / 2**16


def _noise(seconds, seed=1):
    return np.random.default_rng(seed).normal(0.0, SIGMA, int(seconds * FS))


def _with_pulses(x, period_s, seed=2):
    rng = np.random.default_rng(seed)
    t = generic_template(N)[N // 4:]
    onsets = np.arange(1000, x.size - 1000, int(period_s * FS))
    onsets = onsets + rng.integers(-200, 200, onsets.size)
    x = x.copy()
    for o in onsets:
        m = min(t.size, x.size - o)
        x[o:o + m] += AMP * t[:m]
    return x, onsets


def _stream(tmp_path, name, volts):
    path = tmp_path / f"{name}.csmpl"
    write_csmpl(path, volts)
    return open_csmpl([path], FS, N)


# --- 3. trigger sanity ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def high_rate(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("rate")
    noise = _noise(40)
    quiet = _stream(tmp, "quiet", noise)
    fast_volts, onsets = _with_pulses(noise, 0.1)          # a pulse every 100 ms
    return quiet, _stream(tmp, "fast", fast_volts), onsets


def test_noise_estimate_is_robust_to_a_high_pulse_rate(high_rate, caplog):
    quiet, fast, _ = high_rate
    k, a = generic_kernel(N)
    truth = noise_estimate(quiet, 0, k, a).sigma
    assert robust_sigma(np.concatenate([y for _, y in __import__("cryopipe.trigger.filters", fromlist=["x"])
                                        .filter_stream(quiet, 0, k, a)])) == pytest.approx(truth, rel=0.05)
    with caplog.at_level("WARNING", logger="cryopipe.trigger.scan"):
        est = noise_estimate(fast, 0, k, a)
    # before: the one-pass robust sigma, ~80x too large; now within 25 % of the noise-only stream's
    assert est.plain > 20 * truth
    assert est.sigma == pytest.approx(truth, rel=0.25)
    assert filtered_noise_sigma(fast, 0, k, a) == est.sigma
    assert any("pile-up" in w for w in est.warnings) and "pile-up" in caplog.text
    assert est.attrs()["noise_warnings"] == est.warnings


def test_high_rate_stream_triggers_most_pulses(high_rate):
    _, fast, onsets = high_rate
    k, a = generic_kernel(N)
    sigma = filtered_noise_sigma(fast, 0, k, a)
    samples, _ = scan_channel(fast, 0, k, a, 5 * sigma, holdoff=1000)
    assert samples.size > 0                                  # before: none (threshold above the pulses)
    nearest = np.abs(samples[:, None] - onsets[None, :]).min(axis=0)
    assert (nearest < 600).mean() > 0.9


def test_moderate_rate_does_not_inflate_the_estimate(tmp_path):
    noise = _noise(40)
    k, a = generic_kernel(N)
    truth = noise_estimate(_stream(tmp_path, "q", noise), 0, k, a).sigma
    est = noise_estimate(_stream(tmp_path, "m", _with_pulses(noise, 1.0)[0]), 0, k, a)
    assert est.plain > 1.3 * truth and est.sigma == pytest.approx(truth, rel=0.05)


def test_quiet_stream_estimate_has_no_warnings(high_rate):
    quiet, _, _ = high_rate
    est = noise_estimate(quiet, 0, *generic_kernel(N))
    assert est.warnings == [] and est.saturated_fraction == 0 and est.quiet_fraction > 0.9


def test_saturated_stretches_are_excluded_flagged_and_never_particles(tmp_path, caplog):
    volts = _noise(20)
    volts[100_000:300_000] = FULL_SCALE                     # 40 % of the stream at full scale
    stream = _stream(tmp_path, "sat", volts)
    k, a = generic_kernel(N)
    truth = noise_estimate(_stream(tmp_path, "q", _noise(20)), 0, k, a).sigma
    with caplog.at_level("WARNING", logger="cryopipe.trigger.scan"):
        est = noise_estimate(stream, 0, k, a)
    assert est.saturated_fraction == pytest.approx(0.4, abs=0.02)
    assert est.sigma == pytest.approx(truth, rel=0.1)
    assert "saturated or stuck" in caplog.text and "sat.csmpl" in caplog.text
    # records in the saturated stretch: kind "saturated", never "particle"
    particle = np.array([50_000, 200_000, 400_000])
    ds = records_dataset(stream, particle, np.zeros(3, np.int64), [], N, ["phonon"], np.ones(3), {}, [], 1.0, 0.1)
    assert list(ds["record_kind"].values) == ["particle", "saturated", "particle"]
    validate(ds, "records")


def test_stream_stuck_at_full_scale_is_one_clear_error(tmp_path):
    stream = _stream(tmp_path, "stuck", np.full(int(20 * FS), FULL_SCALE))
    with pytest.raises(InputError, match=r"stuck\.csmpl: channel 0 is saturated or stuck in 100 %"):
        noise_estimate(stream, 0, *generic_kernel(N))


def test_flat_run_detection():
    x = np.random.default_rng(0).normal(size=(3, 500)).astype("f4")
    x[1, 100:100 + MIN_FLAT_RUN] = 7.0
    x[2, 10:10 + MIN_FLAT_RUN - 1] = 7.0                    # one sample short of a run
    assert list(has_flat_run(x)) == [False, True, False]
    assert flat_mask(x[1]).sum() == MIN_FLAT_RUN and not flat_mask(x[2]).any()


def test_pulse_features_of_saturated_or_flat_records_do_not_divide_by_zero():
    flat = np.full((2, 1024), 3.0, np.float32)
    clipped = np.zeros((1, 1024), np.float32)
    clipped[0, 256:700] = 1.0                                # a pulse clipped flat
    for records in (flat, clipped, np.zeros((1, 1024), np.float32)):
        out = pulse_features(records)                        # before: ZeroDivisionError
        assert set(out) >= {"height", "decay"}


# --- 2. NaN / inf records ------------------------------------------------------------------------

def test_finite_records_and_description():
    x = np.zeros((2, 4, 8))
    x[0, 1, 3] = np.nan
    x[1, 2, 0] = np.inf
    valid = finite_records(x)
    assert valid.tolist() == [[True, False, True, True], [True, True, False, True]]
    text = describe_invalid(valid, what="r.npz")
    assert text.startswith("r.npz: 2 of 8 record(s) contain NaN or inf") and "(0, 1), (1, 2)" in text
    assert describe_invalid(np.ones(3, bool)) == ""


@pytest.fixture(scope="module")
def universal():
    from cryopipe.cleaning.universal import resolve_model

    return resolve_model("universal")


def test_predict_never_scores_nan_or_inf_records(universal):
    from cryopipe.cleaning.predict import decide, predict_scores

    model, _ = universal
    x = np.random.default_rng(0).normal(0, 1e-3, (5, 2048)).astype("f4")
    x[1, 10] = np.nan        # before: score 0.0
    x[2, 20] = np.inf        # before: NaN score and a numpy RuntimeWarning
    x[3, 30] = -np.inf
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        scores, probs = predict_scores(model, x, with_probabilities=True)
    assert np.isfinite(scores[[0, 4]]).all() and np.isnan(scores[1:4]).all()
    assert np.isnan(probs[1:4]).all() and not decide(scores)[1:4].any()


def test_predictions_dataset_flags_invalid_records(universal):
    from cryopipe.cleaning.predict import predictions_dataset

    model, _ = universal
    trace = np.random.default_rng(0).normal(0, 1e-3, (2, 4, 2048)).astype("f4")
    trace[1, 2, 5] = np.nan
    ds = predictions_dataset(model, xr.DataArray(trace, dims=("channel", "event", "sample")), "universal")
    assert ds["valid"].values.tolist() == [[True] * 4, [True, True, False, True]]
    assert np.isnan(ds["score"].values[1, 2]) and not ds["decision"].values[1, 2] and not ds["event_clean"].values[2]
    assert ds.attrs["n_invalid"] == 1 and "(1, 2)" in ds.attrs["invalid_records"]
    validate(ds, "predictions")


def test_cli_predict_reports_nan_records_and_stores_valid(tmp_path, capsys):
    x = np.random.default_rng(0).normal(0, 1e-3, (4, 2048)).astype("f4")
    x[2, 7] = np.nan
    np.savez(tmp_path / "r.npz", records=x)
    assert main(argv=["predict", str(tmp_path / "r.npz"), "--output", str(tmp_path / "o.npz")]) == 0
    cap = capsys.readouterr()
    assert "1 of 4 record(s) contain NaN or inf" in cap.err and "first index: 2" in cap.err
    assert "3 records scored" in cap.out and "1 not scored" in cap.out
    out = np.load(tmp_path / "o.npz")
    assert out["valid"].tolist() == [True, True, False, True] and np.isnan(out["score"][2]) and not out["accepted"][2]


def test_features_of_nan_records_are_nan_and_flagged(caplog):
    from cryopipe.features.dataset import features_dataset

    trace = np.random.default_rng(0).normal(0, 1e-3, (1, 3, 1024)).astype("f4")
    trace[0, 1, 100] = np.inf
    records = xr.Dataset({"trace": (("channel", "event", "sample"), trace)},
                         coords={"channel": ["phonon"], "event": np.arange(3)},
                         attrs={"sample_frequency": FS, "record_length": 1024})
    with caplog.at_level("WARNING"):
        ds = features_dataset(records)
    assert ds["valid"].values.tolist() == [[True, False, True]]
    numeric = [n for n, v in ds.data_vars.items() if v.dims == ("channel", "event") and v.dtype.kind == "f"]
    assert numeric and all(np.isnan(ds[n].values[0, 1]) for n in numeric)
    assert all(np.isfinite(ds[n].values[0, [0, 2]]).any() for n in numeric)
    assert "contain NaN or inf" in caplog.text


# --- raw tracebacks that became one line ----------------------------------------------------------

def _one_line_error(capsys, argv, *needles):
    assert main(argv=argv) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0, err
    for n in needles:
        assert n in err, err
    return err


def test_object_dtype_npz_is_one_line(tmp_path, capsys):
    np.savez(tmp_path / "obj.npz", records=np.array([[1, "a"]], dtype=object))
    _one_line_error(capsys, ["predict", str(tmp_path / "obj.npz"), "--output", str(tmp_path / "o.npz")],
                    "obj.npz", "object (pickled) array")


def test_truncated_npz_is_one_line(tmp_path, capsys):
    np.savez(tmp_path / "t.npz", records=np.zeros((4, 64), "f4"))
    data = (tmp_path / "t.npz").read_bytes()
    (tmp_path / "t.npz").write_bytes(data[: len(data) // 2])
    _one_line_error(capsys, ["predict", str(tmp_path / "t.npz"), "--output", str(tmp_path / "o.npz")], "t.npz")


def _records_store(path, n_events=6, n_samples=1024):
    from test_io_integrity import synthetic

    ds = synthetic("records")
    ds = ds.isel(event=slice(0, n_events))
    trace = np.random.default_rng(1).normal(0, 1e-3, (ds.sizes["channel"], n_events, n_samples)).astype("f4")
    ds = ds.drop_vars(["trace", "time"]).assign(
        trace=(("channel", "event", "sample"), trace), time=(("sample",), np.arange(n_samples) / FS))
    return write_store(ds, path, "records", event_chunk=3)


def test_predict_on_a_store_with_a_corrupt_chunk_is_one_line(tmp_path, capsys):
    path = _records_store(tmp_path / "r.zarr")
    chunk = path / "trace" / "c" / "0" / "1" / "0"
    chunk.write_bytes(bytes(len(chunk.read_bytes())))       # overwritten, same size: before a Zstd RuntimeError
    _one_line_error(capsys, ["predict", str(path), "--output", str(tmp_path / "o.npz")],
                    str(path), "trace/c/0/1/0 is corrupt")   # the manifest's CRC, before decoding


def test_predict_on_a_store_with_a_missing_chunk_is_one_line(tmp_path, capsys):
    path = _records_store(tmp_path / "r.zarr")
    (path / "trace" / "c" / "0" / "1" / "0").unlink()       # before: every record scored (NaN traces)
    _one_line_error(capsys, ["predict", str(path), "--output", str(tmp_path / "o.npz")],
                    str(path), "'trace' lacks 1 of 4 chunk(s)")   # 2 event chunks x 2 channels


def test_duplicate_channel_names_are_one_clear_error(tmp_path):
    stream = _stream(tmp_path, "a", _noise(2))
    two = open_csmpl([stream.paths[0], stream.paths[0]], FS, N)
    with pytest.raises(InputError, match="duplicate channel names phonon"):   # before: InvalidIndexError
        records_dataset(two, [], [], [N], N, ["phonon", "phonon"], np.zeros(0), {}, [], 1.0, 0.1)
    ds = records_dataset(two, [], [], [N], N, ["a", "b"], np.zeros(0), {}, [], 1.0, 0.1)
    with pytest.raises(StoreError, match="duplicate channel names 'x'"):
        validate(ds.assign_coords(channel=["x", "x"]), "records")


def test_directory_given_as_csmpl_says_so(tmp_path):
    (tmp_path / "d.csmpl").mkdir()
    with pytest.raises(InputError, match="d.csmpl: is a directory"):        # before: "not found"
        open_csmpl([tmp_path / "d.csmpl"], FS, N)


def test_inspect_of_a_missing_store_is_one_line(tmp_path, capsys):
    _one_line_error(capsys, ["inspect", str(tmp_path / "nope.zarr")], "nope.zarr", "no such store")


def test_unknown_config_key_is_one_short_paragraph():
    from cryopipe.config import check, load_schema

    schema = load_schema(Path(__file__).parents[1] / "workflow" / "schemas" / "config.schema.yaml")
    with pytest.raises(CryopipeError) as err:
        check({"runs": {}, "bogus_key": 1}, schema)
    msg = str(err.value)
    assert "bogus_key" in msg and len(msg) < 600 and msg.count("\n") == 0   # before: ~700 lines of schema


def test_cli_output_into_a_closed_pipe_is_no_traceback():
    """`cryopipe schema | head -1`: the reader stops early; the command ends quietly (rc 0)."""
    import os
    import subprocess
    import sys

    read, write = os.pipe()
    os.close(read)                                   # nobody reads: every write fails with EPIPE
    try:
        proc = subprocess.run([sys.executable, "-m", "cryopipe.cli", "schema"], stdout=write,
                              stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(write)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr


def test_cli_output_path_that_cannot_be_written_is_one_line(tmp_path, capsys):
    """An output under a plain file (or anywhere the OS refuses) is one line naming the path, rc 1."""
    from cryopipe.cli import main

    blocker = tmp_path / "afile.txt"
    blocker.write_text("x")
    np.save(tmp_path / "r.npy", np.random.default_rng(0).normal(size=(4, 1024)).astype(np.float32))
    assert main(argv=["predict", str(tmp_path / "r.npy"), "--output", str(blocker / "o.npz")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("cryopipe predict: error: ") and "afile.txt" in err
    assert main(argv=["simulate", str(blocker / "sub"), "--duration", "1"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "afile.txt" in err and "Traceback" not in err


def test_import_cait_of_a_missing_file_is_one_line_without_the_frequency_warning(tmp_path, capsys):
    from cryopipe.cli import main

    assert main(argv=["import-cait", str(tmp_path / "nosuch.h5"), str(tmp_path / "o.zarr")]) == 1
    err = capsys.readouterr().err.strip()
    assert err == f"cryopipe import-cait: error: {tmp_path / 'nosuch.h5'}: no such file"
    assert not (tmp_path / "o.zarr").exists()
