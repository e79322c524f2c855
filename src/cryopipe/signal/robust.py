"""Robust statistics and input normalisers shared by every topic (defined here once).

- `MAD_TO_SIGMA`: 1.4826, the factor that turns the median absolute deviation of Gaussian samples
  into their standard deviation (1 / Phi^-1(3/4)).
- `mad_sigma`: that sigma of an array; `mad_sigma_along`: of each row; `robust_band`: median -/+ k sigma.
- `as_records`: an (n, N) float array of records, checked, for every function that takes records.
- `check_sev_nps`: a standard event and its one-sided noise power spectrum that fit together.
"""
from __future__ import annotations

import numpy as np

from ..errors import InputError

MAD_TO_SIGMA = 1.4826


def mad_sigma(values) -> float:
    """MAD_TO_SIGMA x median |x - median(x)| of `values` (their unit); NaN for an empty array."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return float("nan")
    return float(MAD_TO_SIGMA * np.median(np.abs(v - np.median(v))))


def mad_sigma_along(values, *, axis: int = -1) -> np.ndarray:
    """MAD_TO_SIGMA x median |x - median(x)| along `axis` (e.g. one sigma per record; their unit)."""
    v = np.asarray(values)
    return MAD_TO_SIGMA * np.median(np.abs(v - np.median(v, axis=axis, keepdims=True)), axis=axis)


def robust_band(values, k: float, *, floor: float = 0.0) -> tuple[float, float]:
    """median -/+ max(k * 1.4826 * MAD, floor) of the finite `values` (NaN, NaN if none)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return np.nan, np.nan
    med = np.median(v)
    half = max(k * MAD_TO_SIGMA * np.median(np.abs(v - med)), floor)
    return med - half, med + half


def as_records(records, *, what: str = "records", min_samples: int = 1, min_records: int = 0,
               length: int | None = None, allow_single: bool = False, dtype=None, finite: bool = False,
               contiguous: bool = False) -> np.ndarray:
    """`records` as an (n, N) float array (samples on the last axis); InputError naming `what` otherwise.

    min_samples, min_records : the least N and n accepted
    length : the N required (e.g. an optimum filter's record length), None: any
    allow_single : a 1-d record becomes a (1, N) block
    dtype : the float dtype returned; None keeps float32/float64 and makes other dtypes float64
    finite : refuse NaN or infinite samples
    contiguous : return a C-contiguous array
    """
    x = np.asarray(records)
    if allow_single and x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2 or x.shape[1] < min_samples or x.shape[0] < min_records or x.dtype.kind not in "biuf":
        raise InputError(f"{what}: need numeric records of shape (n, N) with n >= {min_records} and "
                         f"N >= {min_samples}, got shape {x.shape} dtype {x.dtype}")
    if length is not None and x.shape[1] != length:
        raise InputError(f"{what}: records have shape {x.shape}, need (n, {length})")
    if dtype is None:
        dtype = x.dtype if x.dtype in (np.float32, np.float64) else np.float64
    x = np.ascontiguousarray(x, dtype=dtype) if contiguous else x.astype(dtype, copy=False)
    if finite and not np.isfinite(x).all():
        raise InputError(f"{what}: records hold NaN or infinite samples")
    return x


def check_sev_nps(sev, nps, sample_frequency: float, *, what: str = "detector",
                  min_samples: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """A standard event (N,) and one-sided noise PSD (N//2+1,) (V^2/Hz) as float64, checked.

    Both finite, the PSD > 0 above DC, `sample_frequency` (Hz) > 0; InputError naming `what` otherwise.
    """
    sev = np.asarray(sev, dtype=np.float64)
    nps = np.asarray(nps, dtype=np.float64)
    if sev.ndim != 1 or sev.size < min_samples:
        raise InputError(f"{what}: standard event must be a 1-d array of at least {min_samples} samples, "
                         f"got shape {sev.shape}")
    n = sev.size
    if nps.shape != (n // 2 + 1,):
        raise InputError(f"{what}: noise power spectrum has shape {nps.shape}, need ({n // 2 + 1},) "
                         f"for a {n}-sample standard event")
    if not np.all(np.isfinite(sev)):
        raise InputError(f"{what}: standard event contains non-finite values")
    if not (np.all(np.isfinite(nps[1:])) and np.all(nps[1:] > 0)):
        bad = int(np.sum(~(np.isfinite(nps[1:]) & (nps[1:] > 0))))
        raise InputError(f"{what}: noise power spectrum has {bad} non-positive or non-finite bins above DC")
    if not sample_frequency or not sample_frequency > 0:
        raise InputError(f"{what}: sample_frequency must be positive, got {sample_frequency}")
    return sev, nps
