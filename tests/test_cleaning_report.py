"""Cleaning report: spectra raw / after cuts / after a model, and the PCA manifold of module events."""
import numpy as np
import pytest
import xarray as xr

from cryopipe.cleaning.preprocess import preprocess
from cryopipe.cleaning.report import (
    amplitude_variable,
    cleaning_report,
    cleaning_summary,
    module_vectors,
    pca_manifold,
)
from cryopipe.errors import InputError
from cryopipe.plots import plot_cleaning_spectra, plot_pca_manifold

N = 1024


def pulse(height, onset=N // 4, tau=60.0):
    t = np.arange(N) - onset
    return height * np.where(t > 0, np.exp(-t / tau) - np.exp(-t / 5.0), 0.0)


def run_stores(rng, n_pulse=60, n_step=40, n_noise=10):
    """Two-channel records: pulses (kept by the 'model'), steps (rejected), noise triggers; with truth."""
    n = n_pulse + n_step + n_noise
    trace = rng.normal(0, 0.01, (2, n, N))
    heights = rng.uniform(0.5, 2.0, n)
    for i in range(n_pulse):
        trace[0, i] += pulse(heights[i])
        trace[1, i] += pulse(0.3 * heights[i], tau=20.0)
    for i in range(n_pulse, n_pulse + n_step):
        trace[:, i, N // 2:] += heights[i]
    kind = np.array(["particle"] * (n_pulse + n_step) + ["noise"] * n_noise)
    coords = {"channel": ["phonon", "light"], "event": np.arange(n)}
    records = xr.Dataset({"trace": (("channel", "event", "sample"), trace.astype(np.float32)),
                          "record_kind": ("event", kind)}, coords=coords)
    amp = np.stack([heights, 0.3 * heights])
    features = xr.Dataset({"of_amplitude": (("channel", "event"), amp, {"units": "V"}),
                           "pulse_height": (("channel", "event"), amp + 1, {"units": "V"})}, coords=coords)
    cut_ok = np.ones((2, n), bool)
    cut_ok[1, n_pulse - 5:n_pulse + 5] = False             # the cuts drop 5 pulses and 5 steps (light channel): they agree with the model on 55 + 5 events
    labels = xr.Dataset({"accepted": (("channel", "event"), cut_ok)}, coords=coords)
    clean = np.arange(n) < n_pulse
    predictions = xr.Dataset({"event_clean": ("event", clean)}, coords={"event": np.arange(n)})
    return records, features, labels, predictions


def test_module_vectors_concatenate_the_preprocessed_channels():
    rng = np.random.default_rng(0)
    records, *_ = run_stores(rng)
    events = np.array([3, 70, 5])
    v = module_vectors(records["trace"], events)
    x = preprocess(records["trace"].values[:, events])
    assert v.shape == (3, 2 * 512)
    np.testing.assert_array_equal(v[1, :512], x[0, 1])
    np.testing.assert_array_equal(v[1, 512:], x[1, 1])


def test_pca_separates_pulses_from_steps():
    rng = np.random.default_rng(1)
    records, *_ = run_stores(rng)
    v = module_vectors(records["trace"], np.arange(100))
    p = pca_manifold(v)["projection"][:, 0]
    pulses, steps = p[:60], p[60:100]
    # the first component puts the two classes on different sides: no overlap
    assert max(pulses.max(), steps.max()) - min(pulses.min(), steps.min()) > 0
    assert pulses.max() < steps.min() or steps.max() < pulses.min()
    with pytest.raises(InputError, match="more than 2 events"):
        pca_manifold(v[:2])


def test_cleaning_summary_counts():
    cut = np.array([1, 1, 0, 0, 1], bool)
    model = np.array([1, 0, 0, 1, 1], bool)
    s = cleaning_summary(cut, model)
    assert s == {"events": 5, "after_cuts": 3, "after_model": 3, "after_both": 2, "agreement": 3 / 5}


def test_cleaning_report_uses_particle_events_and_the_best_amplitude(tmp_path):
    rng = np.random.default_rng(2)
    records, features, labels, predictions = run_stores(rng)
    assert amplitude_variable(features) == "of_amplitude"
    rep = cleaning_report(records, features, labels, predictions, max_pca_events=50)
    assert rep["amplitude"].shape == (2, 100) and rep["amplitude_name"] == "of_amplitude"
    np.testing.assert_array_equal(rep["amplitude"], features["of_amplitude"].values[:, :100])
    assert rep["summary"] == {"events": 100, "after_cuts": 90, "after_model": 60, "after_both": 55,
                              "agreement": 0.6}
    assert rep["pca"]["projection"].shape == (50, 2) and len(set(rep["pca_events"])) == 50
    spectrum = plot_cleaning_spectra(rep["amplitude"], rep["cut_clean"], rep["model_clean"], tmp_path / "s.png",
                                     channels=rep["channels"], units=rep["units"])
    pca = plot_pca_manifold(rep["pca"]["projection"], rep["model_clean"][rep["pca_events"]], tmp_path / "p.png",
                            explained=rep["pca"]["explained_variance_ratio"])
    assert spectrum.stat().st_size > 1000 and pca.stat().st_size > 1000


def test_cleaning_report_rejects_stores_of_another_run():
    rng = np.random.default_rng(3)
    records, features, labels, predictions = run_stores(rng)
    with pytest.raises(InputError, match="predictions store has 50 events"):
        cleaning_report(records, features, labels, predictions.isel(event=slice(0, 50)))
    with pytest.raises(InputError, match="none of"):
        amplitude_variable(features.drop_vars(["of_amplitude", "pulse_height"]))
    with pytest.raises(InputError, match="number of events"):
        plot_cleaning_spectra(np.ones((2, 4)), np.ones(3, bool), np.ones(4, bool), "unused.png")
