"""Light yield of a phonon + light module: light energy / phonon energy per event, and its plot."""
import json

import numpy as np
import pytest
import xarray as xr

from cryopipe.errors import InputError
from cryopipe.calibrate.energy import add_light_yield
from cryopipe.plots import plot_light_yield


def features(e_phonon, e_light):
    return xr.Dataset({"energy": (("channel", "event"), np.array([e_phonon, e_light], dtype=np.float64))},
                      coords={"channel": ["phonon", "light"], "event": np.arange(len(e_phonon))},
                      attrs={"units": json.dumps({"energy": "keV"})})


def test_light_yield_is_the_energy_ratio_and_nan_without_phonon_energy():
    ds = add_light_yield(features([10.0, 5.9, 0.0, -1.0], [1.0, 5.9, 2.0, 1.0]), "phonon", "light")
    np.testing.assert_allclose(ds["light_yield"].values[:2], [0.1, 1.0], rtol=1e-6)
    assert np.isnan(ds["light_yield"].values[2:]).all()
    assert json.loads(ds.attrs["units"])["light_yield"] == "1" and ds["light_yield"].dims == ("event",)


def test_unknown_role_channel_is_named():
    with pytest.raises(InputError, match="light channel 'veto' is not a channel of the run"):
        add_light_yield(features([1.0], [1.0]), "phonon", "veto")


def test_plot_light_yield_writes_a_png(tmp_path):
    rng = np.random.default_rng(0)
    e = rng.uniform(1, 40, 500)
    out = plot_light_yield(e, rng.normal(1, 0.1, 500), rng.random(500) > 0.3, tmp_path / "ly.png", label="run")
    assert out.stat().st_size > 5000
    with pytest.raises(InputError, match="differ"):
        plot_light_yield(e, e[:10], e > 0, tmp_path / "x.png")


def band_population(n=24000, seed=1):
    """Electron/gamma events (light yield 1, width falling with energy) and 30 % nuclear recoils at 0.1."""
    rng = np.random.default_rng(seed)
    e = np.exp(rng.uniform(np.log(1.0), np.log(200.0), n))
    sigma = np.sqrt(0.03 ** 2 + (0.4 / e) ** 2)
    nr = rng.random(n) < 0.3
    ly = np.where(nr, 0.1, 1.0) + sigma * rng.normal(size=n)
    return e, ly, nr, lambda x: np.sqrt(0.03 ** 2 + (0.4 / x) ** 2)


def test_electron_band_follows_the_e_gamma_population_not_the_recoils():
    from cryopipe.calibrate.energy import electron_band

    e, ly, nr, true_sigma = band_population()
    band = electron_band(e, ly, bins=12)
    lo, hi = band["edges"][:-1], band["edges"][1:]
    separated = true_sigma(lo) < 0.9 / 5          # bands > 5 sigma apart: the e/gamma band is well defined
    assert separated.sum() >= 8
    n_eg = np.array([((e >= a) & (e < b) & ~nr).sum() for a, b in zip(lo, hi)])
    sem = 1.2533 * true_sigma(lo) / np.sqrt(n_eg)  # standard error of a median
    assert (np.abs(band["median"] - 1.0) < 5 * sem + 1e-3)[separated].all(), band["median"]
    # the robust width lies between the true widths at the bin's edges (it falls with energy), +-10 %
    s = band["sigma"][separated]
    assert ((s > 0.9 * true_sigma(hi[separated])) & (s < 1.1 * true_sigma(lo[separated]))).all(), s
    assert (band["n"][separated] > 0.95 * n_eg[separated]).all() and (band["n"][separated] < 1.05 * n_eg[separated]).all()
    # too few events: NaN, not a number from nothing
    few = electron_band(e[:5], ly[:5], bins=3)
    assert np.isnan(few["median"]).all() and (few["n"] == 0).all()


def test_light_yield_plot_has_cresst_scales_and_the_band():
    from matplotlib.collections import PolyCollection

    from cryopipe.plots import LY_LINEAR_RANGE, light_yield_figure

    e, ly, nr, _ = band_population(n=3000)
    e = np.concatenate([e, [400.0, 500.0]])            # high-energy events stay on the log panel
    ly = np.concatenate([ly, [1.0, 1.0]])
    fig = light_yield_figure(e, ly, np.ones(e.size, bool), label="run")
    log_ax, lin_ax = fig.axes[:2]
    assert log_ax.get_xscale() == "log" and log_ax.get_xlim()[1] >= 500 and log_ax.get_xlim()[0] <= e.min()
    assert lin_ax.get_xscale() == "linear" and lin_ax.get_xlim() == LY_LINEAR_RANGE == (0.0, 50.0)
    for ax in (log_ax, lin_ax):
        bands = [c for c in ax.collections if isinstance(c, PolyCollection) and "band" in c.get_label()]
        assert len(bands) == 1
        xy = bands[0].get_paths()[0].vertices
        ys = xy[xy[:, 0] > 10, 1]                      # above 10 keV: 1 +- 1.645 sigma, sigma <= 0.05
        assert ys.size and 0.9 < ys.min() < 1.0 < ys.max() < 1.1
