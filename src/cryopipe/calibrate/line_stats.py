"""Small statistics of measured spectra and noise streams: the width of a spectral line and the
expected rate of noise triggers (used by the checks of real data, bench/nist_ljh_checks.py).
"""
from __future__ import annotations

import numpy as np

from cryopipe.errors import CryopipeError

FWHM_PER_SIGMA = 2.0 * np.sqrt(2.0 * np.log(2.0))   # 2.3548


def line_fwhm(values, *, window: float = 0.02, clip: float = 3.0, iterations: int = 20) -> tuple[float, float, int]:
    """Centre, FWHM and count of the strongest line in `values` (any unit), Gaussian by moments.

    The line is the mode of a 200-bin histogram; values within ``window`` (relative) of it start an
    iteration of mean and standard deviation over values within ``clip`` standard deviations.
    FWHM = 2.3548 sigma. Returns (centre, fwhm, n used).
    """
    x = np.asarray(values, dtype=np.float64)
    x = x[np.isfinite(x)]
    if x.size < 10:
        raise CryopipeError(f"line_fwhm: {x.size} finite values, need at least 10")
    h, e = np.histogram(x, bins=200)
    mode = 0.5 * (e[np.argmax(h)] + e[np.argmax(h) + 1])
    sel = x[np.abs(x - mode) <= window * abs(mode)]
    mu, sd = float(np.mean(sel)), float(np.std(sel))
    for _ in range(iterations):
        sel = x[np.abs(x - mu) <= clip * sd]
        mu_new, sd_new = float(np.mean(sel)), float(np.std(sel))
        if mu_new == mu and sd_new == sd:
            break
        mu, sd = mu_new, sd_new
    return mu, FWHM_PER_SIGMA * sd, int(sel.size)


def rice_rate(filtered, threshold: float, sample_frequency: float) -> float:
    """Expected rate (Hz) of up-crossings of `threshold` by stationary Gaussian noise with the
    statistics of `filtered` (Rice 1944): nu = (1 / 2 pi) (sigma' / sigma) exp(-u^2 / (2 sigma^2)),
    sigma the standard deviation of the filtered noise (V), sigma' that of its derivative (V/s,
    from first differences times fs) and u = threshold - mean. A trigger with hold-off fires at most
    once per up-crossing, so this bounds the noise trigger rate from above for Gaussian noise.
    """
    y = np.asarray(filtered, dtype=np.float64)
    sigma = float(np.std(y))
    sigma_d = float(np.std(np.diff(y))) * float(sample_frequency)
    u = float(threshold) - float(np.mean(y))
    return sigma_d / sigma / (2.0 * np.pi) * float(np.exp(-u * u / (2.0 * sigma * sigma)))
