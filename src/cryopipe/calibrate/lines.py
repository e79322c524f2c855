"""Energy calibration from a line of known energy in an amplitude spectrum (one channel at a time).

Finding a line (`find_line`): the amplitudes are histogrammed (Freedman-Diaconis bins, 20-1000) over
the search range, either ``expected * (1 -+ window)`` when a hint is given or everything above
`threshold` (the region below it, where noise triggers pile up, is ignored); the histogram is
smoothed by one bin (Gaussian) and the most prominent local maximum (scipy.signal.find_peaks) is the
candidate; with a hint, the significant maximum (`MIN_PEAK_SIGNIFICANCE`) nearest to it (the most
prominent one where none is significant), and where that fails the checks below the error names the
other peaks instead of taking a line the hint did not point at. Its FWHM gives a first width. Then
a Gaussian on a linear background,

    counts(x) = A exp(-(x - mu)^2 / (2 sigma^2)) + b0 + b1 (x - mu_start),

is fitted (scipy.optimize.curve_fit) to the counts in ``fit_bins`` bins over ``mu -+ fit_range *
sigma``, twice: first with Poisson errors sqrt(max(counts, 1)), then with errors sqrt(model) of the
first fit (which removes most of the bias of the first, data-weighted fit), re-centring the range
each time. Errors are those of curve_fit with absolute sigma. A line counts as found only when its
fitted number of events is at least `min_significance` times its error, mu -+ sigma lies inside
the search range (a falling background at the range edge is not a line) and the fit stays near the
histogram peak (mu within 2 rough sigmas plus a bin, sigma at most 3 rough sigmas plus a bin).

Conversion (`calibrate`, `to_energy`): E = kev_per_volt * A + offset_kev. With one line the
conversion is linear through zero (offset 0): kev_per_volt = line_energy / line_position. With
several lines it is a weighted least-squares fit of E against the line positions, through zero by
default or with an offset (``through_zero=False``). The baseline resolution in energy units is the
amplitude resolution (V, e.g. the optimum filter's) times kev_per_volt.
"""
from __future__ import annotations

import numpy as np
import scipy.ndimage
import scipy.optimize
import scipy.signal

from cryopipe.errors import CryopipeError, InputError

__all__ = ["find_line", "calibrate", "calibrate_lines", "to_energy", "line_model"]

SQRT_2PI = np.sqrt(2.0 * np.pi)
#: A histogram peak is a line candidate near a hint when its events above the surrounding level are at
#: least this many times their Poisson error (`_peak_significance`; the largest noise wiggle over a
#: flat spectrum's whole search range reaches it in 1-5 % of spectra).
MIN_PEAK_SIGNIFICANCE = 5.0


def line_model(x, amplitude, mu, sigma, b0, b1, *, x_ref=0.0):
    """Gaussian line on a linear background, counts per bin at bin centres x (V)."""
    return amplitude * np.exp(-0.5 * ((x - mu) / sigma) ** 2) + b0 + b1 * (x - x_ref)


def _finite(amplitudes, threshold, min_events, what) -> np.ndarray:
    a = np.asarray(amplitudes, dtype=np.float64).ravel()
    a = a[np.isfinite(a)]
    if threshold is not None:
        a = a[a > threshold]
    if a.size < min_events:
        above = "" if threshold is None else f" above threshold {threshold:g} V"
        raise CryopipeError(f"{what}: {a.size} finite amplitudes{above}, need at least {min_events} to find a line")
    return a


def _peak_significance(smooth: np.ndarray, peaks: np.ndarray, prominences: np.ndarray) -> np.ndarray:
    """Rough significance of histogram peaks: the events above the surrounding level (prominence
    times FWHM in bins, times 1.064 for a Gaussian) over the square root of all events under the FWHM."""
    widths = np.maximum(scipy.signal.peak_widths(smooth, peaks, rel_height=0.5)[0], 1.0)
    n_peak = 1.064 * prominences * widths
    return n_peak / np.sqrt(np.maximum(smooth[peaks] * widths, 1.0))


def _candidates(a: np.ndarray, lo: float, hi: float, bins, what: str,
                near: float | None = None) -> list[tuple[float, float, float]]:
    """Position, rough sigma and bin width (V) of histogram peaks in [lo, hi) to try as the line, in
    order: the most prominent peak, or with `near` (V) the significant peaks (`MIN_PEAK_SIGNIFICANCE`)
    nearest to it first and the most prominent one last. Only the first is fitted (`find_line`)."""
    sel = a[(a >= lo) & (a < hi)]
    if sel.size < 10:
        raise CryopipeError(f"{what}: only {sel.size} amplitudes in the search range [{lo:g}, {hi:g}) V, no line found")
    if bins is None:
        edges = np.histogram_bin_edges(sel, bins="fd", range=(lo, hi))
        n_bins = int(np.clip(edges.size - 1, 20, 1000))
    else:
        n_bins = int(bins)
    counts, edges = np.histogram(sel, bins=n_bins, range=(lo, hi))
    smooth = scipy.ndimage.gaussian_filter1d(counts.astype(np.float64), 1.0, mode="nearest")
    peaks, props = scipy.signal.find_peaks(smooth, prominence=0)
    if peaks.size == 0:
        raise CryopipeError(f"{what}: no peak in the amplitude histogram over [{lo:g}, {hi:g}) V, no line found")
    order = [peaks[np.argmax(props["prominences"])]]
    if near is not None:
        centres = 0.5 * (edges[1:] + edges[:-1])
        significant = peaks[_peak_significance(smooth, peaks, props["prominences"]) >= MIN_PEAK_SIGNIFICANCE]
        nearest = list(significant[np.argsort(np.abs(centres[significant] - near), kind="stable")])
        order = nearest + [p for p in order if p not in nearest]
    bin_width = edges[1] - edges[0]
    out = []
    for best in order:
        width = scipy.signal.peak_widths(smooth, [best], rel_height=0.5)[0][0]
        width_bins = np.sqrt(max(width ** 2 - (2.355 * 1.0) ** 2, 1.0))  # remove the 1-bin smoothing
        out.append((0.5 * (edges[best] + edges[best + 1]), width_bins * bin_width / 2.355, bin_width))
    return out


def _candidate_log(a: np.ndarray, what: str, per_decade: int = 150) -> tuple[float, float, float]:
    """Most significant histogram peak over the whole spectrum, on log-spaced bins (constant relative
    resolution, so a narrow line stands out over a wide dynamic range); significance = prominence /
    sqrt(counts). Returns position, rough sigma and the local bin width (V)."""
    pos = a[a > 0]
    if pos.size < 10:
        raise CryopipeError(f"{what}: only {pos.size} positive amplitudes, no line found")
    lo, hi = np.log10(pos.min()), np.log10(pos.max()) + 1e-9
    n_bins = int(np.clip((hi - lo) * per_decade, 20, 2000))
    counts, edges = np.histogram(np.log10(pos), bins=n_bins, range=(lo, hi))
    smooth = scipy.ndimage.gaussian_filter1d(counts.astype(np.float64), 1.0, mode="nearest")
    peaks, props = scipy.signal.find_peaks(smooth, prominence=0)
    if peaks.size == 0:
        raise CryopipeError(f"{what}: no peak in the amplitude histogram, no line found")
    significance = props["prominences"] / np.sqrt(np.maximum(smooth[peaks], 1.0))
    best = peaks[np.argmax(significance)]
    width = scipy.signal.peak_widths(smooth, [best], rel_height=0.5)[0][0]
    width_bins = np.sqrt(max(width ** 2 - (2.355 * 1.0) ** 2, 1.0))
    log_bin = edges[1] - edges[0]
    mu = 10 ** (0.5 * (edges[best] + edges[best + 1]))
    rel = np.log(10.0) * log_bin
    return mu, width_bins * rel * mu / 2.355, rel * mu


def _fit_once(a, mu, sigma, fit_range, fit_bins, weights_model=None):
    lo, hi = mu - fit_range * sigma, mu + fit_range * sigma
    counts, edges = np.histogram(a, bins=fit_bins, range=(lo, hi))
    x = 0.5 * (edges[1:] + edges[:-1])
    y = counts.astype(np.float64)
    err = np.sqrt(np.maximum(y if weights_model is None else weights_model(x), 1.0))
    back = 0.5 * (y[:3].mean() + y[-3:].mean())
    p0 = [max(y.max() - back, 1.0), mu, sigma, back, 0.0]

    def f(x, amp, m, s, b0, b1):
        return line_model(x, amp, m, s, b0, b1, x_ref=mu)

    popt, pcov = scipy.optimize.curve_fit(f, x, y, p0=p0, sigma=err, absolute_sigma=True, maxfev=5000)
    popt[2] = abs(popt[2])
    chi2 = float(np.sum(((y - f(x, *popt)) / err) ** 2))
    return popt, pcov, edges, counts, chi2, (lambda xx, p=popt: f(xx, *p))


def find_line(amplitudes, *, expected: float | None = None, window: float = 0.25, threshold: float | None = None,
              bins: int | None = None, fit_range: float = 3.0, fit_bins: int = 30, min_events: int = 50,
              min_significance: float = 5.0, max_relative_width: float = 0.3, what: str = "amplitudes") -> dict:
    """Find and fit a Gaussian line in an amplitude spectrum.

    Parameters
    ----------
    amplitudes : (n,) amplitudes, V (non-finite values are dropped)
    expected : rough line position, V; the search is then limited to expected * (1 -+ window), and the
        line is the significant peak there nearest to it (a weaker line beside a stronger one, e.g.
        Mn K-beta beside K-alpha, 10 % apart, can be chosen)
    window : relative half-width of the search range around `expected`
    threshold : V; amplitudes at or below it are ignored (trigger threshold region)
    bins : histogram bins for the search (default: with `expected`, Freedman-Diaconis, 20-1000;
        without, log-spaced bins over the whole spectrum and the most significant peak)
    fit_range : the fit covers mu -+ fit_range * sigma
    fit_bins : bins in the fit range
    min_events : fewer usable amplitudes raise CryopipeError
    min_significance : minimum fitted line events / their error
    max_relative_width : a line is narrower than this fraction of its position (sigma / mu); a broad
        hump of a continuous spectrum is not a line
    what : name of the run/channel for error messages

    Returns
    -------
    dict: position, position_err, sigma, sigma_err (V), n_line, n_line_err (events in the line),
    background (b0 counts per bin at position_start, b1 counts per bin per V), position_start (V),
    chi2, ndf, fit_edges (V), fit_counts (the fitted histogram), search_range (V, V).
    """
    a = _finite(amplitudes, threshold, min_events, what)
    if expected is not None:
        if not (np.isfinite(expected) and expected > 0 and 0 < window < 1):
            raise InputError(f"{what}: expected line position must be > 0 V and 0 < window < 1, "
                             f"got {expected!r}, {window!r}")
        lo, hi = expected * (1 - window), expected * (1 + window)
        candidates = _candidates(a, lo, hi, bins, what, near=expected)
    else:
        lo, hi = float(a.min()), float(np.nextafter(a.max(), np.inf))
        candidates = _candidates(a, lo, hi, bins, what) if bins is not None else [_candidate_log(a, what)]
    mu0, sigma0, bin0 = candidates[0]
    try:
        return _fit_line(a, mu0, sigma0, bin0, lo, hi, fit_range=fit_range, fit_bins=fit_bins,
                         min_significance=min_significance, max_relative_width=max_relative_width, what=what)
    except CryopipeError as exc:
        others = ", ".join(f"{c[0]:.4g}" for c in candidates[1:])
        if not others:
            raise
        raise CryopipeError(f"{exc}; the hint's nearest peak is no line, other peaks in the range at {others} V: "
                            f"give the expected position of one of them, or lower min_significance") from None


def _fit_line(a, mu0, sigma0, bin0, lo, hi, *, fit_range, fit_bins, min_significance, max_relative_width,
              what) -> dict:
    """Fit the line candidate at mu0 (rough sigma0, histogram bin bin0; V) inside [lo, hi) and check
    it (`find_line`); CryopipeError where it is no line."""
    mu, sigma, mu_start = mu0, sigma0, mu0
    try:
        popt, pcov, *_ = _fit_once(a, mu, sigma, fit_range, fit_bins)
        popt, pcov, edges, counts, chi2, model = _fit_once(a, popt[1], popt[2], fit_range, fit_bins)
        popt, pcov, edges, counts, chi2, model = _fit_once(a, popt[1], popt[2], fit_range, fit_bins, model)
        mu_start = popt[1]
    except (RuntimeError, ValueError) as exc:
        raise CryopipeError(f"{what}: no line found: the Gaussian fit near {mu:g} V failed ({exc})") from None
    amp, mu, sigma = popt[:3]
    perr = np.sqrt(np.diag(pcov))
    bin_width = edges[1] - edges[0]
    n_line = amp * sigma * SQRT_2PI / bin_width
    grad = np.array([sigma, 0.0, amp, 0.0, 0.0]) * SQRT_2PI / bin_width
    n_line_err = float(np.sqrt(grad @ pcov @ grad))
    near = abs(mu - mu0) <= 2 * sigma0 + bin0 and sigma <= 3 * sigma0 + bin0
    if not (np.all(np.isfinite(perr)) and amp > 0 and n_line > min_significance * n_line_err
            and lo <= mu - sigma and mu + sigma <= hi and near and sigma <= max_relative_width * abs(mu)):
        raise CryopipeError(f"{what}: no line found: best candidate at {mu:g} +- {sigma:g} V has {n_line:.1f} +- "
                            f"{n_line_err:.1f} events (need {min_significance:g} sigma, mu -+ sigma inside "
                            f"[{lo:g}, {hi:g}) V)")
    return {"position": float(mu), "position_err": float(perr[1]), "sigma": float(sigma), "sigma_err": float(perr[2]),
            "n_line": float(n_line), "n_line_err": n_line_err, "background": (float(popt[3]), float(popt[4])),
            "position_start": float(mu_start), "chi2": chi2, "ndf": int(fit_bins - 5),
            "fit_edges": edges, "fit_counts": counts, "search_range": (float(lo), float(hi))}


def calibrate_lines(positions, position_errs, energies, *, through_zero: bool = True) -> dict:
    """Linear conversion E = slope * A + offset from line positions A (V) and their energies (keV).

    Weighted least squares with weights 1 / (slope * position_err)^2 (the energies are exact).

    Returns dict kev_per_volt, kev_per_volt_err, offset_kev, offset_kev_err.
    """
    a = np.asarray(positions, dtype=np.float64)
    da = np.asarray(position_errs, dtype=np.float64)
    e = np.asarray(energies, dtype=np.float64)
    if not (a.shape == da.shape == e.shape and a.ndim == 1 and a.size >= 1):
        raise InputError(f"calibration lines: positions, errors and energies must be equal-length 1-d, "
                         f"got {a.shape}, {da.shape}, {e.shape}")
    if np.any(a <= 0) or np.any(e <= 0) or np.any(da <= 0):
        raise InputError("calibration lines: positions, their errors and energies must be positive")
    if not through_zero and a.size < 2:
        raise InputError("calibration with an offset needs at least 2 lines")
    if through_zero:
        k = e / a
        dk = e * da / a ** 2
        w = 1.0 / dk ** 2
        slope = float(np.sum(w * k) / np.sum(w))
        return {"kev_per_volt": slope, "kev_per_volt_err": float(1.0 / np.sqrt(np.sum(w))),
                "offset_kev": 0.0, "offset_kev_err": 0.0}
    slope0 = float(np.sum(e * a) / np.sum(a * a))
    coef, cov = np.polyfit(a, e, 1, w=1.0 / (slope0 * da), cov="unscaled")
    err = np.sqrt(np.diag(cov))
    return {"kev_per_volt": float(coef[0]), "kev_per_volt_err": float(err[0]),
            "offset_kev": float(coef[1]), "offset_kev_err": float(err[1])}


def calibrate(amplitudes, line_energy, *, expected=None, through_zero: bool = True, resolution: float | None = None,
              what: str = "amplitudes", **find_kwargs) -> dict:
    """Amplitude -> energy calibration of one channel from one or more lines of known energy.

    Parameters
    ----------
    amplitudes : (n,) amplitudes, V
    line_energy : keV, one value or a sequence (one per line)
    expected : rough line position(s), V (None, or one per line; required with several lines)
    through_zero : conversion without offset (the default; the only choice with one line)
    resolution : baseline amplitude resolution, V (e.g. `expected_resolution` of the optimum filter)
    what : name of the run/channel for error messages
    **find_kwargs : passed to `find_line` (window, threshold, bins, fit_range, ...)

    Returns
    -------
    dict: kev_per_volt, kev_per_volt_err, offset_kev, offset_kev_err, line_energy (keV, array),
    line_position, line_position_err, line_sigma, line_sigma_err (V, arrays, one per line),
    line_sigma_kev, resolution (V), resolution_kev, resolution_kev_err (NaN without `resolution`),
    lines (the `find_line` dicts).
    """
    energies = np.atleast_1d(np.asarray(line_energy, dtype=np.float64))
    hints = [None] * energies.size if expected is None else list(np.atleast_1d(np.asarray(expected, dtype=float)))
    if energies.ndim != 1 or len(hints) != energies.size:
        raise InputError(f"{what}: need one expected position per line energy, got {len(hints)} for {energies.size}")
    if energies.size > 1 and expected is None:
        raise InputError(f"{what}: with several line energies give the expected position of each line")
    lines = [find_line(amplitudes, expected=h, what=f"{what} (line at {e:g} keV)", **find_kwargs)
             for e, h in zip(energies, hints)]
    pos = np.array([ln["position"] for ln in lines])
    pos_err = np.array([ln["position_err"] for ln in lines])
    conv = calibrate_lines(pos, pos_err, energies, through_zero=through_zero)
    k, dk = conv["kev_per_volt"], conv["kev_per_volt_err"]
    res = np.nan if resolution is None else float(resolution)
    return {**conv, "line_energy": energies, "line_position": pos, "line_position_err": pos_err,
            "line_sigma": np.array([ln["sigma"] for ln in lines]),
            "line_sigma_err": np.array([ln["sigma_err"] for ln in lines]),
            "line_sigma_kev": np.array([ln["sigma"] for ln in lines]) * k,
            "resolution": res, "resolution_kev": res * k, "resolution_kev_err": res * dk, "lines": lines}


def to_energy(amplitudes, calibration: dict) -> np.ndarray:
    """Energies (keV) of amplitudes (V): kev_per_volt * A + offset_kev of a `calibrate` result."""
    try:
        k, off = float(calibration["kev_per_volt"]), float(calibration.get("offset_kev", 0.0))
    except (KeyError, TypeError) as exc:
        raise InputError(f"calibration: needs 'kev_per_volt' (and optionally 'offset_kev'): {exc}") from None
    return k * np.asarray(amplitudes, dtype=np.float64) + off
