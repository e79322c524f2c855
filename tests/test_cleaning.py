"""Deep-learning data cleaning: preprocessing, models, augmentations, data, training, prediction."""
import io

import numpy as np
import pytest
import torch
import xarray as xr

from cryopipe.cleaning import augment as aug
from cryopipe.cleaning.data import (ArraySource, SimsetSource, WeakShuffleBatches, ordered_batches,
                                    split_events, weak_shuffle_plan)
from cryopipe.cleaning.models import MODELS, build_model, scores_from_logits
from cryopipe.cleaning.predict import clean_events, decide, predict_scores, predictions_dataset
from cryopipe.cleaning.preprocess import downsample, minmax_scale, preprocess
from cryopipe.cleaning.train import (balanced_weights, evaluate, load_model, plot_loss_curves, save_model, train_model,
                                     weighted_loss)
from cryopipe.cleaning import metrics
from cryopipe.errors import InputError
from cryopipe.io.stores import provenance, validate, write_store
from cryopipe.signal.pulses import pulse_template

FS = 25_000.0


def synthetic_set(n, n_samples=1000, seed=0):
    """Pulses (template + white noise, accepted) vs spikes and steps (rejected); class names."""
    rng = np.random.default_rng(seed)
    tpl = pulse_template(n_samples, FS, 4e-3, 3e-4, 8e-3)
    kind = rng.integers(0, 3, n)
    amp = rng.uniform(5, 50, n)
    x = rng.standard_normal((n, n_samples)).astype(np.float32)
    for i in np.flatnonzero(kind == 0):
        x[i] += amp[i] * np.roll(tpl, rng.integers(-10, 11))
    for i in np.flatnonzero(kind == 1):
        p = rng.integers(50, n_samples - 50)
        x[i, p:p + 3] += 2 * amp[i]
    for i in np.flatnonzero(kind == 2):
        x[i, rng.integers(n_samples // 8, n_samples * 7 // 8):] += amp[i]
    return x, kind == 0, np.array(["pulse", "spike", "step"])[kind]


# ---------------------------------------------------------------- preprocessing
@pytest.mark.parametrize("n", [300, 512, 1000, 2048, 16384])
def test_preprocess_shape_and_range(n):
    x = np.random.default_rng(n).standard_normal((3, 2, n)) * 5 + 7
    p = preprocess(x)
    assert p.shape == (3, 2, 512) and p.dtype == np.float32
    np.testing.assert_allclose(p.min(axis=-1), 0, atol=1e-7)
    np.testing.assert_allclose(p.max(axis=-1), 1, atol=1e-6)


def test_flat_record_gives_zeros():
    p = preprocess(np.full((2, 4096), 3.3))
    assert not np.isnan(p).any() and np.all(p == 0)


def test_block_means_by_hand():
    x = np.arange(2048, dtype=float)[None] ** 1.5
    expected = np.array([x[0, 4 * i:4 * i + 4].mean() for i in range(512)])
    np.testing.assert_allclose(downsample(x)[0], expected, rtol=1e-6)
    # 1000 samples: block i spans [floor(1000 i / 512), floor(1000 (i+1) / 512))
    y = np.random.default_rng(1).standard_normal(1000)
    edges = [1000 * i // 512 for i in range(513)]
    expected = np.array([y[edges[i]:edges[i + 1]].mean() for i in range(512)])
    np.testing.assert_allclose(downsample(y), expected, rtol=1e-5, atol=1e-6)
    # shorter than 512: sample repeated
    z = np.arange(256.0)
    np.testing.assert_array_equal(downsample(z), np.repeat(z, 2))


def test_minmax_scale_by_hand():
    np.testing.assert_allclose(minmax_scale([[2.0, 4.0, 3.0]]), [[0, 1, 0.5]])


# ---------------------------------------------------------------- models
def conv(cin, cout, k):
    return cin * cout * k + cout


def lin(i, o):
    return i * o + o


def lstm_layer(n_in, h):
    return 4 * (h * (n_in + h) + 2 * h)


def expected_parameters(name, c):
    """Parameter counts written out from the paper tables (CRESST Tables 3-6, Cait Table 2)."""
    if name == "cnn":    # Table 3: 3 conv k8 (4, 16, 64), 320 -> 200 -> 84 -> out
        return conv(1, 4, 8) + conv(4, 16, 8) + conv(16, 64, 8) + lin(320, 200) + lin(200, 84) + lin(84, c)
    if name == "lstm":   # Table 4: 3 bidirectional layers, input 8, hidden 200; 12800 -> out
        return 2 * (lstm_layer(8, 200) + 2 * lstm_layer(400, 200)) + lin(12800, c)
    if name == "tscn":   # Table 5
        chans = [1, 16, 16, 32, 32, 64, 64, 128, 128]
        return sum(conv(a, b, 3) for a, b in zip(chans[:-1], chans[1:])) + lin(4096, 1024) + lin(1024, 512) + lin(512, c)
    if name == "tst":    # Table 6: 1 block, d_model 64, 8 heads, d_ff 256; 64 tokens of 8 samples
        d = 64
        return (lin(8, d) + 64 * d + 4 * lin(d, d) + lin(d, 256) + lin(256, d) + 2 * 2 * d + lin(64 * d, c))
    if name == "cnn_full":   # the CNN's layers, padded: 64 channels x 9 positions into the first dense layer
        return conv(1, 4, 8) + conv(4, 16, 8) + conv(16, 64, 8) + lin(576, 200) + lin(200, 84) + lin(84, c)
    if name == "cait_cnn":   # Cait Table 2 / CNNModule: conv(1, 50, 8), conv(50, 10, 8), 70 -> 200 -> out
        return conv(1, 50, 8) + conv(50, 10, 8) + lin(70, 200) + lin(200, c)
    if name == "resnet":     # bias-free convs k7 + BatchNorm (2 per channel); stem 24; blocks 24,24 | 48 | 72 | 96
        bn = lambda ch: 2 * ch
        block = lambda a, b: 7 * a * b + bn(b) + 7 * b * b + bn(b) + (0 if a == b else a * b + bn(b))
        return (7 * 24 + bn(24) + block(24, 24) + block(24, 24) + block(24, 48) + block(48, 72) + block(72, 96)
                + lin(192, c))
    raise KeyError(name)


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("n_classes", [1, 4])
def test_model_shapes_and_parameter_counts(name, n_classes):
    torch.manual_seed(0)
    model = build_model(name, n_classes=n_classes).eval()
    with torch.inference_mode():
        out = model(torch.rand(3, 512))
    assert out.shape == (3, n_classes) and torch.isfinite(out).all()
    assert sum(p.numel() for p in model.parameters()) == expected_parameters(name, n_classes)


def input_samples_seen(name):
    """Indices of the 512 input samples that the model's output depends on (non-zero gradient)."""
    torch.manual_seed(0)
    model = build_model(name, n_classes=4)
    x = torch.rand(64, 512, requires_grad=True)
    model(x).sum().backward()
    return np.flatnonzero(x.grad.abs().sum(0).numpy() > 0)


def test_full_window_cnn_sees_the_end_of_the_record():
    # Table 3's CNN (k 8, floor pooling by 4, 5 positions at the end): its last feature is pool-3
    # output 4 <- conv-3 19 <- pool-2 26 <- conv-2 107 <- pool-1 114 <- conv-1 459 <- input 459 + 7 = 466,
    # so the last 45 samples are never seen
    assert input_samples_seen("cnn").max() == 466
    assert np.array_equal(input_samples_seen("cnn_full"), np.arange(512))


def test_unknown_model_and_bad_head():
    with pytest.raises(InputError, match="unknown name 'densenet'"):
        build_model("densenet")
    with pytest.raises(InputError, match="n_classes: must be >= 1"):
        build_model("cnn", n_classes=0)


def test_multiclass_score_is_summed_softmax_of_accepted():
    logits = torch.tensor([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]])
    p = np.exp(logits.numpy()) / np.exp(logits.numpy()).sum(axis=1, keepdims=True)
    score, probs = scores_from_logits(logits, accepted=[0, 2])
    np.testing.assert_allclose(score.numpy(), p[:, 0] + p[:, 2], rtol=1e-6)
    np.testing.assert_allclose(probs.numpy(), p, rtol=1e-6)
    binary, none = scores_from_logits(torch.tensor([[0.0], [2.0]]))
    np.testing.assert_allclose(binary.numpy(), [0.5, 1 / (1 + np.exp(-2))], rtol=1e-6)
    assert none is None
    with pytest.raises(InputError, match="needs the indices of the accepted classes"):
        scores_from_logits(logits)


# ---------------------------------------------------------------- augmentations
def pulse_batch(b, n=512):
    tpl = pulse_template(n, FS / 32, 4e-3 * 32, 3e-4 * 32, 8e-3 * 32)
    return np.tile(tpl.astype(np.float32), (b, 1))


def test_pile_up_adds_a_shifted_copy():
    x = pulse_batch(200)
    rng = np.random.default_rng(3)
    piled, d, ratio = aug.pile_up(x, rng, height_range=(0.3, 0.9))
    assert np.all(np.abs(d) >= 8) and np.all(128 + d >= 0) and np.all(128 + d < 512)
    assert np.all((ratio >= 0.3) & (ratio <= 0.9))
    for i in range(0, 200, 37):   # difference is the template delayed by d (zero baseline) times the ratio
        expected = ratio[i] * np.interp(np.arange(512) - d[i], np.arange(512), x[i], left=0.0, right=x[i, -1])
        np.testing.assert_allclose(piled[i] - x[i], expected, atol=1e-6)


def test_augment_pile_up_flips_only_positive_labels():
    x = pulse_batch(2000)
    labels = np.arange(2000) % 2 == 0
    a = aug.augment(x, labels, np.random.default_rng(0), p_noise=0.0)
    assert a.piled.any()
    assert not a.piled[~labels].any()             # only positives are piled up
    assert not a.labels[a.piled].any()            # and their label flips to rejected
    np.testing.assert_array_equal(a.labels, labels & ~a.piled)
    # classes: piled records get the pile-up class
    c = np.zeros(2000, dtype=int)
    b = aug.augment(x, labels, np.random.default_rng(0), classes=c, pileup_class=5, p_noise=0.0)
    np.testing.assert_array_equal(b.classes == 5, b.piled)
    # a multi-class batch without a pile-up class: no pile-up
    assert not aug.augment(x, labels, np.random.default_rng(0), classes=c).piled.any()


def test_time_shift_bounded_by_the_label_rules():
    x = np.zeros((5000, 512), dtype=np.float32)
    x[:, 256] = 1.0
    a = aug.augment(x, np.zeros(5000, bool), np.random.default_rng(1), p_pileup=0.0, p_noise=0.0)
    moved = a.records.argmax(axis=1) - 256
    np.testing.assert_array_equal(moved, a.shifts)
    from cryopipe.simulate.classes import MAX_ACCEPTED_SHIFT

    assert np.abs(moved).max() == aug.MAX_SHIFT and moved.min() == -aug.MAX_SHIFT
    assert aug.MAX_SHIFT <= MAX_ACCEPTED_SHIFT * 512          # shifted accepted onsets stay clear of early/late
    assert np.all(a.records.sum(axis=1) == 1.0)


def test_augment_probabilities():
    n = 20000
    x = pulse_batch(n, 64 * 8)
    labels = np.ones(n, dtype=bool)
    a = aug.augment(x, labels, np.random.default_rng(7))
    assert abs(a.piled.mean() - 0.2) < 0.015
    assert abs(a.noised.mean() - 0.2) < 0.015
    # noise changes exactly the noised records (beyond shift and pile-up)
    clean = aug.augment(x, labels, np.random.default_rng(7), p_noise=0.0)
    assert np.all(np.any(a.records != clean.records, axis=1) == a.noised)


def test_augment_is_seeded():
    x, y = pulse_batch(300), np.ones(300, bool)
    a = aug.augment(x, y, np.random.default_rng(11))
    b = aug.augment(x, y, np.random.default_rng(11))
    c = aug.augment(x, y, np.random.default_rng(12))
    np.testing.assert_array_equal(a.records, b.records)
    assert not np.array_equal(a.records, c.records)


# ---------------------------------------------------------------- loss
def test_weighted_bce_by_hand():
    logits = torch.tensor([[2.0], [-1.0], [0.5]])
    y = torch.tensor([1.0, 0.0, 0.0])
    w = balanced_weights(y.numpy(), 1)
    np.testing.assert_allclose(w, [3 / (2 * 2), 3 / (2 * 1)])      # (rejected, accepted)
    sig = lambda z: 1 / (1 + np.exp(-z))
    hand = (1.5 * -np.log(sig(2.0)) + 0.75 * -np.log(1 - sig(-1.0)) + 0.75 * -np.log(1 - sig(0.5))) / 3
    assert float(weighted_loss(logits, y, torch.tensor(w, dtype=torch.float32))) == pytest.approx(hand, rel=1e-6)


def test_weighted_cross_entropy_by_hand():
    logits = torch.tensor([[1.0, 0.0, -1.0], [0.2, 0.3, 0.1], [0.0, 2.0, 0.0], [1.0, 1.0, 1.0]])
    c = torch.tensor([0, 0, 1, 2])
    w = balanced_weights(c.numpy(), 3)
    np.testing.assert_allclose(w * np.bincount(c.numpy()), [4 / 3] * 3)   # every class weighs the same
    lp = logits.numpy() - np.log(np.exp(logits.numpy()).sum(axis=1, keepdims=True))
    hand = np.mean([w[k] * -lp[i, k] for i, k in enumerate(c.numpy())])
    assert float(weighted_loss(logits, c, torch.tensor(w, dtype=torch.float32))) == pytest.approx(hand, rel=1e-6)


# ---------------------------------------------------------------- data and weak shuffling
def coded_source(n_events=350, chunk=100, select=None):
    """2 channels; channel 0 accepted, channel 1 rejected; class index == event index."""
    rng = np.random.default_rng(0)
    traces = rng.standard_normal((2, n_events, 700)).astype(np.float32)
    labels = np.stack([np.ones(n_events, bool), np.zeros(n_events, bool)])
    names = [f"e{i}" for i in range(n_events)]
    return ArraySource(traces, labels, names, class_names=names, chunk=chunk, select=select), traces


def test_weak_shuffle_batches_from_single_chunks_cover_every_record():
    select = split_events(350, fractions=(0.8, 0.2), seed=1)[0]
    src, _ = coded_source(select=select)
    ds = WeakShuffleBatches(src, batch_size=64, seed=3, augment=False, multiclass=True)
    seen = {0: [], 1: []}
    n_batches = 0
    for x, y, c in ds:
        n_batches += 1
        events = c.numpy()
        assert x.shape == (len(events), 512) and len(events) <= 64
        assert len(set(events // 100)) == 1                     # one chunk
        assert len(set(y.numpy().tolist())) == 1                # one channel
        seen[0 if y[0] == 1 else 1] += events.tolist()
    assert n_batches == len(ds)
    for ch in (0, 1):
        assert sorted(seen[ch]) == np.flatnonzero(select).tolist()   # every record once per epoch
    # batch order differs between epochs, plan is reproducible for an epoch
    first = [c[0].item() for _, _, c in ds]
    ds.set_epoch(1)
    assert first != [c[0].item() for _, _, c in ds]
    ds.set_epoch(0)
    assert first == [c[0].item() for _, _, c in ds]


def test_weak_shuffle_plan_batches_and_groups():
    src, _ = coded_source()
    plan = weak_shuffle_plan(src, 64, np.random.default_rng(0), buffer_chunks=2)
    assert sorted(k for group, _ in plan for k in group) == [0, 1, 2, 3]
    for group, batches in plan:
        assert all(k in group for k, _, _ in batches)
        sizes = sorted(len(b) for _, _, b in batches)
        assert sum(sizes) == 2 * sum(src.events_in_chunk[k].size for k in group)


def test_simset_store_is_read_lazily_by_chunk(tmp_path):
    x, y, names = synthetic_set(300, n_samples=1024, seed=5)
    traces = np.stack([x, x[::-1]])
    labels = np.stack([y, y[::-1]])
    ds = xr.Dataset({"trace": (("channel", "event", "sample"), traces), "event_class": (("event",), names),
                     "label": (("channel", "event"), labels)},
                    attrs=provenance("simset", sample_frequency=FS, record_length=1024))
    write_store(ds, tmp_path / "set.zarr", "simset", event_chunk=128)
    src = SimsetSource(tmp_path / "set.zarr")
    np.testing.assert_array_equal(src.chunk_bounds, [0, 128, 256, 300])
    assert src.class_names == ["pulse", "spike", "step"]
    got = {}
    for xb, yb, cb, ch, ev in ordered_batches(src, batch_size=50):
        for i, e in enumerate(ev):
            got[(ch, e)] = (xb[i].numpy(), yb[i].item())
    assert len(got) == 600
    pre = preprocess(traces)
    for ch, e in [(0, 0), (1, 299), (0, 200)]:
        np.testing.assert_allclose(got[(ch, e)][0], pre[ch, e], atol=1e-6)
        assert got[(ch, e)][1] == labels[ch, e]
    n = sum(len(c) for _, _, c in WeakShuffleBatches(src, seed=0))
    assert n == 600
    assert not src._var._in_memory                           # the traces were never loaded whole


# ---------------------------------------------------------------- training and prediction
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "cnn.pt"
    x, y, c = synthetic_set(1500, seed=1)
    xv, yv, cv = synthetic_set(300, seed=2)
    torch.set_num_threads(2)
    out = io.StringIO()
    res = train_model("cnn", ArraySource(x, y, c, chunk=256), ArraySource(xv, yv, cv, chunk=256), path,
                      epochs=3, lr=2e-3, seed=0, progress=out)
    return res, path, out.getvalue()


def test_training_reaches_high_balanced_accuracy(trained):
    res, _, log = trained
    assert log.count("val BA") == 3                  # one line per epoch
    assert "step " in log                             # and progress lines inside epochs (not a terminal)
    xt, yt, ct = synthetic_set(400, seed=3)
    s = predict_scores(res.model, xt)
    assert metrics.balanced_accuracy(yt, s) >= 0.9
    rates = metrics.survival_rates(ct, decide(s))
    assert rates["pulse"][2] > 0.9 and rates["spike"][2] < 0.1 and rates["step"][2] < 0.1


def test_best_checkpoint_is_kept_and_round_trips(trained):
    res, path, _ = trained
    h = res.history
    steps_per_epoch = 5 * 4 + 4                     # chunks of 256 events (5) and 220 (1), batches of 64
    assert len(h["val_ba"]) == 3 and len(h["train_loss"]) == 3 * steps_per_epoch
    best = max(range(3), key=lambda e: (h["val_ba"][e], -h["val_loss"][e]))   # best BA, ties: lower loss
    assert res.best_epoch == best
    model, meta = load_model(path)
    assert meta["model"] == "cnn" and meta["n_classes"] == 1 and meta["best_epoch"] == res.best_epoch
    assert meta["val_balanced_accuracy"] == pytest.approx(max(h["val_ba"]))
    assert meta["preprocessing"]["length"] == 512 and meta["cutoff"] == 0.5
    xv, yv, cv = synthetic_set(300, seed=2)                # the validation set: its loss at the best epoch
    w = torch.tensor(meta["loss_weights"])
    assert evaluate(model, ArraySource(xv, yv, cv), w, "cpu")[0] == pytest.approx(h["val_loss"][best], rel=1e-4)
    xt, _, _ = synthetic_set(50, seed=4)
    np.testing.assert_array_equal(predict_scores(model, xt), predict_scores(res.model, xt))
    # re-save and reload: identical scores again
    save_model(path.with_name("copy.pt"), model, meta)
    again, _ = load_model(path.with_name("copy.pt"))
    np.testing.assert_array_equal(predict_scores(again, xt), predict_scores(model, xt))


def test_loss_curve_plot(trained, tmp_path):
    out = plot_loss_curves(trained[0].history, tmp_path / "loss.png")
    assert out.stat().st_size > 1000


def test_predict_shapes_batches_and_clean_events(trained):
    model = trained[0].model
    x, _, _ = synthetic_set(30, seed=6)
    recs = x.reshape(3, 10, -1)
    s = predict_scores(model, recs, batch=7)
    assert s.shape == (3, 10)
    np.testing.assert_allclose(s.ravel(), predict_scores(model, x, batch=4096), rtol=1e-5, atol=1e-6)
    dec = np.array([[True, True, False], [True, False, False]])
    np.testing.assert_array_equal(clean_events(dec), [True, False, False])
    trace = xr.DataArray(recs[:2], dims=("channel", "event", "sample"))
    ds = predictions_dataset(model, trace, "cnn", event_chunk=4)
    validate(ds, "predictions")
    np.testing.assert_allclose(ds.score.values, s[:2], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(ds.event_clean.values, np.all(s[:2] >= 0.5, axis=0))


def test_multiclass_training_and_accepted_score(tmp_path):
    x, y, c = synthetic_set(900, seed=8)
    xv, yv, cv = synthetic_set(200, seed=9)
    train_model("cait_cnn", ArraySource(x, y, c, chunk=300), ArraySource(xv, yv, cv, chunk=300),
                tmp_path / "mc.pt", epochs=2, lr=3e-3, n_classes=3, accepted=["pulse"], progress=None)
    model, meta = load_model(tmp_path / "mc.pt")
    assert meta["class_names"] == ["pulse", "spike", "step"] and model.accepted == [0]
    s, p = predict_scores(model, xv, with_probabilities=True)
    assert p.shape == (200, 3)
    np.testing.assert_allclose(s, p[:, 0], rtol=1e-6)
    assert metrics.balanced_accuracy(yv, s) >= 0.9
    with pytest.raises(InputError, match="muon"):
        train_model("cnn", ArraySource(x, y, c), ArraySource(xv, yv, cv), tmp_path / "bad.pt",
                    n_classes=3, accepted=["muon"], progress=None)
