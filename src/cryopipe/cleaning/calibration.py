"""Saying when unsure: temperature scaling of a classifier's logits and an out-of-distribution score.

- Temperature scaling (Guo et al. 2017): one scalar T > 0 fitted on a held-out labelled set by
  minimising the multi-class negative log-likelihood of softmax(logits / T). It changes no argmax,
  only how confident the probabilities are. The calibrated probability of a record being clean is
  the summed softmax(logits / T) of the accepted classes (for a binary head sigmoid(logit / T)).
- OOD score: the free energy E = -T logsumexp(logits / T) (Liu et al. 2020); records unlike anything
  the model was trained on get a higher (less negative) energy. `ood_threshold` is a high quantile of
  the energies of in-distribution held-out records, so that about 1 % of familiar records exceed it.

- Feature distance (Lee et al. 2018, "Mahalanobis"): the energy only sees the logits, and a
  record unlike the training data can still give one confident logit (issue 19: real TES pulses
  called `pile_up` with a familiar energy). The penultimate activations (`models.embed`) of the
  calibration set give class means and one shared covariance (Ledoit-Wolf shrinkage, scikit-learn);
  a record's feature distance is its smallest Mahalanobis distance to a class mean, and its
  threshold the same high quantile of the calibration set's distances. A record is flagged `ood`
  when either score exceeds its threshold (`is_ood`).

- Unsure: a decision whose temperature-calibrated P(clean) lies in `UNSURE_BAND` = [0.2, 0.8] is
  flagged ``unsure`` (`is_unsure`): by the model's own calibrated odds it is wrong at least one time
  in five. `ood` says the record is unfamiliar; `unsure` says it is familiar but ambiguous (a
  low-SNR pulse, a small second pulse). The band was fixed before any figure of it was looked at.

Everything here works on numpy arrays; the model's meta stores ``temperature``,
``ood_threshold`` and ``ood_score`` ("energy"), and with a feature density
``ood_feature_threshold``; the class means and precision matrix lie beside the checkpoint in
``<name>.ood.npz`` (`save_feature_density`).
"""
from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, logsumexp

from ..errors import InputError

OOD_QUANTILE = 0.99
#: calibrated P(clean) range of an unsure decision (inclusive)
UNSURE_BAND = (0.2, 0.8)
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


def nll(logits, classes, *, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of the true `classes` under softmax(logits / temperature)."""
    z, c = _check(logits, classes)
    lp = log_softmax(_binary(z) / float(temperature), axis=1)
    return float(-np.mean(lp[np.arange(c.size), c]))


def fit_temperature(logits, classes) -> float:
    """The temperature minimising `nll` on a held-out set (bounded search over log T)."""
    z, c = _check(logits, classes)
    res = minimize_scalar(lambda lt: nll(z, c, temperature=np.exp(lt)), bounds=tuple(np.log(T_BOUNDS)),
                          method="bounded",
                          options={"xatol": 1e-4})
    return float(np.exp(res.x))


def calibrated_probability(logits, accepted, *, temperature: float = 1.0) -> np.ndarray:
    """Calibrated probability that a record is clean: summed softmax(logits / T) of `accepted`."""
    z, _ = _check(logits)
    if z.shape[1] == 1:
        return 1.0 / (1.0 + np.exp(-z[:, 0] / temperature))
    p = np.exp(log_softmax(z / temperature, axis=1))
    return p[:, list(accepted)].sum(axis=1)


def energy(logits, *, temperature: float = 1.0) -> np.ndarray:
    """OOD score: free energy -T logsumexp(logits / T) (higher: less like the training data)."""
    z, _ = _check(logits)
    return -temperature * logsumexp(_binary(z) / temperature, axis=1)


def max_softmax(logits, *, temperature: float = 1.0) -> np.ndarray:
    """Maximum softmax probability (lower: less sure), the simplest OOD baseline."""
    z, _ = _check(logits)
    return np.exp(np.max(log_softmax(_binary(z) / temperature, axis=1), axis=1))


def ood_threshold(in_distribution_energy, *, quantile: float = OOD_QUANTILE) -> float:
    """Energy above which a record is flagged unfamiliar: the `quantile` of in-distribution energies."""
    e = np.asarray(in_distribution_energy, dtype=np.float64)
    e = e[np.isfinite(e)]
    if e.size == 0:
        raise InputError("in_distribution_energy: no finite values")
    return float(np.quantile(e, quantile))


def calibration_meta(logits, classes) -> dict:
    """The meta entries of a model calibrated on held-out (logits, true class indices)."""
    t = fit_temperature(logits, classes)
    return {"temperature": t, "ood_score": "energy", "ood_threshold": ood_threshold(energy(logits, temperature=t)),
            "ood_quantile": OOD_QUANTILE, "nll_uncalibrated": nll(logits, classes, temperature=1.0),
            "nll_calibrated": nll(logits, classes, temperature=t), "n_calibration_records": int(np.shape(logits)[0])}


# ------------------------------------------------------------------ feature distance (Mahalanobis)
def fit_feature_density(features, classes) -> dict:
    """Class means (C, D) and a shared precision matrix (D, D) of penultimate activations
    `features` (n, D) with true class indices `classes` (n,); classes absent from the set get no mean."""
    from sklearn.covariance import LedoitWolf

    f = np.asarray(features, dtype=np.float64)
    c = np.asarray(classes, dtype=np.int64)
    if f.ndim != 2 or c.shape != (f.shape[0],) or f.shape[0] < 2:
        raise InputError(f"features: need (records, D) with one class per record, got {f.shape} and {c.shape}")
    present = np.unique(c)
    means = np.stack([f[c == k].mean(axis=0) for k in present])
    centred = f - means[np.searchsorted(present, c)]
    precision = LedoitWolf(assume_centered=True).fit(centred).precision_
    return {"classes": present, "means": means, "precision": precision}


def feature_distance(features, density: dict) -> np.ndarray:
    """Smallest Mahalanobis distance (n,) of each row of `features` to a class mean of `density`."""
    f = np.asarray(features, dtype=np.float64)
    m, p = np.asarray(density["means"]), np.asarray(density["precision"])
    fp = f @ p
    d2 = (np.einsum("nd,nd->n", fp, f)[:, None] - 2 * fp @ m.T + np.einsum("cd,de,ce->c", m, p, m)[None, :])
    return np.sqrt(np.maximum(d2.min(axis=1), 0.0))


def density_path(checkpoint) -> "Path":
    """Where the feature density of `checkpoint` (x.pt) lies: x.ood.npz."""
    from pathlib import Path

    path = Path(checkpoint).with_suffix(".pt")
    return path.with_name(path.stem + ".ood.npz")


def save_feature_density(checkpoint, density: dict) -> "Path":
    """Write `density` beside `checkpoint` (`density_path`), float32."""
    import os

    path = density_path(checkpoint)
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}.npz")
    np.savez(tmp, classes=density["classes"], means=np.asarray(density["means"], np.float32),
             precision=np.asarray(density["precision"], np.float32))
    os.replace(tmp, path)
    return path


def load_feature_density(checkpoint) -> dict | None:
    """The feature density saved beside `checkpoint`, or None if there is none."""
    path = density_path(checkpoint)
    if not path.is_file():
        return None
    with np.load(path) as z:
        return {k: z[k].astype(np.float64) if k != "classes" else z[k] for k in z.files}


def is_unsure(probability, *, band=UNSURE_BAND) -> np.ndarray:
    """Decisions the calibrated P(clean) calls ambiguous: band[0] <= probability <= band[1]; NaN: False."""
    p = np.asarray(probability, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return (p >= band[0]) & (p <= band[1])


def is_ood(energy_score, energy_threshold, *, distance=None, distance_threshold=None) -> np.ndarray:
    """Records flagged unfamiliar: energy above its threshold, or feature distance above its own.
    NaN scores (unscored records) are never flagged."""
    with np.errstate(invalid="ignore"):
        out = np.asarray(energy_score) > energy_threshold
        if distance is not None and distance_threshold is not None:
            out = out | (np.asarray(distance) > distance_threshold)
    return out
