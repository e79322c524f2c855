"""Record preprocessing of the CRESST data-cleaning paper (seed 000, section 2).

Every record is downsampled to ``LENGTH = 512`` samples by block means and then scaled
individually to minimum 0 and maximum 1, so the networks see only the shape of a record.

Lengths not divisible by 512: output sample ``i`` is the mean of the input samples
``[floor(i N / 512), floor((i + 1) N / 512))``, i.e. blocks of ``floor(N/512)`` or
``ceil(N/512)`` samples that tile the whole record (nothing is trimmed, and the trigger at
N/4 lands at output sample 128). Records shorter than 512 samples are stretched by
repeating each sample (blocks of one sample, nearest-neighbour up-sampling).

Trigger position: the networks learn records whose trigger sits at 1/4 of the window (Cait's and
CRESST's convention). A record whose trigger sits elsewhere (an LJH file's trigger sample, e.g.
515 of 1024) is first cut to the longest window inside it that puts the trigger at 1/4
(`trigger_window`); without that a pulse at N/2 looks like an early/late trigger to every model.
"""
from __future__ import annotations

import numpy as np

from ..errors import InputError
from .lines import find_lines, remove_lines

LENGTH = 512
PREPROCESSING = {"length": LENGTH, "downsample": "block_mean", "scale": "minmax", "trigger": "window cut to 1/4"}
#: what `preprocess_run` adds at prediction (never in training): the run's coherent line pickup removed
RUN_PREPROCESSING = "coherent lines common to the run removed (cleaning.lines)"


def block_edges(n_samples: int, *, length: int = LENGTH) -> tuple[np.ndarray, np.ndarray]:
    """First sample of each output block and the block sizes (samples) for `n_samples` -> `length`."""
    if n_samples < 1 or length < 1:
        raise InputError(f"records: cannot downsample {n_samples} samples to {length}")
    starts = (np.arange(length) * n_samples) // length
    stops = np.maximum((np.arange(1, length + 1) * n_samples) // length, starts + 1)
    return starts, stops - starts


def downsample(records, *, length: int = LENGTH) -> np.ndarray:
    """Block means along the last axis: (..., N) -> (..., `length`) float32.

    See the module docstring for lengths not divisible by `length`.
    """
    x = np.asarray(records, dtype=np.float32)
    if x.ndim == 0:
        raise InputError("records: need an array with samples on the last axis, got a scalar")
    n = x.shape[-1]
    if n % length == 0:
        return x.reshape(*x.shape[:-1], length, n // length).mean(axis=-1, dtype=np.float32)
    starts, sizes = block_edges(n, length=length)
    if n < length:
        return np.ascontiguousarray(x[..., starts])
    sums = np.add.reduceat(x, starts, axis=-1, dtype=np.float64)
    return (sums / sizes).astype(np.float32)


def minmax_scale(records) -> np.ndarray:
    """Scale every record (last axis) to min 0 and max 1; a flat record gives zeros (never NaN)."""
    x = np.asarray(records, dtype=np.float32)
    lo = x.min(axis=-1, keepdims=True)
    span = x.max(axis=-1, keepdims=True) - lo
    out = np.zeros_like(x)
    np.divide(x - lo, span, out=out, where=span > 0)
    return out


def trigger_window(n_samples: int, *, pretrigger: int | None = None) -> slice:
    """The samples of an `n_samples` record to keep so that the trigger lands at 1/4 of the window.

    pretrigger : the trigger's sample index in the record (None: N//4, the whole record is kept).
    The window is the longest one inside the record with ``pretrigger - start == length // 4``.
    """
    if pretrigger is None or int(pretrigger) == n_samples // 4:
        return slice(0, n_samples)
    p = int(pretrigger)
    if not 0 < p < n_samples - 1:
        raise InputError(f"pretrigger: {pretrigger} samples lies outside the record of {n_samples} samples")
    length = min(4 * p + 3, (4 * (n_samples - p)) // 3)
    while length > 1 and (length // 4 > p or p - length // 4 + length > n_samples):
        length -= 1
    start = p - length // 4
    return slice(start, start + length)


def preprocess(records, *, length: int = LENGTH, pretrigger: int | None = None) -> np.ndarray:
    """Downsample (..., N) records to (..., `length`) block means and min-max scale them (float32).

    pretrigger : trigger sample of the records (None: N//4); see `trigger_window`.
    """
    x = np.asarray(records)
    if pretrigger is not None and x.ndim >= 1:
        x = x[..., trigger_window(x.shape[-1], pretrigger=pretrigger)]
    return minmax_scale(downsample(x, length=length))


def preprocess_run(records, *, length: int = LENGTH, pretrigger: int | None = None, batch: int = 4096,
                   valid=None, lines=None) -> tuple[np.ndarray, np.ndarray]:
    """`preprocess` for the records (E, N) of one run (one detector channel), with its line pickup removed.

    Block means of every record (batch by batch, bounded memory), then the coherent lines common to
    the run's `valid` records (bool (E,), default all) removed (`cleaning.lines`), then min-max
    scaling. `lines`: the run's line frequencies (cycles per window) found beforehand on the whole
    run (`run_line_frequencies`), when these records are only a block of it; None: found here.
    Returns (inputs (E, `length`) float32, line frequencies used).
    """
    x = np.asarray(records)
    if x.ndim != 2:
        raise InputError(f"records: need (E, N) records of one run, got shape {x.shape}")
    blocks = window_block_means(x, length=length, pretrigger=pretrigger, batch=batch)
    if lines is None:
        freqs = find_lines(blocks if valid is None else blocks[np.asarray(valid, bool)])
    else:
        freqs = np.asarray(lines, dtype=float).reshape(-1)
    if freqs.size:
        blocks = remove_lines(blocks, freqs)
    return minmax_scale(blocks), freqs


def run_line_frequencies(sample, *, length: int = LENGTH, pretrigger: int | None = None) -> list[np.ndarray]:
    """Line frequencies (cycles per `length` window) of each run in `sample` (..., E, N): the records
    along the last axis but one are one run (e.g. one channel); one array per run, in the order
    of the flattened leading axes. Records with NaN/inf samples take no part.

    `sample` may be a subset of a run's events (e.g. evenly spaced, `lines.MAX_RUN_SAMPLE` of them):
    the lines are a property of the run, found once and used for each block it is predicted in.
    """
    x = np.asarray(sample)
    if x.ndim < 2 or x.size == 0:
        return [np.zeros(0)] * max(1, int(np.prod(x.shape[:-2])) if x.ndim >= 2 else 1)
    runs = x.reshape(-1, x.shape[-2], x.shape[-1])
    return [find_lines(window_block_means(run, length=length, pretrigger=pretrigger)) for run in runs]


def window_block_means(records, *, length: int = LENGTH, pretrigger: int | None = None,
                       batch: int = 4096) -> np.ndarray:
    """Block means (E, `length`) float32 of records (E, N) after the trigger-window cut, batch by batch."""
    x = np.asarray(records)
    window = trigger_window(x.shape[-1], pretrigger=pretrigger)
    blocks = np.empty((x.shape[0], length), dtype=np.float32)
    for a in range(0, x.shape[0], batch):
        blocks[a:a + batch] = downsample(x[a:a + batch, window], length=length)
    return blocks


def evenly_spaced(n: int, k: int) -> np.ndarray:
    """min(n, k) indices spread evenly over range(n) (int)."""
    return np.unique(np.linspace(0, n - 1, min(n, k)).astype(int)) if n > 0 else np.zeros(0, int)
