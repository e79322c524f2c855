"""Per-event standard-event (SEV) fit: height, onset shift and polynomial baseline of every record.

Model of a record x (N samples, V) for a template s (the SEV, max 1, onset at N/4)::

    x[k] ~ h * s(k - d) + sum_{j<=p} c_j * t_k**j,     t_k = (k - N//4) / fs  (s, time from the trigger)

The template is extended beyond the record with its first and last sample. For every integer shift d
in a window the height h and the baseline coefficients c are linear: with Q an orthonormal basis of
the polynomials (N, p+1), the residual projector R = 1 - Q Q^T gives

    h(d) = s_d^T R x / s_d^T R s_d,   chi2(d) = x^T R x - (s_d^T R x)^2 / s_d^T R s_d,

and s_d^T x for all shifts is one FFT cross-correlation per record; Q^T s_d and s_d^T s_d do not depend
on the record. The best integer shift is refined to sub-sample precision by a parabola through
chi2 at its two neighbours, and h, c and the rms residual are recomputed with the template shifted
by that fractional amount (linear interpolation between samples).

Truncation (saturated pulses, as Cait's truncated array fit): samples whose value exceeds
`truncation_level` above the record's pre-trigger baseline (mean of the first N/8 samples) are left
out of the fit, so the height of a saturated pulse is fitted from its unsaturated flanks. Such
records take a slower path (all sums become masked FFT correlations), others are unaffected.

Precision and speed: the shift scan runs in the records' precision (float32 records: single-precision
FFTs after removing each record's mean), the final fit sums in float64. The parabola vertex is biased
by ~1e-5 samples where the template has a kink (its onset); linear interpolation of the template
leaves a residual of ~1e-4 of the height at quarter-sample shifts of a 12-sample rise. Measured on
the shared 2-core machine (N = 16384, +-N/32 window, float32): ~3,500 records/s (order 1), ~3,100
(order 2); float64 ~1,500/s; truncated (saturated) records ~250/s.
"""
from __future__ import annotations

import numba
import numpy as np
import scipy.fft

from cryopipe.errors import CryopipeError, InputError
from cryopipe.parallel import run_blocks

__all__ = ["fit_sev", "default_shift_window", "FIT_UNITS"]

#: units of the fixed output keys; fit_baseline_j is in V / s**j
FIT_UNITS = {"fit_height": "V", "fit_onset": "s", "fit_rms": "V", "fit_n_truncated": "samples"}


def default_shift_window(record_length: int) -> tuple[int, int]:
    """Default onset search window (samples, half-open): -N/32 <= d < N/32 + 1 around the trigger."""
    half = max(record_length // 32, 2)
    return -half, half + 1


class _Scan:
    """Record-independent parts of the fit for one template, record length, shift window and dtype."""

    def __init__(self, sev: np.ndarray, fs: float, order: int, lo: int, hi: int, dtype=np.float64):
        n = sev.size
        self.n, self.fs, self.order, self.lo, self.hi = n, fs, order, lo, hi
        self.dtype = np.dtype(dtype)
        self.n_lags = hi - lo
        # extended template e[m] = s(m - hi), m = 0..N+hi-lo, clipped to the first/last sample
        self.ext_first = -hi
        self.e = sev[np.clip(np.arange(self.ext_first, n - lo + 1), 0, n - 1)]
        self.fft_len = scipy.fft.next_fast_len(n + self.n_lags, real=True)
        self.e_fft = scipy.fft.rfft(self.e, self.fft_len)
        self.e2_fft = scipy.fft.rfft(self.e ** 2, self.fft_len)
        self.e_fft_single = self.e_fft.astype(np.complex64)
        # polynomial basis in tau = (k - N//4) / N (well conditioned), orthonormalised
        tau = (np.arange(n) - n // 4) / n
        self.vander = np.vander(tau, order + 1, increasing=True)
        self.q, self.r = np.linalg.qr(self.vander)
        self.qt = np.ascontiguousarray(self.q.T)
        self.qt_dtype = self.qt.astype(self.dtype)
        self.qs = self.correlate(self.q.T).T                      # (n_lags, p+1): Q^T s_d
        ss = self.correlate(np.ones(n), square=True)              # (n_lags,): s_d^T s_d
        self.den = (ss - np.sum(self.qs ** 2, axis=1)).astype(self.dtype)
        self.qs_dtype = self.qs.astype(self.dtype)

    def correlate(self, x: np.ndarray, square: bool = False) -> np.ndarray:
        """sum_k x[..., k] s(k - d) (or s(k - d)**2) for d = lo..hi-1, shape (..., n_lags).

        Computed in single precision for float32 `x` (unsquared template only).
        """
        kernel = self.e2_fft if square else (self.e_fft_single if x.dtype == np.float32 else self.e_fft)
        xf = scipy.fft.rfft(x, self.fft_len, axis=-1)
        np.conjugate(xf, out=xf)
        xf *= kernel
        c = scipy.fft.irfft(xf, self.fft_len, axis=-1)
        return c[..., self.n_lags:0:-1]                           # index j = hi - d -> ascending d

    def coefficients(self, a: np.ndarray, r: np.ndarray) -> np.ndarray:
        """Orthonormal-basis coefficients a (B, p+1) -> monomial coefficients in t (s): V / s**j."""
        m = np.linalg.solve(r, a.T).T                             # in tau = t fs / N
        return m * (self.fs / self.n) ** np.arange(self.order + 1)


def _refine(chi2: np.ndarray, best: np.ndarray) -> np.ndarray:
    """Sub-sample offset (-0.5..0.5) of the chi2 minimum from a parabola through best-1, best, best+1."""
    n_lags = chi2.shape[1]
    inner = (best > 0) & (best < n_lags - 1)
    i = np.arange(chi2.shape[0])
    b = np.clip(best, 1, max(n_lags - 2, 1))
    fm = chi2[i, np.clip(b - 1, 0, n_lags - 1)].astype(np.float64)
    f0 = chi2[i, b].astype(np.float64)
    fp = chi2[i, np.clip(b + 1, 0, n_lags - 1)].astype(np.float64)
    curv = fm - 2.0 * f0 + fp
    with np.errstate(divide="ignore", invalid="ignore"):
        delta = np.where(inner & (curv > 0), 0.5 * (fm - fp) / curv, 0.0)
    return np.clip(np.nan_to_num(delta), -0.5, 0.5)


@numba.njit(cache=True, nogil=True, fastmath=True)
def _refit(x, weight, use_weight, e, ext_first, shift, qt, height, rms, coef):
    """Linear fit of h s(k - shift) + sum_j a_j qt[j, k] to each record at its fractional shift.

    The template is interpolated linearly in the extended template e (e[m] = s(m + ext_first));
    sums in float64. With `use_weight`, samples enter with weight[i, k] (0 or 1; qt must vanish
    where the weight is 0).
    """
    n_rec, n = x.shape
    p1 = qt.shape[0]
    j_max = e.size - n - 1
    buf = np.empty(n)
    xk = np.empty(n)
    sq = np.empty(p1)
    xq = np.empty(p1)
    for i in range(n_rec):
        u0 = -shift[i] - ext_first
        j0 = min(max(int(np.floor(u0)), 0), j_max)
        f = u0 - j0
        for k in range(n):
            buf[k] = (1.0 - f) * e[k + j0] + f * e[k + j0 + 1]
            xk[k] = x[i, k]
        used = float(n)
        if use_weight:
            used = 0.0
            for k in range(n):
                buf[k] *= weight[i, k]
                xk[k] *= weight[i, k]
                used += weight[i, k]
        sx = 0.0
        ss = 0.0
        for k in range(n):
            sx += buf[k] * xk[k]
            ss += buf[k] * buf[k]
        num = sx
        den = ss
        for j in range(p1):
            sq_j = 0.0
            xq_j = 0.0
            for k in range(n):
                sq_j += buf[k] * qt[j, k]
                xq_j += xk[k] * qt[j, k]
            sq[j] = sq_j
            xq[j] = xq_j
            num -= sq_j * xq_j
            den -= sq_j * sq_j
        h = num / den if den > 0 else np.nan
        for j in range(p1):
            coef[i, j] = xq[j] - h * sq[j]
        for k in range(n):
            xk[k] -= h * buf[k]
        for j in range(p1):
            c = coef[i, j]
            for k in range(n):
                xk[k] -= c * qt[j, k]
        r2 = 0.0
        for k in range(n):
            r2 += xk[k] * xk[k]
        height[i] = h
        rms[i] = np.sqrt(r2 / used) if used > 0 else np.nan


_NO_WEIGHT = np.ones((1, 1))


def _best_shift(score: np.ndarray, lo: int) -> np.ndarray:
    best = np.argmax(score, axis=1)
    return lo + best + _refine(-score, best)


def _fit_block(scan: _Scan, x: np.ndarray) -> tuple:
    """Unmasked fit of a block (B, N): height, shift (samples), rms, monomial baseline coefficients."""
    xc = x - x.mean(axis=1, keepdims=True)                        # offset removed: precise in float32
    num = scan.correlate(xc)
    b = np.einsum("ik,jk->ij", xc, scan.qt_dtype)                 # einsum: no BLAS threads to contend
    num -= np.einsum("ij,dj->id", b, scan.qs_dtype)               # (B, n_lags): s_d^T R x
    with np.errstate(divide="ignore", invalid="ignore"):
        score = np.where(scan.den > 0, num * num / scan.den, -np.inf)
    shift = _best_shift(score, scan.lo)
    n_rec = x.shape[0]
    height, rms, a = np.empty(n_rec), np.empty(n_rec), np.empty((n_rec, scan.order + 1))
    _refit(x, _NO_WEIGHT, False, scan.e, scan.ext_first, shift, scan.qt, height, rms, a)
    return height, shift, rms, scan.coefficients(a, scan.r)


def _fit_masked(scan: _Scan, x: np.ndarray, keep: np.ndarray) -> tuple:
    """Fit of one record (N,) using only the samples where `keep` is True."""
    if int(keep.sum()) <= 2 * (scan.order + 2):
        nan = np.full(1, np.nan)
        return nan, nan, nan, np.full((1, scan.order + 1), np.nan)
    m = keep.astype(np.float64)
    qm_used, r = np.linalg.qr(scan.vander[keep])
    qm = np.zeros((scan.n, scan.order + 1))
    qm[keep] = qm_used
    xm = np.where(keep, x, 0.0)
    xm[keep] -= xm[keep].mean()
    corr = scan.correlate(np.vstack([xm, qm.T]))                 # (p+2, n_lags)
    ss = scan.correlate(m, square=True)
    qs = corr[1:].T                                               # (n_lags, p+1)
    num = corr[0] - qs @ (xm @ qm)
    den = ss - np.sum(qs ** 2, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        score = np.where(den > 1e-9 * np.max(ss), num ** 2 / den, -np.inf)
    shift = _best_shift(score[None, :], scan.lo)
    height, rms, a = np.empty(1), np.empty(1), np.empty((1, scan.order + 1))
    _refit(x[None, :], m[None, :], True, scan.e, scan.ext_first, shift, np.ascontiguousarray(qm.T), height, rms, a)
    return height, shift, rms, scan.coefficients(a, r)


def _check_inputs(records, sev, sample_frequency, baseline_order, shift_window, what):
    records = np.asarray(records)
    if records.ndim == 1:
        records = records[None, :]
    sev = np.asarray(sev, dtype=np.float64)
    if sev.ndim != 1 or sev.size < 16:
        raise InputError(f"{what}: standard event must be a 1-d array of >= 16 samples, got shape {sev.shape}")
    if not np.all(np.isfinite(sev)) or not np.any(sev != 0):
        raise CryopipeError(f"{what}: standard event must be finite and not all zero")
    n = sev.size
    if records.ndim != 2 or records.shape[1] != n:
        raise InputError(f"{what}: records have shape {records.shape}, the {n}-sample standard event needs (n, {n})")
    if records.dtype.kind != "f":
        raise InputError(f"{what}: records must be float volts, got dtype {records.dtype}")
    if not (isinstance(baseline_order, (int, np.integer)) and 0 <= baseline_order <= 3):
        raise InputError(f"{what}: baseline_order must be an integer 0..3, got {baseline_order!r}")
    if not (np.isfinite(sample_frequency) and sample_frequency > 0):
        raise InputError(f"{what}: sample_frequency must be a positive number of Hz, got {sample_frequency!r}")
    lo, hi = default_shift_window(n) if shift_window is None else (int(shift_window[0]), int(shift_window[1]))
    if not (-n < lo < hi <= n and hi - lo <= n):
        raise InputError(f"{what}: shift_window {shift_window} must satisfy -N < lo < hi <= N, hi - lo <= N (N={n})")
    return records, sev, lo, hi


def fit_sev(records, sev, sample_frequency: float, *, baseline_order: int = 1, shift_window=None,
            truncation_level: float | None = None, batch: int = 128, workers: int = 2,
            what: str = "records") -> dict[str, np.ndarray]:
    """Least-squares fit of the scaled, shifted standard event plus a polynomial baseline to each record.

    Parameters
    ----------
    records : (n, N) float records, V, trigger at N/4 (float32 is about twice as fast as float64)
    sev : (N,) standard event, V/V, maximum 1, onset at N//4
    sample_frequency : Hz
    baseline_order : polynomial order of the baseline, 0..3 (1 = offset and slope)
    shift_window : (lo, hi) integer onset shifts searched, samples, half-open (positive = pulse later
        than the template); default `default_shift_window` (about +-N/32). A minimum on the window
        edge is not refined.
    truncation_level : V above the pre-trigger baseline (mean of the first N/8 samples); samples above
        it are excluded from the fit (saturated pulses). None fits all samples.
    batch : records per vectorised block
    workers : threads (FFTs and matrix products release the GIL)
    what : name of the run/channel for error messages

    Returns
    -------
    dict of (n,) float64 arrays: ``fit_height`` (V), ``fit_onset`` (s, onset shift of the template
    relative to the trigger N/4), ``fit_rms`` (rms residual over the fitted samples, V),
    ``fit_n_truncated`` (samples left out), and ``fit_baseline_j`` for j = 0..baseline_order, the
    coefficient of t**j with t = (k - N//4)/fs in s (V / s**j; fit_baseline_0 is the baseline at the trigger).
    """
    records, sev, lo, hi = _check_inputs(records, sev, sample_frequency, baseline_order, shift_window, what)
    dtype = np.float32 if records.dtype == np.float32 else np.float64
    scan = _Scan(sev, float(sample_frequency), int(baseline_order), lo, hi, dtype)
    n_rec, n = records.shape
    height, shift, rms = np.empty(n_rec), np.empty(n_rec), np.empty(n_rec)
    coef = np.empty((n_rec, baseline_order + 1))
    n_trunc = np.zeros(n_rec)

    def run_block(a: int) -> None:
        sl = slice(a, min(a + batch, n_rec))
        x = np.ascontiguousarray(records[sl], dtype=dtype)
        out = _fit_block(scan, x)
        height[sl], shift[sl], rms[sl], coef[sl] = out
        if truncation_level is None:
            return
        above = x - x[:, : n // 8].mean(axis=1, keepdims=True) > truncation_level
        n_trunc[sl] = above.sum(axis=1)
        for i in np.flatnonzero(n_trunc[sl] > 0):
            j = a + i
            out = _fit_masked(scan, x[i].astype(np.float64), ~above[i])
            height[j], shift[j], rms[j], coef[j] = (v[0] for v in out)

    run_blocks(run_block, n_rec, batch, workers)
    out = {"fit_height": height, "fit_onset": shift / scan.fs, "fit_rms": rms, "fit_n_truncated": n_trunc}
    out.update({f"fit_baseline_{j}": coef[:, j] for j in range(baseline_order + 1)})
    return out
