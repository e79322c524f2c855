"""Filter kernels and exact overlap-save filtering of continuous streams.

A kernel is a real array ``k`` (length L) with an ``anchor`` index; filtering means correlation,

    y[n] = sum_m k[m] x[n - anchor + m],

so a kernel "looks" ``anchor`` samples back and ``L - 1 - anchor`` samples ahead of n. Samples outside
the stream are the nearest edge value (as :meth:`CsmplStream.read` pads), so the stream filter
(:func:`filter_stream`, chunked overlap-save FFT) equals the in-memory reference (:func:`filter_block`)
everywhere, chunk borders included. Any (kernel, anchor) pair works: matched filters built here, or
the optimum-filter kernel of :mod:`cryopipe.optimum_filter`.
"""
from __future__ import annotations

import os
from typing import Iterator

import numpy as np
import scipy.fft
import scipy.signal

from .errors import InputError
from .signal.pulses import generic_template

MIN_SEGMENT = 2**16          # smallest overlap-save FFT length for long chunks (samples)
SEGMENT_OVERLAP_FACTOR = 8   # FFT length >= 8 x kernel length: overlap overhead <= 12.5 %
GENERIC_DECAY_LEVEL = 1e-3   # generic kernel: truncate where the template has decayed to this level


def default_workers() -> int:
    """Threads for scipy.fft: the CPU cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        return os.cpu_count() or 1


def check_kernel(kernel, anchor) -> tuple[np.ndarray, int]:
    """Validate a (kernel, anchor) pair; return a float64 1-D kernel and an int anchor."""
    k = np.asarray(kernel, dtype=np.float64)
    if k.ndim != 1 or k.size == 0:
        raise InputError(f"filter kernel must be a non-empty 1-D array, got shape {k.shape}")
    if not np.all(np.isfinite(k)):
        raise InputError("filter kernel contains NaN or inf")
    if int(anchor) != anchor or not 0 <= anchor < k.size:
        raise InputError(f"filter anchor {anchor} is not an index of the kernel (length {k.size})")
    return k, int(anchor)


def matched_kernel(template: np.ndarray, anchor: int | None = None) -> tuple[np.ndarray, int]:
    """Zero-mean matched filter of a pulse template.

    k = (T - mean T) / sum((T - mean T)^2): insensitive to baseline offsets, and a template-shaped
    pulse of height A whose template sample ``anchor`` lies at stream sample n0 gives y[n0] = A.

    Parameters
    ----------
    template : pulse shape (length L), onset at L//4 by convention
    anchor : template sample that maps onto the filtered sample (default L//4, the onset)

    Returns
    -------
    (kernel float64 (L,), anchor)
    """
    t = np.asarray(template, dtype=np.float64)
    if t.ndim != 1 or t.size < 2:
        raise InputError(f"template must be a 1-D array of at least 2 samples, got shape {t.shape}")
    if not np.all(np.isfinite(t)):
        raise InputError("template contains NaN or inf")
    d = t - t.mean()
    norm = np.sum(d * d)
    if norm <= 0:
        raise InputError("template is constant: a matched filter needs a pulse shape")
    return check_kernel(d / norm, t.size // 4 if anchor is None else anchor)


def generic_kernel(record_length: int) -> tuple[np.ndarray, int]:
    """Matched kernel of :func:`generic_template`, truncated for speed.

    The template is cut to [onset - n_post // 3, onset + n_post), where n_post is the number of
    samples until the decay reaches ``GENERIC_DECAY_LEVEL`` of the maximum, so the onset keeps
    sitting at a quarter of the kernel. A 16384-sample record gives a kernel of ~3800 samples.
    Anchor = onset sample of the kernel.
    """
    if int(record_length) != record_length or record_length < 8:
        raise InputError(f"record_length must be an integer >= 8, got {record_length}")
    t = generic_template(int(record_length))
    onset = int(record_length * 0.25)
    above = np.flatnonzero(t[onset:] >= GENERIC_DECAY_LEVEL)
    n_post = int(above[-1]) + 1 if above.size else record_length - onset
    lo = max(onset - n_post // 3, 0)
    hi = min(onset + n_post, record_length)
    return matched_kernel(t[lo:hi], onset - lo)


def filter_block(x: np.ndarray, kernel, anchor) -> np.ndarray:
    """Exact correlation of in-memory data (..., n) with a kernel, float64 (reference).

    Samples beyond both ends are the edge values, as in a stream.
    """
    k, anchor = check_kernel(kernel, anchor)
    x = np.asarray(x, dtype=np.float64)
    if x.shape[-1] == 0:
        raise InputError("cannot filter an empty array")
    pad = [(0, 0)] * (x.ndim - 1) + [(anchor, k.size - 1 - anchor)]
    xp = np.pad(x, pad, mode="edge")
    return scipy.signal.correlate(xp, k.reshape((1,) * (x.ndim - 1) + (-1,)), mode="valid")


def segment_length(kernel_length: int, chunk_size: int) -> int:
    """FFT length (samples) of one overlap-save segment.

    A power of two >= ``SEGMENT_OVERLAP_FACTOR`` x kernel length (at least ``MIN_SEGMENT``): FFTs of
    this size stay in cache and are much faster per sample than one huge FFT. Chunks shorter than
    that get one segment of a fast length just large enough.
    """
    big = max(MIN_SEGMENT, 1 << int(np.ceil(np.log2(SEGMENT_OVERLAP_FACTOR * kernel_length))))
    need = chunk_size + kernel_length - 1
    return big if need > big else scipy.fft.next_fast_len(need, real=True)


class OverlapSave:
    """Reusable overlap-save correlator for one kernel; segments are transformed in batches.

    Each FFT segment of ``nfft`` samples yields ``step = nfft - L + 1`` exact outputs; a chunk is
    ``chunk`` samples (whole segments). ``apply(block, n_out)`` takes
    ``block`` = x[a - anchor, a + n_out + L - 1 - anchor) and returns y[a : a + n_out] as float32.
    """

    def __init__(self, kernel, anchor, chunk_size: int, workers: int | None = None):
        k, self.anchor = check_kernel(kernel, anchor)
        self.length = k.size
        self.nfft = segment_length(k.size, chunk_size)
        self.step = self.nfft - k.size + 1          # new output samples per segment
        self.chunk = -(-chunk_size // self.step) * self.step   # whole segments per chunk
        self.workers = default_workers() if workers is None else int(workers)
        self.spectrum = np.conj(scipy.fft.rfft(k, self.nfft)).astype(np.complex64)

    def segments(self, block: np.ndarray, n_out: int) -> np.ndarray:
        """Filtered values as rows of whole segments: (n_seg, step) view; flattened, the first
        ``n_out`` values are y[a : a + n_out] (float32)."""
        n_seg = -(-n_out // self.step)
        need = n_seg * self.step + self.length - 1
        block = np.ascontiguousarray(block, dtype=np.float32)
        if block.shape[-1] < need:
            block = np.concatenate([block, np.zeros(need - block.shape[-1], np.float32)])
        segs = np.lib.stride_tricks.as_strided(
            block, (n_seg, self.nfft), (self.step * block.itemsize, block.itemsize), writeable=False)
        spec = scipy.fft.rfft(segs, axis=-1, workers=self.workers)
        spec *= self.spectrum
        out = scipy.fft.irfft(spec, n=self.nfft, axis=-1, workers=self.workers, overwrite_x=True)
        return out[:, : self.step]

    def apply(self, block: np.ndarray, n_out: int) -> np.ndarray:
        """y[a : a + n_out] (float32, 1-D) from block = x[a - anchor, a + n_out + L - 1 - anchor)."""
        return self.segments(block, n_out).reshape(-1)[:n_out]


def filtered_segments(stream, channel: int, kernel, anchor, chunk_size: int = 2**20, start: int = 0,
                      stop: int | None = None, workers: int | None = None
                      ) -> Iterator[tuple[int, int, np.ndarray]]:
    """Like :func:`filter_stream`, but yield (a, n, rows): rows (n_seg, step) whose flattened first
    n values are y[a : a + n] (saves a copy for consumers that only scan the values)."""
    if not 0 <= channel < stream.n_channels:
        raise InputError(f"channel {channel} not in stream with {stream.n_channels} channels")
    if chunk_size < 1:
        raise InputError(f"chunk_size must be positive, got {chunk_size}")
    ols = OverlapSave(kernel, anchor, int(chunk_size), workers)
    before, after = ols.anchor, ols.length - 1 - ols.anchor
    released = max(start - before, 0)
    for a, b, volts in stream.iter_chunks(ols.chunk, before, after, start, stop, channels=[channel]):
        rows = ols.segments(volts[0], b - a)
        stream.release_pages(channel, released, b - before)
        released = max(released, b - before)
        yield a, b - a, rows


def filter_stream(stream, channel: int, kernel, anchor, chunk_size: int = 2**20, start: int = 0,
                  stop: int | None = None, workers: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """Filter one channel of a stream chunk by chunk (overlap-save FFT, float32).

    Yields (a, y[a:b]) for consecutive owned chunks covering [start, stop); values equal
    :func:`filter_block` of the whole stream (edge-padded ends) up to float32 rounding.
    Memory is bounded by the chunk size, not by the stream length: memory-map pages already
    consumed are released (CsmplStream.release_pages).

    Parameters
    ----------
    stream : CsmplStream
    channel : channel index
    kernel, anchor : filter kernel and its anchor index
    chunk_size : owned samples per chunk; rounded up to whole FFT segments
        (see :func:`segment_length`), so the yielded chunks may be longer
    start, stop : sample range (default: whole stream)
    workers : scipy.fft threads (default: all usable cores)
    """
    for a, n, rows in filtered_segments(stream, channel, kernel, anchor, chunk_size, start, stop, workers):
        yield a, rows.reshape(-1)[:n]


def robust_sigma(y: np.ndarray, polarity: int = 1) -> float:
    """Noise sigma from the side of the median opposite to pulses: 1.4826 x median |y - med|.

    For Gaussian noise, the median distance from the median of either half equals the MAD, so the
    factor 1.4826 gives sigma; pulses (on the ``polarity`` side) do not enter the half used.
    """
    y = np.asarray(y, dtype=np.float64) * polarity
    med = np.median(y)
    low = med - y[y < med]
    if low.size == 0:
        return 0.0
    return float(1.4826 * np.median(low))


def filtered_noise_sigma(stream, channel, kernel, anchor, n_chunks=8, chunk_size=2**18, polarity=1,
                         workers: int | None = None) -> float:
    """Robust noise sigma (V) of the filtered stream.

    Filters ``n_chunks`` windows of ``chunk_size`` samples spread evenly through the stream (the
    whole stream if it is shorter) and applies :func:`robust_sigma` to the pooled values: the
    median distance from the median on the side opposite to pulses (``polarity``), times 1.4826.
    Pulses therefore do not inflate the estimate; baseline drifts are removed by zero-mean kernels.
    """
    if polarity not in (1, -1):
        raise InputError(f"polarity must be +1 or -1, got {polarity}")
    if n_chunks < 1 or chunk_size < 1:
        raise InputError("n_chunks and chunk_size must be positive")
    n = stream.n_samples
    if n_chunks * chunk_size >= n:
        ranges = [(0, n)]
    else:
        starts = np.linspace(0, n - chunk_size, n_chunks).astype(np.int64)
        ranges = [(int(s), int(s) + chunk_size) for s in starts]
    parts = [y for lo, hi in ranges
             for _, y in filter_stream(stream, channel, kernel, anchor, chunk_size, lo, hi, workers)]
    return robust_sigma(np.concatenate(parts), polarity)
