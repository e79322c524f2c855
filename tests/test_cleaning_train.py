"""Training in pieces (resume), schedules, the ResNet, embeddings and trigger-aware preprocessing."""
import numpy as np
import pytest
import torch

from cryopipe.cleaning.data import ArraySource
from cryopipe.cleaning.models import build_model, embed
from cryopipe.cleaning.predict import predict_scores
from cryopipe.cleaning.preprocess import preprocess, trigger_window
from cryopipe.cleaning.train import load_model, state_path, train_model
from cryopipe.errors import InputError
from cryopipe.signal.pulses import pulse_template

FS = 25e3


def pulses_and_steps(n, n_samples=1024, seed=0, pretrigger=None):
    """Pulses with onset at `pretrigger` (default N/4; accepted) and steps (rejected)."""
    rng = np.random.default_rng(seed)
    p = n_samples // 4 if pretrigger is None else pretrigger
    tpl = np.roll(pulse_template(n_samples, FS, 4e-3, 3e-4, 8e-3), p - n_samples // 4)
    kind = rng.integers(0, 2, n)
    x = rng.standard_normal((n, n_samples)).astype(np.float32)
    amp = rng.uniform(10, 50, n)
    x[kind == 0] += amp[kind == 0, None] * tpl
    for i in np.flatnonzero(kind == 1):
        x[i, rng.integers(n_samples // 8, n_samples * 7 // 8):] += amp[i]
    return x, kind == 0, np.array(["pulse", "step"])[kind]


def _train(tmp_path, name, **kw):
    torch.set_num_threads(1)
    x, y, c = pulses_and_steps(400, seed=1)
    xv, yv, cv = pulses_and_steps(100, seed=2)
    return train_model("cnn", ArraySource(x, y, c, chunk=128), ArraySource(xv, yv, cv, chunk=128),
                       tmp_path / name, epochs=3, seed=3, progress=None, device="cpu",
                       schedule={"kind": "one_cycle", "max_lr": 3e-3, "pct_start": 0.3}, **kw)


def test_resume_equals_uninterrupted_training(tmp_path):
    whole = _train(tmp_path, "whole.pt")
    part = _train(tmp_path, "piece.pt", stop_after_steps=5)          # stops mid-epoch 1
    assert part.meta["finished"] is False and state_path(tmp_path / "piece.pt").is_file()
    part = _train(tmp_path, "piece.pt", resume=True, stop_after_steps=9)   # stops mid-epoch 2
    assert part.meta["finished"] is False
    done = _train(tmp_path, "piece.pt", resume=True)
    assert done.meta["finished"] is True and not state_path(tmp_path / "piece.pt").exists()
    assert len(done.history["train_loss"]) == len(whole.history["train_loss"])
    np.testing.assert_allclose(done.history["train_loss"], whole.history["train_loss"], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(done.history["val_ba"], whole.history["val_ba"])
    a, _ = load_model(tmp_path / "whole.pt")
    b, _ = load_model(tmp_path / "piece.pt")
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        np.testing.assert_allclose(va.numpy(), vb.numpy(), rtol=1e-5, atol=1e-6, err_msg=k)


def test_a_piece_into_a_new_folder_saves_its_state_and_resume_without_state_says_so(tmp_path):
    import io

    part = _train(tmp_path, "new/deeper/piece.pt", stop_after_steps=3)
    assert part.meta["finished"] is False and state_path(tmp_path / "new/deeper/piece.pt").is_file()
    said = io.StringIO()
    x, y, c = pulses_and_steps(100, seed=1)
    train_model("cnn", ArraySource(x, y, c, chunk=128), ArraySource(x, y, c, chunk=128), tmp_path / "fresh.pt",
                epochs=1, seed=3, progress=said, device="cpu", resume=True)
    assert "resume: no training state at" in said.getvalue() and "training from the start" in said.getvalue()


def test_one_cycle_schedule_anneals_and_keep_last(tmp_path):
    res = _train(tmp_path, "last.pt", keep="last")
    assert res.best_epoch == 2 and res.meta["keep"] == "last"
    assert res.meta["train_records_per_second"] > 0
    model, meta = load_model(tmp_path / "last.pt")
    assert meta["best_epoch"] == 2 and meta["schedule"]["kind"] == "one_cycle"
    x, _, _ = pulses_and_steps(20, seed=9)
    np.testing.assert_allclose(predict_scores(model, x), predict_scores(res.model, x), atol=1e-6)


def test_init_starts_from_a_checkpoint(tmp_path):
    first = _train(tmp_path, "first.pt")
    torch.manual_seed(123)
    fine = train_model("cnn", *[ArraySource(*pulses_and_steps(64, seed=s), chunk=64) for s in (5, 6)],
                       tmp_path / "fine.pt", epochs=1, lr=1e-12, progress=None, device="cpu",
                       init=tmp_path / "first.pt")
    x, _, _ = pulses_and_steps(20, seed=9)      # a learning rate of ~0 keeps the initial weights
    np.testing.assert_allclose(predict_scores(fine.model, x), predict_scores(first.model, x), atol=1e-4)
    assert fine.meta["init"] == str(tmp_path / "first.pt")


def test_resnet_learns_and_embeds():
    model = build_model("resnet", n_classes=2)
    assert 150_000 < sum(p.numel() for p in model.parameters()) < 300_000
    h, z = embed(model.eval(), torch.rand(3, 512))
    assert h.shape == (3, 192) and z.shape == (3, 2)
    np.testing.assert_allclose(model.fc(h).detach(), z.detach(), atol=1e-6)


@pytest.mark.parametrize("n,p", [(1024, 512), (1024, 515), (500, 125), (1024, 100), (1000, 900), (16384, 4096)])
def test_trigger_window_puts_the_trigger_at_a_quarter(n, p):
    w = trigger_window(n, pretrigger=p)
    length = w.stop - w.start
    assert 0 <= w.start and w.stop <= n
    assert p - w.start == length // 4                  # the trigger at 1/4 of the kept window
    longest = max(L for L in range(1, n + 1) if L // 4 <= p and p - L // 4 + L <= n)
    assert length == longest                           # and the longest such window (brute force)


def test_trigger_window_rejects_a_trigger_outside_the_record():
    with pytest.raises(InputError, match="pretrigger"):
        trigger_window(1024, pretrigger=1024)


def test_preprocess_with_pretrigger_matches_a_quarter_trigger_record():
    """A pulse at N/2 preprocessed with its pretrigger looks like a pulse at N/4 (onset at 128)."""
    x, _, c = pulses_and_steps(50, n_samples=1024, seed=4, pretrigger=512)
    pre = preprocess(x[c == "pulse"], pretrigger=512)
    onset = np.argmax(pre > 0.5, axis=-1)
    plain = np.argmax(preprocess(x[c == "pulse"]) > 0.5, axis=-1)
    ref = np.argmax(preprocess(pulses_and_steps(50, n_samples=1024, seed=4)[0][c == "pulse"]) > 0.5, axis=-1)
    assert np.all(np.abs(onset - np.median(ref)) < 12)           # near the 1/4 convention
    assert np.all(plain - onset > 100)                           # without it: far late


def test_pile_up_augmentation_makes_only_visible_pile_up():
    """The copy is >= MIN_VISIBLE_SIGMA noise sigmas high and >= one rise time away; records whose
    pulse is too small for a visible copy within the height range stay unchanged."""
    from cryopipe.cleaning import augment as aug

    rng = np.random.default_rng(7)
    n, b, sigma = 512, 4000, 1.0
    tpl = pulse_template(n, FS / 32, 4e-3 * 32, 3e-3 * 32, 8e-3 * 32)   # slow rise: tens of samples
    rise = 2 * int(np.argmax(tpl[n // 4:] >= 0.5 * tpl.max()))
    height = rng.uniform(3, 200, b)
    x = (height[:, None] * tpl + sigma * rng.standard_normal((b, n))).astype(np.float32)
    piled, d, ratio = aug.pile_up(x, rng, height_range=(0.01, 1.0))
    done = ratio > 0
    assert 0.3 < done.mean() < 1.0
    top = np.max(x - aug.baseline(x), axis=-1)
    assert np.all(ratio[done] * top[done] >= aug.MIN_VISIBLE_SIGMA * 0.6 * sigma)   # sigma estimated from ~100 samples
    clear = done & (height > 20 * sigma)                           # rise time measurable
    assert np.all(np.abs(d[clear]) >= 0.8 * rise) and rise > 8
    np.testing.assert_array_equal(piled[~done], x[~done])
    small = 5 * sigma / top > 1.0                                 # no visible copy can fit
    assert not done[small].any()


def test_feature_distance_is_the_smallest_mahalanobis_distance(tmp_path):
    from scipy.spatial.distance import mahalanobis

    from cryopipe.cleaning.calibration import (feature_distance, fit_feature_density, is_ood, load_feature_density,
                                               save_feature_density)

    rng = np.random.default_rng(0)
    cov = np.array([[4.0, 1.0, 0.0], [1.0, 2.0, 0.0], [0.0, 0.0, 0.5]])
    centres = np.array([[0.0, 0.0, 0.0], [10.0, 0.0, 0.0]])
    c = rng.integers(0, 2, 20000)
    f = centres[c] + rng.multivariate_normal(np.zeros(3), cov, c.size)
    dens = fit_feature_density(f, c)
    np.testing.assert_allclose(dens["means"], centres, atol=0.1)
    np.testing.assert_allclose(dens["precision"], np.linalg.inv(cov), rtol=0.05, atol=0.02)
    probe = np.array([[1.0, 2.0, -1.0], [9.0, -1.0, 0.5], [5.0, 8.0, 3.0]])
    want = [min(mahalanobis(p, m, dens["precision"]) for m in dens["means"]) for p in probe]
    np.testing.assert_allclose(feature_distance(probe, dens), want, rtol=1e-9)
    save_feature_density(tmp_path / "m.pt", dens)
    back = load_feature_density(tmp_path / "m.pt")
    np.testing.assert_allclose(feature_distance(probe, back), want, rtol=1e-5)
    thr = np.quantile(feature_distance(f, dens), 0.99)
    flags = is_ood(np.zeros(3), 1.0, distance=feature_distance(probe, dens), distance_threshold=thr)
    np.testing.assert_array_equal(flags, [False, False, True])      # the third is far from both classes
    np.testing.assert_array_equal(is_ood(np.array([0.0, 2.0, np.nan]), 1.0), [False, True, False])


def test_rate_warnings_for_a_mostly_rejected_or_unfamiliar_run():
    from cryopipe.cleaning.predict import rate_warnings

    valid = np.ones(100, bool)
    assert rate_warnings(np.ones(100, bool), valid, ood=np.zeros(100, bool)) == []
    w = rate_warnings(np.arange(100) < 10, valid)
    assert len(w) == 1 and "rejects 90%" in w[0]
    w = rate_warnings(np.ones(100, bool), valid, ood=np.arange(100) < 30)
    assert len(w) == 1 and "30%" in w[0] and "ood" in w[0]
    # what the rejected records are taken for: 80 of the 90 rejected called noise -> a noise file?
    called = np.where(np.arange(100) < 20, "pile_up", "noise")
    w = rate_warnings(np.arange(100) < 10, valid, called=called)
    assert "89% of them as noise: as expected for empty baselines" in w[0]
    w = rate_warnings(np.arange(100) < 10, valid, called=np.where(np.arange(100) < 60, "pile_up", "noise"))
    assert "56% of them as pile_up" in w[0] and "empty baselines" not in w[0]


def test_predict_file_without_records_is_one_clear_error(tmp_path):
    from cryopipe.cleaning.universal import predict_file

    np.savez(tmp_path / "empty.npz", records=np.zeros((0, 1024), np.float32))
    with pytest.raises(InputError, match="empty.npz: holds no records"):
        predict_file(tmp_path / "empty.npz", build_model("cnn", n_classes=1))
