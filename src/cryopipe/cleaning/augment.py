"""Training augmentations of the CRESST paper (seed 000, section 2), applied when records are drawn.

a) pile-up: a positive record is superposed with a time-shifted copy of its own pulse, and its
   label flipped to rejected (probability 0.2 per positive record);
b) Gaussian noise, to create records of lower SNR (probability 0.2 per record);
c) a random time shift of up to 26 of 512 samples (always).

All functions act on (B, L) numpy arrays of raw-downsampled or min-max-scaled records (any
offset and scale: amplitudes are taken relative to each record's baseline and peak-to-peak) and
draw from a numpy Generator, so a seed reproduces a batch exactly.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..errors import InputError

MAX_SHIFT = 26
P_PILEUP = 0.2
P_NOISE = 0.2


def shift_records(records: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    """Delay each record by `shifts` samples (negative: advance); the edge value fills the gap."""
    x = np.asarray(records)
    n = x.shape[-1]
    idx = np.clip(np.arange(n) - np.asarray(shifts)[:, None], 0, n - 1)
    return np.take_along_axis(x, idx, axis=-1)


def baseline(records: np.ndarray) -> np.ndarray:
    """Baseline level (B, 1): median of the first eighth of each record (before the trigger at L/4)."""
    return np.median(records[:, : max(records.shape[-1] // 8, 1)], axis=-1, keepdims=True)


def pile_up(records: np.ndarray, rng: np.random.Generator, min_separation: int = 8,
            height_range: tuple[float, float] = (1.0, 1.0)) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Superpose each record with a copy of itself whose onset lies at a random position in the window.

    The copy (baseline removed, scaled by a ratio drawn uniformly from `height_range`) is shifted
    by d samples with |d| >= `min_separation`, d uniform over the shifts that keep the second onset
    (first at L/4) inside the window. Returns (piled records, shifts d, height ratios).
    """
    x = np.asarray(records, dtype=np.float32)
    b, n = x.shape
    onset = n // 4
    lo, hi = -onset, n - onset - 1                   # second onset in [0, n-1]
    choices = np.concatenate([np.arange(lo, -min_separation + 1), np.arange(min_separation, hi + 1)])
    if choices.size == 0:
        raise InputError(f"pile_up: min_separation {min_separation} leaves no shift for {n} samples")
    d = rng.choice(choices, size=b)
    ratio = rng.uniform(*height_range, size=b).astype(np.float32)
    pulse = x - baseline(x)
    return x + ratio[:, None] * shift_records(pulse, d), d, ratio


def add_noise(records: np.ndarray, rng: np.random.Generator, max_relative_sigma: float = 0.1) -> np.ndarray:
    """Add white Gaussian noise of std u * `max_relative_sigma` * peak-to-peak, u ~ U(0, 1) per record."""
    x = np.asarray(records, dtype=np.float32)
    sigma = rng.uniform(0.0, max_relative_sigma, size=(x.shape[0], 1)) * np.ptp(x, axis=-1, keepdims=True)
    return x + (sigma * rng.standard_normal(x.shape)).astype(np.float32)


class Augmented(NamedTuple):
    """An augmented batch and what was done to each record."""

    records: np.ndarray      # (B, L) float32
    labels: np.ndarray       # (B,) bool, False where piled up
    classes: np.ndarray      # (B,) int class index (pile-up class where piled up), or -1 if no classes
    piled: np.ndarray        # (B,) bool
    noised: np.ndarray       # (B,) bool
    shifts: np.ndarray       # (B,) int time shift (samples)


def augment(records, labels, rng: np.random.Generator, classes=None, pileup_class: int | None = None,
            p_pileup: float = P_PILEUP, p_noise: float = P_NOISE, max_shift: int = MAX_SHIFT,
            max_relative_sigma: float = 0.1, height_range: tuple[float, float] = (1.0, 1.0)) -> Augmented:
    """Apply pile-up (positives, prob. `p_pileup`), noise (prob. `p_noise`) and a shift (always).

    Parameters
    ----------
    records : (B, L) records; labels : (B,) bool (True = accepted).
    classes : optional (B,) int class indices; piled-up records get `pileup_class`. With classes
        but no `pileup_class`, no pile-up is made (a multi-class head needs a class to flip to).
    max_shift : largest time shift (samples, either direction).
    """
    x = np.array(records, dtype=np.float32, copy=True)
    y = np.array(labels, dtype=bool, copy=True)
    if x.ndim != 2 or y.shape != (x.shape[0],):
        raise InputError(f"augment: need records (B, L) and labels (B,), got {x.shape} and {y.shape}")
    b = x.shape[0]
    c = np.full(b, -1, dtype=np.int64) if classes is None else np.array(classes, dtype=np.int64, copy=True)
    can_pile = classes is None or pileup_class is not None
    piled = y & (rng.random(b) < p_pileup) & can_pile      # decisions first: a probability of 0 for
    noised = rng.random(b) < p_noise                      # one augmentation leaves the others' draws
    shifts = rng.integers(-max_shift, max_shift + 1, size=b)
    if piled.any():
        x[piled] = pile_up(x[piled], rng, height_range=height_range)[0]
        y[piled] = False
        if classes is not None:
            c[piled] = pileup_class
    if noised.any():
        x[noised] = add_noise(x[noised], rng, max_relative_sigma)
    return Augmented(shift_records(x, shifts), y, c, piled, noised, shifts)
