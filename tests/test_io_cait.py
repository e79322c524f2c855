"""Cait HDF5 import: a small file in Cait's layout, imported into a records store and read back."""
import h5py
import numpy as np
import pytest

from cryopipe.cli import main
from cryopipe.errors import InputError
from cryopipe.io.cait import MAINPAR_NAMES, cait_records, read_cait_events
from cryopipe.io.stores import load_store

N = 1024
FS = 25_000.0


def write_cait(path, n_events=6, n_noise=0, times="hours", n_channels=2, seed=0):
    """A Cait-layout file: events/event (channels, events, samples) float32 V, mainpar (channels, events, 10)."""
    rng = np.random.default_rng(seed)
    event = rng.standard_normal((n_channels, n_events, N)).astype(np.float32)
    mainpar = rng.uniform(0, 1, (n_channels, n_events, 10))
    hours = np.sort(rng.uniform(0, 2, n_events))
    with h5py.File(path, "w") as f:
        g = f.create_group("events")
        g["event"] = event
        g["mainpar"] = mainpar
        if times == "hours":
            g["hours"] = hours
        elif times == "time_s":
            g["time_s"] = np.floor(1.7e9 + hours * 3600)
            g["time_mus"] = np.round((hours * 3600 % 1) * 1e6)
        noise = None
        if n_noise:
            noise = rng.standard_normal((n_channels, n_noise, N)).astype(np.float32)
            n = f.create_group("noise")
            n["event"] = noise
            n["hours"] = np.sort(rng.uniform(0, 2, n_noise))
    return event, mainpar, hours, noise


def test_import_cait_round_trip_with_noise(tmp_path):
    h5 = tmp_path / "run.h5"
    event, mainpar, hours, noise = write_cait(h5, n_events=6, n_noise=3)
    out = tmp_path / "run.zarr"
    assert main(argv=["import-cait", str(h5), str(out), "--sample-frequency", str(FS), "--channels",
                      "phonon,light"]) == 0
    ds = load_store(out, "records")
    with h5py.File(h5) as f:
        noise_hours = f["noise"]["hours"][:]
    all_hours = np.concatenate([hours, noise_hours])
    order = np.argsort(all_hours, kind="stable")
    all_traces = np.concatenate([event, noise], axis=1)[:, order]
    np.testing.assert_array_equal(ds["trace"].values, all_traces)
    assert list(ds["channel"].values) == ["phonon", "light"]
    kinds = np.array(["particle"] * 6 + ["noise"] * 3)[order]
    assert list(ds["record_kind"].values) == kinds.tolist()
    t = all_hours[order] * 3600   # s since the measurement's start, as Cait's hours count
    np.testing.assert_allclose(ds["trigger_time"].values, t, rtol=1e-12)
    np.testing.assert_allclose(ds["timestamp"].values, t, rtol=1e-12)   # no time_s: the same
    assert ds.attrs["source"] == "cait" and ds.attrs["pretrigger"] == N // 4   # Cait's record window
    np.testing.assert_array_equal(ds["trigger_sample"].values, np.round(t * FS).astype(np.int64))
    # the channel with the larger Cait pulse height (mainpar[..., 0]) fired; noise records: -1
    ph = np.concatenate([mainpar[:, :, 0], np.full((2, 3), np.nan)], axis=1)[:, order]
    fired = np.where(kinds == "noise", -1, np.argmax(np.nan_to_num(ph, nan=-1), axis=0))
    np.testing.assert_array_equal(ds["trigger_channel"].values, fired)
    np.testing.assert_allclose(ds["trigger_amplitude"].values, ph.astype(np.float32))
    assert list(ds["parameter"].values) == list(MAINPAR_NAMES)
    np.testing.assert_allclose(ds["mainpar"].values[:, kinds == "particle"],
                               mainpar[:, np.argsort(hours, kind="stable")].astype(np.float32))
    assert ds.attrs["sample_frequency"] == FS and ds.attrs["record_length"] == N
    np.testing.assert_allclose(ds["time"].values, (np.arange(N) - N // 4) / FS)
    assert ds.attrs["stream_duration"] == pytest.approx(t[-1] - t[0] + N / FS)


def test_import_cait_takes_unix_timestamps_and_hours_as_cait_counts(tmp_path):
    h5 = tmp_path / "run.h5"
    _, _, hours, _ = write_cait(h5, n_events=5)
    unix = 1.7e9 + np.arange(5) * 10.25
    with h5py.File(h5, "a") as f:
        f["events"]["time_s"] = np.floor(unix)
        f["events"]["time_mus"] = np.round(unix % 1 * 1e6)
    ds = cait_records(h5, sample_frequency=FS)
    np.testing.assert_allclose(ds["trigger_time"].values, np.sort(hours) * 3600, rtol=1e-12)
    np.testing.assert_allclose(ds["timestamp"].values, unix[np.argsort(hours, kind="stable")], rtol=0, atol=1e-6)


@pytest.mark.parametrize("name, values, message", [
    ("hours", [0.1, np.nan, 0.3, 0.4, 0.5], "events/hours is not finite .* 1 record.*index 1"),
    ("hours", [0.1, 0.2, 0.3], "events/hours has 3 values for 5 records"),
    ("mainpar", np.zeros((2, 4, 10)), "events/mainpar has 4 events for 5 records"),
    ("of_ph", np.zeros((2, 3)), "events/of_ph has 3 events for 5 records"),
])
def test_import_cait_bad_per_event_values_are_one_line(tmp_path, name, values, message):
    h5 = tmp_path / "run.h5"
    write_cait(h5, n_events=5)
    with h5py.File(h5, "a") as f:
        if name in f["events"]:
            del f["events"][name]
        f["events"][name] = np.asarray(values)
    with pytest.raises(InputError, match=f"run.h5: {message}"):
        cait_records(h5, sample_frequency=FS)


def test_import_cait_nan_tpa_is_one_line_and_nan_samples_a_warning(tmp_path, caplog):
    import logging

    h5 = tmp_path / "run.h5"
    write_cait(h5, n_events=5)
    with h5py.File(h5, "a") as f:
        g = f.create_group("testpulses")
        g["event"] = np.zeros((2, 3, N), np.float32)
        g["hours"] = [0.5, 0.6, 0.7]
        g["testpulseamplitude"] = [1.0, np.nan, 3.0]
    with pytest.raises(InputError, match="run.h5: testpulses/testpulseamplitude is not finite"):
        cait_records(h5, sample_frequency=FS)
    with h5py.File(h5, "a") as f:
        f["testpulses"]["testpulseamplitude"][1] = 2.0
        f["events"]["event"][0, 2, 10] = np.nan
    with caplog.at_level(logging.WARNING, logger="cryopipe"):
        ds = cait_records(h5, sample_frequency=FS)
    assert ds.sizes["event"] == 8
    assert any("events/event has NaN or inf samples in 1 record(s), the first at index 2" in r.getMessage()
               for r in caplog.records)


@pytest.mark.parametrize("times", ["time_s", "none"])
def test_trigger_times_from_time_stamps_or_index(tmp_path, times):
    h5 = tmp_path / "run.h5"
    event, _, hours, _ = write_cait(h5, n_events=5, times=times)
    ds = cait_records(h5, sample_frequency=FS)
    if times == "none":
        np.testing.assert_allclose(ds["trigger_time"].values, np.arange(5) * N / FS)
        np.testing.assert_array_equal(ds["trigger_sample"].values, np.arange(5) * N)
        np.testing.assert_array_equal(ds["trace"].values, event)
    else:
        np.testing.assert_allclose(ds["trigger_time"].values, (hours - hours[0]) * 3600, atol=2e-6)
    assert set(ds["record_kind"].values.tolist()) == {"particle"}


def test_channel_selection_in_any_order(tmp_path):
    h5 = tmp_path / "run.h5"
    event, *_ = write_cait(h5, n_channels=3, times="none")
    np.testing.assert_array_equal(read_cait_events(h5, channels=[2, 0]), event[[2, 0]])
    ds = cait_records(h5, sample_frequency=FS, channels=[2, 0])
    assert list(ds["channel"].values) == ["ch2", "ch0"]
    with pytest.raises(InputError, match="outside"):
        cait_records(h5, sample_frequency=FS, channels=[3])


def test_import_errors_name_the_file(tmp_path, capsys):
    missing = tmp_path / "missing.h5"
    assert main(argv=["import-cait", str(missing), str(tmp_path / "o.zarr")]) == 1
    assert "missing.h5" in capsys.readouterr().err
    bad = tmp_path / "bad.h5"
    bad.write_text("not hdf5")
    with pytest.raises(InputError, match="bad.h5: not an HDF5 file"):
        cait_records(bad)
    empty = tmp_path / "empty.h5"
    with h5py.File(empty, "w") as f:
        f.create_group("stdevent")
    with pytest.raises(InputError, match="empty.h5: no dataset events/event"):
        cait_records(empty)
    h5 = tmp_path / "run.h5"
    write_cait(h5)
    assert main(argv=["import-cait", str(h5), str(tmp_path / "o.zarr"), "--channels", "a,b,c"]) == 1
    assert "3 names for 2 channels" in capsys.readouterr().err
    assert main(argv=["import-cait", str(h5), str(tmp_path / "o.zarr"), "--sample-frequency", "0"]) == 1
    assert not (tmp_path / "o.zarr").exists()


def test_import_cait_keeps_the_test_pulse_group_and_says_when_it_assumes_25_khz(tmp_path, capsys):
    """Cait's ``testpulses`` group (event, testpulseamplitude, hours) becomes test and control pulse
    records with their TPA (issue 21: it was dropped silently), and an import without
    --sample-frequency says that it assumes 25 kHz."""
    h5 = tmp_path / "run.h5"
    event, _, hours, _ = write_cait(h5, n_events=5, seed=3)
    rng = np.random.default_rng(4)
    tp = rng.standard_normal((2, 4, N)).astype(np.float32)
    tpa = np.array([0.5, 20.0, 1.0, 10.1], dtype=np.float32)          # 10.1 is still a test pulse (Cait's min_cpa)
    tp_hours = np.sort(rng.uniform(0, 2, 4))
    with h5py.File(h5, "a") as f:
        g = f.create_group("testpulses")
        g["event"] = tp
        g["testpulseamplitude"] = tpa
        g["hours"] = tp_hours
    out = tmp_path / "run.zarr"
    assert main(argv=["import-cait", str(h5), str(out)]) == 0
    captured = capsys.readouterr()
    assert "25000 Hz assumed" in captured.err and "4 test/control pulses" in captured.out
    ds = load_store(out, "records")
    all_hours = np.concatenate([hours, tp_hours])
    order = np.argsort(all_hours, kind="stable")
    np.testing.assert_array_equal(ds["trace"].values, np.concatenate([event, tp], axis=1)[:, order])
    kinds = np.array(["particle"] * 5 + ["testpulse", "controlpulse", "testpulse", "testpulse"])[order]
    assert ds["record_kind"].values.astype(str).tolist() == kinds.tolist()
    np.testing.assert_array_equal(ds["tpa"].values, np.concatenate([np.zeros(5, np.float32), tpa])[order])
    assert np.all(ds["trigger_channel"].values[kinds != "particle"] == -1)
    assert ds.attrs["sample_frequency"] == 25_000.0
    # given explicitly: nothing assumed, nothing said
    assert main(argv=["import-cait", str(h5), str(tmp_path / "b.zarr"), "--sample-frequency", "50000"]) == 0
    assert "assumed" not in capsys.readouterr().err
    # a test-pulse group without its TPA: one line naming the file
    with h5py.File(h5, "a") as f:
        del f["testpulses"]["testpulseamplitude"]
    assert main(argv=["import-cait", str(h5), str(tmp_path / "c.zarr")]) == 1
    assert "run.h5: testpulses/event without testpulses/testpulseamplitude" in capsys.readouterr().err
    assert not (tmp_path / "c.zarr").exists()
