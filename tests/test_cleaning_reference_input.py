"""tools/experiments/experiment_reference_input.py on truth written here: a known pulse shape,
shifted and scaled copies of it, a second pulse, the Proebst formula for the rendered references."""

import numpy as np
import pytest
import torch

from tool_util import load_tool

L = 512


@pytest.fixture(scope="module")
def ex():
    return load_tool("tools/experiments/experiment_reference_input.py")


def pulse(onset=128, rise=3.0, decay=40.0):
    t = np.arange(L) - onset
    p = np.where(t > 0, np.exp(-np.maximum(t, 0) / decay) - np.exp(-np.maximum(t, 0) / rise), 0.0)
    return (p / p.max()).astype(np.float32)


def channels(ex, record, reference):
    x = torch.from_numpy(np.concatenate([record, reference])[None].astype(np.float32))
    return ex.reference_channels(x)[0].numpy()


def test_fit_recovers_a_scaled_shifted_reference(ex):
    record = 0.1 + 0.6 * pulse(onset=135)
    rec, fit, residual = channels(ex, record, pulse())
    np.testing.assert_allclose(rec, record, atol=1e-7)
    np.testing.assert_allclose(fit, 0.6 * pulse(onset=135), atol=1e-4)
    assert np.abs(residual).max() < 1e-4


def test_residual_shows_a_second_pulse(ex):
    record = 0.05 + 0.5 * pulse() + 0.3 * pulse(onset=320)
    _, fit, residual = channels(ex, record, pulse())
    assert 318 <= np.argmax(residual) <= 330
    assert residual.max() > 0.2
    assert np.abs(residual[:300]).max() < 0.1


def test_no_reference_leaves_the_baseline_free_record(ex):
    record = 0.2 + 0.5 * pulse()
    _, fit, residual = channels(ex, record, np.zeros(L, np.float32))
    assert not fit.any()
    np.testing.assert_allclose(residual, 0.5 * pulse(), atol=1e-6)


def test_estimate_reference_from_jittered_noisy_copies_with_contaminants(ex):
    rng = np.random.default_rng(1)
    clean = [a * pulse(onset=128 + j) + rng.normal(0, 0.02 * a, L)
             for a, j in zip(rng.uniform(1, 3, 80), rng.integers(-5, 6, 80))]
    steps = [np.where(np.arange(L) > 128, 2.0, 0.0) + rng.normal(0, 0.04, L) for _ in range(10)]
    raw = np.array(clean + steps, np.float32)
    inputs = ex.minmax_scale(raw)
    ref = ex.estimate_reference(inputs, raw, np.ones(len(raw), bool))
    best = min(range(-3, 4), key=lambda s: np.abs(ref - pulse(onset=128 + s)).max())
    assert np.abs(ref - pulse(onset=128 + best)).max() < 0.08
    assert ex.estimate_reference(inputs, raw, np.arange(len(raw)) < ex.MIN_PICKS - 1).max() == 0.0


def test_augmented_references(ex):
    rng = np.random.default_rng(2)
    ref = np.repeat(pulse()[None], 4000, axis=0)
    out = ex.augment_reference(ref, rng)
    none = ~out.any(axis=1)
    assert abs(none.mean() - ex.P_NO_REFERENCE) < 0.02
    kept = out[~none]
    assert np.allclose(kept.min(axis=1), 0.0) and np.allclose(kept.max(axis=1), 1.0)
    half = np.argmax(kept >= 0.5, axis=1)
    assert np.all(np.abs(half - np.argmax(pulse() >= 0.5)) <= ex.REF_SHIFT + 2)


def test_rendered_references_follow_the_proebst_formula(ex):
    from cryopipe.simulate.records import simulate_universal_records

    n = 2048
    ds = simulate_universal_records({"event_pulse": 6, "noise": 2}, n, np.random.default_rng(3))
    refs = ex.rendered_references(ds)
    t = np.arange(n) - n // 4
    for i in range(refs.shape[0]):
        fs = float(ds["sample_frequency"].values[0, i])
        tn, ti, tt = (float(ds[k].values[0, i]) * fs for k in ("tau_n", "tau_in", "tau_t"))
        r = float(ds["at_over_an"].values[0, i])
        tp = np.maximum(t, 0)
        p = np.where(t > 0, (1 - r) * np.exp(-tp / tn) - np.exp(-tp / ti) + r * np.exp(-tp / tt), 0.0)
        blocks = p.reshape(L, n // L).mean(axis=1)
        expected = (blocks - blocks.min()) / (blocks.max() - blocks.min())
        np.testing.assert_allclose(refs[i], expected, atol=2e-3)


@pytest.mark.slow
def test_the_documented_commands_run_at_a_tiny_scale(ex, tmp_path, capsys):
    """Training (--scale, --epochs), a resumed rerun, --evaluate and --real (where the NIST files are) end to end."""
    from real_data import NIST_DIR

    out = tmp_path / "ref"
    ex.main(["--out", str(out), "--scale", "0.004", "--epochs", "1"])
    assert (out / "reference.pt").is_file() and (out / "state.pt").is_file()
    ex.main(["--out", str(out), "--scale", "0.004", "--epochs", "1", "--resume"])
    assert "resumed after epoch 1" in capsys.readouterr().out
    ex.main(["--evaluate", str(out / "reference.pt"), "--seeds", "5", "--own-seeds", "5", "--detectors", "2",
             "--per-class", "8"])
    text = capsys.readouterr().out
    assert "independent seed 5 (selection)" in text and "own simulator seed 5 (selection)" in text
    assert all(arm in text for arm in ("shipped", "ref estimated", "ref true", "no ref"))
    with pytest.raises(Exception, match="test seed"):
        ex.main(["--evaluate", str(out / "reference.pt"), "--seeds", "1001", "--own-seeds", "--detectors", "1"])
    if (NIST_DIR / "regress_chan1.ljh").is_file():
        ex.main(["--real", str(out / "reference.pt"), "--nist-dir", str(NIST_DIR)])
        assert "regress_chan1.ljh (reference from regress_chan1.ljh" in capsys.readouterr().out
