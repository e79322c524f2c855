"""Coherent line pickup (mains at 50/60 Hz and harmonics) found in a run and removed before cleaning.

A sinusoid picked up by the read-out has the same frequency in every record of a run and a random
phase per record. In the block means the networks see (512 samples), a line as strong as the
baseline rms hides pulses of a few sigma_OF that the optimum filter still resolves (issue 19: on
the independent generator's 50-kHz detectors, pulse survival at SNR 3-10 was 0.48 with such pickup
and 0.72 without). The run tells where the lines are; each record tells their phase:

1. `find_lines`: the median over the run's records of the Hann-windowed power spectrum (each record
   less its mean and slope). A bin k is a line where it is a local maximum and exceeds the
   geometric mean of the bins k-3 and k+3 by `LINE_RATIO` (a power-law spectrum never does: the
   ratio is <= 1 for any 1/f^alpha shape); the frequency is refined by a parabola through the log
   powers of k-1, k, k+1. The median makes it a property of the run: a line present in fewer than
   half of the records, a pulse or an artefact, is not found. Runs of fewer than `MIN_RECORDS`
   records are left alone.
2. `remove_lines`: per record, a least-squares fit of an offset, a slope and a sine and cosine at
   every line frequency over the pre-trigger samples before `FIT_STOP` (3/16 of the window: the
   trigger sits at 1/4 and accepted onsets start no earlier than N/4 - N/32), so that no pulse
   leaks into the fit; the fitted sinusoids (not the offset and slope) are subtracted from the
   whole record, in the records where they matter: their peak-to-peak is at least `MIN_SHARE` (a
   fifth) of the record's (a large pulse is left as it was: the pickup barely changes its min-max scaled
   view, and where the pulse saturates the TES the pickup riding on it is squashed too, so the
   extrapolated sinusoid would put a wiggle on its flat top). Lines with fewer than
   `MIN_FIT_CYCLES` periods in the fit window are kept.

Measured with the shipped universal model (2 cores; selection seeds 5-11 of the independent
generator, 24 detectors each; `python tools/experiments/independent_diagnosis.py lines`): balanced
accuracy, mean over the seeds of the mean over detectors 0.9297 -> 0.9365, of the worst detector
0.822 -> 0.843, better or equal on all 7 seeds' worst detectors; the largest loss on one detector
0.016. `MIN_SHARE` was chosen there among 0.1 / 0.2 / 0.3 (means 0.9358 / 0.9365 / 0.9361, worst
0.835 / 0.843 / 0.843, largest loss 0.039 / 0.016 / 0.012); with 0 saturated detectors lost up to
0.2 of their pulses. Our own simulator (no coherent lines): no line found, decisions unchanged.
NIST regress_chan1: one line found (168.9 cycles per 682-sample window, 48 kHz) and removed; 299 of
its 299 hand-labelled clean pulses kept, as without.

Frequencies are in cycles per record (the sample frequency is not needed); the functions work on
any record length, in `cleaning.predict` on the 512 block means after the trigger-window cut.
"""
from __future__ import annotations

import numpy as np
import scipy.signal

#: a line's median power over the geometric mean of the powers 3 bins either side
LINE_RATIO = 6.0
#: fewer records than this: no lines are looked for (the median spectrum is too noisy)
MIN_RECORDS = 16
#: the sinusoid fit uses samples [0, FIT_STOP * N) (pre-trigger, before the earliest accepted onset)
FIT_STOP = 3 / 16
#: a line is removed only with at least this many periods inside the fit window
MIN_FIT_CYCLES = 1.0
#: a record's fitted pickup is removed only where its peak-to-peak is at least this share of the
#: record's: elsewhere (large pulses) it barely changes the min-max scaled input, and where a pulse
#: drives the TES into saturation the pickup riding on it is squashed too, so subtracting the
#: pre-trigger sinusoid would put a wiggle on the flat top
MIN_SHARE = 0.2
#: bins either side compared with a candidate line (the Hann main lobe is +-2 bins wide)
_SIDE = 3
#: records used for the median spectrum (evenly spaced through the run)
MAX_RUN_SAMPLE = 4096


def median_spectrum(records) -> np.ndarray:
    """Median over records (E, N) of the Hann-windowed power spectrum of each record less its
    least-squares line, (N//2 + 1,), arbitrary units."""
    x = np.asarray(records, dtype=np.float64)
    if x.shape[0] > MAX_RUN_SAMPLE:
        x = x[np.linspace(0, x.shape[0] - 1, MAX_RUN_SAMPLE).astype(int)]
    _, spec = scipy.signal.periodogram(x, window="hann", detrend="linear", scaling="spectrum", axis=1)
    return np.median(spec, axis=0)


def find_lines(records, *, ratio: float = LINE_RATIO, min_records: int = MIN_RECORDS) -> np.ndarray:
    """Frequencies (cycles per record, float) of the coherent lines common to the run's records (E, N).

    Empty for fewer than `min_records` records or records shorter than 16 samples.
    """
    x = np.asarray(records)
    if x.ndim != 2 or x.shape[0] < min_records or x.shape[1] < 16:
        return np.zeros(0)
    x = x[np.all(np.isfinite(x), axis=1)]
    if x.shape[0] < min_records:
        return np.zeros(0)
    spec = median_spectrum(x)
    k = np.arange(_SIDE + 1, spec.size - _SIDE)
    reference = np.sqrt(spec[k - _SIDE] * spec[k + _SIDE])
    tiny = np.finfo(float).tiny
    is_line = ((spec[k] > ratio * np.maximum(reference, tiny))
               & (spec[k] >= spec[k - 1]) & (spec[k] >= spec[k + 1]))
    freqs = []
    for b in k[is_line]:
        lo, mid, hi = np.log(np.maximum(spec[b - 1:b + 2], tiny))
        curvature = lo - 2 * mid + hi
        freqs.append(b + (0.5 * (lo - hi) / curvature if curvature < 0 else 0.0))
    return np.asarray(freqs, dtype=float)


def remove_lines(records, freqs, *, fit_stop: float = FIT_STOP, min_cycles: float = MIN_FIT_CYCLES,
                 min_share: float = MIN_SHARE) -> np.ndarray:
    """Records (E, N) with the sinusoids at `freqs` (cycles per record) fitted before `fit_stop`*N removed.

    Returns float32 records (a copy); the records unchanged where no frequency has `min_cycles`
    periods inside the fit window. Non-finite records are returned as they are.
    """
    x = np.asarray(records)
    n = x.shape[-1]
    stop = int(fit_stop * n)
    keep = [float(f) for f in np.atleast_1d(freqs) if f * stop / n >= min_cycles and f < n / 2]
    out = np.array(x, dtype=np.float32, copy=True)
    if not keep or stop < 2 * len(keep) + 3:
        return out
    phase = 2 * np.pi * np.outer(np.arange(n) / n, keep)                     # (N, L)
    waves = np.concatenate([np.sin(phase), np.cos(phase)], axis=1)            # (N, 2L)
    design = np.column_stack([np.ones(stop), np.linspace(-1.0, 1.0, stop), waves[:stop]])
    finite = np.all(np.isfinite(out), axis=-1)
    coef, *_ = np.linalg.lstsq(design, out[finite, :stop].astype(np.float64).T, rcond=None)
    pickup = (waves @ coef[2:]).T                                              # (E_finite, N)
    span = np.ptp(out[finite], axis=1)
    matters = np.ptp(pickup, axis=1) >= min_share * span
    rows = np.flatnonzero(finite)[matters]
    out[rows] -= pickup[matters].astype(np.float32)
    return out


def clean_lines(records) -> tuple[np.ndarray, np.ndarray]:
    """`find_lines` on the run's records (E, N), then `remove_lines`: (records float32, freqs found)."""
    freqs = find_lines(records)
    return remove_lines(records, freqs), freqs
