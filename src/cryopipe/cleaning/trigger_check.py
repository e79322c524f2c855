"""Where a run's pulses rise, against the trigger sample the networks are told (issue 19: never silently wrong).

The cleaning networks expect a pulse to start at the trigger, 1/4 into the window they see
(`preprocess.trigger_window`); records whose pulses start >= N/8 away are `early_or_late_trigger`.
An input that does not declare its trigger sample (an .npz or a Cait file without it) is taken as
N/4: where its pulses really start elsewhere (e.g. at N/2), every record is rejected as a late
trigger, each decision looking confident. This module finds the sample where most pulses of a run
rise, from the records themselves, so that such a mismatch is said with the value to pass.

Method (per run, on up to `lines.MAX_RUN_SAMPLE` records): block means to `RISE_LENGTH` bins, a
`SMOOTH`-bin moving average, its first difference; per record the bin of the steepest rise and its
significance (the rise over 1.4826 x the median absolute difference, a robust noise scale). Records
rising by > `MIN_RISE_SIGMA` are "clear" pulses; the run's rise is the median position of the
clear records in the densest window of `CLUSTER_WIDTH` of the record, when it holds >=
`MIN_CLUSTER_SHARE` of them and >= `MIN_CLEAR` records (else no position: a run of noise or of
pulses everywhere). The steepest rise of a TES pulse (rise time < decay time) is at its onset,
blurred by the smoothing: the position is the onset within a few bins. The same steepest rises
and falls tell a run of negative-going pulses (`run_polarity`): the networks know positive ones only.
"""
from __future__ import annotations

import numpy as np

from .preprocess import downsample

RISE_LENGTH = 512          # bins the records are averaged into
SMOOTH = 3                 # bins, moving average before the difference
MIN_RISE_SIGMA = 8.0       # clear pulse: steepest rise > this many robust noise scales of the difference
MIN_CLEAR = 16             # clear pulses needed for a position
CLUSTER_WIDTH = 1 / 32     # fraction of the record: the window the clear pulses' rises must share
MIN_CLUSTER_SHARE = 0.5    # of the clear pulses
MIN_POLARITY_SHARE = 0.75  # of the clear pulses going one way, to call a run's polarity
#: accepted onsets lie within N/4 +- N/16 of the trigger in the training labels (onset jitter plus
#: shift augmentation, `simulate.classes`); early/late ones >= N/8 away. A rise further than
#: EARLY_TOLERANCE before or LATE_TOLERANCE after the trigger is said (the late side leaves room
#: for the smoothing and slow rises).
EARLY_TOLERANCE = 1 / 16
LATE_TOLERANCE = 3 / 32


def smoothed_differences(records) -> tuple[np.ndarray, np.ndarray]:
    """Per record (E, N): the first difference of the `SMOOTH`-bin moving average of its block means
    (min(N, `RISE_LENGTH`) bins), i.e. (x[i + SMOOTH] - x[i]) / SMOOTH, and its robust noise scale
    (1.4826 x the median absolute deviation; symmetric, so it serves rises and falls alike)."""
    x = np.asarray(records, dtype=np.float32)
    x = downsample(x, length=min(RISE_LENGTH, x.shape[-1])).astype(np.float64)
    k = SMOOTH if x.shape[-1] > SMOOTH else 1
    d = (x[:, k:] - x[:, :-k]) / k
    scale = 1.4826 * np.median(np.abs(d - np.median(d, axis=-1, keepdims=True)), axis=-1) if d.size else np.zeros(len(x))
    return d, scale


def steepest(d, scale) -> tuple[np.ndarray, np.ndarray]:
    """Per row of differences `d` (E, M) with noise `scale` (E,): (bin (float) of the steepest rise,
    its significance (rise / scale; 0 for flat or non-finite records))."""
    if d.shape[-1] == 0:
        return np.zeros(len(d)), np.zeros(len(d))
    idx = np.argmax(np.nan_to_num(d, nan=-np.inf), axis=-1)
    rise = np.take_along_axis(d, idx[:, None], axis=-1)[:, 0]
    sig = np.zeros(len(d))
    ok = np.isfinite(rise) & np.isfinite(scale) & (scale > 0)
    sig[ok] = rise[ok] / scale[ok]
    return idx + (SMOOTH - 1) / 2 + 0.5, sig   # the centre of the (SMOOTH + 1)-bin difference


def steepest_rises(records) -> tuple[np.ndarray, np.ndarray]:
    """Per record (E, N): (bin (float) of the steepest rise in min(N, `RISE_LENGTH`) bins, its
    significance over the robust noise scale of the differences)."""
    return steepest(*smoothed_differences(records))


def run_rise_sample(records) -> float | None:
    """Sample (of the N-sample records (E, N) of one run) where most of its clear pulses rise; None
    where fewer than `MIN_CLEAR` records hold a clear pulse or their rises do not cluster."""
    x = np.asarray(records)
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] < 2 * SMOOTH + 2:
        return None
    n_bins = min(RISE_LENGTH, x.shape[1])
    pos, sig = steepest_rises(x)
    pos = pos[sig > MIN_RISE_SIGMA]
    if len(pos) < MIN_CLEAR:
        return None
    width = max(1, int(round(CLUSTER_WIDTH * n_bins)))
    whole = np.floor(pos).astype(int)
    counts = np.convolve(np.bincount(whole, minlength=n_bins + 1), np.ones(width, int), mode="valid")
    start = int(np.argmax(counts))
    inside = pos[(whole >= start) & (whole < start + width)]
    if len(inside) < max(MIN_CLEAR, MIN_CLUSTER_SHARE * len(pos)):
        return None
    return float(np.median(inside)) * x.shape[1] / n_bins


def run_polarity(records) -> int | None:
    """+1 where most clear pulses of a run (records (E, N)) go up, -1 where most go down, None where
    fewer than `MIN_CLEAR` records hold a clear pulse or neither sign holds `MIN_POLARITY_SHARE` of
    them. A pulse's onset is steeper than its decay (a TES pulse rises faster than it falls), so a
    record goes down where its steepest fall is steeper than its steepest rise."""
    x = np.asarray(records, dtype=np.float32)
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] < 2 * SMOOTH + 2:
        return None
    d, scale = smoothed_differences(x)
    _, up = steepest(d, scale)
    _, down = steepest(-d, scale)
    clear = np.maximum(up, down) > MIN_RISE_SIGMA
    if clear.sum() < MIN_CLEAR:
        return None
    share_down = float(np.mean(down[clear] > up[clear]))
    if share_down >= MIN_POLARITY_SHARE:
        return -1
    return 1 if 1.0 - share_down >= MIN_POLARITY_SHARE else None


def polarity_warning(polarity: int | None, *, what: str = "records") -> str | None:
    """A warning where a run's pulses go down (the networks know positive pulses only); None otherwise."""
    if polarity != -1:
        return None
    return (f"most pulses of {what} go down from the baseline (their steepest fall is steeper than their steepest "
            f"rise); the networks know positive-going pulses only and reject or flag these. If the pulses are "
            f"negative-going, pass --invert")


def trigger_mismatch(rise_sample: float | None, n_samples: int, pretrigger: int | None, *,
                     what: str = "records") -> str | None:
    """A warning where a run's pulses rise far from the trigger sample used (`pretrigger`, None: N//4),
    naming the value to pass; None where they agree or no rise position is known."""
    if rise_sample is None:
        return None
    used = n_samples // 4 if pretrigger is None else int(pretrigger)
    offset = rise_sample - used
    if -EARLY_TOLERANCE * n_samples <= offset <= LATE_TOLERANCE * n_samples:
        return None
    told = "N/4 assumed: the input declares no trigger sample" if pretrigger is None else "the trigger sample used"
    suggest = max(1, int(round(rise_sample)) - max(1, n_samples // RISE_LENGTH))
    return (f"most pulses of {what} rise near sample {rise_sample:.0f} of {n_samples}, but the networks are told the "
            f"trigger is at sample {used} ({told}); they take pulses that far {'after' if offset > 0 else 'before'} "
            f"it for {'late' if offset > 0 else 'early'} triggers and reject them. If the trigger sits where the "
            f"pulses rise, pass --pretrigger {suggest}")
