"""Feature family "shape": the features the default cuts judge a record's shape by.

They use the channel's standard event (SEV, max 1, onset at N/4) and noise power spectrum (NPS), as in
Cait's standard analysis, through the optimum filter (OF, `cryopipe.signal.optimum_filter`; the OF pass is
shared with the optimum_filter family, `cryopipe.features.filtered`, in single precision for float32
records); all dimensionless unless stated:

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
    robust scale of the residual r[k] = x[k] minus the mean of the two side windows (1.4826 x the
    median of |r[k]| over every SPIKE_WIDTH-th k: residuals that share no sample, independent on white
    noise; r has zero mean on any locally straight baseline), and as a fraction of the largest raw
    deviation from the first-eighth baseline (a pulse's peak lifts by a small fraction of it).
"""
from __future__ import annotations

import numba as nb
import numpy as np
import scipy.fft

from ..errors import InputError
from cryopipe.signal.optimum_filter import build_optimum_filter, expected_resolution
from ..parallel import run_blocks
from .filtered import FFT_BATCH, filtered_block, of_pass
from ..signal.robust import MAD_TO_SIGMA, as_records
from .filtered import workers as filtered_workers
from .main import _first_extrema

SPIKE_WIDTH = 4  # samples: the widest spike the spike features see
SCALE_STRIDE = SPIKE_WIDTH  # samples between the residuals of the spike scale (they share no sample)

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


# Numba kernels, one record at a time in float64 (from float32 or float64 records); sums may be
# reassociated (vectorised), comparisons stay IEEE. Medians are exact order statistics.
_FAST = {"reassoc", "contract", "nsz"}


@nb.njit(cache=True, nogil=True, fastmath=_FAST)
def _sum(x, lo, hi):
    """sum(x[lo:hi]) in float64."""
    s = 0.0
    for k in range(lo, hi):
        s += np.float64(x[k])
    return s


_BINS = 2048  # histogram bins per level of the order-statistic search
_FEW = 48  # candidates sorted directly


@nb.njit(cache=True, nogil=True)
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


@nb.njit(cache=True, nogil=True)
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


@nb.njit(cache=True, nogil=True, fastmath=_FAST)
def _lag_amplitudes(f, slope, g, inv_sigma, penalty, r):
    """r = (f - slope g) / sigma_OF + penalty: the OF amplitude of the detrended record in units of
    sigma_OF at each circular lag, -inf at lags outside the accepted onsets."""
    for k in range(f.shape[0]):
        r[k] = (np.float64(f[k]) - slope * g[k]) * inv_sigma + penalty[k]


@nb.njit(cache=True, nogil=True, fastmath=_FAST)
def _subtract_response(r, a0, response, i0, rest):
    """rest[k] = r[k] - a0 response[(k - i0) mod N]: what is left without a SEV-shaped main pulse."""
    n = r.shape[0]
    head = response[n - i0:]
    for k in range(i0):
        rest[k] = r[k] - a0 * head[k]
    tail = r[i0:]
    out = rest[i0:]
    for j in range(n - i0):
        out[j] = tail[j] - a0 * response[j]


@nb.njit(cache=True, nogil=True, fastmath=True)  # finite records only (the caller checks): no NaN rules
def _spike_residuals(x, window, lift, centred):
    """For k in [2w, N-2w): with left, right the means of x[k-2w : k-w] and x[k+w+1 : k+2w+1] (w =
    SPIKE_WIDTH), lift = the larger of min(x_k - left, x_k - right) and min(left - x_k, right - x_k),
    centred = x_k - (left + right)/2 (V), at index k - 2w. window (N - w + 1,) is scratch."""
    w = SPIKE_WIDTH
    n = x.shape[0]
    for k in range(n - w + 1):
        s = 0.0
        for i in range(w):
            s += np.float64(x[k + i])
        window[k] = s / w
    right_of = window[3 * w + 1:]
    mid = x[2 * w:]
    for j in range(n - 4 * w):
        left = window[j]
        right = right_of[j]
        xk = np.float64(mid[j])
        a = xk - left
        b = xk - right
        lift[j] = max(min(a, b), -max(a, b))
        centred[j] = xk - 0.5 * (left + right)


@nb.njit(cache=True, nogil=True, fastmath=_FAST)
def _count_at_least(x, level):
    count = 0
    for k in range(x.shape[0]):
        count += np.float64(x[k]) >= level
    return count


@nb.njit(cache=True, nogil=True, error_model="numpy")
def _shape_block(traces, bits, key_shift, key_mask, filtered, g, penalty, sigma_of, response, onset,
                 sigma_bl, fs, out):
    """All shape features of records `traces` (B, N) (V) into out (11, B). `bits` is traces viewed as
    integers (for the extremum searches, with key_shift, key_mask as in `main._first_extrema`);
    filtered (B, N) the OF amplitude (V) of each record at every circular lag; g
    (N,) the OF output of the ramp 0..1 (V/V); penalty (N,) 0 at lags of accepted onsets, -inf elsewhere;
    response (N,) the OF output of the SEV (1 at lag 0). Records with NaN or inf get NaN features."""
    b, n = traces.shape
    n8 = n // 8
    edge = max(n // 128, 1)
    w = SPIKE_WIDTH
    m = n - 4 * w
    min_sep = max(n // 256, 1)
    inv_sigma = 1.0 / sigma_of
    r = np.empty(n)
    rest = np.empty(n)
    lift = np.empty(m)
    centred = np.empty(m)
    abs_residual = np.empty(m)
    buf = np.empty(m)
    counts = np.empty(_BINS, np.int64)
    for e in range(b):
        x = traces[e]
        total = _sum(x, 0, n)
        if not np.isfinite(total):
            out[:, e] = np.nan
            continue
        # main pulse: largest OF amplitude of the detrended record over accepted onsets (first of equals)
        slope = (_sum(x, n - edge, n) - _sum(x, 0, edge)) / edge  # end minus start of the straight line
        _lag_amplitudes(filtered[e], slope, g, inv_sigma, penalty, r)
        i0 = _first_extrema(r.view(np.int64), 63, 0x7FFFFFFFFFFFFFFF)[0]
        a0 = r[i0]
        lag0 = i0 - n if i0 >= n - onset else i0
        # second pulse: the largest amplitude left after subtracting the main pulse's OF response
        _subtract_response(r, a0, response, i0, rest)
        for lag in range(max(lag0 - min_sep + 1, -onset), min(lag0 + min_sep, n - onset)):
            rest[lag + n if lag < 0 else lag] = -np.inf
        i1 = _first_extrema(rest.view(np.int64), 63, 0x7FFFFFFFFFFFFFFF)[0]
        a1 = rest[i1]
        lag1 = i1 - n if i1 >= n - onset else i1
        out[0, e] = a0
        out[1, e] = lag0 / fs
        out[2, e] = a1
        out[3, e] = a1 / max(a0, 1.0)
        out[4, e] = (lag1 - lag0) / fs
        # levels: end, height, plateau, excursion
        first = _sum(x, 0, n8) / n8
        last = _sum(x, n - n8, n) / n8
        end = last - first
        k_max, k_min = _first_extrema(bits[e], key_shift, key_mask)
        xmax = np.float64(x[k_max])
        excursion = max(xmax - first, first - np.float64(x[k_min]))
        out[5, e] = end / sigma_bl
        out[6, e] = end / max(xmax - first, sigma_bl)
        out[10, e] = _count_at_least(x, first + 0.95 * (xmax - first)) / n
        # spikes: lift above both side windows, in robust sigmas of the two-sided residual
        _spike_residuals(x, r, lift, centred)
        biggest = lift[_first_extrema(lift.view(np.int64), 63, 0x7FFFFFFFFFFFFFFF)[0]]
        m_scale = 0
        for j in range(0, m, SCALE_STRIDE):
            abs_residual[m_scale] = abs(centred[j])
            m_scale += 1
        scale = MAD_TO_SIGMA * _median(abs_residual, m_scale, buf, counts)
        out[7, e] = biggest / scale
        out[8, e] = biggest / excursion
        # pretrigger drop: the largest of three early means against the pre-onset reference
        ref = _sum(x, n8, 7 * n // 32) / (7 * n // 32 - n8)
        best = 0.0
        for div in (64, 32, 16):
            d = _sum(x, 0, n // div) / (n // div) - ref
            if div == 64 or abs(d) > abs(best):
                best = d
        out[9, e] = best / sigma_bl


_ORDER = ("of_snr", "of_onset", "second_pulse_snr", "second_pulse_fraction", "second_pulse_delay", "end_snr",
          "end_fraction", "spike_snr", "spike_fraction", "pretrigger_drop_snr", "top_plateau")


def _check(traces) -> np.ndarray:
    traces = np.asarray(traces)
    if traces.ndim != 2 or traces.dtype.kind != "f":
        raise InputError(f"traces: expected a 2-d float (event, sample) array, got {traces.dtype} {traces.shape}")
    n = traces.shape[1]
    if n < 256:
        raise InputError(f"traces: records of {n} samples are too short for the shape features (need >= 256)")
    return traces


def _features(traces, fb, of, nps, n_workers: int) -> dict[str, np.ndarray]:
    """The shape features of `traces` from its OF pass `fb` (`cryopipe.features.filtered`)."""
    n = traces.shape[1]
    if of.record_length != n:
        raise InputError(f"sev: has {of.record_length} samples, the records {n}")
    fs = float(of.sample_frequency)
    sigma_of = expected_resolution(of)
    sigma_bl = float(np.sqrt(np.sum(np.asarray(nps, float)[1:]) * fs / n))
    response = scipy.fft.irfft(of.template_fft * of.transfer, n=n)  # OF output of the SEV, 1 at lag 0
    g = scipy.fft.irfft(scipy.fft.rfft(np.linspace(0.0, 1.0, n)) * of.transfer, n=n)  # ... of the ramp 0..1
    onset = int(of.onset)
    lags = np.arange(n)
    lags = np.where(lags >= n - onset, lags - n, lags)
    penalty = np.where((lags + onset >= n // 64) & (lags + onset < n - n // 16), 0.0, -np.inf)
    traces = as_records(traces, what="traces", contiguous=True)
    bits = traces.view(np.int32 if traces.dtype == np.float32 else np.int64)
    key_shift, key_mask = (31, 0x7FFFFFFF) if traces.dtype == np.float32 else (63, 0x7FFFFFFFFFFFFFFF)
    out = np.empty((len(_ORDER), traces.shape[0]))

    def run_block(a: int) -> None:
        e = min(a + FFT_BATCH, traces.shape[0])
        _shape_block(traces[a:e], bits[a:e], key_shift, key_mask, fb.filtered[a:e], g, penalty,
                     sigma_of, response, onset, sigma_bl, fs, out[:, a:e])

    run_blocks(run_block, traces.shape[0], FFT_BATCH, n_workers)
    return {k: out[i] for i, k in enumerate(_ORDER)}


def shape_features(traces, sample_frequency: float, sev, nps, *, batch: int = FFT_BATCH, of=None,
                   workers: int | None = None) -> dict[str, np.ndarray]:
    """Shape features of one channel's records (see the module docstring; the default cuts use them).

    Parameters
    ----------
    traces : (n_events, N) records, V, trigger at N/4 (float32: single-precision FFTs)
    sample_frequency : Hz
    sev : (N,) standard event of the channel (max 1, onset at N/4)
    nps : (N//2+1,) one-sided noise power spectrum of the channel, V^2/Hz
    batch : unused (the FFT blocks are `cryopipe.features.filtered.FFT_BATCH` records)
    of : the channel's optimum filter, if already built (else built from sev, nps)
    workers : threads (default numba's thread count)

    Returns
    -------
    dict name -> (n_events,) float64, units in UNITS.
    """
    traces = as_records(_check(traces), what="traces", contiguous=True)
    of = build_optimum_filter(sev, nps, float(sample_frequency), what="shape features") if of is None else of
    if of.record_length != traces.shape[1]:
        raise InputError(f"sev: has {of.record_length} samples, the records {traces.shape[1]}")
    n_workers = filtered_workers() if workers is None else int(workers)
    return _features(traces, of_pass(traces, of, n_workers=n_workers), of, nps, n_workers)


def compute(traces: np.ndarray, ctx) -> dict[str, np.ndarray]:
    """Shape features of a block (n_events, N) of one channel's records (V); `ctx` a ChannelContext."""
    traces = _check(traces)
    of = ctx.optimum_filter()
    if of.record_length != traces.shape[1]:
        raise InputError(f"sev: has {of.record_length} samples, the records {traces.shape[1]}")
    return _features(traces, filtered_block(traces, ctx), of, ctx.nps, filtered_workers())
