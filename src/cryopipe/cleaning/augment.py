"""Training augmentations of the CRESST paper (seed 000, section 2), applied when records are drawn.

a) pile-up: a positive record is superposed with a time-shifted copy of its own pulse, and its
   label flipped to rejected (probability 0.2 per positive record). Only VISIBLE pile-up is made
   (issue 19): the copy's height is at least `MIN_VISIBLE_SIGMA` baseline noise sigmas of the
   (downsampled) record and its onset at least one rise time (10 % -> peak of the record's pulse,
   at least `min_separation` samples; `rise_samples`) from the first; a record that cannot take a visible copy
   inside `height_range` stays as it is (accepted);
b) Gaussian noise, to create records of lower SNR (probability 0.2 per record);
c) a random time shift of up to `MAX_SHIFT` = 16 of 512 samples (always; the paper's 26 let accepted
   onsets reach the early/late-trigger class's range: `simulate.classes.MAX_ACCEPTED_SHIFT`).

All functions act on (B, L) numpy arrays of raw-downsampled or min-max-scaled records (any
offset and scale: amplitudes are taken relative to each record's baseline and peak-to-peak) and
draw from a numpy Generator, so a seed reproduces a batch exactly.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..errors import InputError
from ..signal.robust import mad_sigma_along

MAX_SHIFT = 16            # samples of 512: simulate.classes.MAX_ACCEPTED_SHIFT (1/32) of the window
P_PILEUP = 0.2
MIN_VISIBLE_SIGMA = 5.0   # a piled-up copy is at least this many baseline noise sigmas high
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


def noise_sigma(records: np.ndarray) -> np.ndarray:
    """Baseline noise sigma (B,) of each record: robust (MAD) spread of the pre-trigger region's
    sample-to-sample differences / sqrt(2) (insensitive to a slow drift; the first 7/32 of the
    record, before the trigger at 1/4 minus the largest time shift)."""
    head = records[:, : max(7 * records.shape[-1] // 32, 3)]
    d = np.diff(head, axis=-1)
    return mad_sigma_along(d) / np.sqrt(2)


def rise_samples(pulse: np.ndarray, onset: int) -> np.ndarray:
    """Rise time (B,) of baseline-free records `pulse`: twice the samples from `onset` to the first
    crossing of half the peak height (about the 10-90 % rise time of a pulse; at least 1)."""
    half = np.argmax(pulse[:, onset:] >= 0.5 * np.max(pulse, axis=-1, keepdims=True), axis=-1)
    return np.maximum(2 * half, 1)


def pile_up(records: np.ndarray, rng: np.random.Generator, *, min_separation: int = 8,
            height_range: tuple[float, float] = (1.0, 1.0),
            min_visible_sigma: float = MIN_VISIBLE_SIGMA) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Superpose each record with a copy of itself whose onset lies at a random position in the window.

    The copy (baseline removed, scaled by a ratio drawn uniformly from `height_range`, raised to
    the smallest visible ratio: `min_visible_sigma` noise sigmas over the pulse height) is shifted
    by d samples with |d| >= max(`min_separation`, rise time), d uniform over the shifts that keep
    the second onset (first at L/4) inside the window. Returns (piled records, shifts d, height
    ratios); a ratio of 0 (shift 0) marks a record left unchanged because no visible copy fits.
    """
    x = np.asarray(records, dtype=np.float32)
    b, n = x.shape
    onset = n // 4
    pulse = x - baseline(x)
    height = np.max(pulse, axis=-1)
    lo_ratio = np.where(height > 0, min_visible_sigma * noise_sigma(x) / np.maximum(height, 1e-30), np.inf)
    ratio = np.maximum(rng.uniform(*height_range, size=b), lo_ratio).astype(np.float32)
    sep = np.maximum(rise_samples(pulse, onset), min_separation)
    lo, hi = -onset, n - onset - 1                   # second onset in [0, n-1]
    u = rng.random(b)
    n_left = np.maximum(-sep - lo + 1, 0)            # shifts lo..-sep
    n_right = np.maximum(hi - sep + 1, 0)            # shifts sep..hi
    k = np.floor(u * (n_left + n_right)).astype(np.int64)
    d = np.where(k < n_left, lo + k, sep + (k - n_left))
    ok = (ratio <= height_range[1]) & (n_left + n_right > 0)
    d, ratio = np.where(ok, d, 0), np.where(ok, ratio, 0.0).astype(np.float32)
    return x + ratio[:, None] * shift_records(pulse, d), d, ratio


def add_noise(records: np.ndarray, rng: np.random.Generator, *, max_relative_sigma: float = 0.1) -> np.ndarray:
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


def augment(records, labels, rng: np.random.Generator, *, classes=None, pileup_class: int | None = None,
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
        x[piled], _, ratio = pile_up(x[piled], rng, height_range=height_range)
        piled[piled] = ratio > 0                          # no visible copy fitted: left as it was
        y[piled] = False
        if classes is not None:
            c[piled] = pileup_class
    if noised.any():
        x[noised] = add_noise(x[noised], rng, max_relative_sigma=max_relative_sigma)
    return Augmented(shift_records(x, shifts), y, c, piled, noised, shifts)
