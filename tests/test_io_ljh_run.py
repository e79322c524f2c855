"""LJH runs: config from the headers, records read like rdt with the trigger at Presamples, and the
characterization and features on records whose trigger is not at N/4 (ground truth: pulses of known
height written at a known onset by the independent writer of ljh_util)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from cryopipe.config import check, load_schema, resolve_runs
from cryopipe.errors import ConfigError, InputError
from cryopipe.io.sources import is_stream, open_stream
from cryopipe.io.records import record_batches
from ljh_util import write_pulse_ljh

REPO = Path(__file__).resolve().parents[1]
SCHEMA = load_schema(REPO / "workflow" / "schemas" / "config.schema.yaml")
VOLTS_PER_COUNT = 20.0 / 2**16


def resolved(runs: dict) -> dict:
    from snakemake.utils import validate

    cfg = {"runs": runs}
    check(cfg, SCHEMA)
    validate(cfg, str(REPO / "workflow" / "schemas" / "config.schema.yaml"))
    return resolve_runs(cfg, SCHEMA)


def spec_of(run: dict) -> dict:
    keys = ("ljh", "noise_ljh", "ljh_mode", "pretrigger", "sample_frequency", "record_length", "channels",
            "polarity", "adc_bits", "adc_range")
    return {k: run[k] for k in keys if run.get(k) is not None}



def characterised_ljh_run(tmp_path, n, pre, fs, counts, seeds):
    """An LJH pulse file and noise file (independent writer) read as one record run and
    characterized: (records Dataset, characterization, true pulse heights)."""
    from cryopipe.characterize.stage import characterize_channel

    p, heights, _ = write_pulse_ljh(tmp_path / "a.ljh", n_records=counts[0], n=n, presamples=pre, fs=fs,
                                    seed=seeds[0])
    q, _, _ = write_pulse_ljh(tmp_path / "noise.ljh", n_records=counts[1], n=n, presamples=pre, fs=fs,
                              pulses=False, seed=seeds[1])
    run = resolved({"r": {"ljh": str(p), "noise_ljh": str(q)}})["r"]
    first, more, _ = record_batches(spec_of(run))
    records = xr.concat([first, *more], "event")
    cfg = {"max_noise_records": 1000, "max_pulses": 1000, "min_noise_records": 20, "min_pulses": 10,
           "min_pulse_snr": 10.0, "threshold_resolution": 5.0}
    return records, characterize_channel(records, cfg, "r/ch0"), heights


def test_header_gives_settings_and_mode(tmp_path):
    p, _, _ = write_pulse_ljh(tmp_path / "a.ljh", n_records=8, n=256, presamples=128, fs=100_000.0)
    s, _, _ = write_pulse_ljh(tmp_path / "s.ljh", n_records=8, n=256, presamples=64, fs=100_000.0,
                              back_to_back=True)
    runs = resolved({"rec": {"ljh": str(p)}, "str": {"ljh": [str(s)]}})
    rec, st = runs["rec"], runs["str"]
    assert rec["ljh_mode"] == "records" and not is_stream(spec_of(rec))
    assert rec["sample_frequency"] == 100_000.0 and rec["record_length"] == 256 and rec["pretrigger"] == 128
    assert st["ljh_mode"] == "stream" and is_stream(spec_of(st))
    assert st["record_length"] == 256 and st["pretrigger"] == 64  # cryopipe's own trigger: N // 4


def test_explicit_keys_must_agree_and_stream_needs_no_gaps(tmp_path):
    p, _, _ = write_pulse_ljh(tmp_path / "a.ljh", n_records=8, n=256, presamples=128, fs=100_000.0)
    with pytest.raises(ConfigError, match=r"run 'r': sample_frequency 50000 disagrees with 100000 in the header of .*a\.ljh"):
        resolved({"r": {"ljh": str(p), "sample_frequency": 50000}})
    with pytest.raises(ConfigError, match=r"run 'r': record_length 512 disagrees with 256"):
        resolved({"r": {"ljh": str(p), "record_length": 512}})
    with pytest.raises(ConfigError, match=r"ljh_mode stream, but .*a\.ljh is not a continuous stream: .*gap of 5000 samples "
                                          r"between records 0 and 1"):
        resolved({"r": {"ljh": str(p), "ljh_mode": "stream"}})
    assert resolved({"r": {"ljh": str(p), "sample_frequency": 100000, "record_length": 256}})["r"]["pretrigger"] == 128
    missing = tmp_path / "nope.ljh"
    with pytest.raises(ConfigError, match=r"nope\.ljh: LJH file not found"):
        resolved({"r": {"ljh": str(missing)}})


def test_channels_must_be_triggered_together(tmp_path):
    a, _, _ = write_pulse_ljh(tmp_path / "a.ljh", n_records=6, n=128, presamples=32)
    b, _, _ = write_pulse_ljh(tmp_path / "b.ljh", n_records=6, n=128, presamples=32, gap_frames=4000)
    with pytest.raises(ConfigError, match=r"b\.ljh: record 1 was triggered at frame"):
        resolved({"r": {"ljh": [str(a), str(b)]}})


def test_records_store_content(tmp_path):
    n, pre, fs = 256, 160, 100_000.0
    p, heights, frames = write_pulse_ljh(tmp_path / "a.ljh", n_records=30, n=n, presamples=pre, fs=fs)
    q, _, _ = write_pulse_ljh(tmp_path / "noise.ljh", n_records=10, n=n, presamples=pre, fs=fs, pulses=False, seed=4)
    run = resolved({"r": {"ljh": str(p), "noise_ljh": str(q), "polarity": 1}})["r"]
    spec = spec_of(run)
    first, more, summary = record_batches(spec, batch=16)
    ds = xr.concat([first, *more], "event")
    assert "read as triggered records" in summary and "30 records of 256 samples (pretrigger 160)" in summary
    assert ds.sizes["event"] == 40 and list(ds["record_kind"].values[[0, 29, 30, 39]]) == ["particle"] * 2 + ["noise"] * 2
    assert ds.attrs["pretrigger"] == pre and ds.attrs["record_length"] == n
    np.testing.assert_allclose(ds["time"].values, (np.arange(n) - pre) / fs)
    from cryopipe.io.ljh import read_ljh

    counts = np.asarray(read_ljh(p).records, np.float64)
    np.testing.assert_allclose(ds["trace"].values[0, :30], counts * VOLTS_PER_COUNT, rtol=1e-6)
    np.testing.assert_array_equal(ds["trigger_sample"].values[:30], frames - frames[0] + pre)
    np.testing.assert_allclose(ds["tpa"].values[30:], -1.0)


def test_inverted_polarity_flips_volts(tmp_path):
    p, _, _ = write_pulse_ljh(tmp_path / "a.ljh", n_records=4, n=128, presamples=32)
    run = resolved({"r": {"ljh": str(p), "polarity": -1}})["r"]
    first, _, _ = record_batches(spec_of(run))
    assert float(first["trace"].values.max()) < 0


def test_stream_reads_records_back_to_back(tmp_path):
    n = 200
    s, _, _ = write_pulse_ljh(tmp_path / "s.ljh", n_records=7, n=n, presamples=50, back_to_back=True)
    run = resolved({"r": {"ljh": str(s)}})["r"]
    stream = open_stream(spec_of(run))
    from cryopipe.io.ljh import read_ljh

    flat = np.asarray(read_ljh(s).records, np.float64).reshape(-1) * VOLTS_PER_COUNT
    assert stream.n_samples == 7 * n and stream.n_channels == 1
    np.testing.assert_allclose(stream.read(150, 950)[0], flat[150:950], rtol=1e-6)
    np.testing.assert_allclose(stream.read(-3, 2)[0], np.r_[[flat[0]] * 3, flat[:2]], rtol=1e-6)
    chunks = list(stream.iter_chunks(333, before=10, after=10))
    np.testing.assert_allclose(np.concatenate([v[0, 10:-10] for _, _, v in chunks]), flat, rtol=1e-6)
    (sl, block), = list(stream.read_records(np.array([0, 199, 1000]), 200))
    np.testing.assert_allclose(block[0, 1], flat[199:399], rtol=1e-6)


def test_characterisation_and_features_at_the_pretrigger(tmp_path):
    """Pulses start exactly at Presamples = N/2 (not N/4): clean pulses are found, the SEV onset is
    the pretrigger, the OF amplitude follows the true heights and the onset feature is ~0."""
    from cryopipe.features.dataset import features_dataset

    n, pre, fs = 512, 256, 195312.5
    records, char, heights = characterised_ljh_run(tmp_path, n, pre, fs, (150, 60), (1, 2))
    sev = char["sev"].values[0]
    onset = int(np.flatnonzero(sev > 0.05)[0])
    assert pre <= onset <= pre + 3
    assert int(char["n_pulses"].values[0]) > 100
    assert char.attrs["pretrigger"] == pre
    feats = features_dataset(records, characterization=char)
    amp = feats["of_amplitude"].values[0, :150]
    true_v = heights * VOLTS_PER_COUNT
    slope = np.sum(amp * true_v) / np.sum(true_v ** 2)
    assert np.max(np.abs(amp - slope * true_v)) < 0.01 * true_v.max()
    onsets = feats["onset"].values[0, :150]
    assert np.all(np.abs(onsets) < 20 / fs)   # within 20 samples of the trigger (N/4 would be -256 samples)
    assert np.abs(feats["of_shift"].values[0, :150]).max() <= 2 / fs


def test_no_noise_file_nps_from_pretrigger_regions(tmp_path):
    """Without noise records the NPS comes from the pre-trigger regions: white noise of sigma
    counts has the one-sided density 2 sigma^2 / fs."""
    from cryopipe.characterize.stage import characterize_channel

    n, pre, fs, sigma = 512, 256, 100_000.0, 6.0
    p, _, _ = write_pulse_ljh(tmp_path / "a.ljh", n_records=150, n=n, presamples=pre, fs=fs, seed=3,
                              noise_counts=sigma)
    run = resolved({"r": {"ljh": str(p)}})["r"]
    first, more, summary = record_batches(spec_of(run))
    assert "pre-trigger regions" in summary
    records = xr.concat([first, *more], "event")
    cfg = {"max_noise_records": 1000, "max_pulses": 1000, "min_noise_records": 20, "min_pulses": 10,
           "min_pulse_snr": 10.0, "threshold_resolution": 5.0}
    char = characterize_channel(records, cfg, "r/ch0")
    nps = char["nps"].values[0]
    expect = 2 * (sigma ** 2 + 1 / 12) * VOLTS_PER_COUNT ** 2 / fs   # + ADC rounding noise
    assert nps.shape == (n // 2 + 1,)
    assert np.median(nps[1:-1]) == pytest.approx(expect, rel=0.1)


def test_cryopipe_predict_reads_ljh(tmp_path, capsys):
    """`cryopipe predict FILE.ljh` scores every record, in volts, with the file's Presamples as the
    trigger: equal to predicting the same volts from an .npz with --pretrigger; bad files: one line."""
    from cryopipe.cli import main
    from cryopipe.io.ljh import read_ljh

    p, _, _ = write_pulse_ljh(tmp_path / "a.ljh", n_records=40, n=512, presamples=200, seed=5)
    assert main(argv=["predict", str(p), "--output", str(tmp_path / "a.npz")]) == 0
    a = np.load(tmp_path / "a.npz")
    assert a["score"].shape == (40,) and int(a["pretrigger"]) == 200 and np.all(a["valid"])
    volts = np.asarray(read_ljh(p).records, np.float32) * np.float32(VOLTS_PER_COUNT)
    np.savez(tmp_path / "same.npz", records=volts)
    assert main(argv=["predict", str(tmp_path / "same.npz"), "--pretrigger", "200", "--output",
                      str(tmp_path / "b.npz")]) == 0
    np.testing.assert_allclose(a["score"], np.load(tmp_path / "b.npz")["score"], atol=1e-6)
    p.write_bytes(p.read_bytes()[:-7])
    capsys.readouterr()
    assert main(argv=["predict", str(p), "--output", str(tmp_path / "c.npz")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "a.ljh: truncated last record" in err[0]
    assert not (tmp_path / "c.npz").exists()


def test_per_run_simulation_in_the_preprocessing_window(tmp_path):
    """With the trigger at N/2, the per-run model's records are simulated in the window the
    cleaning's preprocessing cuts from the real records (trigger at a quarter of it): same length,
    and the simulated clean pulses rise where the real ones do inside that window."""
    from cryopipe.cleaning.preprocess import trigger_window
    from cryopipe.cleaning.stage import simulate_run_records

    n, pre, fs = 1024, 512, 195312.5
    records, char, _ = characterised_ljh_run(tmp_path, n, pre, fs, (120, 40), (6, 7))
    window = trigger_window(n, pretrigger=pre)
    sim = simulate_run_records(char, 20, seed=1, snr_range=(200.0, 400.0))
    length = window.stop - window.start
    assert sim.sizes["sample"] == length == sim.attrs["record_length"]
    real = records["trace"].values[0, :120, window]
    real_rise = int(np.flatnonzero((real - real[:, :50].mean(1, keepdims=True)).mean(0) > 0.5 * (
        (real - real[:, :50].mean(1, keepdims=True)).mean(0).max()))[0])
    clean = sim["event_class"].values == "event_pulse"
    assert clean.any()
    x = sim["trace"].values[0][clean] if sim["trace"].ndim == 3 else sim["trace"].values[clean]
    x = x - x[:, :50].mean(1, keepdims=True)
    rises = np.array([np.flatnonzero(r > 0.5 * r.max())[0] for r in x])
    assert abs(np.median(rises) - real_rise) <= length // 64 + 2


def test_other_formats_keep_the_trigger_at_a_quarter(tmp_path):
    """rdt records (and every other source) carry attr pretrigger = N // 4 and the same time coord."""
    from cresst_util import write_cresst_rdt_run
    from cryopipe.io.stores import record_pretrigger

    run = write_cresst_rdt_run(tmp_path, "r", n_particle=6, n_noise=3, n_testpulse=0, record_length=512, seed=1)
    spec = {"rdt": str(run["paths"]["rdt"]), "par": str(run["paths"]["par"]), "record_length": 512,
            "sample_frequency": run["sample_frequency"], "channels": [f"ch{c}" for c in run["channels"]]}
    first, _, _ = record_batches(spec)
    assert first.attrs["pretrigger"] == 128 == record_pretrigger(first)
    np.testing.assert_allclose(first["time"].values, (np.arange(512) - 128) / run["sample_frequency"])
    del first.attrs["pretrigger"]                      # stores written before the attr existed
    assert record_pretrigger(first) == 128


def test_polarity_from_the_header(tmp_path):
    """'Inverted: Yes' (MATTER) makes the run's polarity -1: pulses come out positive; an explicit
    polarity that disagrees is one line."""
    n, pre = 256, 64
    rng = np.random.default_rng(2)
    p, heights, _ = write_pulse_ljh(tmp_path / "inv.ljh", n_records=6, n=n, presamples=pre,
                                    heights=-rng.uniform(200, 400, 6), baseline=30000, extra=["Inverted: Yes"])
    run = resolved({"r": {"ljh": str(p)}})["r"]
    assert run["polarity"] == -1
    first, _, _ = record_batches(spec_of(run))
    x = first["trace"].values[0]
    assert np.all(x[:, pre + 20] - x[:, :pre].mean(axis=1) > 100 * VOLTS_PER_COUNT)
    with pytest.raises(ConfigError, match=r"run 'r': polarity 1 disagrees with -1 in the header of .*inv\.ljh"):
        resolved({"r": {"ljh": str(p), "polarity": 1}})
