"""Light yield of a phonon + light module: light energy / phonon energy per event, and its plot."""
import json

import numpy as np
import pytest
import xarray as xr

from cryopipe.errors import InputError
from cryopipe.features.energy import add_light_yield
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
