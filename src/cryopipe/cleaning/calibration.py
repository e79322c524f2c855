"""Saying when unsure: temperature scaling of a classifier's logits and an out-of-distribution score.

- Temperature scaling (Guo et al. 2017): one scalar T > 0 fitted on a held-out labelled set by
  minimising the multi-class negative log-likelihood of softmax(logits / T). It changes no argmax,
  only how confident the probabilities are. The calibrated probability of a record being clean is
  the summed softmax(logits / T) of the accepted classes (for a binary head sigmoid(logit / T)).
- OOD score: the free energy E = -T logsumexp(logits / T) (Liu et al. 2020); records unlike anything
  the model was trained on get a higher (less negative) energy. `ood_threshold` is a high quantile of
  the energies of in-distribution held-out records, so that about 1 % of familiar records exceed it.

Everything here works on numpy arrays of logits; the model's meta stores ``temperature``,
``ood_threshold`` and ``ood_score`` ("energy").
"""
from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, logsumexp

from ..errors import InputError

OOD_QUANTILE = 0.99
T_BOUNDS = (0.05, 20.0)


def _check(logits, classes=None):
    z = np.asarray(logits, dtype=np.float64)
    if z.ndim != 2 or z.shape[0] == 0:
        raise InputError(f"logits: need (records, classes), got shape {z.shape}")
    if classes is None:
        return z, None
    c = np.asarray(classes)
    if c.shape != (z.shape[0],):
        raise InputError(f"classes: need ({z.shape[0]},) class indices, got shape {c.shape}")
    return z, c.astype(np.int64)


def _binary(z):
    """A binary head (one logit) as two-class logits (0, l)."""
    return np.concatenate([np.zeros_like(z), z], axis=1) if z.shape[1] == 1 else z


def nll(logits, classes, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of the true `classes` under softmax(logits / temperature)."""
    z, c = _check(logits, classes)
    lp = log_softmax(_binary(z) / float(temperature), axis=1)
    return float(-np.mean(lp[np.arange(c.size), c]))


def fit_temperature(logits, classes) -> float:
    """The temperature minimising `nll` on a held-out set (bounded search over log T)."""
    z, c = _check(logits, classes)
    res = minimize_scalar(lambda lt: nll(z, c, np.exp(lt)), bounds=tuple(np.log(T_BOUNDS)), method="bounded",
                          options={"xatol": 1e-4})
    return float(np.exp(res.x))


def calibrated_probability(logits, accepted, temperature: float = 1.0) -> np.ndarray:
    """Calibrated probability that a record is clean: summed softmax(logits / T) of `accepted`."""
    z, _ = _check(logits)
    if z.shape[1] == 1:
        return 1.0 / (1.0 + np.exp(-z[:, 0] / temperature))
    p = np.exp(log_softmax(z / temperature, axis=1))
    return p[:, list(accepted)].sum(axis=1)


def energy(logits, temperature: float = 1.0) -> np.ndarray:
    """OOD score: free energy -T logsumexp(logits / T) (higher: less like the training data)."""
    z, _ = _check(logits)
    return -temperature * logsumexp(_binary(z) / temperature, axis=1)


def max_softmax(logits, temperature: float = 1.0) -> np.ndarray:
    """Maximum softmax probability (lower: less sure), the simplest OOD baseline."""
    z, _ = _check(logits)
    return np.exp(np.max(log_softmax(_binary(z) / temperature, axis=1), axis=1))


def ood_threshold(in_distribution_energy, quantile: float = OOD_QUANTILE) -> float:
    """Energy above which a record is flagged unfamiliar: the `quantile` of in-distribution energies."""
    e = np.asarray(in_distribution_energy, dtype=np.float64)
    e = e[np.isfinite(e)]
    if e.size == 0:
        raise InputError("in_distribution_energy: no finite values")
    return float(np.quantile(e, quantile))


def calibration_meta(logits, classes) -> dict:
    """The meta entries of a model calibrated on held-out (logits, true class indices)."""
    t = fit_temperature(logits, classes)
    return {"temperature": t, "ood_score": "energy", "ood_threshold": ood_threshold(energy(logits, t)),
            "ood_quantile": OOD_QUANTILE, "nll_uncalibrated": nll(logits, classes, 1.0),
            "nll_calibrated": nll(logits, classes, t), "n_calibration_records": int(np.shape(logits)[0])}
