"""Cut language (ranges, AND/OR, units, channels, record kinds, validation) and the default cut set
against the truth labels of simulated records of two different detectors."""
from pathlib import Path

import numpy as np
import pytest
import scipy.fft
import xarray as xr

from cryopipe.cuts.language import DEFAULT_CUTS, apply_cuts, load_cuts, validate_cuts
from cryopipe.errors import CryopipeError
from cryopipe.features.main import compute_features
from cryopipe.features.shape import UNITS as EXTRA_FEATURE_UNITS
from cryopipe.features.shape import shape_features as extra_features
from cryopipe.io.stores import validate
from cryopipe.simulate.noise import psd_model
from cryopipe.signal.pulses import pulse_template
from cryopipe.simulate.records import EVENT_CLASSES, simulate_detector_records

ROOT = Path(__file__).resolve().parents[1]
NO_PULSE = ("noise", "decaying_baseline", "temperature_rise", "spike", "squid_jump", "reset")

# two detectors: slow (N 8192 at 25 kHz, ms rise, 25 ms decay, 1/f + 50 Hz line) and fast
# (N 4096 at 50 kHz, 50 us rise, 4 ms decay, white-ish), plus a saturating variant of the first
DETECTORS = {
    "slow": dict(n=8192, fs=25_000.0, taus=(4e-3, 0.4e-3, 25e-3), ratio=0.5,
                 noise=(1e-10, 1e-9, 10.0, ((50.0, 2.0, 1e-8),))),
    "fast": dict(n=4096, fs=50_000.0, taus=(0.8e-3, 0.05e-3, 4e-3), ratio=0.3, noise=(4e-11, 2e-10, 10.0, ())),
}


def simulate(name, n_per_class=120, seed=0, **kw):
    d = DETECTORS[name]
    sev = pulse_template(d["n"], d["fs"], *d["taus"], at_over_an=d["ratio"])
    nps = psd_model(scipy.fft.rfftfreq(d["n"], 1 / d["fs"]), *d["noise"])
    ds = simulate_detector_records({c: n_per_class for c in EVENT_CLASSES}, sev, nps, d["fs"],
                                   np.random.default_rng(seed), snr_range=(10.0, 1000.0), workers=2, **kw)
    return ds, sev, nps


def features_of(ds, sev, nps, record_kind=None):
    """features + extra features Dataset (channel, event) of a single-channel simset."""
    fs = float(ds.attrs["sample_frequency"])
    x = ds.trace.values[0]
    values = {**compute_features(x, fs), **extra_features(x, fs, sev, nps)}
    data = {k: (("channel", "event"), v[None]) for k, v in values.items()}
    if record_kind is not None:
        data["record_kind"] = ("event", record_kind)
    return xr.Dataset(data, coords={"channel": ds.channel.values, "event": ds.event.values},
                      attrs={"sample_frequency": fs, "record_length": x.shape[1]})


def agreement_by_class(labels, ds):
    acc, truth, cls = labels.accepted.values[0], ds.label.values[0], ds.event_class.values
    return {c: float(np.mean(acc[cls == c] == truth[cls == c])) for c in np.unique(cls)}


@pytest.fixture(scope="module", params=["slow", "fast"])
def detector(request):
    ds, sev, nps = simulate(request.param)
    return request.param, ds, features_of(ds, sev, nps)


# ---------------------------------------------------------------------------------------------
# default cuts vs truth
# ---------------------------------------------------------------------------------------------

def test_default_cuts_reproduce_truth_labels_for_every_class(detector):
    name, ds, feats = detector
    labels = apply_cuts(feats, cuts=DEFAULT_CUTS)
    validate(labels, "labels")
    agreement = agreement_by_class(labels, ds)
    print(name, {c: round(a, 3) for c, a in agreement.items()})
    assert set(agreement) == set(EVENT_CLASSES)
    low = {c: a for c, a in agreement.items() if a < 0.95}
    assert not low, f"{name}: classes below 95 % agreement: {low}"


def test_saturated_pulses_are_kept():
    ds, sev, nps = simulate("slow", n_per_class=60, seed=3, saturation=0.05)   # ~220 sigma_OF ceiling
    labels = apply_cuts(features_of(ds, sev, nps), cuts=DEFAULT_CUTS)
    cls, acc = ds.event_class.values, labels.accepted.values[0]
    saturated = (cls == "event_pulse") & (ds.pulse_height.values[0] > 0.05)
    assert saturated.sum() >= 10
    assert acc[saturated].mean() >= 0.95
    for c, a in agreement_by_class(labels, ds).items():
        assert a >= 0.9, (c, a)


def test_noise_records_kept_when_slope_typical():
    """Random-trigger (record_kind noise) records: empty ones survive, artefacts do not."""
    ds, sev, nps = simulate("fast", n_per_class=80, seed=5)
    ds = ds.sel(event=np.isin(ds.event_class.values, NO_PULSE))
    feats = features_of(ds, sev, nps, record_kind=np.full(ds.sizes["event"], "noise"))
    labels = apply_cuts(feats, cuts=DEFAULT_CUTS)
    cls, acc = ds.event_class.values, labels.accepted.values[0]
    assert acc[cls == "noise"].mean() >= 0.95
    for c in NO_PULSE[1:]:
        assert acc[cls == c].mean() <= 0.05, c
    # the same records as triggered records: no pulse at the trigger, all rejected
    as_particle = apply_cuts(feats.drop_vars("record_kind"), cuts=DEFAULT_CUTS)
    assert not as_particle.accepted.values.any()


def test_extra_features_of_known_pulse_and_pileup():
    d = DETECTORS["fast"]
    n, fs = d["n"], d["fs"]
    sev = pulse_template(n, fs, *d["taus"], at_over_an=d["ratio"])
    nps = psd_model(scipy.fft.rfftfreq(n, 1 / fs), 1e-12)
    shift = 40
    single = 0.1 * np.roll(sev, shift)
    second = single + 0.05 * np.roll(sev, n // 3)
    spike = np.zeros(n)
    spike[3000:3002] = 0.1
    ex = extra_features(np.stack([single, second, spike]).astype(np.float32), fs, sev, nps)
    sigma_of = 0.1 / ex["of_snr"][0]
    assert ex["of_onset"][0] == pytest.approx(shift / fs)
    assert ex["second_pulse_snr"][0] < 1e-3 * ex["of_snr"][0]
    assert ex["second_pulse_fraction"][1] == pytest.approx(0.5, abs=0.03)  # detrend, sev tail at the end
    assert ex["of_snr"][1] * sigma_of == pytest.approx(0.1, rel=0.05)  # OF sidelobes of the other pulse
    assert ex["spike_fraction"][2] == pytest.approx(1.0) and ex["spike_fraction"][0] < 0.5
    assert abs(ex["end_fraction"][0]) < 0.01 and abs(ex["pretrigger_drop_snr"][0]) < 1e-3
    assert set(ex) == set(EXTRA_FEATURE_UNITS)


# ---------------------------------------------------------------------------------------------
# the language
# ---------------------------------------------------------------------------------------------

def toy(kinds=None):
    """Two channels, six events, hand-made values."""
    a = np.array([[0.0, 1.0, 2.0, 3.0, 4.0, 100.0], [5.0, 6.0, 7.0, 8.0, 9.0, np.nan]])
    b = np.array([[1.0, 1.0, 0.0, 0.0, 1.0, 1.0], [0.0, 1.0, 0.0, 1.0, 0.0, 1.0]])
    t = np.array([[0.0, 0.01, -0.02, 0.05, 0.0, 0.0]] * 2)
    data = {"a": (("channel", "event"), a), "b": (("channel", "event"), b), "t": (("channel", "event"), t)}
    if kinds is not None:
        data["record_kind"] = ("event", np.array(kinds))
    return xr.Dataset(data, coords={"channel": ["phonon", "light"], "event": np.arange(6)},
                      attrs={"sample_frequency": 1000.0, "record_length": 100})   # 0.1 s records


def accepted(cuts, ds=None):
    return apply_cuts(toy() if ds is None else ds, cuts={"cuts": cuts}).accepted.values


def test_ranges_min_max_and_nan():
    got = accepted({"r": {"feature": "a", "min": 1.0, "max": 4.0}})
    assert got.tolist() == [[False, True, True, True, True, False], [False] * 6]
    assert accepted({"r": {"feature": "a", "max": 6.0}})[1].tolist() == [True, True] + [False] * 4  # NaN fails


def test_and_of_cuts_and_or_within_a_cut():
    lab = apply_cuts(toy(), cuts={"cuts": {"lo": {"feature": "a", "max": 7.0}, "bb": {"feature": "b", "min": 0.5}}})
    flags = lab.cut_flags.sel(channel="light").values
    assert lab.cut.values.tolist() == ["lo", "bb"]
    assert (lab.accepted.values == lab.cut_flags.values.all(axis=0)).all()
    assert lab.accepted.sel(channel="light").values.tolist() == [False, True, False, False, False, False]
    assert flags[1].tolist() == [False, True, False, True, False, True]
    either = accepted({"x": {"any_of": [{"feature": "a", "max": 0.5}, {"feature": "b", "max": 0.5}]}})
    assert either[0].tolist() == [True, False, True, True, False, False]
    both = accepted({"x": {"all_of": [{"feature": "a", "min": 0.5}, {"any_of": [{"feature": "b", "max": 0.5}]}]}})
    assert both[0].tolist() == [False, False, True, True, False, False]


def test_record_length_units():
    got = accepted({"t": {"feature": "t", "min": -0.25, "max": 0.25, "units": "record_length"}})  # +-25 ms
    assert got[0].tolist() == [True, True, True, False, True, True]


def test_robust_ranges_over_all_and_noise_records():
    # channel phonon: median of a = 2.5, MAD = 1.5 -> sigma 2.2239; +-1 sigma: [0.276, 4.724]
    got = accepted({"r": {"feature": "a", "min": -1.0, "max": 1.0, "units": "robust_sigma"}})
    assert got[0].tolist() == [False, True, True, True, True, False]
    kinds = ["noise", "noise", "noise", "particle", "particle", "particle"]
    # over noise records (0, 1, 2 of phonon): median 1, MAD 1 -> [1 - 1.4826, 1 + 1.4826]
    lab = apply_cuts(toy(kinds), cuts={"cuts": {"r": {"feature": "a", "min": -1.0, "max": 1.0, "units": "robust_sigma",
                                                 "over": "noise"}}})
    assert lab.accepted.values[0].tolist() == [True, True, True, False, False, False]
    bounds = __import__("json").loads(lab.attrs["bounds"])["r"][0]
    assert bounds["max"][0] == pytest.approx(1.0 + 1.4826)


def test_channels_and_record_kinds_select_where_a_cut_applies():
    got = accepted({"r": {"feature": "a", "max": 3.0, "channels": "light"}})
    assert got[0].all() and not got[1].any()
    got = accepted({"r": {"feature": "a", "max": 3.0, "channels": ["phonon"]}})
    assert got[1].all() and got[0].tolist() == [True] * 4 + [False] * 2
    kinds = ["noise", "particle"] * 3
    got = accepted({"r": {"feature": "a", "max": 3.0, "records": "noise"}}, toy(kinds))
    assert got[0].tolist() == [True, True, True, True, False, True]
    # without record_kind every record is a particle record: a noise-only cut never applies
    assert accepted({"r": {"feature": "a", "max": -1.0, "records": "noise"}}).all()


@pytest.mark.parametrize("cuts, message", [
    ({"r": {"feature": "zzz", "max": 1}}, "unknown feature 'zzz'"),
    ({"r": {"feature": "a", "maxx": 1}}, "unknown keys ['maxx']"),
    ({"r": {"feature": "a"}}, "needs 'min' and/or 'max'"),
    ({"r": {"feature": "a", "min": 2, "max": 1}}, "min 2 > max 1"),
    ({"r": {"feature": "a", "max": "big"}}, "'max' must be a number"),
    ({"r": {"feature": "a", "max": 1, "units": "parsec"}}, "units must be one of"),
    ({"r": {"feature": "a", "max": 1, "over": "noise"}}, "'over' needs units 'robust_sigma'"),
    ({"r": {"feature": "a", "max": 1, "records": "pulses"}}, "'records' must be one of"),
    ({"r": {"any_of": []}}, "non-empty list"),
    ({"r": {"any_of": [{"feature": "a", "max": 1}], "feature": "b"}}, "cannot be mixed"),
    ({"r": {"any_of": [{"feature": "a", "max": 1, "channels": "light"}]}}, "unknown keys ['channels']"),
    ({"r": {"feature": "a", "max": 1, "channels": "heat"}}, "unknown channels ['heat']"),
    ({"r": {"feature": "a", "max": 1, "units": "robust_sigma", "over": "noise"}}, "no noise records"),
])
def test_validation_errors_name_the_cut(cuts, message):
    with pytest.raises(CryopipeError, match=r"cut 'r'") as err:
        apply_cuts(toy(), cuts={"cuts": cuts})
    assert message in str(err.value)


def test_cut_set_shape_errors():
    for bad, message in (({}, "single key 'cuts'"), ({"cuts": {}}, "has no cuts"),
                         ({"cuts": {"a": {"feature": "a", "max": 1}}, "extra": 1}, "single key 'cuts'"),
                         ({"cuts": [1]}, "single key 'cuts'")):
        with pytest.raises(CryopipeError, match=message):
            validate_cuts(bad)
    with pytest.raises(CryopipeError, match="cut 'x': must be a mapping"):
        validate_cuts({"cuts": {"x": 3}})


def test_default_yaml_equals_embedded_and_is_valid():
    assert load_cuts(ROOT / "config" / "cuts_default.yaml") == DEFAULT_CUTS
    names = set(compute_features(np.zeros((1, 64), np.float32), 1000.0)) | set(EXTRA_FEATURE_UNITS)
    validate_cuts(DEFAULT_CUTS, features=names)
