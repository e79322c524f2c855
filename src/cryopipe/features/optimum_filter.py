"""Feature family "optimum_filter": the channel's optimum filter (OF) applied to each record.

of_amplitude, of_chi2
    amplitude (V) and chi2 at the fixed lag 0 (the template's alignment, onset at the trigger: N/4, or
    the records' pretrigger).
of_amplitude_shifted, of_shift, of_chi2_shifted
    the largest amplitude (V) over Cait's time-shift window [N/8, 7N/8) of the filtered record, its lag
    (s, positive = later than the template) and the chi2 there.
of_amplitude_interpolated, of_shift_interpolated
    the vertex of the parabola through the filtered record at the best lag and its two neighbours
    (the sub-sample maximum; lag in s): y(d) ~ y0 + (y+ - y-) d / 2 + (y+ - 2 y0 + y-) d^2 / 2, vertex
    at d = (y- - y+) / (2 (y- - 2 y0 + y+)), amplitude y0 - (y- - y+) d / 4 (y0 where the curvature is
    not negative). Pulses arrive at any phase of the sampling clock; at a whole-sample lag the OF
    amplitude drops with the distance to the true arrival (fast rises lose most).
Conventions and formulas: `cryopipe.signal.optimum_filter.of_amplitudes`; computed from the shared OF pass
(`cryopipe.features.filtered`: one rfft and irfft per record, float32 records in single precision).
"""
from __future__ import annotations

import numpy as np

from ..errors import InputError
from cryopipe.signal.optimum_filter import _search_max, cait_shift_window
from ..parallel import run_blocks
from .filtered import FFT_BATCH, filtered_block, workers

UNITS: dict[str, str] = {
    "of_amplitude": "V",
    "of_chi2": "1",
    "of_amplitude_shifted": "V",
    "of_shift": "s",
    "of_chi2_shifted": "1",
    "of_amplitude_interpolated": "V",
    "of_shift_interpolated": "s",
}


def compute(traces: np.ndarray, ctx) -> dict[str, np.ndarray]:
    """OF features of a block (n_events, N) of one channel's records (V); `ctx` a ChannelContext."""
    of = ctx.optimum_filter()
    traces = np.asarray(traces)
    if traces.ndim != 2 or traces.shape[1] != of.record_length or traces.dtype.kind != "f":
        raise InputError(f"records have shape {traces.shape} ({traces.dtype}), the optimum filter needs float "
                         f"(n, {of.record_length})")
    fb = filtered_block(traces, ctx)
    lo, hi = cait_shift_window(of.record_length, onset=of.onset)
    b = traces.shape[0]
    amp_shift, shift = np.empty(b), np.zeros(b, np.int64)

    def run_block(a: int) -> None:
        e = min(a + FFT_BATCH, b)
        _search_max(fb.filtered[a:e], lo, hi, amp_shift[a:e], shift[a:e])

    run_blocks(run_block, b, FFT_BATCH, workers())
    amp = fb.amplitude
    amp_i, delta = interpolate_peak(fb.filtered, shift)
    return {"of_amplitude": amp, "of_chi2": fb.chi2_0 - of.norm * amp ** 2, "of_amplitude_shifted": amp_shift,
            "of_shift": shift / of.sample_frequency, "of_chi2_shifted": fb.chi2_0 - of.norm * amp_shift ** 2,
            "of_amplitude_interpolated": amp_i, "of_shift_interpolated": (shift + delta) / of.sample_frequency}


def interpolate_peak(filtered: np.ndarray, lag: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Parabolic vertex of each filtered record (B, N; circular lags) around integer `lag` (B,):
    (amplitude (V, float64), offset d in samples, |d| <= 1/2 at a local maximum; 0 where the three
    values are not concave)."""
    y = np.asarray(filtered)
    n = y.shape[1]
    rows = np.arange(y.shape[0])
    col = np.asarray(lag, np.int64) % n
    y0 = y[rows, col].astype(np.float64)
    ym = y[rows, (col - 1) % n].astype(np.float64)
    yp = y[rows, (col + 1) % n].astype(np.float64)
    curv = ym - 2.0 * y0 + yp
    concave = curv < 0
    d = np.where(concave, 0.5 * (ym - yp) / np.where(concave, curv, -1.0), 0.0)
    d = np.clip(d, -1.0, 1.0)
    return y0 - 0.25 * (ym - yp) * d, d
