"""Feature families: one unit per name everywhere, the batch loop equals the families run directly."""
import json

import numpy as np
import pytest
import xarray as xr

from cryopipe.characterize import selection
from cryopipe.features import main, optimum_filter, sev_fit, shape
from cryopipe.features.context import ChannelContext
from cryopipe.features.dataset import features_dataset
from cryopipe.features.registry import BY_NAME, FAMILIES, FEATURE_UNITS, compute_block, families_for
from cryopipe.calibrate import energy
from cryopipe.io.stores import provenance, validate
from cryopipe.signal.pulses import pulse_template

FS = 25_000.0
N = 1024


def make_records(n_events=90, n_channels=2, seed=0):
    rng = np.random.default_rng(seed)
    sev = pulse_template(N, FS, 0.002, 0.0003, 0.01, at_over_an=0.5)
    heights = rng.uniform(0.0, 0.05, (n_channels, n_events, 1))
    trace = (rng.normal(0, 1e-3, (n_channels, n_events, N)) + heights * sev).astype(np.float32)
    kinds = np.where(np.arange(n_events) % 3 == 0, "noise", "particle")
    ds = xr.Dataset({"trace": (("channel", "event", "sample"), trace), "record_kind": ("event", kinds),
                     "trigger_time": ("event", np.arange(n_events) * 0.1, {"units": "s"})},
                    coords={"channel": ["a", "b"][:n_channels], "event": np.arange(n_events)},
                    attrs=provenance("records", parameters={}, inputs=[], sample_frequency=FS, record_length=N))
    nps = np.full(N // 2 + 1, 2e-6 / FS)
    char = xr.Dataset({"sev": (("channel", "sample"), np.tile(sev.astype(np.float32), (n_channels, 1))),
                       "nps": (("channel", "frequency"), np.tile(nps, (n_channels, 1)))},
                      coords={"channel": ds.channel.values}, attrs={"sample_frequency": FS})
    return ds, char


def test_every_feature_name_has_one_unit_everywhere_it_is_stored():
    modules = [main, optimum_filter, shape, sev_fit, energy]
    seen = {}
    for m in modules:
        for name, unit in m.UNITS.items():
            assert name not in seen, f"{name} declared by two families"
            seen[name] = unit
    assert seen == FEATURE_UNITS
    assert {n for f in FAMILIES for n in f.units} | set(energy.UNITS) == set(FEATURE_UNITS)
    assert not set(selection.UNITS) & set(FEATURE_UNITS)        # the selection's features are not stored
    # a features store: variable attrs, dataset attr and the registry agree
    records, char = make_records(n_events=20)
    ds = features_dataset(records, characterization=char, batch=8)
    stored = json.loads(ds.attrs["units"])
    for name, var in ds.data_vars.items():
        if var.dims == ("channel", "event"):
            assert var.attrs["units"] == stored[name] == FEATURE_UNITS[name], name
    assert set(stored) == {n for n, v in ds.data_vars.items() if v.dims == ("channel", "event")}
    # the energy family keeps the units attr complete
    cal = xr.Dataset({"kev_per_volt": ("channel", [2.0, 3.0]), "offset_kev": ("channel", [0.0, 0.0])},
                     coords={"channel": ["a", "b"]}, attrs={"amplitude": "of_amplitude_shifted"})
    with_energy = energy.add_energy(ds, cal)
    assert json.loads(with_energy.attrs["units"])["energy"] == with_energy["energy"].attrs["units"] == "keV"


def test_of_shift_is_in_seconds_in_both_consumers():
    """The features stage and the efficiency stage compute OF features with the same family."""
    from cryopipe.efficiency.injection import default_features, trigger_and_cut

    records, char = make_records(n_events=12)
    ctx = ChannelContext.from_stores(records, char, "a")
    tr = records.trace.values[0]
    direct = compute_block(tr, ctx, [BY_NAME["optimum_filter"]])
    assert np.all(np.abs(direct["of_shift"]) < N / FS)
    via_eff = default_features(ctx.optimum_filter())(tr)
    np.testing.assert_array_equal(via_eff["of_shift"], direct["of_shift"])
    seen = {}
    trigger_and_cut(ctx.optimum_filter(), tr, -np.inf, cut=lambda r, f: seen.update(f) or np.ones(len(r), bool))
    np.testing.assert_array_equal(seen["of_shift"], direct["of_shift"])


def test_dataset_equals_families_run_directly_for_any_batch():
    records, char = make_records()
    ds = features_dataset(records, characterization=char, batch=32)
    assert set(ds.data_vars) >= set(FEATURE_UNITS) - set(energy.UNITS)   # energy's are added at the gather
    validate(ds, "features")
    for c, ch in enumerate(["a", "b"]):
        ctx = ChannelContext.from_stores(records, char, ch)
        direct = compute_block(records.trace.values[c], ctx, FAMILIES)
        for name, v in direct.items():
            np.testing.assert_array_equal(ds[name].values[c], v, err_msg=name)
    np.testing.assert_array_equal(ds.record_kind.values, records.record_kind.values)
    assert "valid" not in ds


def test_without_characterization_only_main_family():
    records, _ = make_records(n_events=10)
    ds = features_dataset(records)
    assert {n for n, v in ds.data_vars.items() if v.dims == ("channel", "event")} == set(main.UNITS)


def test_records_with_nan_samples_get_nan_features_and_valid_flag():
    records, char = make_records(n_events=10)
    records.trace.values[1, 3, 100] = np.nan
    ds = features_dataset(records, characterization=char)
    assert ds["valid"].values.sum() == 19 and not ds["valid"].values[1, 3]
    assert np.isnan(ds["of_snr"].values[1, 3]) and np.isfinite(ds["of_snr"].values[0, 3])


def test_families_for_picks_the_families_of_cut_features():
    from cryopipe.cuts.language import DEFAULT_CUTS
    from cryopipe.cuts.language import cut_feature_names

    names = cut_feature_names(DEFAULT_CUTS)
    assert "of_snr" in names and "slope" in names
    assert [f.name for f in families_for(names, FAMILIES)] == ["main", "shape"]


@pytest.mark.parametrize("name", ["shape", "sev_fit", "optimum_filter"])
def test_families_needing_characterization_refuse_without(name):
    records, _ = make_records(n_events=4)
    ctx = ChannelContext.from_stores(records, None, "a")
    with pytest.raises(Exception):
        BY_NAME[name].compute(records.trace.values[0], ctx)


def test_families_share_one_optimum_filter_pass_per_block(monkeypatch):
    """optimum_filter and shape read one OF pass per slice of compute_block; the values do not depend on
    which families run together nor on the slice size."""
    from cryopipe.features import filtered

    records, char = make_records(n_events=300, n_channels=1)
    tr = records.trace.values[0]
    ctx = ChannelContext.from_stores(records, char, "a")
    calls = []
    real = filtered.of_pass
    monkeypatch.setattr(filtered, "of_pass", lambda *a, **k: calls.append(len(a[0])) or real(*a, **k))
    both = compute_block(tr, ctx, [BY_NAME["optimum_filter"], BY_NAME["shape"]], block=128)
    assert calls == [128, 128, 44]
    alone = {**compute_block(tr, ctx, [BY_NAME["optimum_filter"]]), **compute_block(tr, ctx, [BY_NAME["shape"]])}
    other_slices = compute_block(tr, ctx, [BY_NAME["shape"], BY_NAME["optimum_filter"]], block=7)
    outside = {**optimum_filter.compute(tr, ctx), **shape.compute(tr, ctx)}   # no sharing scope
    assert set(both) == set(alone) == set(other_slices) == set(optimum_filter.UNITS) | set(shape.UNITS)
    for name in both:
        for other in (alone, other_slices, outside):
            np.testing.assert_array_equal(both[name], other[name], err_msg=name)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_optimum_filter_family_on_shifted_template_pulses(dtype):
    """A template-shaped pulse of height A shifted by d samples on an offset: amplitude A and shift d/fs
    at the searched lag, chi2 ~ 0 there; the fixed-lag amplitude A at d = 0."""
    sev = pulse_template(N, FS, 0.002, 0.0003, 0.01, at_over_an=0.5)
    heights = np.array([0.01, 0.2, 1.0, 0.05, 0.3])
    shifts = np.array([0, 3, -40, 100, -N // 8])
    x = np.stack([0.5 + a * np.roll(sev, d) for a, d in zip(heights, shifts)]).astype(dtype)
    nps = np.full(N // 2 + 1, 2e-6 / FS)
    ctx = ChannelContext(FS, N, sev=sev, nps=nps)
    r = optimum_filter.compute(x, ctx)
    tol = 1e-5 if dtype == np.float32 else 1e-9
    np.testing.assert_allclose(r["of_amplitude_shifted"], heights, rtol=tol)
    np.testing.assert_array_equal(np.rint(r["of_shift"] * FS), shifts)
    assert r["of_amplitude"][0] == pytest.approx(heights[0], rel=tol)
    # chi2 = chi2_0 - W A^2: zero up to the rounding of chi2_0 ~ W A^2 (float32 spectra: ~1e-7 of it)
    scale = ctx.optimum_filter().norm * heights ** 2
    assert np.all(np.abs(r["of_chi2_shifted"]) < (1e-5 if dtype == np.float32 else 1e-12) * scale)
    from cryopipe.signal.optimum_filter import of_amplitudes
    ref = of_amplitudes(ctx.optimum_filter(), x.astype(np.float64))
    np.testing.assert_allclose(r["of_amplitude"], ref["amplitude"], rtol=tol, atol=1e-9)


def test_public_scipy_fft_path_gives_the_same_features(monkeypatch):
    """Without scipy's private pocketfft binding (`parallel.pocketfft_with_output` None on another
    scipy) the shared OF pass runs on scipy.fft: same optimum-filter and shape features."""
    from cryopipe.features import filtered

    records, char = make_records(n_events=150, n_channels=1)
    tr = records.trace.values[0]
    ctx = ChannelContext.from_stores(records, char, "a")
    fams = [BY_NAME["optimum_filter"], BY_NAME["shape"]]
    fast = compute_block(tr, ctx, fams)
    monkeypatch.setattr(filtered, "_pocketfft", None)
    plain = compute_block(tr, ctx, fams)
    for name in fast:
        scale = np.nanmax(np.abs(fast[name])) or 1.0
        np.testing.assert_allclose(plain[name], fast[name], rtol=1e-4, atol=1e-5 * scale, err_msg=name)
