"""TES saturation: the generalised logistic that the simulator applies to pulses (V)."""
from __future__ import annotations

import numpy as np


def saturation_curve(x, ceiling, *, nu=1.0) -> np.ndarray:
    """Generalised logistic TES saturation: f(0) = 0, f'(0) = 1, f(x) -> ceiling (V) as x -> inf.

    f(x) = K (1 + exp(-B x))^(-1/nu) - K 2^(-1/nu), K = ceiling / (1 - 2^(-1/nu)),
    B = nu 2^(1/nu + 1) / K; nu sets the asymmetry (floor at -ceiling / (2^(1/nu) - 1)).
    """
    k, b, g0 = _saturation_constants(np.asarray(ceiling, float), np.asarray(nu, float))
    with np.errstate(over="ignore"):
        return k * (1.0 + np.exp(-b * np.asarray(x, float))) ** (-1.0 / nu) - g0


def _saturation_constants(ceiling, nu):
    q = 2.0 ** (-1.0 / nu)
    k = ceiling / (1.0 - q)
    return k, nu * 2.0 ** (1.0 / nu + 1.0) / k, k * q
