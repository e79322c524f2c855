"""Report figures as PNG files: SEV, NPS, filter transfer, amplitude spectrum, efficiency, histograms.

Every function draws on a fresh `matplotlib.figure.Figure` (Agg canvas, no pyplot state, no display,
safe in threads), writes `path` (parent folders created) and returns it as a `pathlib.Path`.
`label` names the run/channel and goes into the title.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from cryopipe.calibrate.lines import line_model
from cryopipe.efficiency.injection import erf_efficiency
from cryopipe.errors import InputError

__all__ = ["plot_sev", "plot_nps", "plot_filter_transfer", "plot_amplitude_spectrum", "plot_efficiency",
           "histogram", "plot_cleaning_spectra", "plot_pca_manifold", "plot_testpulse_response",
           "plot_testpulse_calibration", "plot_light_yield", "plot_energy_dependence"]


def _figure(nrows: int = 1, ncols: int = 1, size=(7.0, 4.5), **kw):
    fig = Figure(figsize=size, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False, **kw)
    return fig, axes


def _title(what: str, label: str) -> str:
    return f"{what} - {label}" if label else what


def _save(fig: Figure, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, format="png")
    return path


def _named_rows(values, names, what: str) -> list[tuple[str, np.ndarray]]:
    """(name, 1-d array) pairs from a mapping, a 2-d array (rows) or a 1-d array."""
    if isinstance(values, Mapping):
        return [(str(k), np.asarray(v, dtype=np.float64)) for k, v in values.items()]
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2:
        raise InputError(f"{what}: expected (n_channels, n) or (n,) values, got shape {arr.shape}")
    names = [f"channel {i}" for i in range(arr.shape[0])] if names is None else [str(n) for n in names]
    if len(names) != arr.shape[0]:
        raise InputError(f"{what}: {len(names)} channel names for {arr.shape[0]} rows")
    return list(zip(names, arr))


def _spectrum_bins(values: np.ndarray, bins: int):
    """(bin edges, wide) for finite `values`: log-spaced edges over the positive values when they span
    more than two decades above their 5th percentile (plot them on a log axis), else `bins` linear
    bins over the values' range (a bin count when there are none)."""
    pos = values[values > 0]
    if pos.size > 1 and pos.max() > 100 * np.percentile(pos, 5):
        return np.geomspace(pos.min(), pos.max(), bins + 1), True
    if values.size == 0 or values.min() == values.max():
        return bins, False
    return np.linspace(values.min(), values.max(), bins + 1), False


def plot_sev(sev, sample_frequency: float, path, *, model=None, label: str = "",
             pretrigger: int | None = None) -> Path:
    """Standard event (V/V) against time from the trigger (ms, onset at `pretrigger`, default N/4), with
    the pulse-model fit (e.g. ``fit_pulse_model(...)["model"]``) and its residual when `model` is given."""
    sev = np.asarray(sev, dtype=np.float64)
    pre = sev.size // 4 if pretrigger is None else int(pretrigger)
    t_ms = (np.arange(sev.size) - pre) / sample_frequency * 1e3
    if model is None:
        fig, axes = _figure()
        ax = axes[0, 0]
    else:
        fig, axes = _figure(2, 1, size=(7.0, 5.5), sharex=True, gridspec_kw={"height_ratios": (3, 1)})
        ax = axes[0, 0]
    ax.plot(t_ms, sev, lw=1.0, label="standard event")
    if model is not None:
        model = np.asarray(model, dtype=np.float64)
        ax.plot(t_ms, model, lw=1.0, ls="--", label="pulse-model fit")
        res = axes[1, 0]
        res.plot(t_ms, sev - model, lw=0.8, color="C2")
        res.axhline(0.0, color="k", lw=0.5)
        res.set_ylabel("residual (V/V)")
        res.set_xlabel("time from trigger (ms)")
    else:
        ax.set_xlabel("time from trigger (ms)")
    ax.set_ylabel("amplitude (V/V, max 1)")
    ax.legend(loc="upper right")
    ax.set_title(_title("Standard event", label))
    return _save(fig, path)


def plot_nps(nps, sample_frequency: float, path, *, channels: Sequence[str] | None = None, label: str = "") -> Path:
    """Noise power spectra (one-sided, V^2/Hz) of one or several channels, log-log, DC left out.

    `nps`: (n_channels, N//2+1) or (N//2+1,) array, or a mapping channel name -> spectrum.
    """
    fig, axes = _figure()
    ax = axes[0, 0]
    for name, p in _named_rows(nps, channels, "nps"):
        n = 2 * (p.size - 1)
        f = np.fft.rfftfreq(n, 1.0 / sample_frequency)
        ax.loglog(f[1:], p[1:], lw=0.8, label=name)
    ax.set_xlabel("frequency (Hz)")
    ax.set_ylabel("noise power spectral density (V$^2$/Hz)")
    ax.legend(loc="upper right")
    ax.set_title(_title("Noise power spectrum", label))
    return _save(fig, path)


def plot_filter_transfer(filters, path, *, channels: Sequence[str] | None = None, label: str = "") -> Path:
    """Optimum-filter transfer functions |H(f)|, normalised to their maximum, log-log, DC left out.

    `filters`: one `OptimumFilter`, a sequence of them, or a mapping channel name -> filter.
    """
    if isinstance(filters, Mapping):
        items = [(str(k), v) for k, v in filters.items()]
    else:
        seq = list(filters) if isinstance(filters, (list, tuple)) else [filters]
        names = [f"channel {i}" for i in range(len(seq))] if channels is None else list(channels)
        items = list(zip(names, seq))
    fig, axes = _figure()
    ax = axes[0, 0]
    for name, of in items:
        h = np.abs(of.transfer)
        f = np.fft.rfftfreq(of.record_length, 1.0 / of.sample_frequency)
        ax.loglog(f[1:], h[1:] / h[1:].max(), lw=0.8, label=name)
    ax.set_xlabel("frequency (Hz)")
    ax.set_ylabel("|H(f)| / max |H| (1)")
    ax.legend(loc="upper right")
    ax.set_title(_title("Optimum filter transfer function", label))
    return _save(fig, path)


def plot_amplitude_spectrum(amplitudes, path, *, line: dict | None = None, bins: int = 200, log: bool = True,
                            kev_per_volt: float | None = None, label: str = "") -> Path:
    """Amplitude spectrum (counts per bin against V) with a calibration line fit marked.

    `line`: a `find_line` result, or a `calibrate` result (its first line is shown; its kev_per_volt
    is used for the annotation). With a line, a second panel shows the fit region with the fitted
    Gaussian on its linear background.
    """
    a = np.asarray(amplitudes, dtype=np.float64)
    a = a[np.isfinite(a)]
    if line is not None and "lines" in line:
        kev_per_volt = line.get("kev_per_volt", kev_per_volt) if kev_per_volt is None else kev_per_volt
        line = line["lines"][0]
    fig, axes = _figure(1, 1 if line is None else 2, size=(7.0 if line is None else 11.0, 4.5))
    ax = axes[0, 0]
    edges, wide = _spectrum_bins(a, bins)
    ax.hist(a[a > 0] if wide else a, bins=edges, histtype="step", color="C0")
    if wide:
        ax.set_xscale("log")
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("amplitude (V)")
    ax.set_ylabel("counts per bin")
    ax.set_title(_title("Amplitude spectrum", label))
    if line is not None:
        mu, sigma = line["position"], line["sigma"]
        text = f"line: {mu:.5g} $\\pm$ {line['position_err']:.2g} V, $\\sigma$ = {sigma:.3g} V"
        if kev_per_volt is not None:
            text += f"\n{kev_per_volt:.5g} keV/V"
        ax.axvline(mu, color="C3", lw=1.0, ls="--", label=text)
        ax.legend(loc="upper right", fontsize=8)
        zoom = axes[0, 1]
        edges, counts = line["fit_edges"], line["fit_counts"]
        centres = 0.5 * (edges[1:] + edges[:-1])
        zoom.errorbar(centres, counts, yerr=np.sqrt(np.maximum(counts, 1)), fmt=".", color="C0", label="data")
        width = edges[1] - edges[0]
        peak = line["n_line"] * width / (sigma * np.sqrt(2.0 * np.pi))
        xs = np.linspace(edges[0], edges[-1], 400)
        b0, b1 = line["background"]
        zoom.plot(xs, line_model(xs, peak, mu, sigma, b0, b1, x_ref=line["position_start"]), color="C3",
                  label="Gaussian + linear background")
        zoom.set_xlabel("amplitude (V)")
        zoom.set_ylabel(f"counts per {width:.3g} V bin")
        zoom.legend(loc="upper right", fontsize=8)
        zoom.set_title(_title("Calibration line fit", label))
    return _save(fig, path)


def plot_efficiency(curve, path, *, energy: bool = False, label: str = "") -> Path:
    """Trigger, cut and total efficiency with binomial errors and their error-function fits.

    `curve`: an `efficiency_curve` Dataset. With `energy` (and an ``energy`` coordinate) the x axis is
    in keV; the fits (stored in V) are drawn with the same conversion.
    """
    x_v = np.asarray(curve["amplitude"].values, dtype=np.float64)
    scale, unit = 1.0, "V"
    if energy:
        if "energy" not in curve.coords:
            raise InputError("plot_efficiency: energy=True needs an 'energy' coordinate (efficiency_curve(kev_per_volt=...))")
        with np.errstate(divide="ignore", invalid="ignore"):
            scale = float(np.nanmedian(np.asarray(curve["energy"].values) / x_v))
        unit = "keV"
    fig, axes = _figure()
    ax = axes[0, 0]
    wide = x_v.min() > 0 and x_v.max() > 30 * x_v.min()   # turn-on and the run's range up to saturation
    xs = np.geomspace(x_v.min(), x_v.max(), 400) if wide else np.linspace(x_v.min(), x_v.max(), 400)
    for i, (name, var) in enumerate((("trigger", "trigger_efficiency"), ("cut", "cut_efficiency"),
                                     ("total", "efficiency"))):
        y = np.asarray(curve[var].values)
        err = np.asarray(curve[f"{var}_err"].values)
        ax.errorbar(x_v * scale, y, yerr=err, fmt="o", ms=3, color=f"C{i}", label=f"{name} efficiency")
        x50 = curve.attrs.get(f"{name}_x50", np.nan)
        if np.isfinite(x50):
            fit = erf_efficiency(xs, x50, curve.attrs[f"{name}_width"], plateau=curve.attrs[f"{name}_plateau"])
            ax.plot(xs * scale, fit, color=f"C{i}", lw=1.0,
                    label=f"{name} fit: 50 % at {x50 * scale:.4g} $\\pm$ {curve.attrs[f'{name}_x50_err'] * scale:.2g} {unit}")
    if "threshold" in curve.attrs:
        ax.axvline(curve.attrs["threshold"] * scale, color="k", ls=":", lw=1.0, label="trigger threshold")
    ax.set_ylim(-0.05, 1.1)
    if wide:
        ax.set_xscale("log")
    ax.set_xlabel(f"injected {'energy' if energy else 'amplitude'} ({unit})")
    ax.set_ylabel("survival probability (1)")
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title(_title("Efficiency", label))
    return _save(fig, path)


def histogram(values, path, *, bins=100, xlabel: str = "value", units: str = "", title: str = "Histogram",
              log: bool = False, range=None, label: str = "") -> Path:
    """Histogram of the finite `values` (counts per bin); `units` is appended to the x label."""
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[np.isfinite(v)]
    fig, axes = _figure()
    ax = axes[0, 0]
    ax.hist(v, bins=bins, range=range, histtype="stepfilled", alpha=0.8, color="C0")
    if log:
        ax.set_yscale("log")
    ax.set_xlabel(f"{xlabel} ({units})" if units else xlabel)
    ax.set_ylabel("counts per bin")
    ax.set_title(_title(title, label))
    return _save(fig, path)


def plot_cleaning_spectra(amplitude, cut_clean, model_clean, path, *, channels: Sequence[str] | None = None,
                          units: str = "V", model: str = "model", bins: int = 150, label: str = "") -> Path:
    """Amplitude spectra per channel: every particle event, those passing the cuts, those the model keeps.

    `amplitude` (channels, events); `cut_clean`, `model_clean` (events,) bool. Log-spaced bins over
    the positive amplitudes when they span more than two decades.
    """
    rows = _named_rows(amplitude, channels, "amplitude")
    cut_clean, model_clean = np.asarray(cut_clean, bool), np.asarray(model_clean, bool)
    if any(v.size != cut_clean.size or v.size != model_clean.size for _, v in rows):
        raise InputError("cleaning spectra: amplitude, cut and model decisions differ in their number of events")
    fig, axes = _figure(1, len(rows), size=(5.5 * len(rows), 4.2))
    for ax, (name, a) in zip(axes[0], rows):
        edges, wide = _spectrum_bins(a[np.isfinite(a)], bins)
        if wide:
            ax.set_xscale("log")
        for mask, text, color in ((np.ones_like(cut_clean), "raw", "0.5"), (cut_clean, "after cuts", "C0"),
                                  (model_clean, f"after {model}", "C3")):
            ax.hist(a[mask & np.isfinite(a)], bins=edges, histtype="step", color=color,
                    label=f"{text} ({int(mask.sum())})")
        ax.set_yscale("log")
        ax.set_xlabel(f"amplitude ({units})" if units else "amplitude")
        ax.set_ylabel("counts per bin")
        ax.set_title(_title(f"Spectrum {name}", label))
        ax.legend(fontsize=8)
    return _save(fig, path)


def plot_pca_manifold(projection, clean, path, *, explained=None, model: str = "model", label: str = "") -> Path:
    """First two principal components of the events before (all) and after cleaning (kept by `model`)."""
    p = np.asarray(projection, dtype=np.float64)
    clean = np.asarray(clean, bool)
    if p.ndim != 2 or p.shape[1] < 2 or p.shape[0] != clean.size:
        raise InputError(f"PCA manifold: need (events, >=2) projections and one decision per event, "
                         f"got {p.shape} and {clean.shape}")
    fig, axes = _figure(1, 2, size=(11.0, 4.6), sharex=True, sharey=True)
    size = max(1.0, min(8.0, 4000.0 / max(p.shape[0], 1)))
    axes[0, 0].scatter(p[:, 0], p[:, 1], s=size, c="0.4", lw=0, alpha=0.6)
    axes[0, 0].set_title(_title(f"Before cleaning ({p.shape[0]} events)", label))
    axes[0, 1].scatter(p[clean, 0], p[clean, 1], s=size, c="C0", lw=0, alpha=0.6)
    axes[0, 1].set_title(_title(f"After {model} ({int(clean.sum())} events)", label))
    ev = np.asarray(explained if explained is not None else [np.nan, np.nan], dtype=np.float64)
    for ax in axes[0]:
        ax.set_xlabel(f"PC 1 ({100 * ev[0]:.0f} % of variance)")
    axes[0, 0].set_ylabel(f"PC 2 ({100 * ev[1]:.0f} % of variance)")
    return _save(fig, path)


def plot_testpulse_response(hours, tpa, response, centre, sigma, clean, stable, unstable, path, *,
                            k_sigma: float = 5.0, label: str = "") -> Path:
    """Test-pulse response against time, one colour per TPA, relative to each TPA's median response,
    with the running band (centre -+ k_sigma sigma), pulses left out (chi2, grey x), unstable pulses
    (red ring) and the unstable intervals (shaded).

    Parameters
    ----------
    hours : (n,) pulse times, h since the run start
    tpa, response, centre, sigma : (n,) V per pulse
    clean, stable : (n,) bool per pulse
    unstable : (k, 2) unstable intervals, h
    """
    h = np.asarray(hours, dtype=np.float64)
    y = np.asarray(response, dtype=np.float64)
    c = np.asarray(centre, dtype=np.float64)
    s = np.asarray(sigma, dtype=np.float64)
    clean, stable = np.asarray(clean, bool), np.asarray(stable, bool)
    t = np.round(np.asarray(tpa, dtype=np.float64), 4)
    fig, ax = _figure(size=(9.0, 5.0))
    ax = ax[0, 0]
    for lo, hi in np.asarray(unstable, dtype=np.float64).reshape(-1, 2):
        ax.axvspan(lo, hi, color="red", alpha=0.15, lw=0)
    for v in np.unique(t):
        sel = t == v
        ref = np.nanmedian(y[sel & clean]) if (sel & clean).any() else np.nanmedian(y[sel])
        if not (np.isfinite(ref) and ref != 0):
            continue
        o = np.argsort(h[sel])
        hs, cs, ss = h[sel][o], c[sel][o] / ref, s[sel][o] / ref
        line = ax.plot(hs, cs, lw=0.8)[0]
        ax.fill_between(hs, cs - k_sigma * ss, cs + k_sigma * ss, color=line.get_color(), alpha=0.2, lw=0)
        ok = sel & clean
        ax.plot(h[ok], y[ok] / ref, ".", ms=3, color=line.get_color(), label=f"TPA {v:g} V")
        ax.plot(h[sel & ~clean], y[sel & ~clean] / ref, "x", ms=4, color="0.5")
        bad = ok & ~stable
        ax.plot(h[bad], y[bad] / ref, "o", ms=7, mfc="none", color="red")
    ax.plot([], [], "x", color="0.5", label="left out (chi2)")
    ax.plot([], [], "o", mfc="none", color="red", label="outside band")
    ax.set_xlabel("time since run start (h)")
    ax.set_ylabel("response / median response of the TPA")
    ax.legend(fontsize="small", ncol=2)
    ax.set_title(_title(f"Test-pulse response (band: running line -+ {k_sigma:g} sigma; unstable shaded)", label))
    return _save(fig, path)


def plot_testpulse_calibration(tpas, curves, hours, path, *, tpe=None, line_position: float | None = None,
                               kev_per_tpa: float | None = None, label: str = "") -> Path:
    """Pulser-model calibration curves (response against TPA at a few times) and, with `tpe`, the
    spectrum of TPA-equivalent amplitudes with the line position.

    Parameters
    ----------
    tpas : (K,) V, the calibration TPAs
    curves : (m, K) V, the response of each TPA at m times
    hours : (m,) those times, h since the run start
    tpe : TPA-equivalent amplitudes of (stable) particle events, V
    line_position : V of the pulser; kev_per_tpa : keV/V (printed)
    """
    tp = np.concatenate([[0.0], np.asarray(tpas, dtype=np.float64)])
    cv = np.atleast_2d(np.asarray(curves, dtype=np.float64))
    fig, axes = _figure(1, 2 if tpe is not None else 1, size=(11.0 if tpe is not None else 6.5, 4.5))
    ax = axes[0, 0]
    for row, hr in zip(cv, np.atleast_1d(hours)):
        ax.plot(tp, np.concatenate([[0.0], row]), "o-", ms=4, label=f"t = {hr:.3g} h")
    ax.set_xlabel("test-pulse amplitude TPA (V)")
    ax.set_ylabel("response (V)")
    ax.legend(fontsize="small")
    ax.set_title(_title("Pulser model: response vs TPA", label))
    if tpe is not None:
        ax = axes[0, 1]
        x = np.asarray(tpe, dtype=np.float64)
        x = x[np.isfinite(x)]
        edges, wide = _spectrum_bins(x, 150)
        ax.hist(x, bins=edges, histtype="step", color="k")
        if wide:
            ax.set_xscale("log")
        ax.set_yscale("log")
        if line_position is not None and np.isfinite(line_position):
            text = f"line {line_position:.4g} V" + (f", {kev_per_tpa:.4g} keV/V" if kev_per_tpa else "")
            ax.axvline(line_position, color="red", lw=1, label=text)
            ax.legend(fontsize="small")
        ax.set_xlabel("TPA-equivalent amplitude (V)")
        ax.set_ylabel("stable particle events per bin")
        ax.set_title("TPA-equivalent spectrum")
    return _save(fig, path)


#: energy range (keV) of the linear panel of the light-yield plot: where dark-matter analyses look
LY_LINEAR_RANGE = (0.0, 50.0)
#: half-width of the drawn e/gamma band, in sigma (90 % of a Gaussian population inside)
LY_BAND_Z = 1.645


def light_yield_figure(energy, light_yield, accepted, *, label: str = "") -> Figure:
    """The light-yield figure (see `plot_light_yield`), not yet saved."""
    from cryopipe.calibrate.energy import electron_band

    e = np.asarray(energy, dtype=np.float64)
    ly = np.asarray(light_yield, dtype=np.float64)
    ok = np.asarray(accepted, dtype=bool)
    if not (e.shape == ly.shape == ok.shape):
        raise InputError(f"light yield plot: energy {e.shape}, light yield {ly.shape} and accepted {ok.shape} differ")
    finite = np.isfinite(e) & np.isfinite(ly)
    band = electron_band(e[finite & ok], ly[finite & ok])
    fig, axes = _figure(1, 2, size=(11.0, 4.5), sharey=True)
    for ax, log in zip(axes[0], (True, False)):
        shown = finite & (e > 0) if log else finite & (e >= LY_LINEAR_RANGE[0]) & (e <= LY_LINEAR_RANGE[1])
        ax.scatter(e[shown & ~ok], ly[shown & ~ok], s=4, c="0.7", label=f"rejected ({int((shown & ~ok).sum())})")
        ax.scatter(e[shown & ok], ly[shown & ok], s=6, c="C0", label=f"accepted ({int((shown & ok).sum())})")
        good = np.isfinite(band["median"])
        if good.any():
            lo = band["median"] - LY_BAND_Z * band["sigma"]
            hi = band["median"] + LY_BAND_Z * band["sigma"]
            ax.fill_between(band["centre"][good], lo[good], hi[good], color="C1", alpha=0.3, lw=0,
                            label="e/\u03b3 band (90 %)")
            ax.plot(band["centre"][good], band["median"][good], c="C1", lw=1.5)
        if log:
            ax.set_xscale("log")
            pos = e[finite & (e > 0)]
            if pos.size:
                ax.set_xlim(pos.min() / 1.2, pos.max() * 1.2)
            ax.set_title(_title("Light yield", label))
        else:
            ax.set_xlim(*LY_LINEAR_RANGE)
            ax.set_title(f"{LY_LINEAR_RANGE[0]:g}-{LY_LINEAR_RANGE[1]:g} keV")
        ax.set_xlabel("phonon energy (keV)")
        ax.legend(loc="upper right", fontsize="small")
    axes[0, 0].set_ylabel("light yield")
    if (finite & ok).any():
        lo, hi = np.percentile(ly[finite & ok], [1, 99])
        pad = 0.5 * (hi - lo) + 0.1
        axes[0, 0].set_ylim(min(lo - pad, -0.2), max(hi + pad, 1.5))
    return fig


def plot_light_yield(energy, light_yield, accepted, path, *, label: str = "") -> Path:
    """Light yield (light / phonon energy) against the phonon energy (keV), the standard CRESST band
    plot: events accepted by the cuts in colour over all particle events in grey, on a log energy axis
    over the whole range (left) and a linear one over 0-50 keV (right), with the e/gamma band (median
    and 90 % of the accepted events' main population per energy bin, `electron_band`)."""
    return _save(light_yield_figure(energy, light_yield, accepted, label=label), path)


def linearity_slope(pulse_height, of_amplitude) -> float:
    """Pulse height per OF amplitude of the lower half of the (positive) amplitudes: the median of
    their ratios, so that a few records whose pulse height is not the OF's pulse (pile-up, spikes:
    ratios of 10-200) do not pull it; NaN with fewer than 2 records."""
    ph, a = np.asarray(pulse_height, dtype=np.float64), np.asarray(of_amplitude, dtype=np.float64)
    pos = np.isfinite(ph) & np.isfinite(a) & (a > 0)
    if pos.sum() < 2:
        return np.nan
    low = pos & (a <= np.median(a[pos]))
    return float(np.median(ph[low] / a[low])) if low.sum() >= 2 else np.nan


def residual_range(residuals, *, quantile: float = 0.1, pad: float = 1.5) -> tuple[float, float, int]:
    """y-range of a residual panel: the `quantile` to 1 - `quantile` range of the finite residuals,
    widened by `pad` of it on each side, and how many residuals lie outside (NaN, NaN, 0 without any)."""
    r = np.asarray(residuals, dtype=np.float64)
    r = r[np.isfinite(r)]
    if r.size == 0:
        return np.nan, np.nan, 0
    q0, q1 = np.quantile(r, [quantile, 1.0 - quantile])
    width = max(q1 - q0, 1e-3)
    lo, hi = q0 - pad * width, q1 + pad * width
    return float(lo), float(hi), int(np.sum((r < lo) | (r > hi)))


def plot_energy_dependence(pulse_height, of_amplitude, of_chi2, path, *, n_samples: int | None = None,
                           label: str = "") -> Path:
    """Energy dependence of the pulse shape (real TES: non-linear, shapes change with energy):
    left, the OF amplitude against the pulse height with a straight line through the origin
    (`linearity_slope`: the median ratio over the lower half of the amplitudes; residuals below, on
    an axis that shows the bulk, `residual_range`, with the count of records outside); right, the OF chi2 against the
    OF amplitude (log-log), with N - 2 marked, the value noise alone gives (`n_samples` N).

    Inputs are per-record arrays (V, V, unitless) of the particle records of one channel.
    """
    ph, a, chi2 = (np.asarray(v, dtype=np.float64) for v in (pulse_height, of_amplitude, of_chi2))
    ok = np.isfinite(ph) & np.isfinite(a) & np.isfinite(chi2)
    ph, a, chi2 = ph[ok], a[ok], chi2[ok]
    fig, axes = _figure(2, 2, size=(11.0, 7.0))
    ax, res, cx = axes[0, 0], axes[1, 0], axes[0, 1]
    axes[1, 1].axis("off")
    if a.size:
        slope = linearity_slope(ph, a)
        ax.plot(a, ph, ".", ms=3, alpha=0.6)
        if np.isfinite(slope):
            grid = np.linspace(0.0, np.max(a), 50)
            ax.plot(grid, slope * grid, "C3-", lw=1,
                    label=f"pulse height = {slope:.4g} x OF amplitude (median ratio, lower half)")
            ax.legend(loc="upper left", fontsize=8)
            with np.errstate(divide="ignore", invalid="ignore"):
                r = ph / (slope * a) - 1.0
            res.plot(a, r, ".", ms=3, alpha=0.6)
            lo, hi, outside = residual_range(r)
            if np.isfinite(lo):
                res.set_ylim(lo, hi)
            if outside:
                res.text(0.99, 0.95, f"{outside} records outside the axis (pile-up, spikes ...)", ha="right",
                         va="top", transform=res.transAxes, fontsize=8)
        res.axhline(0.0, color="C3", lw=1)
        pos = (a > 0) & (chi2 > 0)
        cx.loglog(a[pos], chi2[pos], ".", ms=3, alpha=0.6)
    if n_samples:
        cx.axhline(n_samples - 2, color="C3", ls="--", lw=1, label="N - 2 (noise alone)")
        cx.legend(loc="upper left", fontsize=8)
    ax.set(xlabel="OF amplitude (V)", ylabel="pulse height (V)", title=_title("Linearity", label))
    res.set(xlabel="OF amplitude (V)", ylabel="pulse height / line - 1")
    cx.set(xlabel="OF amplitude (V)", ylabel="OF chi2", title=_title("Chi2 against amplitude", label))
    return _save(fig, path)
