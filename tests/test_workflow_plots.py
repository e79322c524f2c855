"""Every plot writes a non-blank PNG."""
import matplotlib.image
import numpy as np
import pytest

from cryopipe import plots
from cryopipe.calibrate.lines import calibrate
from cryopipe.efficiency.injection import efficiency_curve, noise_records_from_nps
from cryopipe.signal.optimum_filter import build_optimum_filter
from cryopipe.simulate.noise import psd_model
from cryopipe.signal.pulses import pulse_template

FS = 25_000.0
N = 512


@pytest.fixture(scope="module")
def parts():
    sev = pulse_template(N, FS, 0.002, 0.0003, 0.01)
    f = np.fft.rfftfreq(N, 1 / FS)
    nps = np.vstack([psd_model(f, 1e-9, 1e-8, 10.0), psd_model(f, 4e-9, 0.0)])
    nps[:, 0] = nps[:, 1]
    of = build_optimum_filter(sev, nps[0], FS)
    return sev, nps, of


def check_png(path):
    assert path.exists() and path.stat().st_size > 1000
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    img = matplotlib.image.imread(path)
    assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100
    assert np.var(img[..., :3]) > 1e-3                     # not a blank canvas


def test_sev_with_and_without_fit(tmp_path, parts):
    sev = parts[0]
    check_png(plots.plot_sev(sev, FS, tmp_path / "sev.png", label="run 1 / ch0"))
    model = sev + 0.01 * np.sin(np.arange(N) / 20)
    check_png(plots.plot_sev(sev, FS, tmp_path / "sub" / "sev_fit.png", model=model, label="run 1 / ch0"))


def test_nps_and_filter_transfer(tmp_path, parts):
    sev, nps, of = parts
    check_png(plots.plot_nps(nps, FS, tmp_path / "nps.png", channels=["phonon", "light"], label="run 1"))
    check_png(plots.plot_nps({"phonon": nps[0]}, FS, tmp_path / "nps1.png"))
    of2 = build_optimum_filter(sev, nps[1], FS)
    check_png(plots.plot_filter_transfer({"phonon": of, "light": of2}, tmp_path / "of.png", label="run 1"))
    check_png(plots.plot_filter_transfer(of, tmp_path / "of1.png"))


def test_amplitude_spectrum_with_line(tmp_path):
    rng = np.random.default_rng(0)
    a = np.concatenate([rng.exponential(0.3, 5000), rng.normal(1.0, 0.02, 1000)])
    cal = calibrate(a, 5.9)
    check_png(plots.plot_amplitude_spectrum(a, tmp_path / "spec.png", line=cal, label="run 1 / ch0"))
    check_png(plots.plot_amplitude_spectrum(a, tmp_path / "spec0.png", log=False))


def test_efficiency_and_histogram(tmp_path, parts):
    sev, nps, of = parts
    rng = np.random.default_rng(1)
    noise = noise_records_from_nps(nps[0], 200, FS, rng)
    sigma = 1 / np.sqrt(of.norm)
    ds = efficiency_curve(of, sev, noise, np.linspace(2, 9, 8) * sigma, 5 * sigma, n_per_amplitude=50,
                          rng=rng, kev_per_volt=3.0, cut=lambda r, f: f["of_amplitude"] > 6 * sigma)
    check_png(plots.plot_efficiency(ds, tmp_path / "eff.png", label="run 1 / ch0"))
    check_png(plots.plot_efficiency(ds, tmp_path / "eff_kev.png", energy=True))
    check_png(plots.histogram(rng.normal(size=1000), tmp_path / "h.png", xlabel="rise time", units="s",
                              log=True, label="run 1"))


def test_linearity_slope_ignores_records_that_are_not_the_pulse():
    """500 records at pulse height 0.99 x OF amplitude plus 15 pile-up-like records (small OF
    amplitude, pulse height 10-200 times it): the slope stays at 0.99 (a least-squares fit through
    zero gives about 1.05) and the residual axis shows the bulk, naming the 15 outside."""
    rng = np.random.default_rng(4)
    a = rng.uniform(0.01, 2.0, 500)
    ph = 0.99 * a * (1 + rng.normal(0, 0.003, a.size))
    a_bad = rng.uniform(0.005, 0.05, 15)
    a, ph = np.r_[a, a_bad], np.r_[ph, a_bad * rng.uniform(10, 200, 15)]
    assert plots.linearity_slope(ph, a) == pytest.approx(0.99, abs=0.002)
    lo, hi, outside = plots.residual_range(ph / (0.99 * a) - 1.0)
    assert -0.05 < lo < -0.005 and 0.005 < hi < 0.05 and outside == 15
    assert np.isnan(plots.linearity_slope([1.0], [1.0])) and plots.residual_range([np.nan])[2] == 0


def test_energy_dependence_plot(tmp_path):
    """A saturating detector (pulse height = a - a^2/20) with chi2 growing as a^2: a figure with
    the linearity fit, its residuals and the chi2 panel; NaNs are left out."""
    rng = np.random.default_rng(2)
    a = rng.uniform(0.01, 5.0, 500)
    ph = a - a**2 / 20 + rng.normal(0, 0.01, a.size)
    chi2 = 1022 + 50 * a**2 + rng.normal(0, 40, a.size)
    a[3] = np.nan
    out = plots.plot_energy_dependence(ph, a, chi2, tmp_path / "ed.png", n_samples=1024, label="run / ch")
    img = matplotlib.image.imread(out)
    assert img.shape[0] > 500 and img.shape[1] > 900 and img[..., :3].std() > 0.05
