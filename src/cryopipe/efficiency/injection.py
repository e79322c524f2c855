"""Trigger and cut efficiency from standard events injected onto noise records (Cait's validation step).

The SEV (max 1, onset at N/4), scaled to known amplitudes (V), is added to noise-only records (real
random-trigger records, or noise simulated from the noise power spectrum with
`noise_records_from_nps`). Each record then goes through

1. the trigger condition: optimum-filter amplitude maximised over the time-shift window (Cait's
   [N/8, 7N/8) of the filtered record by default) >= threshold (V), as the stream trigger decides;
2. the features of the triggered records, from the feature families of `cryopipe.features` (the same
   code and units as the features stage; by default the main and optimum-filter families, e.g.
   ``of_amplitude`` (V), ``of_shift`` (s)), and the cut, a callable ``cut(records, features) -> bool (n,)``.

Per injected amplitude: trigger efficiency n_triggered / n_injected, cut efficiency n_survived /
n_triggered, total efficiency n_survived / n_injected, each with binomial errors sqrt(p (1 - p) / n).
`fit_threshold` fits eff(x) = plateau / 2 (1 + erf((x - x50) / (sqrt(2) width))) by binomial maximum
likelihood (curve_fit with weights n / (p (1 - p)) of the model, iterated to convergence, which solves
the binomial score equations; errors from the inverse Fisher information).

What the shift search does to the trigger curve: near the threshold a pulse can also trigger on a
noise excursion next to its true lag, so the 50 % point lies a little below the threshold. Measured
in tests/test_efficiency.py (N = 1024, Cait's window, threshold 5 sigma_OF, white and coloured noise):
x50 = 4.87-4.88 sigma_OF (+- 0.02), width 1.03 sigma_OF (+- 0.02); 4.83-4.87 sigma_OF at N = 2048.
Far below the threshold the curve flattens at the noise trigger rate (0 of 300 at 1.5 sigma_OF there).
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.optimize
import scipy.special
import xarray as xr

from cryopipe.errors import CryopipeError, InputError
from cryopipe.features.context import ChannelContext
from cryopipe.features.registry import BY_NAME, compute_block
from cryopipe.signal.optimum_filter import (
    OptimumFilter,
    cait_shift_window,
    expected_resolution,
    of_amplitudes,
)
from cryopipe.signal.spectra import noise_from_psd

__all__ = ["inject", "noise_records_from_nps", "default_features", "trigger_and_cut", "efficiency_curve",
           "fit_threshold", "erf_efficiency", "injected_amplitudes", "injection_template", "channel_curve"]


def erf_efficiency(x, x50, width, *, plateau=1.0):
    """plateau / 2 * (1 + erf((x - x50) / (sqrt(2) width))): Gaussian-smeared step, 50 % of plateau at x50."""
    return 0.5 * plateau * (1.0 + scipy.special.erf((np.asarray(x, dtype=np.float64) - x50) / (np.sqrt(2.0) * width)))


def noise_records_from_nps(nps, n_records: int, sample_frequency: float, rng: np.random.Generator) -> np.ndarray:
    """(n_records, N) float32 Gaussian noise records (V) with the one-sided NPS (V^2/Hz, N//2+1 bins)."""
    nps = np.asarray(nps, dtype=np.float64)
    if nps.ndim != 1 or nps.size < 3:
        raise InputError(f"noise power spectrum must be 1-d with >= 3 bins, got shape {nps.shape}")
    return noise_from_psd(nps, 2 * (nps.size - 1), sample_frequency, rng, size=int(n_records))


def inject(noise_records, sev, amplitudes, *, rng: np.random.Generator | None = None, shifts=None) -> np.ndarray:
    """Records with the SEV scaled to `amplitudes` added to noise records.

    Parameters
    ----------
    noise_records : (m, N) noise-only records, V
    sev : (N,) standard event, max 1, onset at N/4
    amplitudes : (n,) pulse heights, V
    rng : picks the noise record of each injection at random (without replacement while n <= m,
        else with); None uses the records in order, cycling
    shifts : optional (n,) integer onset shifts, samples (positive = later); the template is
        extended with its first/last sample

    Returns
    -------
    (n, N) float32 records, V
    """
    noise = np.asarray(noise_records)
    sev = np.asarray(sev, dtype=np.float64)
    amps = np.atleast_1d(np.asarray(amplitudes, dtype=np.float64))
    if noise.ndim != 2 or sev.ndim != 1 or noise.shape[1] != sev.size or noise.shape[0] == 0:
        raise InputError(f"inject: noise records {noise.shape} and standard event {sev.shape} must be (m, N) and (N,)")
    if amps.ndim != 1:
        raise InputError(f"inject: amplitudes must be 1-d, got shape {amps.shape}")
    m, n_s = noise.shape
    if rng is None:
        pick = np.arange(amps.size) % m
    else:
        pick = rng.choice(m, size=amps.size, replace=amps.size > m)
    out = noise[pick].astype(np.float32, copy=True)
    if shifts is None:
        out += (amps[:, None] * sev[None, :]).astype(np.float32)
    else:
        shifts = np.asarray(shifts, dtype=np.int64)
        if shifts.shape != amps.shape:
            raise InputError(f"inject: shifts {shifts.shape} must match amplitudes {amps.shape}")
        idx = np.clip(np.arange(n_s)[None, :] - shifts[:, None], 0, n_s - 1)
        out += (amps[:, None] * sev[idx]).astype(np.float32)
    return out


def default_features(of: OptimumFilter, *, sample_frequency: float | None = None) -> Callable:
    """``features(records) -> dict``: the main and optimum-filter feature families with filter `of`."""
    fs = of.sample_frequency if sample_frequency is None else float(sample_frequency)
    ctx = ChannelContext(fs, of.record_length, of=of)
    families = [BY_NAME["main"], BY_NAME["optimum_filter"]]
    return lambda records: compute_block(records, ctx, families)


def trigger_and_cut(of: OptimumFilter, records, threshold: float, *, cut: Callable | None = None,
                    sample_frequency: float | None = None, shift_window=None,
                    features: Callable | None = None) -> dict:
    """Trigger decision and cut decision of each record.

    The cut sees ``features(triggered_records)`` (default `default_features`: the main and
    optimum-filter families of `cryopipe.features`).

    Returns dict of (n,) arrays: ``triggered`` (bool), ``survived`` (bool: triggered and passing the
    cut; equal to triggered without a cut), and the trigger's OF results ``of_amplitude``,
    ``of_amplitude_shifted`` (V), ``of_shift`` (s), ``of_chi2``.
    """
    window = cait_shift_window(of.record_length, onset=of.onset) if shift_window is None else shift_window
    r = of_amplitudes(of, records, shift_window=window)
    triggered = r["amplitude_shifted"] >= threshold
    out = {"triggered": triggered, "of_amplitude": r["amplitude"], "of_amplitude_shifted": r["amplitude_shifted"],
           "of_shift": r["shift"] / of.sample_frequency, "of_chi2": r["chi2"]}
    survived = triggered.copy()
    idx = np.flatnonzero(triggered)
    if cut is not None and idx.size:
        sub = np.asarray(records)[idx]
        features = default_features(of, sample_frequency=sample_frequency) if features is None else features
        passed = np.asarray(cut(sub, features(sub)), dtype=bool)
        if passed.shape != idx.shape:
            raise CryopipeError(f"cut returned shape {passed.shape}, expected ({idx.size},) for the triggered records")
        survived[idx] = passed
    out["survived"] = survived
    return out


def _binomial(k, n):
    with np.errstate(divide="ignore", invalid="ignore"):
        p = np.where(n > 0, k / np.maximum(n, 1), np.nan)
        return p, np.sqrt(p * (1 - p) / n)


def efficiency_curve(of: OptimumFilter, sev, noise_records, amplitudes, threshold: float, *,
                     cut: Callable | None = None, n_per_amplitude: int = 100, sample_frequency: float | None = None,
                     rng: np.random.Generator | None = None, shift_window=None, kev_per_volt: float | None = None,
                     fit: bool = True, batch: int = 4096, features: Callable | None = None) -> xr.Dataset:
    """Survival probability of injected SEV pulses against amplitude.

    Parameters
    ----------
    of : optimum filter of the channel (its template should be `sev`)
    sev : (N,) standard event, max 1, onset at N/4
    noise_records : (m, N) noise-only records, V (random triggers, or `noise_records_from_nps`)
    amplitudes : (k,) injected pulse heights, V (each is one point of the curve)
    threshold : trigger threshold on the shift-searched OF amplitude, V
    cut : ``cut(records, features) -> bool (n,)`` on the triggered records
    features : ``features(records) -> dict`` of the triggered records for the cut (default
        `default_features`: main and optimum-filter families)
    n_per_amplitude : injections per amplitude
    sample_frequency : Hz (default the filter's)
    rng : numpy Generator for the choice of noise records (default seeded 0)
    shift_window : OF lag window, samples (default Cait's)
    kev_per_volt : adds an ``energy`` coordinate (keV) and threshold fits in keV
    fit : fit the trigger, cut and total curves with `fit_threshold`
    batch : records injected and processed per block

    Returns
    -------
    Dataset over ``amplitude`` (V): n_injected, n_triggered, n_survived, trigger_efficiency, cut_efficiency,
    efficiency (total) and their ``*_err``; attrs threshold (V), resolution (V, expected OF resolution) and, with
    `fit`, ``<curve>_x50``, ``<curve>_x50_err``, ``<curve>_width``, ``<curve>_width_err``, ``<curve>_plateau``
    (V) for curve in trigger, cut, total (plateau fixed at 1 for the trigger, fitted otherwise).
    """
    amps = np.asarray(amplitudes, dtype=np.float64)
    if amps.ndim != 1 or amps.size < 1 or not np.all(np.isfinite(amps)):
        raise InputError(f"efficiency: amplitudes must be a finite 1-d array, got shape {amps.shape}")
    if int(n_per_amplitude) < 1:
        raise InputError(f"efficiency: n_per_amplitude must be >= 1, got {n_per_amplitude!r}")
    rng = np.random.default_rng(0) if rng is None else rng
    every = np.repeat(amps, int(n_per_amplitude))
    point = np.repeat(np.arange(amps.size), int(n_per_amplitude))
    triggered = np.zeros(every.size, dtype=bool)
    survived = np.zeros(every.size, dtype=bool)
    for a in range(0, every.size, int(batch)):
        sl = slice(a, a + int(batch))
        records = inject(noise_records, sev, every[sl], rng=rng)
        r = trigger_and_cut(of, records, threshold, cut=cut, sample_frequency=sample_frequency,
                            shift_window=shift_window, features=features)
        triggered[sl], survived[sl] = r["triggered"], r["survived"]
    n_inj = np.bincount(point, minlength=amps.size)
    n_trig = np.bincount(point, weights=triggered, minlength=amps.size).astype(np.int64)
    n_surv = np.bincount(point, weights=survived, minlength=amps.size).astype(np.int64)
    p_trig, e_trig = _binomial(n_trig, n_inj)
    p_cut, e_cut = _binomial(n_surv, n_trig)
    p_tot, e_tot = _binomial(n_surv, n_inj)
    coords = {"amplitude": ("amplitude", amps, {"units": "V"})}
    if kev_per_volt is not None:
        coords["energy"] = ("amplitude", amps * float(kev_per_volt), {"units": "keV"})
    ds = xr.Dataset(
        {"n_injected": ("amplitude", n_inj), "n_triggered": ("amplitude", n_trig), "n_survived": ("amplitude", n_surv),
         "trigger_efficiency": ("amplitude", p_trig), "trigger_efficiency_err": ("amplitude", e_trig),
         "cut_efficiency": ("amplitude", p_cut), "cut_efficiency_err": ("amplitude", e_cut),
         "efficiency": ("amplitude", p_tot), "efficiency_err": ("amplitude", e_tot)},
        coords=coords,
        attrs={"threshold": float(threshold), "resolution": expected_resolution(of), "units": "V",
               "n_per_amplitude": int(n_per_amplitude)})
    if fit:
        for name, k, n, plateau in (("trigger", n_trig, n_inj, False), ("cut", n_surv, n_trig, True),
                                    ("total", n_surv, n_inj, True)):
            try:
                res = fit_threshold(amps, k, n, fit_plateau=plateau)
            except CryopipeError:
                res = dict.fromkeys(("x50", "x50_err", "width", "width_err", "plateau", "plateau_err"), np.nan)
            ds.attrs.update({f"{name}_{key}": float(v) for key, v in res.items()})
    return ds


def _start_values(x, p, plateau):
    """x50 from the first crossing of plateau/2 and width from the 16-84 % crossings (interpolated)."""
    order = np.argsort(x)
    xs, ps = x[order], np.maximum.accumulate(p[order] / plateau)
    x50 = float(np.interp(0.5, ps + np.arange(ps.size) * 1e-12, xs))
    x16 = float(np.interp(0.16, ps + np.arange(ps.size) * 1e-12, xs))
    x84 = float(np.interp(0.84, ps + np.arange(ps.size) * 1e-12, xs))
    width = max(0.5 * (x84 - x16), 0.5 * float(np.min(np.diff(xs))) if xs.size > 1 else 1.0)
    return x50, width


def fit_threshold(x, n_passed, n_total, *, fit_plateau: bool = False, iterations: int = 20) -> dict:
    """Binomial maximum-likelihood fit of `erf_efficiency` to pass counts.

    Parameters
    ----------
    x : (k,) amplitudes (V) or energies (keV) of the points
    n_passed, n_total : (k,) counts (points with n_total = 0 are skipped)
    fit_plateau : also fit the plateau, bounded to [0, 1] (else fixed at 1)
    iterations : reweighting steps (stops early once x50 changes by < 1e-6 width)

    Returns
    -------
    dict x50, x50_err, width, width_err, plateau, plateau_err (0 when fixed), in the units of x.
    """
    x = np.asarray(x, dtype=np.float64)
    k = np.asarray(n_passed, dtype=np.float64)
    n = np.asarray(n_total, dtype=np.float64)
    if not (x.shape == k.shape == n.shape and x.ndim == 1):
        raise InputError(f"fit_threshold: x, n_passed, n_total must be equal-length 1-d, got {x.shape}, {k.shape}, {n.shape}")
    use = n > 0
    x, k, n = x[use], k[use], n[use]
    if x.size < (3 if not fit_plateau else 4) or np.any(k > n) or np.any(k < 0):
        raise CryopipeError(f"fit_threshold: need >= {3 + fit_plateau} points with 0 <= passed <= total, got {x.size}")
    p = k / n
    if p.max() <= 0 or p.min() >= p.max():
        raise CryopipeError("fit_threshold: the efficiency does not rise over the points, no threshold to fit")
    plateau0 = max(float(np.mean(p[p >= 0.9 * p.max()])), 1e-3) if fit_plateau else 1.0
    x50, width = _start_values(x, p, plateau0)

    def model(xx, *q):
        return erf_efficiency(xx, q[0], abs(q[1]), plateau=q[2] if fit_plateau else 1.0)

    q = [x50, width] + ([min(plateau0, 1.0)] if fit_plateau else [])
    bounds = ([-np.inf, 1e-12 * max(np.ptp(x), 1e-300)] + [0.0] * fit_plateau, [np.inf, np.inf] + [1.0] * fit_plateau)
    err = np.sqrt(((k + 0.5) / (n + 1)) * ((n - k + 0.5) / (n + 1)) / n)   # first pass: data-based, never 0
    pcov = None
    for _ in range(max(int(iterations), 1)):
        try:
            q_new, pcov = scipy.optimize.curve_fit(model, x, p, p0=q, sigma=err, absolute_sigma=True,
                                                 bounds=bounds, max_nfev=10000)
        except (RuntimeError, ValueError) as exc:
            raise CryopipeError(f"fit_threshold: the error-function fit failed ({exc})") from None
        q_new[1] = abs(q_new[1])
        done = abs(q_new[0] - q[0]) < 1e-6 * q_new[1]
        q = list(q_new)
        m = np.clip(model(x, *q), 0.5 / n, 1 - 0.5 / n)
        err = np.sqrt(m * (1 - m) / n)
        if done:
            break
    perr = np.sqrt(np.diag(pcov))
    return {"x50": float(q[0]), "x50_err": float(perr[0]), "width": float(q[1]), "width_err": float(perr[1]),
            "plateau": float(q[2]) if fit_plateau else 1.0, "plateau_err": float(perr[2]) if fit_plateau else 0.0}


def injected_amplitudes(resolution: float, records: xr.Dataset, cfg: dict, *, features: xr.Dataset | None = None
                        ) -> np.ndarray:
    """Pulse heights (V) to inject: `n_amplitudes` evenly from 0.5 to `max_resolutions` x the
    `resolution` (V; the turn-on), then `n_high_amplitudes` (default 8) spaced evenly in log up to
    1.2 x the run's largest pulse in the channel, so that losses of large pulses show.

    The largest pulse: the largest ``pulse_height`` (V) of the channel's particle and saturated
    records in its `features` store (one channel); without one, the largest filter amplitude
    ``trigger_amplitude`` of those records (known only where the channel fired the trigger).
    """
    low = np.linspace(0.5, float(cfg["max_resolutions"]), int(cfg["n_amplitudes"])) * resolution
    source = features if features is not None else records
    name = "pulse_height" if features is not None else "trigger_amplitude"
    kind = np.array([str(k) for k in source["record_kind"].values])
    amp = np.asarray(source[name].values, dtype=np.float64)[0][np.isin(kind, ("particle", "saturated"))]
    amp = amp[np.isfinite(amp)]
    top = 1.2 * float(amp.max()) if amp.size else 0.0
    n_high = int(cfg.get("n_high_amplitudes", 8))
    if n_high < 1 or not top > 1.5 * low[-1]:
        return low
    return np.concatenate([low, np.geomspace(low[-1], top, n_high + 1)[1:]])


def injection_template(sev: np.ndarray, pretrigger: int) -> np.ndarray:
    """The SEV (max 1) with its pre-trigger part (before sample `pretrigger`) set to 0: a measured
    SEV's pre-trigger noise and drift, scaled to a large pulse, would fail the pre-trigger cuts
    that a real pulse of that height passes (issue 21: every injected pulse above ~0.5 V was cut)."""
    out = np.asarray(sev, dtype=np.float64).copy()
    out[: max(int(pretrigger), 0)] = 0.0
    return out


CURVE_SCALARS = ("threshold", "resolution", "trigger_x50", "trigger_x50_err", "trigger_width", "trigger_width_err",
                 "trigger_plateau", "cut_x50", "cut_x50_err", "cut_width", "cut_width_err", "cut_plateau",
                 "total_x50", "total_x50_err", "total_width", "total_width_err", "total_plateau")


def channel_curve(efficiency: xr.Dataset, *, channel: str) -> xr.Dataset:
    """One channel's curve of an "efficiency" store in the layout of `efficiency_curve`: indexed by
    ``amplitude`` (V; ``energy``, keV, a coordinate where present), the fit results (`CURVE_SCALARS`:
    V, or fractions for the plateaus) as attrs."""
    eff = efficiency.sel(channel=channel)
    curve = eff.swap_dims(point="amplitude").set_coords([c for c in ("amplitude", "energy") if c in eff])
    for k in CURVE_SCALARS:
        if k in curve:
            curve.attrs[k] = float(curve[k])
    return curve
