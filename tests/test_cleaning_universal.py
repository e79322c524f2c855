"""The shipped universal model and `cryopipe predict` on records stores, Cait HDF5 files and .npz files."""
import h5py
import numpy as np
import pytest

from cryopipe.cleaning.predict import predict_scores
from cryopipe.cleaning.architectures import universal_path
from cryopipe.cleaning.universal import load_universal, predict_file, resolve_model
from cryopipe.cli import main
from cryopipe.errors import InputError
from cryopipe.io.stores import write_store
from cryopipe.cleaning.metrics import balanced_accuracy
from cryopipe.simulate.records import DEFAULT_ACCEPTED, EVENT_CLASSES, simulate_universal_records


@pytest.fixture(scope="module")
def universal():
    return load_universal()


@pytest.fixture(scope="module")
def fresh_set():
    """A universal set of a seed never used in training: pulses vs spikes, SQUID jumps, resets."""
    n = {"event_pulse": 150, "spike": 50, "squid_jump": 50, "reset": 50}
    return simulate_universal_records(n, 2048, np.random.default_rng(20240601), snr_range=(10.0, 1000.0))


def test_shipped_weights_are_small_and_multiclass(universal):
    model, meta = universal
    assert universal_path().stat().st_size < 2e6
    assert model.n_classes == len(EVENT_CLASSES) and model.class_names == sorted(EVENT_CLASSES)
    assert sorted(model.class_names[i] for i in model.accepted) == sorted(DEFAULT_ACCEPTED)
    assert meta["training"]["simulation"].startswith("cryopipe.simulate.records.simulate_universal_records")


def test_shipped_model_separates_pulses_from_readout_artifacts(universal, fresh_set):
    model, _ = universal
    s = predict_scores(model, fresh_set["trace"].values[0])
    labels = fresh_set["label"].values[0]
    assert balanced_accuracy(labels, s) >= 0.9
    assert np.mean(s[labels] >= 0.5) >= 0.9 and np.mean(s[~labels] < 0.5) >= 0.9


def test_resolve_model_by_name_and_path(universal, tmp_path):
    model, meta = resolve_model(universal_path())
    assert meta == universal[1]
    with pytest.raises(InputError, match="no model checkpoint"):
        resolve_model(tmp_path / "nothing.pt")
    with pytest.raises(InputError, match="checkpoint path"):
        resolve_model(tmp_path / "weights.bin")


def check_output(path, lead, expected_score):
    out = np.load(path)
    assert out["score"].shape == lead and out["score"].dtype == np.float32
    assert np.all((out["score"] >= 0) & (out["score"] <= 1))
    np.testing.assert_allclose(out["score"], expected_score, atol=1e-6)
    assert out["class_probability"].shape == (*lead, len(EVENT_CLASSES))
    np.testing.assert_allclose(out["class_probability"].sum(axis=-1), 1, atol=1e-5)
    assert list(out["class_names"]) == sorted(EVENT_CLASSES)
    np.testing.assert_array_equal(out["accepted"], out["score"] >= 0.5)


@pytest.mark.parametrize("shape", ["2d", "3d"])
def test_predict_cli_on_npz(universal, fresh_set, tmp_path, shape):
    x = fresh_set["trace"].values[0, :40]
    x = x if shape == "2d" else np.stack([x[:20], x[20:]])
    np.savez(tmp_path / "in.npz", records=x)
    assert main(argv=["predict", str(tmp_path / "in.npz"), "--output", str(tmp_path / "out.npz"), "--batch", "7"]) == 0
    check_output(tmp_path / "out.npz", x.shape[:-1], predict_scores(universal[0], x))


@pytest.mark.parametrize("shape", ["2d", "3d"])
def test_predict_cli_on_npy(universal, fresh_set, tmp_path, shape):
    """One array of records saved with np.save (read memory-mapped): the same scores as in memory."""
    x = fresh_set["trace"].values[0, :40]
    x = x if shape == "2d" else np.stack([x[:20], x[20:]])
    np.save(tmp_path / "in.npy", x)
    assert main(argv=["predict", str(tmp_path / "in.npy"), "--output", str(tmp_path / "out.npz"), "--batch", "7"]) == 0
    check_output(tmp_path / "out.npz", x.shape[:-1], predict_scores(universal[0], x))


def test_predict_cli_on_cait_file_and_records_store(universal, fresh_set, tmp_path):
    from cryopipe.io.cait import cait_records

    x = fresh_set["trace"].values[0, :30].reshape(2, 15, -1)
    h5 = tmp_path / "run.h5"
    with h5py.File(h5, "w") as f:
        f.create_group("events")["event"] = x
    expected = predict_scores(universal[0], x)
    assert main(argv=["predict", str(h5), "--output", str(tmp_path / "cait.npz"), "--model",
                      str(universal_path())]) == 0
    check_output(tmp_path / "cait.npz", (2, 15), expected)
    store = write_store(cait_records(h5), tmp_path / "run.zarr", "records")
    assert main(argv=["predict", str(store), "--output", str(tmp_path / "store.npz"), "--cutoff", "0.3"]) == 0
    out = np.load(tmp_path / "store.npz")
    np.testing.assert_allclose(out["score"], expected, atol=1e-6)
    np.testing.assert_array_equal(out["accepted"], expected >= 0.3)
    res = predict_file(store, universal[0], batch=4, events_per_block=4)      # blocks along events
    np.testing.assert_allclose(res["score"], expected, atol=1e-6)


def test_predict_cli_errors_name_the_input(tmp_path, capsys):
    out = str(tmp_path / "o.npz")
    assert main(argv=["predict", str(tmp_path / "nope.h5"), "--output", out]) == 1
    assert "nope.h5: no such file" in capsys.readouterr().err
    (tmp_path / "text.dat").write_text("hello")
    assert main(argv=["predict", str(tmp_path / "text.dat"), "--output", out]) == 1
    assert "text.dat: unknown input (it begins with b'hello')" in capsys.readouterr().err
    (tmp_path / "empty.ljh").write_bytes(b"")
    assert main(argv=["predict", str(tmp_path / "empty.ljh"), "--output", out]) == 1
    assert "empty.ljh: the file is empty (0 bytes)" in capsys.readouterr().err
    (tmp_path / "renamed.ljh").write_text("time,value\n0,1\n")   # a CSV saved under an LJH name
    assert main(argv=["predict", str(tmp_path / "renamed.ljh"), "--output", out]) == 1
    assert "renamed.ljh: not a valid LJH file: it begins with b'time,val'" in capsys.readouterr().err
    (tmp_path / "renamed.h5").write_text("time,value\n0,1\n")
    assert main(argv=["predict", str(tmp_path / "renamed.h5"), "--output", out]) == 1
    assert "renamed.h5: not a valid HDF5 file" in capsys.readouterr().err
    np.savez(tmp_path / "other.npz", x=np.zeros((3, 100)))
    assert main(argv=["predict", str(tmp_path / "other.npz"), "--output", out]) == 1
    assert "other.npz: .npz has no array 'records'" in capsys.readouterr().err
    np.savez(tmp_path / "flat.npz", records=np.zeros(100))
    assert main(argv=["predict", str(tmp_path / "flat.npz"), "--output", out]) == 1
    assert "flat.npz: 'records' must be numeric" in capsys.readouterr().err
    np.save(tmp_path / "objects.npy", np.array([1, None]), allow_pickle=True)
    assert main(argv=["predict", str(tmp_path / "objects.npy"), "--output", out]) == 1
    assert "objects.npy: an object (pickled) array" in capsys.readouterr().err
    np.save(tmp_path / "whole.npy", np.zeros((50, 256), np.float32))
    (tmp_path / "cut.npy").write_bytes((tmp_path / "whole.npy").read_bytes()[:20000])
    assert main(argv=["predict", str(tmp_path / "cut.npy"), "--output", out]) == 1
    assert "cut.npy: truncated .npy" in capsys.readouterr().err
    np.save(tmp_path / "complex.npy", np.zeros((5, 64), complex))
    assert main(argv=["predict", str(tmp_path / "complex.npy"), "--output", out]) == 1
    assert "complex.npy: the array must be numeric" in capsys.readouterr().err
    assert main(argv=["predict", str(tmp_path / "flat.npz"), "--output", out, "--model", "nomodel.pt"]) == 1
    assert "nomodel.pt: no model checkpoint" in capsys.readouterr().err
    assert not (tmp_path / "o.npz").exists()


def test_calibrated_model_reports_probability_and_ood(tmp_path, fresh_set):
    """A model with a temperature in its meta: predict_file adds calibrated probabilities and energy
    OOD scores; records unlike any training class (inverted pulses) score higher than familiar ones."""
    import json
    import shutil

    from cryopipe.cleaning.architectures import universal_path

    src = universal_path()
    ckpt = tmp_path / "cal.pt"
    shutil.copy(src, ckpt)
    meta = json.loads(src.with_suffix(".json").read_text())
    meta.update(temperature=1.5, ood_threshold=-1.0)
    ckpt.with_suffix(".json").write_text(json.dumps(meta))
    model, _ = resolve_model(ckpt)
    assert model.temperature == 1.5
    familiar = fresh_set["trace"].values[0]
    inverted = -familiar[fresh_set["event_class"].values == "event_pulse"]
    np.savez(tmp_path / "r.npz", records=np.concatenate([familiar, inverted]))
    out = predict_file(tmp_path / "r.npz", model)
    assert {"probability", "ood_score", "ood"} <= set(out)
    assert np.allclose(out["score"][: len(familiar)], predict_scores(model, familiar), atol=1e-5)
    assert np.all((out["probability"] >= 0) & (out["probability"] <= 1))
    ood = out["ood_score"]
    assert np.median(ood[len(familiar):]) > np.median(ood[: len(familiar)])
    assert np.array_equal(out["ood"], ood > -1.0)
    # unsure: the calibrated probability inside the band [0.2, 0.8], both ends included
    p = out["probability"]
    assert np.array_equal(out["unsure"], (p >= 0.2) & (p <= 0.8))


def test_predictions_store_of_a_calibrated_model(tmp_path, fresh_set):
    """predictions_dataset adds probability and ood_score (optional schema variables), the store
    validates, and the cleaning report counts unfamiliar events."""
    import xarray as xr

    from cryopipe.cleaning.predict import predictions_dataset
    from cryopipe.cleaning.report import unfamiliar_summary
    from cryopipe.io.stores import open_store

    model, _ = load_universal()
    model.temperature, model.ood_threshold = 1.2, -2.0
    try:
        trace = xr.DataArray(fresh_set["trace"].values[:, :40], dims=("channel", "event", "sample"))
        ds = predictions_dataset(model, trace, "universal")
    finally:
        del model.temperature, model.ood_threshold
    assert {"probability", "ood_score"} <= set(ds) and ds.attrs["temperature"] == 1.2
    assert ds.attrs["pretrigger"] == trace.shape[-1] // 4        # none given: the N/4 used is recorded
    assert np.allclose(ds["score"].values, predict_scores(model, trace.values), atol=1e-5)
    write_store(ds, tmp_path / "p.zarr", "predictions")
    back = open_store(tmp_path / "p.zarr", "predictions")
    s = unfamiliar_summary(back, np.arange(40))
    assert s["unfamiliar"] == int((back["ood_score"].values[0] > -2.0).sum())
    p = back["probability"].values[0]
    assert ds.attrs["unsure_band"] == [0.2, 0.8]
    assert s["unsure"] == int(((p >= 0.2) & (p <= 0.8)).sum()) and back["unsure"].dtype == bool


def test_predict_cli_warns_of_constant_and_very_short_records(tmp_path, capsys):
    """Flat records (a dead channel) and records far shorter than any training record are named;
    ordinary noisy records of a trained length get neither warning."""
    rng = np.random.default_rng(3)
    x = rng.normal(0.0, 1.0, (6, 1024)).astype(np.float32)
    x[[1, 4]] = 7.0                                   # two flat records
    np.save(tmp_path / "flat.npy", x)
    out = str(tmp_path / "o.npz")
    assert main(argv=["predict", str(tmp_path / "flat.npy"), "--output", out]) == 0
    err = capsys.readouterr().err
    assert "2 of 6 records of" in err and "are constant" in err and "first flat index: 1, 4" in err
    assert "far fewer than any the model was trained on" not in err
    np.testing.assert_array_equal(np.load(out)["constant"], [False, True, False, False, True, False])
    assert int(np.load(out)["pretrigger"]) == 1024 // 4       # an .npy declares none: the N/4 used is recorded
    assert not np.load(out)["pretrigger_declared"]
    np.save(tmp_path / "short.npy", rng.normal(0.0, 1.0, (6, 64)).astype(np.float32))
    assert main(argv=["predict", str(tmp_path / "short.npy"), "--output", out]) == 0
    err = capsys.readouterr().err
    assert "have 64 samples, far fewer than any the model was trained on (512-8192)" in err
    assert "are constant" not in err
