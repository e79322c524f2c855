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
leaves a residual of ~1e-4 of the height at quarter-sample shifts of a 12-sample rise.

Unmasked records (`_fit_block`) go in sub-blocks of `_FFT_ROWS` through reused per-thread buffers: one
numba pass removes the mean, zero-pads and sums the baseline projections, pocketfft transforms in
place (length `_fft_length(N + window)`), numba multiplies by the template spectrum, picks and
refines the best shift, and refits in two passes per record (sums; residual). The record-independent
`_Scan` (~3 ms for N = 16384) is cached per (template, fs, order, window, dtype). Measured on the
shared 2-core machine (N = 16384, +-N/32 window, float32, order 1, one thread): ~86 us CPU per record,
of which ~60 us are the two FFTs; truncated (saturated) records take the slow masked path (~2 ms).
"""
from __future__ import annotations

import queue
import threading
from collections import OrderedDict

import numba
import numpy as np
import scipy.fft

from cryopipe.errors import CryopipeError, InputError
from cryopipe.parallel import pocketfft_with_output, run_blocks

# scipy.fft's own pocketfft binding (rfft/irfft into an output array), checked; None: scipy.fft
_pocketfft = pocketfft_with_output()

__all__ = ["fit_sev", "default_shift_window", "FIT_UNITS"]

#: units of the fixed output keys; fit_baseline_j is in V / s**j
FIT_UNITS = {"fit_height": "V", "fit_onset": "s", "fit_rms": "V", "fit_n_truncated": "samples"}


def default_shift_window(record_length: int) -> tuple[int, int]:
    """Default onset search window (samples, half-open): -N/32 <= d < N/32 + 1 around the trigger."""
    half = max(record_length // 32, 2)
    return -half, half + 1


def _fft_length(m: int) -> int:
    """FFT length >= m for the correlation: scipy's ``next_fast_len(m, real=True)``, or the next
    2**a * 3**b (b <= 2) when that is at most 7 % longer (pocketfft's radix-4 path is faster than
    its radix-3 one by more: for m = 16384 + 1025, 18432 takes ~6 % less than 17496 = 8 * 3**7)."""
    fast = scipy.fft.next_fast_len(m, real=True)
    smooth = []
    for f in (1, 3, 9):
        while f < m:
            f *= 2
        smooth.append(f)
    smooth = min(smooth)
    return smooth if smooth <= 1.07 * fast else fast


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
        self.fft_len = _fft_length(n + self.n_lags)
        self.e_fft = scipy.fft.rfft(self.e, self.fft_len)
        self.e2_fft = scipy.fft.rfft(self.e ** 2, self.fft_len)
        self.e_fft_single = self.e_fft.astype(np.complex64)
        # polynomial basis in tau = (k - N//4) / N (well conditioned), orthonormalised
        tau = (np.arange(n) - n // 4) / n
        self.vander = np.vander(tau, order + 1, increasing=True)
        self.q, self.r = np.linalg.qr(self.vander)
        self.qt = np.ascontiguousarray(self.q.T)
        self.qs = self.correlate(self.q.T).T                      # (n_lags, p+1): Q^T s_d
        ss = self.correlate(np.ones(n), square=True)              # (n_lags,): s_d^T s_d
        # fast unmasked path (_fit_block): template spectrum scaled by 1/fft_len (the unnormalised
        # inverse FFT then gives the correlation), in the records' precision; the orthonormal basis
        # from monomials in tau: Q^T y = R^-T V^T y, and tau-monomial coefficients m = R^-1 a
        cdtype = np.complex64 if self.dtype == np.float32 else np.complex128
        self.e_fft_scaled = (self.e_fft / self.fft_len).astype(cdtype)
        self.rinv = np.linalg.inv(self.r)
        self.rinv_t = np.ascontiguousarray(self.rinv.T)
        self.qs64 = np.ascontiguousarray(self.qs)
        self.den64 = ss - np.sum(self.qs ** 2, axis=1)

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


_SCANS: OrderedDict = OrderedDict()
_SCANS_LOCK = threading.Lock()
_SCANS_MAX = 8


def _cached_scan(sev: np.ndarray, fs: float, order: int, lo: int, hi: int, dtype) -> _Scan:
    """The `_Scan` of these arguments, kept for the last `_SCANS_MAX` distinct ones (building one costs
    ~3 ms for N = 16384; a channel's blocks share it). Keyed on the template's bytes."""
    key = (np.ascontiguousarray(sev, dtype=np.float64).tobytes(), float(fs), int(order), int(lo), int(hi),
           np.dtype(dtype).str)
    with _SCANS_LOCK:
        scan = _SCANS.get(key)
        if scan is not None:
            _SCANS.move_to_end(key)
            return scan
    scan = _Scan(sev, fs, order, lo, hi, dtype)
    with _SCANS_LOCK:
        _SCANS[key] = scan
        while len(_SCANS) > _SCANS_MAX:
            _SCANS.popitem(last=False)
    return scan


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



def _best_shift(score: np.ndarray, lo: int) -> np.ndarray:
    best = np.argmax(score, axis=1)
    return lo + best + _refine(-score, best)


@numba.njit(cache=True, nogil=True, fastmath=True)
def _prepare(x, n4, inv_n, rinv_t, pad, mean, b):
    """pad[i] = x[i] - mean(x[i]) zero-padded to pad's length (pad's dtype); b[i] = Q^T (x[i] - mean)
    (orthonormal baseline basis, from the monomial sums in tau: Q^T y = R^-T V^T y); sums in float64."""
    n_rec, n = x.shape
    length = pad.shape[1]
    p1 = b.shape[1]
    m = np.zeros(4)
    for i in range(n_rec):
        xi = x[i]
        pi = pad[i]
        acc = 0.0
        for k in range(n):
            acc += xi[k]
        mu = acc / n
        mean[i] = mu
        m0 = 0.0
        m1 = 0.0
        m2 = 0.0
        m3 = 0.0
        for k in range(n):
            v = xi[k] - mu
            pi[k] = v
            t = (k - n4) * inv_n
            vt = v * t
            vt2 = vt * t
            m0 += v
            m1 += vt
            m2 += vt2
            m3 += vt2 * t
        for k in range(n, length):
            pi[k] = 0.0
        m[0] = m0
        m[1] = m1
        m[2] = m2
        m[3] = m3
        for j in range(p1):
            a = 0.0
            for l in range(j + 1):
                a += rinv_t[j, l] * m[l]
            b[i, j] = a


@numba.njit(cache=True, nogil=True, fastmath=True)
def _multiply_conj(spectra, kernel):
    """spectra <- conj(spectra) * kernel, row by row; both complex arrays given as (re, im) float pairs
    (their float views: vectorised)."""
    n_rec = spectra.shape[0]
    n_f = spectra.shape[1] // 2
    ks = kernel
    for i in range(n_rec):
        xs = spectra[i]
        for k in range(n_f):
            xr = xs[2 * k]
            xi = xs[2 * k + 1]
            kr = ks[2 * k]
            ki = ks[2 * k + 1]
            xs[2 * k] = xr * kr + xi * ki
            xs[2 * k + 1] = xr * ki - xi * kr


@numba.njit(cache=True, nogil=True)
def _best_shifts(corr, n_lags, lo, b, qs, den, shift, score):
    """Best shift (samples, sub-sample refined) per record from the correlations corr[i, n_lags - idx]
    = s_d^T x (d = lo + idx): score(d) = (s_d^T R x)^2 / s_d^T R s_d maximal, refined by a parabola through
    chi2 = -score at the neighbours (no refinement on the window's edge), as `_best_shift`."""
    n_rec = corr.shape[0]
    p1 = b.shape[1]
    for i in range(n_rec):
        best = 0
        best_val = -np.inf
        for idx in range(n_lags):
            num = np.float64(corr[i, n_lags - idx])
            for j in range(p1):
                num -= b[i, j] * qs[idx, j]
            d = den[idx]
            sc = num * num / d if d > 0 else -np.inf
            score[idx] = sc
            if np.isnan(sc):
                if not np.isnan(best_val):
                    best = idx
                    best_val = sc
            elif sc > best_val and not np.isnan(best_val):
                best = idx
                best_val = sc
        delta = 0.0
        if 0 < best < n_lags - 1:
            fm = -score[best - 1]
            f0 = -score[best]
            fp = -score[best + 1]
            curv = fm - 2.0 * f0 + fp
            if curv > 0:
                delta = 0.5 * (fm - fp) / curv
                if np.isnan(delta):
                    delta = 0.0
                delta = min(max(delta, -0.5), 0.5)
        shift[i] = lo + best + delta


@numba.njit(cache=True, nogil=True, fastmath=True)
def _refit_fast(x, mean, e, ext_first, shift, n4, inv_n, rinv_t, rinv, height, rms, coef):
    """Unmasked `_refit` in two passes over each record: h s(k - shift) + polynomial baseline, sums in
    float64 on x - mean (mean: the record's mean, added back to the constant coefficient). The basis
    sums come from monomials in tau = (k - n4) inv_n (Q^T y = R^-T V^T y); `coef` gets the tau-monomial
    coefficients R^-1 a."""
    n_rec, n = x.shape
    p1 = coef.shape[1]
    j_max = e.size - n - 1
    xm = np.zeros(4)
    sm = np.zeros(4)
    a = np.zeros(4)
    sq = np.zeros(4)
    cm = np.zeros(4)
    for i in range(n_rec):
        mu = mean[i]
        u0 = -shift[i] - ext_first
        j0 = min(max(int(np.floor(u0)), 0), j_max)
        f = u0 - j0
        g = 1.0 - f
        xi = x[i]
        ea = e[j0:j0 + n]                     # slices: no negative-index checks, the loops vectorise
        eb = e[j0 + 1:j0 + n + 1]
        sx = 0.0
        ss = 0.0
        x0 = 0.0
        x1 = 0.0
        x2 = 0.0
        x3 = 0.0
        s0 = 0.0
        s1 = 0.0
        s2 = 0.0
        s3 = 0.0
        for k in range(n):
            s = g * ea[k] + f * eb[k]
            v = xi[k] - mu
            t = (k - n4) * inv_n
            sx += s * v
            ss += s * s
            x0 += v
            s0 += s
            vt = v * t
            st = s * t
            x1 += vt
            s1 += st
            vt *= t
            st *= t
            x2 += vt
            s2 += st
            x3 += vt * t
            s3 += st * t
        xm[0] = x0
        xm[1] = x1
        xm[2] = x2
        xm[3] = x3
        sm[0] = s0
        sm[1] = s1
        sm[2] = s2
        sm[3] = s3
        num = sx
        den = ss
        for j in range(p1):
            aj = 0.0
            sqj = 0.0
            for l in range(j + 1):
                aj += rinv_t[j, l] * xm[l]
                sqj += rinv_t[j, l] * sm[l]
            a[j] = aj
            sq[j] = sqj
            num -= sqj * aj
            den -= sqj * sqj
        h = num / den if den > 0 else np.nan
        for j in range(4):
            cm[j] = 0.0
        for j in range(p1):
            c = 0.0
            for l in range(j, p1):
                c += rinv[j, l] * (a[l] - h * sq[l])
            cm[j] = c
        c0 = cm[0]
        c1 = cm[1]
        c2 = cm[2]
        c3 = cm[3]
        r2 = 0.0
        for k in range(n):
            s = g * ea[k] + f * eb[k]
            t = (k - n4) * inv_n
            r = xi[k] - mu - h * s - (c0 + t * (c1 + t * (c2 + t * c3)))
            r2 += r * r
        height[i] = h
        rms[i] = np.sqrt(r2 / n)
        for j in range(p1):
            coef[i, j] = cm[j]
        coef[i, 0] += mu


@numba.njit(cache=True, nogil=True)
def _count_above(x, n_pre, level, count):
    """count[i] = number of samples of x[i] above `level` + the mean of its first n_pre samples."""
    for i in range(x.shape[0]):
        xi = x[i]
        acc = 0.0
        for k in range(n_pre):
            acc += xi[k]
        thr = level + acc / n_pre
        c = 0
        for k in range(xi.size):
            if xi[k] > thr:
                c += 1
        count[i] = c


#: records per FFT sub-block of `_fit_block` (its padded rows and spectra stay in cache)
_FFT_ROWS = 16
_scratch = threading.local()


def _buffers(rows: int, length: int, dtype) -> tuple[np.ndarray, np.ndarray]:
    """This thread's reused (rows, length) real and (rows, length//2+1) complex scratch arrays."""
    key = (rows, length, np.dtype(dtype).str)
    bufs = getattr(_scratch, "bufs", None)
    if bufs is None or bufs[0] != key:
        cdtype = np.complex64 if np.dtype(dtype) == np.float32 else np.complex128
        bufs = _scratch.bufs = (key, np.empty((rows, length), dtype), np.empty((rows, length // 2 + 1), cdtype))
    return bufs[1], bufs[2]


def _fit_block(scan: _Scan, x: np.ndarray) -> tuple:
    """Unmasked fit of a block (B, N): height, shift (samples), rms, monomial baseline coefficients.

    Per sub-block of `_FFT_ROWS` records: mean removal, padding and Q^T x in one pass into a reused
    buffer, rfft and irfft into reused arrays (the correlation with the template at every shift), the
    best shift from the correlations; then the fit at the fractional shift (`_refit_fast`)."""
    n_rec, n = x.shape
    length, n_lags, p1 = scan.fft_len, scan.n_lags, scan.order + 1
    n4, inv_n = n // 4, 1.0 / n
    rows = min(_FFT_ROWS, n_rec)
    pad, spec = _buffers(rows, length, scan.dtype)
    mean, b, shift = np.empty(n_rec), np.empty((n_rec, p1)), np.empty(n_rec)
    height, rms, m = np.empty(n_rec), np.empty(n_rec), np.empty((n_rec, p1))
    score = np.empty(n_lags)
    for a in range(0, n_rec, rows):
        e = min(a + rows, n_rec)
        p, sp = pad[: e - a], spec[: e - a]
        _prepare(x[a:e], n4, inv_n, scan.rinv_t, p, mean[a:e], b[a:e])
        if _pocketfft is not None:
            _pocketfft.r2c(p, (1,), True, 0, sp, 1)
            _multiply_conj(sp.view(scan.dtype), scan.e_fft_scaled.view(scan.dtype))
            _pocketfft.c2r(sp, (1,), length, False, 0, p, 1)
        else:  # pragma: no cover
            sp[...] = scipy.fft.rfft(p, axis=-1)
            _multiply_conj(sp.view(scan.dtype), scan.e_fft_scaled.view(scan.dtype))
            p[...] = scipy.fft.irfft(sp, length, axis=-1, norm="forward")
        _best_shifts(p, n_lags, scan.lo, b[a:e], scan.qs64, scan.den64, shift[a:e], score)
        _refit_fast(x[a:e], mean[a:e], scan.e, scan.ext_first, shift[a:e], n4, inv_n, scan.rinv_t, scan.rinv,
                    height[a:e], rms[a:e], m[a:e])       # while the sub-block is in cache
    return height, shift, rms, m * (scan.fs / n) ** np.arange(p1)


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
    scan = _cached_scan(sev, float(sample_frequency), int(baseline_order), lo, hi, dtype)
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
        _count_above(x, n // 8, float(truncation_level), n_trunc[sl])
        for i in np.flatnonzero(n_trunc[sl] > 0):
            j = a + i
            above = x[i] - np.mean(x[i, : n // 8], dtype=np.float64) > truncation_level
            out = _fit_masked(scan, x[i].astype(np.float64), ~above)
            height[j], shift[j], rms[j], coef[j] = (v[0] for v in out)

    run_blocks(run_block, n_rec, batch, workers)
    out = {"fit_height": height, "fit_onset": shift / scan.fs, "fit_rms": rms, "fit_n_truncated": n_trunc}
    out.update({f"fit_baseline_{j}": coef[:, j] for j in range(baseline_order + 1)})
    return out
