"""Test-pulse analysis: running band, stability cut and pulser-model calibration (cryopipe.testpulse.response),
on arrays with a known drift, and one workflow run on a generated CRESST stream run whose response
drifts by a known amount and jumps in one interval."""
import numpy as np
import pytest

from cryopipe.errors import InputError
from cryopipe.testpulse import response as tp

TPAS = np.array([0.1, 0.5, 1.0, 3.0])


def drifting_pulses(n_cycles=60, interval=1.0, drift=0.3, noise=2e-4, jump=None, seed=0, gain=0.3, sat=None):
    """Test pulses cycling through TPAS every `interval` s; response gain * f(tpa) * (1 + drift t / T),
    f(x) = x or sat * tanh(x / sat); jump = (t0, t1, factor) multiplies the response in [t0, t1)."""
    rng = np.random.default_rng(seed)
    n = n_cycles * TPAS.size
    t = np.arange(n) * interval
    tpa = np.tile(TPAS, n_cycles)
    g = 1.0 + drift * t / t[-1]
    if jump is not None:
        g = np.where((t >= jump[0]) & (t < jump[1]), g * jump[2], g)
    f = tpa if sat is None else sat * np.tanh(tpa / sat)
    return t, tpa, gain * f * g + rng.normal(0, noise, n), g


def test_local_trend_follows_a_drift_and_ignores_a_minority_of_outliers():
    rng = np.random.default_rng(1)
    t = np.arange(100.0)
    y = 2.0 + 0.01 * t + rng.normal(0, 1e-3, t.size)
    y[[10, 50, 51, 99]] += 0.5  # outliers, also at the end
    c = tp.local_trend(t, y, window=9)
    assert np.max(np.abs(c - (2.0 + 0.01 * t))) < 4e-3  # no residual from the drift (ends included), outliers 0.5
    assert tp.local_trend(t[:1], y[:1], window=9) == pytest.approx(y[0])


def test_response_band_flags_exactly_the_injected_jump():
    t, tpa, y, _ = drifting_pulses(jump=(100.0, 108.0, 1.05))
    band = tp.response_band(t, tpa, y, window=9, k_sigma=5.0)
    truth = (t >= 100.0) & (t < 108.0)
    np.testing.assert_array_equal(~band["stable"], truth)
    # sigma per TPA is the noise (2e-4 V), not the 30 % drift
    assert np.all((band["sigma"] > 1.2e-4) & (band["sigma"] < 3e-4))
    nan = y.copy()
    nan[5] = np.nan
    assert not tp.response_band(t, tpa, nan)["stable"][5]


def test_stability_intervals_and_events():
    pt = np.arange(10.0)
    ok = np.ones(10, bool)
    ok[4] = False
    ev = np.array([-1.0, 0.5, 3.2, 4.0, 4.7, 5.5, 8.9, 9.5])
    s = tp.stability(pt, ok, ev)
    np.testing.assert_array_equal(s["event_stable"], [False, True, False, False, False, True, True, False])
    np.testing.assert_array_equal(s["interval_stable"], [True] * 3 + [False, False] + [True] * 4 + [False])
    np.testing.assert_array_equal(tp.unstable_intervals(pt, s["interval_stable"]), [[3.0, 5.0]])
    # a gap longer than max_gap is unstable; the pulse order does not matter
    gap = np.r_[np.arange(5.0), np.arange(10.0, 15.0)]
    perm = np.random.default_rng(0).permutation(10)
    s = tp.stability(gap[perm], np.ones(10, bool)[perm], np.array([2.5, 7.0, 12.5]), max_gap=2.0)
    np.testing.assert_array_equal(s["event_stable"], [True, False, True])


def test_clean_pulses_drop_chi2_outliers_only():
    rng = np.random.default_rng(2)
    t = np.arange(200.0)
    tpa = np.tile(TPAS, 50)
    chi2 = 2046 + 64 * rng.normal(size=t.size) + 50 * tpa * t / 200  # slowly growing mismatch
    chi2[[7, 120]] += 5000  # pile-up
    chi2[30] -= 500  # a low chi2 is no reason to drop a pulse
    ok = tp.clean_pulses(t, tpa, chi2, window=9, k_sigma=5.0)
    assert set(np.flatnonzero(~ok)) == {7, 120}


def test_pretrigger_drift_by_hand():
    n, pre = 256, 64                                   # region [0, 64 - 256/64) = 60 samples
    ramp = np.tile(np.arange(n, dtype=float) * 1e-4, (3, 1))   # 1e-4 V per sample
    ramp[1] = 0.02                                      # flat
    t = np.arange(n) / 25e3
    ramp[2] = 0.01 * np.exp(-t / 2e-3)                  # the tail of an earlier pulse
    ramp[:, pre:] += 0.5                                # the test pulse itself is not looked at
    d = tp.pretrigger_drift(ramp, pre)
    assert d[0] == pytest.approx(1e-4 * 60) and d[1] == pytest.approx(0.0, abs=1e-12)
    i = np.arange(60) - 29.5
    y = ramp[2, :60]
    assert d[2] == pytest.approx(np.sum(i * (y - y.mean())) / np.sum(i * i) * 60) and d[2] < -0.005
    with pytest.raises(InputError, match="outside the records"):
        tp.pretrigger_drift(np.zeros((1, 8)), 20)


def test_flat_pretrigger_drops_pulses_on_a_tail_either_way():
    rng = np.random.default_rng(4)
    t = np.arange(200.0)
    tpa = np.tile(TPAS, 50)
    drift = 1e-3 * rng.normal(size=t.size) + 2e-5 * t      # noise and a slow thermal drift
    drift[[11, 150]] -= 0.02                             # on the tail of a particle pulse
    drift[77] += 0.02                                    # a rising baseline
    ok = tp.flat_pretrigger(t, tpa, drift, window=9, k_sigma=5.0)
    assert set(np.flatnonzero(~ok)) == {11, 77, 150}


@pytest.mark.parametrize("sat", [None, 5.0])
def test_pulser_model_recovers_the_tpa_equivalent_across_the_drift(sat):
    t, tpa, y, _ = drifting_pulses(sat=sat, noise=1e-5)
    band = tp.response_band(t, tpa, y)
    rng = np.random.default_rng(3)
    ev_t = rng.uniform(0, t[-1], 500)
    ev_tpa = rng.uniform(0.05, 4.0, 500)  # up to 4 V: beyond the last TPA the last segment extends
    g = 1.0 + 0.3 * ev_t / t[-1]
    f = ev_tpa if sat is None else sat * np.tanh(ev_tpa / sat)
    ev_amp = 0.3 * f * g
    tpas, curves = tp.response_curves(t, tpa, band["centre"], ev_t)
    np.testing.assert_allclose(tpas, TPAS)
    got = tp.tpa_equivalent(ev_amp, tpas, curves)
    if sat is None:  # linear: exact up to the noise of the band centres
        np.testing.assert_allclose(got, ev_tpa, rtol=2e-4)
    else:  # saturating: piecewise-linear interpolation error only, no drift left
        inside = ev_tpa <= 3.0
        assert np.max(np.abs(got[inside] / ev_tpa[inside] - 1)) < 0.04
        lo, hi = ev_t < t[-1] / 2, ev_t >= t[-1] / 2
        ratio = got / ev_tpa
        assert abs(np.median(ratio[lo & inside]) - np.median(ratio[hi & inside])) < 0.01
    assert tp.tpa_equivalent(np.array([0.0]), tpas, curves[:, :1])[0] == pytest.approx(0.0, abs=1e-12)


def test_choose_template_tpa():
    tpa = np.repeat([0.1, 1.0, 3.0, 20.0], 12)
    heights = tpa * 0.3
    assert tp.choose_template_tpa(tpa, heights, max_amplitude=None) == 20.0
    assert tp.choose_template_tpa(tpa, heights, max_amplitude=2.0) == 3.0
    with pytest.raises(Exception, match="no TPA"):
        tp.choose_template_tpa(tpa[:5], heights[:5])
    assert tp.choose_template_tpa(tpa, heights, exclude=[20.0]) == 3.0


def heater_pulses(ceiling=None, seed=0, n_per_tpa=20):
    """Test pulses of TPAs 0.1-10 V (0.3 V per V, double-exponential shape, white noise 2 mV),
    through ceiling * tanh(x / ceiling) (TES saturation) where a ceiling (V) is given."""
    n, fs = 2048, 10_000.0
    t = (np.arange(n) - n // 4) / fs
    shape = np.where(t > 0, np.exp(-t / 0.02) - np.exp(-t / 0.002), 0.0)
    tpa = np.repeat([0.1, 0.5, 1.0, 3.0, 10.0], n_per_tpa)
    x = 0.3 * tpa[:, None] * shape / shape.max()
    if ceiling is not None:
        x = ceiling * np.tanh(x / ceiling)
    return tpa, x + np.random.default_rng(seed).normal(0, 0.002, x.shape)


@pytest.mark.parametrize("seed", [0, 1])
def test_saturated_tpas_are_the_flat_topped_ones_and_stay_out_of_the_template(seed):
    tpa, x = heater_pulses(seed=seed)
    assert tp.saturated_tpas(tpa, x) == {}   # linear: no TPA saturates, not even the noisy smallest one
    tpa, x = heater_pulses(ceiling=1.0, seed=seed)   # 3 V at 10 V of TPA: a flat top
    sat = tp.saturated_tpas(tpa, x)
    assert list(sat) == [10.0]
    heights = x.max(axis=1) - x[:, :256].mean(axis=1)
    assert tp.choose_template_tpa(tpa, heights, exclude=sat) == 3.0


def test_channel_template_skips_the_saturated_tpa_and_exclude_tpas(caplog):
    import logging

    import xarray as xr

    from cryopipe.testpulse.channel import channel_template

    tpa, x = heater_pulses(ceiling=1.0)
    records = xr.Dataset({"trace": (("event", "channel", "sample"), x[:, None, :].astype(np.float32)),
                          "record_kind": ("event", np.full(tpa.size, "testpulse")), "tpa": ("event", tpa)},
                         attrs={"sample_frequency": 10_000.0})
    cfg = {"template_from": "testpulse", "template_tpa": None, "max_amplitude": None, "exclude_tpas": [],
           "min_pulses": 10, "max_template_pulses": 500}
    with caplog.at_level(logging.INFO, logger="cryopipe"):
        template, chosen = channel_template(records, channel=0, sev=None, cfg=cfg, what="run r, channel c")
    assert chosen == 3.0 and template.max() == pytest.approx(1.0)
    assert any("TPA 10 V saturate" in r.getMessage() for r in caplog.records)
    assert channel_template(records, channel=0, sev=None, cfg={**cfg, "exclude_tpas": [3.0]}, what="r")[1] == 1.0
    assert channel_template(records, channel=0, sev=None, cfg={**cfg, "template_tpa": 10.0}, what="r")[1] == 10.0


# --------------------------------------------------------------------------------------------------
# workflow: a generated CRESST stream run, response drifting by +30 % and jumping by +15 % for 2 s

DRIFT, JUMP = 0.3, (25.0, 27.0, 1.15)
VPT, LINE = 0.3, 0.5  # V per V of TPA; line amplitude before the drift (V): TPA-equivalent LINE / VPT


@pytest.fixture(scope="module")
def cresst_run(tmp_path_factory):
    import yaml

    from cresst_util import write_cresst_stream_run
    from workflow_util import snakemake, write_config

    tmp = tmp_path_factory.mktemp("tprun")
    truth = write_cresst_stream_run(tmp / "data", "run", channels=(0,), duration=60.0, record_length=2048,
                                    pulser_interval=0.25, volts_per_tpa=(VPT,), noise_sigma=(0.002,), drift=DRIFT,
                                    particle_rate=3.0, particle_amplitude=(0.05, 2.0), line_amplitude=LINE,
                                    line_fraction=0.6, response_jumps=[JUMP], seed=1)
    p = truth["paths"]
    cfg = {"results": str(tmp / "results"),
           "runs": {"cr": {"csmpl": [str(x) for x in p["csmpl"]], "par": str(p["par"]),
                           "test_stamps": str(p["test_stamps"]), "dig_stamps": str(p["dig_stamps"]),
                           "channels": ["phonon"]}},
           "trigger": {"noise_records": 60}, "efficiency": {"enabled": False}, "cleaning": {"enabled": False},
           # the line only in the TPA-equivalent spectrum: the raw one is smeared by the 30 % drift
           "testpulse": {"k_sigma": 5.0, "line_energy": 5.9}}
    conf = write_config(tmp / "config.yaml", cfg)
    res = tmp / "results"
    snakemake(tmp, conf, str(res / "cr/labels.zarr"), str(res / "report/cr/testpulse_response_phonon.png"),
              str(res / "report/cr/testpulse_calibration_phonon.png"))
    assert yaml.safe_load(conf.read_text())["testpulse"]["k_sigma"] == 5.0
    return truth, res


@pytest.mark.slow  # runs Snakemake
def test_workflow_stability_flags_the_injected_jump(cresst_run):
    from cryopipe.io.stores import load_store

    truth, res = cresst_run
    ds = load_store(res / "cr/testpulse.zarr", "testpulse").isel(channel=0)
    t = ds["timestamp"].values - truth["stream_start_time"]  # s since the stream start
    stable = ds["stable"].values
    pulser = 0.25
    in_jump = (t >= JUMP[0]) & (t < JUMP[1])
    far = ((t < JUMP[0] - pulser) | (t >= JUMP[1] + pulser)) & (t > t[ds["pulse_event"].values].min()) \
        & (t < t[ds["pulse_event"].values].max())
    assert in_jump.sum() >= 5 and not stable[in_jump].any()  # every event in the jump is cut
    # and nothing else: test pulses on a particle's tail are left out (k_drift), not called unstable
    # (without the pre-trigger drift check 0.991 of these events, one pulse outside its band)
    assert stable[far].mean() > 0.995
    # the pulses outside their band are (almost) exactly those of the jump
    pe = ds["pulse_event"].values
    bad = ds["pulse_clean"].values & ~ds["pulse_stable"].values
    tb = t[pe][bad]
    assert np.sum((tb >= JUMP[0]) & (tb < JUMP[1])) >= 6 and np.sum((tb < JUMP[0]) | (tb >= JUMP[1])) == 0
    labels = load_store(res / "cr/labels.zarr", "labels")
    np.testing.assert_array_equal(labels["stable"].isel(channel=0).values, stable)
    assert not (labels["accepted"] & ~labels["stable"]).any()
    for name in ("response", "calibration"):
        assert (res / f"report/cr/testpulse_{name}_phonon.png").stat().st_size > 10_000


@pytest.mark.slow  # runs Snakemake
def test_workflow_calibrated_line_is_constant_across_the_drift(cresst_run):
    from cryopipe.io.stores import load_store

    truth, res = cresst_run
    ds = load_store(res / "cr/testpulse.zarr", "testpulse").isel(channel=0)
    t = ds["timestamp"].values - truth["stream_start_time"]
    kind = ds["record_kind"].values.astype(str)
    tpe, raw = ds["tpa_equivalent"].values, ds["amplitude"].values
    part = (kind == "particle") & ds["stable"].values
    expected = LINE / VPT
    line = part & (np.abs(tpe - expected) < 0.03 * expected)
    sigma = 1.4826 * np.median(np.abs(tpe[line] - np.median(tpe[line])))  # the line's resolution
    halves = [line & (t < 30.0), line & (t >= 30.0)]
    pos = [np.median(tpe[h]) for h in halves]
    assert min(h.sum() for h in halves) >= 15
    assert abs(pos[1] - pos[0]) < sigma  # calibrated: constant within the resolution
    assert abs(float(ds["line_position"]) - expected) < 2 * sigma  # and at the truth
    assert float(ds["kev_per_tpa"]) == pytest.approx(5.9 / expected, rel=1e-3)
    assert np.nanmedian(ds["energy"].values[line]) == pytest.approx(5.9, rel=1e-3)
    # the raw amplitude of the same events drifts by the injected amount (mean response per half)
    g = lambda x: 1.0 + DRIFT * x / 60.0  # noqa: E731
    raw_ratio = np.median(raw[halves[1]]) / np.median(raw[halves[0]])
    true_ratio = np.mean(g(t[halves[1]])) / np.mean(g(t[halves[0]]))
    assert raw_ratio == pytest.approx(true_ratio, abs=0.02) and raw_ratio > 1.1
    assert abs(raw_ratio - 1) * expected > 20 * sigma


def test_fixed_lag_test_pulse_amplitudes_of_rdt_records_with_pulses_off_n_over_4(tmp_path):
    """rdt test pulses starting 28 samples before N/4: the template keeps their alignment, so the
    fixed-lag amplitude (testpulse.max_shift: 0) of each test pulse is its true amplitude."""
    from pathlib import Path

    import xarray as xr
    import yaml

    from cresst_util import write_cresst_rdt_run
    from cryopipe.characterize.channel import characterize_records
    from cryopipe.io.records import rdt_record_batches
    from cryopipe.signal.optimum_filter import build_optimum_filter, of_amplitudes
    from cryopipe.testpulse.channel import channel_template

    truth = write_cresst_rdt_run(tmp_path, channels=(1,), n_particle=40, n_noise=60, n_testpulse=80, n_control=0,
                                 record_length=1024, tpas=(1.0, 3.0), volts_per_tpa=(0.3,), noise_sigma=(0.002,),
                                 drift=0.0, onset_offset=-28, seed=5)
    spec = dict(rdt=str(truth["paths"]["rdt"]), par=str(truth["paths"]["par"]), record_length=1024,
                sample_frequency=truth["sample_frequency"], channels=["phonon"])
    first, rest, _ = rdt_record_batches(spec)
    records = xr.concat([first, *rest], dim="event")
    schema = yaml.safe_load(open(Path(__file__).parents[1] / "workflow/schemas/config.schema.yaml"))
    defaults = {s: {k: v.get("default") for k, v in schema["properties"][s]["properties"].items()}
                for s in ("characterize", "testpulse")}
    char = characterize_records(records, cfg=defaults["characterize"], what="rdt")
    template, chosen = channel_template(records, channel=0, sev=char["sev"], cfg=defaults["testpulse"], what="rdt")
    assert chosen == 3.0
    of = build_optimum_filter(template, char["nps"], truth["sample_frequency"])
    tp_ = truth["kind"] == "testpulse"
    fixed = of_amplitudes(of, records["trace"].isel(channel=0).values[tp_], search=False)["amplitude"]
    ratio = fixed / truth["amplitude"][0, tp_]
    assert abs(np.median(ratio) - 1.0) < 0.005, np.median(ratio)
