"""Where a run's pulses rise, against the trigger sample the networks are told (cleaning.trigger_check).

Ground truth: records made here (no cryopipe code): double-exponential pulses starting at a known
sample (with a few samples of jitter), on white noise, an AR(1) process or a random walk; runs of
noise only; pulses at random positions. The CLI is run as a user would, on an .npz written here.
"""
import numpy as np
import pytest

from cryopipe.cleaning.trigger_check import polarity_warning, run_polarity, run_rise_sample, trigger_mismatch


def noise(rng, m, n, kind):
    w = rng.standard_normal((m, n))
    if kind == "white":
        return w
    if kind == "ar1":
        x = np.zeros_like(w)
        for t in range(1, n):
            x[:, t] = 0.95 * x[:, t - 1] + w[:, t]
        return x / x.std()
    return np.cumsum(w, axis=1) / np.sqrt(n)          # random walk, rms ~0.6 at the end


def pulse_run(rng, m, n, onset, *, kind="white", heights=(20.0, 200.0), rise=None, decay=None, jitter=2):
    """m records of n samples, pulses starting at onset +- jitter samples (rise n/200, decay n/8)."""
    rise, decay = rise or max(n / 200, 1.0), decay or n / 8
    starts = onset + rng.integers(-jitter, jitter + 1, m)
    t = np.arange(n)[None, :] - starts[:, None]
    tt = np.maximum(t, 0)
    shape = np.where(t > 0, np.exp(-tt / decay) - np.exp(-tt / rise), 0.0)
    shape /= shape.max(axis=1, keepdims=True)
    h = np.exp(rng.uniform(*np.log(heights), m))
    return noise(rng, m, n, kind) + h[:, None] * shape


@pytest.mark.parametrize("n", [500, 1024, 4096])
@pytest.mark.parametrize("where", [1 / 8, 1 / 4, 1 / 2, 3 / 4])
@pytest.mark.parametrize("kind", ["white", "ar1", "walk"])
def test_rise_found_at_the_pulse_onset(n, where, kind):
    rng = np.random.default_rng([n, int(where * 8), len(kind)])
    onset = int(where * n)
    found = run_rise_sample(pulse_run(rng, 120, n, onset, kind=kind))
    assert found is not None
    assert onset - 2 <= found <= onset + max(6, n / 100)


@pytest.mark.parametrize("kind", ["white", "ar1", "walk"])
def test_noise_runs_and_scattered_pulses_have_no_rise(kind):
    rng = np.random.default_rng(len(kind))
    assert run_rise_sample(noise(rng, 400, 1024, kind)) is None
    scattered = np.concatenate([pulse_run(rng, 1, 1024, int(s), kind=kind, jitter=0)
                                for s in rng.integers(20, 1000, 300)])
    assert run_rise_sample(scattered) is None


def test_a_minority_of_pulses_among_noise_records_is_enough():
    rng = np.random.default_rng(7)
    run = np.concatenate([pulse_run(rng, 60, 2048, 1024), noise(rng, 240, 2048, "white")])
    found = run_rise_sample(run[rng.permutation(len(run))])
    assert found is not None and 1022 <= found <= 1040
    assert run_rise_sample(run[:10]) is None           # too few pulses to say


def test_mismatch_is_said_with_the_value_to_pass():
    n = 1024
    assert trigger_mismatch(None, n, None) is None
    assert trigger_mismatch(n / 4 + 3, n, None) is None              # where the networks expect it
    assert trigger_mismatch(n / 4 + n / 16, n, None) is None         # a slow rise, still inside
    late = trigger_mismatch(517.0, n, None, what="x.npz")
    assert late and "x.npz" in late and "sample 256" in late and "N/4 assumed" in late and "late" in late
    suggested = int(late.rsplit("--pretrigger ", 1)[1])
    assert 505 <= suggested <= 517
    early = trigger_mismatch(100.0, n, 512)
    assert early and "early" in early and "the trigger sample used" in early
    assert trigger_mismatch(515.0, n, 512) is None


def _cli(path, out, *extra):
    from cryopipe.cli import main
    return main(argv=["predict", str(path), "--model", "universal", "--output", str(out), *extra])


def test_cli_says_where_pulses_rise_and_the_suggested_pretrigger_keeps_them(tmp_path, capsys):
    rng = np.random.default_rng(3)
    n, onset = 2048, 1024                               # the DAQ put the trigger at N/2
    path = tmp_path / "half.npz"
    np.savez(path, records=pulse_run(rng, 200, n, onset, heights=(50.0, 500.0), rise=4.0, decay=150.0))
    _cli(path, tmp_path / "a.npz")
    err = capsys.readouterr().err
    assert "rise near sample" in err and "N/4 assumed" in err
    suggested = int(err.split("--pretrigger ", 1)[1].split()[0])
    assert abs(suggested - onset) <= 12
    with np.load(tmp_path / "a.npz") as f:
        assert f["accepted"].mean() < 0.1                # told N/4: rejected as late triggers
        assert np.isfinite(f["rise_sample"]).all() and abs(f["rise_sample"][0] - onset) <= 12
    _cli(path, tmp_path / "b.npz", "--pretrigger", str(suggested))
    err = capsys.readouterr().err
    assert "rise near sample" not in err
    with np.load(tmp_path / "b.npz") as f:
        assert f["accepted"].mean() > 0.9


def test_npz_declares_its_pretrigger(tmp_path, capsys):
    rng = np.random.default_rng(4)
    records = pulse_run(rng, 200, 2048, 1024, heights=(50.0, 500.0), rise=4.0, decay=150.0)
    declared = tmp_path / "declared.npz"
    np.savez(declared, records=records, pretrigger=np.int64(1024))
    _cli(declared, tmp_path / "d.npz")
    assert "rise near sample" not in capsys.readouterr().err
    with np.load(tmp_path / "d.npz") as f:
        assert int(f["pretrigger"]) == 1024 and f["accepted"].mean() > 0.9
    bad = tmp_path / "bad.npz"
    np.savez(bad, records=records, pretrigger=1024.5)
    assert _cli(bad, tmp_path / "e.npz") not in (0, None)
    assert "bad.npz: 'pretrigger' must be a non-negative integer" in capsys.readouterr().err
    assert not (tmp_path / "e.npz").exists()


def test_measured_nist_pulses_without_their_pretrigger(tmp_path, capsys):
    """Real TES pulses (NIST regress_chan1, trigger at sample 512 of 1024) in an .npz that does not say so."""
    from real_data import NIST_DIR
    ljh = NIST_DIR / "regress_chan1.ljh"
    if not ljh.is_file():
        pytest.skip(f"{ljh}: measured NIST data not here")
    from cryopipe.io.ljh import read_ljh
    f = read_ljh(ljh)
    path = tmp_path / "chan1.npz"
    np.savez(path, records=f.volts(start=0, stop=f.n_records))
    _cli(path, tmp_path / "o.npz")
    err = capsys.readouterr().err
    suggested = int(err.split("--pretrigger ", 1)[1].split()[0])
    assert abs(suggested - f.pretrigger) <= 8


@pytest.mark.parametrize("kind", ["white", "ar1", "walk"])
def test_polarity_of_a_run(kind):
    rng = np.random.default_rng([11, len(kind)])
    run = pulse_run(rng, 150, 1024, 256, kind=kind)
    assert run_polarity(run) == 1 and run_polarity(-run) == -1
    slow = pulse_run(rng, 150, 1024, 256, kind=kind, rise=40.0, decay=300.0)   # slow rise, still < decay
    assert run_polarity(slow) == 1 and run_polarity(-slow) == -1
    assert run_polarity(noise(rng, 300, 1024, kind)) is None
    mixed = np.concatenate([run[:60], -run[60:120]])            # half up, half down: no call
    assert run_polarity(mixed) is None
    assert polarity_warning(1) is None and polarity_warning(None) is None
    assert "--invert" in polarity_warning(-1, what="y.npz") and "y.npz" in polarity_warning(-1, what="y.npz")


def test_cli_says_pulses_go_down_and_invert_keeps_them(tmp_path, capsys):
    rng = np.random.default_rng(5)
    path = tmp_path / "down.npz"
    np.savez(path, records=-pulse_run(rng, 200, 2048, 512, heights=(50.0, 500.0), rise=4.0, decay=150.0))
    _cli(path, tmp_path / "a.npz")
    err = capsys.readouterr().err
    assert "go down from the baseline" in err and "--invert" in err and "rise near sample" not in err
    with np.load(tmp_path / "a.npz") as f:
        assert f["accepted"].mean() < 0.1 and list(f["pulse_polarity"]) == [-1]
        assert abs(f["rise_sample"][0] - 512) <= 12          # found on the inverted records
    _cli(path, tmp_path / "b.npz", "--invert")
    assert "go down" not in capsys.readouterr().err
    with np.load(tmp_path / "b.npz") as f:
        assert f["accepted"].mean() > 0.9 and list(f["pulse_polarity"]) == [1]


def test_each_channel_of_a_3d_input_is_checked_on_its_own(tmp_path, capsys):
    rng = np.random.default_rng(6)
    at_quarter = pulse_run(rng, 100, 2048, 512, heights=(50.0, 500.0), rise=4.0, decay=150.0)
    at_half = pulse_run(rng, 100, 2048, 1024, heights=(50.0, 500.0), rise=4.0, decay=150.0)
    path = tmp_path / "two.npz"
    np.savez(path, records=np.stack([at_quarter, -at_half]))
    _cli(path, tmp_path / "o.npz")
    err = capsys.readouterr().err
    assert "two.npz (channel 1)" in err and "two.npz (channel 0)" not in err
    with np.load(tmp_path / "o.npz") as f:
        assert list(f["pulse_polarity"]) == [1, -1]
        assert abs(f["rise_sample"][0] - 512) <= 12 and abs(f["rise_sample"][1] - 1024) <= 12


def test_modest_pulses_count_as_clear_against_a_robust_noise_scale():
    """Pulses 4-8 sigma per sample (rise 20, decay 800 of 4096 samples): the noise scale of the
    differences must not grow with the pulse (the median absolute difference, not the std)."""
    from cryopipe.cleaning.trigger_check import MIN_RISE_SIGMA, steepest_rises
    rng = np.random.default_rng(9)
    run = pulse_run(rng, 200, 4096, 1024, heights=(4.0, 8.0), rise=20.0, decay=800.0)
    _, sig = steepest_rises(run)
    assert np.mean(sig > MIN_RISE_SIGMA) > 0.35
