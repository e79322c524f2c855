"""Feature family "main": Cait's main and additional parameters, fused into one numba kernel.

Definitions (per record ``x`` of ``N`` samples at ``fs`` Hz; sample indices from 0; ``n8 = N // 8``;
times in s relative to the trigger sample ``P``: ``N // 4``, or the records' pretrigger):

Main parameters (Cait ``calc_main_parameters``)
    offset        mean of ``x[:n8]`` (V).
    smoothed      ``s[k] = mean(x[k-25 : k+25]) - offset``, a 50-sample moving average exactly as Cait's
                  ``box_car_smoothing`` (window ``k-25 .. k+24``, centred on k - 1/2, so times read half a
                  sample late), the record extended by its first/last sample at the edges (``'edge'``).
    pulse_height  ``max(s)`` (V); ``t_max = argmax(s)`` (first maximum).
    t_zero        last sample before ``t_max`` with ``s < 0.2 h``; 0 (record start) if none.
    t_rise        first sample from ``t_zero`` on with ``s > 0.8 h``; ``t_max`` if none (only when h <= 0).
    t_end         first sample from ``t_max`` on with ``s < 0.368 h``; ``N - 1`` (record end) if none.
    t_half        last sample up to ``t_end`` with ``s > 0.736 h``; ``t_end`` if none.
    t_decaystart  last sample up to ``t_half`` with ``s > 0.9 h``; ``t_half`` if none.
    onset = (t_zero - P)/fs, rise_time = (t_rise - t_zero)/fs, decay_time = (t_end - t_decaystart)/fs,
    peak_time = (t_max - P)/fs (all s). No drift correction before the maximum search (Cait
    subtracts its end-difference drift first; here the drift is a separate feature).
    slope         least-squares slope of the whole raw record (V/s). Cait's "linear drift" is instead
                  (mean of the last 500 - mean of the first 500 smoothed samples)/N per sample; that
                  information is kept in ``offset_difference``.

Additional parameters (Cait ``calc_additional_parameters``, but on the raw record, not the smoothed one)
    maximum, minimum                raw record (V).
    max_derivative, min_derivative  extrema of the derivative of the smoothed record,
                                    ``(s[k+1] - s[k]) fs = (x[k+25] - x[k-25]) fs / 50`` for k < N-1 (V/s),
                                    as Cait's ``diff`` of the smoothed event; the 50-sample stencil is
                                    centred on k, so ``max_derivative_time = (k - N//4)/fs`` (s) of the
                                    first extremum. A step gives a 50-sample plateau of step*fs/50.
    mean, variance, skewness        whole raw record (V, V^2, 1); population moments (numpy ``var``,
                                    scipy ``skew`` with bias=True).
    *_first, *_last                 the same for ``x[:n8]`` and ``x[N-n8:]``.
    offset_difference               mean_last - mean_first (V).
    Skewness of a segment with zero variance (constant record) is defined as 0, not NaN.

NaN samples give undefined features (extrema are searched on the floats' bit patterns).

Speed: one numba kernel, parallel over chunks of records; each record is swept a few times while it
sits in L2: vectorised moment sums, vectorised increments x[k+25] - x[k-25], running window sums as
four independent add chains, and first-extremum searches as vectorised integer block reductions.
"""
from __future__ import annotations

import numba as nb
import numpy as np

from ..errors import InputError

SMOOTHING_SAMPLES = 50
_HALF = SMOOTHING_SAMPLES // 2

UNITS: dict[str, str] = {
    "pulse_height": "V",
    "onset": "s",
    "rise_time": "s",
    "decay_time": "s",
    "peak_time": "s",
    "slope": "V/s",
    "offset": "V",
    "maximum": "V",
    "minimum": "V",
    "max_derivative": "V/s",
    "min_derivative": "V/s",
    "max_derivative_time": "s",
    "min_derivative_time": "s",
    "mean": "V",
    "variance": "V^2",
    "skewness": "1",
    "mean_first": "V",
    "variance_first": "V^2",
    "skewness_first": "1",
    "mean_last": "V",
    "variance_last": "V^2",
    "skewness_last": "1",
    "offset_difference": "V",
}
FEATURES = tuple(UNITS)
(_PH, _ONSET, _RISE, _DECAY, _PEAK, _SLOPE, _OFFSET, _MAX, _MIN, _DMAX, _DMIN, _DMAX_T, _DMIN_T,
 _MEAN, _VAR, _SKEW, _MEAN_F, _VAR_F, _SKEW_F, _MEAN_L, _VAR_L, _SKEW_L, _OFFDIFF) = range(len(FEATURES))

# Reassociation lets LLVM vectorise the sums. No 'nnan'/'ninf' (comparisons stay IEEE) and no 'arcp'.
_FAST = {"reassoc", "contract", "nsz"}
_CHUNK = 64  # records per parallel task (one pair of scratch buffers each)
_BLOCK = 64  # samples per block of the extremum searches
_KEY32 = (31, 0x7FFFFFFF)  # shift, mask: float32 bits -> integers in the order of the floats
_KEY64 = (63, 0x7FFFFFFFFFFFFFFF)


@nb.njit(cache=True, fastmath=_FAST)
def _mean(x, lo, hi):
    """Mean of x[lo:hi] in float64."""
    s = 0.0
    for i in range(lo, hi):
        s += np.float64(x[i])
    return s / (hi - lo)


@nb.njit(cache=True, fastmath=_FAST)
def _shifted_sums(x, lo, hi, shift):
    """Sums of d, d^2, d^3 and i*d over x[lo:hi], with d = x - shift (V)."""
    s1 = 0.0
    s2 = 0.0
    s3 = 0.0
    si = 0.0
    fi = np.float64(lo)  # float index: int -> float conversion does not vectorise on AVX2
    for i in range(lo, hi):
        d = np.float64(x[i]) - shift
        d2 = d * d
        s1 += d
        s2 += d2
        s3 += d2 * d
        si += fi * d
        fi += 1.0
    return s1, s2, s3, si


@nb.njit(cache=True)
def _moments(s1, s2, s3, n, shift):
    """Mean, population variance and skewness from shifted sums over n samples."""
    mu = s1 / n
    e2 = s2 / n
    var = e2 - mu * mu
    if var <= 1e-14 * e2:  # zero up to rounding: constant segment
        return mu + shift, max(var, 0.0), 0.0
    m3 = s3 / n - 3.0 * mu * e2 + 2.0 * mu * mu * mu
    return mu + shift, var, m3 / var ** 1.5


@nb.njit(cache=True, fastmath=_FAST)
def _first_extrema(bits, shift, mask):
    """First positions of the maximum and minimum of floats given as their integer bit patterns.

    ``i ^ ((i >> shift) & mask)`` orders the bit patterns like the floats (-0 just below +0), and
    integer max/min reductions vectorise where float ones do not: block extrema first, then the
    winning block is searched for its first extreme element.
    """
    n = bits.shape[0]
    k0 = np.int64(bits[0])
    best_max = best_min = k0 ^ ((k0 >> shift) & mask)
    max_lo, max_hi, min_lo, min_hi = 0, 1, 0, 1
    n_blocks = n // _BLOCK
    for b in range(n_blocks):
        block = bits[b * _BLOCK:(b + 1) * _BLOCK]
        bmax = best_max
        bmin = best_min
        for j in range(_BLOCK):
            i = np.int64(block[j])
            key = i ^ ((i >> shift) & mask)
            bmax = max(bmax, key)
            bmin = min(bmin, key)
        if bmax > best_max:
            best_max, max_lo, max_hi = bmax, b * _BLOCK, (b + 1) * _BLOCK
        if bmin < best_min:
            best_min, min_lo, min_hi = bmin, b * _BLOCK, (b + 1) * _BLOCK
    for k in range(n_blocks * _BLOCK, n):
        i = np.int64(bits[k])
        key = i ^ ((i >> shift) & mask)
        if key > best_max:
            best_max, max_lo, max_hi = key, k, k + 1
        if key < best_min:
            best_min, min_lo, min_hi = key, k, k + 1
    k_max = _first_key(bits, max_lo, max_hi, best_max, shift, mask)
    k_min = _first_key(bits, min_lo, min_hi, best_min, shift, mask)
    return k_max, k_min


@nb.njit(cache=True)
def _first_key(bits, lo, hi, target, shift, mask):
    for k in range(lo, hi):
        i = np.int64(bits[k])
        if i ^ ((i >> shift) & mask) == target:
            return k
    return lo


@nb.njit(cache=True)
def _window_sum(x, k):
    """sum(x[k-25 : k+25]) with the record extended by its edge samples (V)."""
    last = x.shape[0] - 1
    w = 0.0
    for j in range(k - _HALF, k + _HALF):
        w += np.float64(x[min(max(j, 0), last)])
    return w


@nb.njit(cache=True)  # no fastmath: reassociation would put two adds on each running-sum chain
def _window_sums(x, offset, inc, buf):
    """buf[k] = sum(x[k-25 : k+25]) - 50 offset (edge padded): 50 x the smoothed record (V).

    Running sums over the increments inc (``_increments``), four interleaved chains in the middle
    of the record. Sums stay unscaled so that a constant record gives exact zeros.
    """
    n = x.shape[0]
    last = n - 1
    base = SMOOTHING_SAMPLES * offset
    lane = last // 4
    w = _window_sum(x, 0)
    w1 = _window_sum(x, lane)
    w2 = _window_sum(x, 2 * lane)
    w3 = _window_sum(x, 3 * lane)
    for k in range(lane):
        k1 = k + lane
        k2 = k1 + lane
        k3 = k2 + lane
        buf[k] = np.float32(w - base)
        buf[k1] = np.float32(w1 - base)
        buf[k2] = np.float32(w2 - base)
        buf[k3] = np.float32(w3 - base)
        w += inc[k]
        w1 += inc[k1]
        w2 += inc[k2]
        w3 += inc[k3]
    for k in range(4 * lane, last):
        buf[k] = np.float32(w3 - base)
        w3 += inc[k]
    buf[last] = np.float32(w3 - base)


@nb.njit(cache=True, inline="always")
def _increment(x, k, last):
    """x[k+25] - x[k-25] (V) with the record extended by its edge samples: 50 x the smoothed slope."""
    return np.float64(x[min(k + _HALF, last)]) - np.float64(x[max(k - _HALF, 0)])


@nb.njit(cache=True, fastmath=_FAST)
def _increments(x, inc):
    """inc[k] = x[k+25] - x[k-25] for k < N-1 (V, edge padded); the middle vectorises."""
    last = x.shape[0] - 1
    head = min(_HALF, last)
    tail = max(head, last - _HALF)
    for k in range(head):
        inc[k] = _increment(x, k, last)
    ahead = x[head + _HALF:]
    behind = x[head - _HALF:]
    middle = inc[head:tail]
    for j in range(tail - head):
        middle[j] = np.float64(ahead[j]) - np.float64(behind[j])
    for k in range(tail, last):
        inc[k] = _increment(x, k, last)


@nb.njit(cache=True)
def _pulse_times(s, t_max):
    """Cait's t_zero, t_rise, t_end, t_half, t_decaystart (samples) of the smoothed record s."""
    n = s.shape[0]
    h = s[t_max]
    t_zero = 0
    for i in range(t_max - 1, -1, -1):
        if s[i] < 0.2 * h:
            t_zero = i
            break
    t_rise = t_max
    for i in range(t_zero, n):
        if s[i] > 0.8 * h:
            t_rise = i
            break
    t_end = n - 1
    for i in range(t_max, n):
        if s[i] < 0.368 * h:
            t_end = i
            break
    t_half = t_end
    for i in range(t_end, -1, -1):
        if s[i] > 0.736 * h:
            t_half = i
            break
    t_decaystart = t_half
    for i in range(t_half, -1, -1):
        if s[i] > 0.9 * h:
            t_decaystart = i
            break
    return t_zero, t_rise, t_end, t_decaystart


@nb.njit(cache=True)
def _record_features(x, fs, trig, buf, inc, out, col):
    """All features of one float32 record x into out[:, col]; buf (N,) float32 and inc (N-1,)
    float64 are scratch."""
    n = x.shape[0]
    n8 = n // 8
    offset = _mean(x, 0, n8)

    # raw moments: first eighth, middle, last eighth, shifted by the offset for precision
    a1, a2, a3, ai = _shifted_sums(x, 0, n8, offset)
    b1, b2, b3, bi = _shifted_sums(x, n8, n - n8, offset)  # n >= 8: never empty
    c1, c2, c3, ci = _shifted_sums(x, n - n8, n, offset)
    s1 = a1 + b1 + c1
    mean, var, skew = _moments(s1, a2 + b2 + c2, a3 + b3 + c3, n, offset)
    mean_f, var_f, skew_f = _moments(a1, a2, a3, n8, offset)
    mean_l, var_l, skew_l = _moments(c1, c2, c3, n8, offset)
    # least-squares slope: sum((i - ibar) d_i) / sum((i - ibar)^2)
    sxx = n * (n * n - 1.0) / 12.0
    slope = (ai + bi + ci - 0.5 * (n - 1) * s1) / sxx * fs
    k_xmax, k_xmin = _first_extrema(x.view(np.int32), *_KEY32)

    _increments(x, inc)
    _window_sums(x, offset, inc, buf)
    t_max = _first_extrema(buf.view(np.int32), *_KEY32)[0]
    t_zero, t_rise, t_end, t_decaystart = _pulse_times(buf, t_max)
    k_dmax, k_dmin = _first_extrema(inc.view(np.int64), *_KEY64)

    out[_PH, col] = buf[t_max] / SMOOTHING_SAMPLES
    out[_ONSET, col] = (t_zero - trig) / fs
    out[_RISE, col] = (t_rise - t_zero) / fs
    out[_DECAY, col] = (t_end - t_decaystart) / fs
    out[_PEAK, col] = (t_max - trig) / fs
    out[_SLOPE, col] = slope
    out[_OFFSET, col] = offset
    out[_MAX, col] = x[k_xmax]
    out[_MIN, col] = x[k_xmin]
    out[_DMAX, col] = inc[k_dmax] * fs / SMOOTHING_SAMPLES
    out[_DMIN, col] = inc[k_dmin] * fs / SMOOTHING_SAMPLES
    out[_DMAX_T, col] = (k_dmax - trig) / fs
    out[_DMIN_T, col] = (k_dmin - trig) / fs
    out[_MEAN, col] = mean
    out[_VAR, col] = var
    out[_SKEW, col] = skew
    out[_MEAN_F, col] = mean_f
    out[_VAR_F, col] = var_f
    out[_SKEW_F, col] = skew_f
    out[_MEAN_L, col] = mean_l
    out[_VAR_L, col] = var_l
    out[_SKEW_L, col] = skew_l
    out[_OFFDIFF, col] = mean_l - mean_f


@nb.njit(cache=True, parallel=True)
def _features_kernel(traces, fs, trig, out):
    """Fill out (n_features, n_events) from traces (n_events, N), parallel over chunks of records."""
    n_events, n = traces.shape
    n_chunks = (n_events + _CHUNK - 1) // _CHUNK
    for c in nb.prange(n_chunks):
        buf = np.empty(n, np.float32)
        inc = np.empty(n - 1, np.float64)
        for e in range(c * _CHUNK, min((c + 1) * _CHUNK, n_events)):
            _record_features(traces[e], fs, trig, buf, inc, out, e)


def compute_features(traces: np.ndarray, sample_frequency: float, *, pretrigger: int | None = None) -> dict[str, np.ndarray]:
    """Per-record features (see module docstring) of a block of single-channel records.

    Parameters
    ----------
    traces : (n_events, N) float32 array, V (other float dtypes are converted); N >= 8 samples.
    sample_frequency : Hz
    pretrigger : trigger sample P of the records, times are relative to it (default N // 4)

    Returns
    -------
    dict feature name -> (n_events,) float64 array, in the units of ``UNITS``.
    """
    traces = np.asarray(traces)
    if traces.ndim != 2:
        raise InputError(f"traces: expected a 2-d (event, sample) array, got shape {traces.shape}")
    if traces.dtype.kind != "f":
        raise InputError(f"traces: expected float volts, got dtype {traces.dtype}")
    if traces.shape[1] < 8:
        raise InputError(f"traces: records of {traces.shape[1]} samples are too short (need >= 8)")
    fs = float(sample_frequency)
    if not np.isfinite(fs) or fs <= 0:
        raise InputError(f"sample_frequency: must be a positive number of Hz, got {sample_frequency!r}")
    traces = np.ascontiguousarray(traces, dtype=np.float32)
    out = np.empty((len(FEATURES), traces.shape[0]), dtype=np.float64)
    if traces.shape[0]:
        _features_kernel(traces, fs, traces.shape[1] // 4 if pretrigger is None else int(pretrigger), out)
    return {name: out[i] for i, name in enumerate(FEATURES)}
