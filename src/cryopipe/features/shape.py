"""Feature family "shape": the features the default cuts judge a record's shape by.

They use the channel's standard event (SEV, max 1, onset at N/4) and noise power spectrum (NPS), as in
Cait's standard analysis, through the optimum filter (OF, `cryopipe.optimum_filter`); all
dimensionless unless stated:

of_snr
    The record minus the straight line through the means of its first and last ``N/128`` samples is
    filtered with the OF at every lag (circularly); the largest amplitude over pulse onsets in
    [N/64, 15N/16) (closer to the ends the circular filter sees the record boundary) divided by the OF resolution sigma_OF: the main pulse.
of_onset
    Onset of that pulse relative to the trigger N/4 (s).
second_pulse_snr, second_pulse_fraction
    The OF response of a SEV-shaped main pulse (its amplitude times the filtered SEV, shifted to its
    lag) is subtracted; the largest remaining amplitude over onsets at least ``N/256`` from the main
    one, in units of sigma_OF and as a fraction of the main amplitude: a second pulse (pile-up, or the
    decay of an earlier pulse wrapped around to the end of the record).
second_pulse_delay
    Onset of that second pulse minus the main pulse's onset (s): a slow tail component of the main
    pulse peaks just after it (a few N/1000 to N/40), a piled-up pulse anywhere.
end_snr, end_fraction
    Mean of the last N/8 samples minus the mean of the first N/8 (V), in units of the baseline noise
    rms sigma_BL (from the NPS) and as a fraction of the largest excursion above the first-eighth
    baseline (at least sigma_BL; the raw height, right also for saturated pulses): pulses that do not decay in the window, steps (SQUID jumps, resets), ramps.
pretrigger_drop_snr
    Mean of the first N/64, N/32 or N/16 samples (the largest in magnitude) minus the mean of
    [N/8, 7N/32) (before the earliest accepted onset), in units of sigma_BL: the decay of a pulse before the window (decaying baseline).
top_plateau
    Fraction of the samples above 95 % of the largest excursion from the first-eighth baseline: long
    for the flat top of a saturated pulse, short for an unsaturated peak.
spike_snr, spike_fraction
    A spike (1-4 samples) lifts a sample above (or below) BOTH the means of x[k-8 : k-4] and of
    x[k+5 : k+9], which a rising or falling edge does not: the largest such lift, in units of the
    robust (MAD) scale of x[k] minus the mean of the two side windows, and as a fraction of the largest
    raw deviation from the first-eighth baseline (a pulse's peak lifts by a small fraction of it).
"""
from __future__ import annotations

import numba as nb
import numpy as np
import scipy.fft

from ..errors import InputError
from ..optimum_filter import build_optimum_filter, expected_resolution

MAD_TO_SIGMA = 1.4826
SPIKE_WIDTH = 4  # samples: the widest spike the spike features see

UNITS: dict[str, str] = {
    "of_snr": "1",
    "of_onset": "s",
    "second_pulse_snr": "1",
    "second_pulse_fraction": "1",
    "second_pulse_delay": "s",
    "end_snr": "1",
    "end_fraction": "1",
    "spike_snr": "1",
    "spike_fraction": "1",
    "pretrigger_drop_snr": "1",
    "top_plateau": "1",
}


# Numba kernels. They reproduce numpy's float64 arithmetic exactly (same operations in the same order;
# means as numpy's pairwise sum; medians as exact order statistics), so that the features equal those of
# the plain numpy formulation bit for bit (tests/test_feature_shape.py keeps that reference).
_CHUNK = 16  # records per parallel task (one set of scratch buffers each)


@nb.njit(cache=True)
def _block_sum(a, lo, n):
    """numpy's pairwise-summation leaf (n <= 128): eight running sums, then the rest one by one."""
    if n < 8:
        res = -0.0
        for i in range(lo, lo + n):
            res += a[i]
        return res
    r0, r1, r2, r3 = a[lo], a[lo + 1], a[lo + 2], a[lo + 3]
    r4, r5, r6, r7 = a[lo + 4], a[lo + 5], a[lo + 6], a[lo + 7]
    i = 8
    m = n - (n % 8)
    while i < m:
        j = lo + i
        r0 += a[j]
        r1 += a[j + 1]
        r2 += a[j + 2]
        r3 += a[j + 3]
        r4 += a[j + 4]
        r5 += a[j + 5]
        r6 += a[j + 6]
        r7 += a[j + 7]
        i += 8
    res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    while i < n:
        res += a[lo + i]
        i += 1
    return res


@nb.njit(cache=True)
def _pairwise_sum(a, lo, n):
    """sum(a[lo:lo+n]) exactly as numpy's pairwise summation (float64 add.reduce of a contiguous row):
    halves (the first a multiple of 8 long) summed recursively down to leaves of <= 128 samples.
    Written with an explicit stack (numba's parallel regions do not resolve recursive calls)."""
    if n <= 128:
        return _block_sum(a, lo, n)
    starts = np.empty(64, np.int64)
    sizes = np.empty(64, np.int64)
    states = np.empty(64, np.int64)
    partial = np.empty(64)
    sp = 0
    rp = 0
    starts[0], sizes[0], states[0] = lo, n, 0
    while sp >= 0:
        start, size = starts[sp], sizes[sp]
        if size <= 128:
            partial[rp] = _block_sum(a, start, size)
            rp += 1
            sp -= 1
            continue
        half = size // 2
        half -= half % 8
        if states[sp] == 0:                       # left half next
            states[sp] = 1
            sp += 1
            starts[sp], sizes[sp], states[sp] = start, half, 0
        elif states[sp] == 1:                     # then the right half
            states[sp] = 2
            sp += 1
            starts[sp], sizes[sp], states[sp] = start + half, size - half, 0
        else:                                     # both done: left + right
            partial[rp - 2] = partial[rp - 2] + partial[rp - 1]
            rp -= 1
            sp -= 1
    return partial[0]


@nb.njit(cache=True)
def _mean(a, lo, n):
    return _pairwise_sum(a, lo, n) / n


_BINS = 2048  # histogram bins per level of the order-statistic search
_FEW = 48  # candidates sorted directly


@nb.njit(cache=True)
def _order_statistics(a, m, k, buf, counts):
    """The k-th and (k+1)-th smallest (0-based) of a[:m] (m >= 2, no NaN) exactly, in a few linear
    passes whatever the order or distribution of the values: histogram the values between the current
    bounds (bins are monotonic in the value, so ranks stay ordered), keep the bins holding ranks k and
    k+1, repeat on their members; sort once few remain. buf (m,) and counts (_BINS,) are scratch."""
    lo = a[0]
    hi = a[0]
    for i in range(m):
        lo = min(lo, a[i])
        hi = max(hi, a[i])
    src = a
    n = m
    while True:
        if not hi > lo:
            return lo, lo
        scale = _BINS / (hi - lo)
        if n <= _FEW or not np.isfinite(scale):
            break
        counts[:] = 0
        for i in range(n):
            counts[min(int((src[i] - lo) * scale), _BINS - 1)] += 1
        below = 0
        b0 = 0
        while below + counts[b0] <= k:
            below += counts[b0]
            b0 += 1
        b1 = b0
        seen = below + counts[b0]
        while seen <= k + 1:
            b1 += 1
            seen += counts[b1]
        kept = 0
        new_lo = hi
        new_hi = lo
        for i in range(n):
            v = src[i]
            j = min(int((v - lo) * scale), _BINS - 1)
            if j >= b0 and j <= b1:
                buf[kept] = v
                kept += 1
                new_lo = min(new_lo, v)
                new_hi = max(new_hi, v)
        if kept == n:  # no progress (values too close for the bins): sort them
            break
        k -= below
        src = buf
        n = kept
        lo, hi = new_lo, new_hi
    for i in range(n):
        buf[i] = src[i]
    part = np.sort(buf[:n])
    return part[k], part[k + 1]


@nb.njit(cache=True)
def _median(a, m, buf, counts):
    """Median of a[:m] as numpy's: the middle order statistic, or the mean of the two middle ones; NaN
    if any value is NaN. buf (m,) and counts (_BINS,) are scratch; a is left unchanged."""
    for i in range(m):
        if a[i] != a[i]:
            return np.nan
    if m == 1:
        return a[0]
    lower, upper = _order_statistics(a, m, (m - 1) // 2, buf, counts)
    if m % 2:
        return lower
    return (-0.0 + lower + upper) / 2


@nb.njit(cache=True, parallel=True)
def _detrend(traces, edge, ramp, out):
    """out = each record (float64) minus the straight line through the means of its first and last
    `edge` samples (V)."""
    b, n = traces.shape
    for c in nb.prange((b + _CHUNK - 1) // _CHUNK):
        x = np.empty(n)
        for e in range(c * _CHUNK, min((c + 1) * _CHUNK, b)):
            for k in range(n):
                x[k] = traces[e, k]
            start = _mean(x, 0, edge)
            end = _mean(x, n - edge, edge)
            for k in range(n):
                out[e, k] = x[k] - start - (end - start) * ramp[k]


@nb.njit(cache=True, parallel=True, error_model="numpy")
def _shape_kernel(traces, filtered, sigma_of, response, onset, sigma_bl, fs, out):
    """All shape features of records `traces` (B, N) float32 V into out (11, B); `filtered` is the OF
    output (B, N) of the detrended records (amplitude x sigma_OF at each circular lag)."""
    b, n = traces.shape
    n8 = n // 8
    w = SPIKE_WIDTH
    m = n - 4 * w
    lo_on, hi_on = n // 64, n - n // 16
    min_sep = max(n // 256, 1)
    for c in nb.prange((b + _CHUNK - 1) // _CHUNK):
        x = np.empty(n)
        cs = np.empty(n + 1)
        centred = np.empty(m)
        buf = np.empty(m)
        counts = np.empty(_BINS, np.int64)
        for e in range(c * _CHUNK, min((c + 1) * _CHUNK, b)):
            for k in range(n):
                x[k] = traces[e, k]
            # main pulse: largest OF amplitude over valid onsets (first of equals)
            i0 = 0
            a0 = -np.inf
            for k in range(n):
                lag = k - n if k >= n - onset else k
                if lag + onset >= lo_on and lag + onset < hi_on:
                    a = filtered[e, k] / sigma_of
                    if a > a0 or (a != a and a0 == a0):
                        a0, i0 = a, k
                        if a != a:
                            break
            lag0 = i0 - n if i0 >= n - onset else i0
            # second pulse: the largest amplitude left after subtracting the main pulse's OF response
            i1 = 0
            a1 = -np.inf
            for k in range(n):
                lag = k - n if k >= n - onset else k
                if lag + onset >= lo_on and lag + onset < hi_on and abs(lag - lag0) >= min_sep:
                    r = filtered[e, k] / sigma_of - a0 * response[(k - i0) % n]
                    if r > a1:
                        a1, i1 = r, k
            lag1 = i1 - n if i1 >= n - onset else i1
            out[0, e] = a0
            out[1, e] = lag0 / fs
            out[2, e] = a1
            out[3, e] = a1 / max(a0, 1.0)
            out[4, e] = (lag1 - lag0) / fs
            # levels: end, height, plateau, excursion
            first = _mean(x, 0, n8)
            last = _mean(x, n - n8, n8)
            end = last - first
            xmax = x[0]
            excursion = 0.0
            for k in range(n):
                xmax = max(xmax, x[k])
                excursion = max(excursion, abs(x[k] - first))
            out[5, e] = end / sigma_bl
            out[6, e] = end / max(xmax - first, sigma_bl)
            top = first + 0.95 * (xmax - first)
            count = 0
            for k in range(n):
                count += x[k] >= top
            out[10, e] = count / n
            # spikes: lift above both side windows, in robust sigmas of the two-sided residual
            cs[0] = 0.0
            for k in range(n):
                cs[k + 1] = cs[k] + x[k]
            biggest = -np.inf
            for k in range(2 * w, n - 2 * w):
                left = (cs[k - w] - cs[k - 2 * w]) / w
                right = (cs[k + 2 * w + 1] - cs[k + w + 1]) / w
                xk = x[k]
                up = min(xk - left, xk - right)
                down = min(left - xk, right - xk)
                biggest = max(biggest, max(up, down))
                centred[k - 2 * w] = xk - 0.5 * (left + right)
            med = _median(centred, m, buf, counts)
            for j in range(m):
                centred[j] = abs(centred[j] - med)
            scale = MAD_TO_SIGMA * _median(centred, m, buf, counts)
            out[7, e] = biggest / scale
            out[8, e] = biggest / excursion
            # pretrigger drop: the largest of three early means against the pre-onset reference
            ref = _mean(x, n8, 7 * n // 32 - n8)
            best = 0.0
            for div in (64, 32, 16):
                d = _mean(x, 0, n // div) - ref
                if div == 64 or abs(d) > abs(best):
                    best = d
            out[9, e] = best / sigma_bl


_ORDER = ("of_snr", "of_onset", "second_pulse_snr", "second_pulse_fraction", "second_pulse_delay", "end_snr",
          "end_fraction", "spike_snr", "spike_fraction", "pretrigger_drop_snr", "top_plateau")


def shape_features(traces, sample_frequency: float, sev, nps, batch: int = 256, of=None,
                   workers: int = 2) -> dict[str, np.ndarray]:
    """Shape features of one channel's records (see the module docstring; the default cuts use them).

    Parameters
    ----------
    traces : (n_events, N) records, V, trigger at N/4
    sample_frequency : Hz
    sev : (N,) standard event of the channel (max 1, onset at N/4)
    nps : (N//2+1,) one-sided noise power spectrum of the channel, V^2/Hz
    batch : records per FFT block
    of : the channel's optimum filter, if already built (else built from sev, nps)
    workers : threads of the FFTs (the numba kernels use numba's thread count)

    Returns
    -------
    dict name -> (n_events,) float64, units in UNITS.
    """
    traces = np.asarray(traces)
    if traces.ndim != 2 or traces.dtype.kind != "f":
        raise InputError(f"traces: expected a 2-d float (event, sample) array, got {traces.dtype} {traces.shape}")
    n = traces.shape[1]
    if n < 256:
        raise InputError(f"traces: records of {n} samples are too short for the shape features (need >= 256)")
    fs = float(sample_frequency)
    of = build_optimum_filter(sev, nps, fs, what="shape features") if of is None else of
    if of.record_length != n:
        raise InputError(f"sev: has {of.record_length} samples, the records {n}")
    sigma_of = expected_resolution(of)
    sigma_bl = float(np.sqrt(np.sum(np.asarray(nps, float)[1:]) * fs / n))
    response = scipy.fft.irfft(of.template_fft * of.transfer, n=n)  # OF output of the SEV, 1 at lag 0
    transfer = np.asarray(of.transfer)
    ramp = np.linspace(0.0, 1.0, n)
    traces = np.ascontiguousarray(traces, dtype=np.float32) if traces.dtype != np.float64 else traces
    out = np.empty((len(_ORDER), traces.shape[0]))
    for a in range(0, traces.shape[0], batch):
        x = np.ascontiguousarray(traces[a:a + batch])
        detrended = np.empty(x.shape)
        _detrend(x, max(n // 128, 1), ramp, detrended)
        spectra = scipy.fft.rfft(detrended, axis=1, workers=workers)
        spectra *= transfer
        filtered = scipy.fft.irfft(spectra, n=n, axis=1, workers=workers)
        _shape_kernel(x, filtered, sigma_of, response, int(of.onset), sigma_bl, fs, out[:, a:a + batch])
    return {k: out[i] for i, k in enumerate(_ORDER)}


def compute(traces: np.ndarray, ctx) -> dict[str, np.ndarray]:
    """Shape features of a block (n_events, N) of one channel's records (V); `ctx` a ChannelContext."""
    return shape_features(traces, ctx.sample_frequency, ctx.sev, ctx.nps, of=ctx.optimum_filter())
