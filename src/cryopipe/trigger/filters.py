"""Filter kernels and exact overlap-save filtering of continuous streams.

A kernel is a real array ``k`` (length L) with an ``anchor`` index; filtering means correlation,

    y[n] = sum_m k[m] x[n - anchor + m],

so a kernel "looks" ``anchor`` samples back and ``L - 1 - anchor`` samples ahead of n. Samples outside
the stream are the nearest edge value (as :meth:`CsmplStream.read` pads), so the stream filter
(:func:`filter_stream`, chunked overlap-save FFT) equals the in-memory reference (:func:`filter_block`)
everywhere, chunk borders included. Any (kernel, anchor) pair works: matched filters built here, or
the optimum-filter kernel of :mod:`cryopipe.signal.optimum_filter`.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np
import scipy.fft
from numba import njit

from cryopipe.errors import InputError
from cryopipe.signal.pulses import generic_template
from cryopipe.signal.robust import MAD_TO_SIGMA

MIN_SEGMENT = 2**16          # smallest overlap-save FFT length for long chunks (samples)
SEGMENT_OVERLAP_FACTOR = 8   # FFT length >= 8 x kernel length: overlap overhead <= 12.5 %
GENERIC_DECAY_LEVEL = 1e-3   # generic kernel: truncate where the template has decayed to this level


def default_workers() -> int:
    """Threads for scipy.fft: the job's thread limit (`cryopipe.runner.use_threads`), else the CPU
    cores this process may use."""
    from cryopipe.runner import thread_limit

    if thread_limit():
        return thread_limit()
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


def matched_kernel(template: np.ndarray, *, anchor: int | None = None) -> tuple[np.ndarray, int]:
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
    return matched_kernel(t[lo:hi], anchor=onset - lo)


def characterized_kernel(characterization, *, channel: str) -> tuple[tuple[np.ndarray, int], float, tuple]:
    """The final pass's trigger of `channel` from its characterization (a "characterization" Dataset).

    Returns the channel's optimum filter as kernel ((N,) float64, anchor in samples:
    `cryopipe.signal.optimum_filter.of_kernel`), the threshold (V: k x the channel's resolution) and
    the pulse the filter is made for (SEV, onset in samples, SEV fit: the side lobes of its filter
    response, and of a saturated pulse's, never trigger).
    """
    from cryopipe.characterize.channel import optimum_filter_from
    from cryopipe.signal.optimum_filter import of_kernel

    of = optimum_filter_from(characterization, channel)
    c = characterization.sel(channel=channel)
    return of_kernel(of), float(c["threshold"]), (c["sev"].values, of.onset, c["sev_fit"].values)


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
    import scipy.signal  # imported here: ~1 s of start-up that the stream filter never needs

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


def filtered_segments(stream, channel: int, kernel, anchor, *, chunk_size: int = 2**20, start: int = 0,
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


def filter_stream(stream, channel: int, kernel, anchor, *, chunk_size: int = 2**20, start: int = 0,
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
    for a, n, rows in filtered_segments(stream, channel, kernel, anchor, chunk_size=chunk_size, start=start, stop=stop,
                                        workers=workers):
        yield a, rows.reshape(-1)[:n]


def robust_sigma(y: np.ndarray, *, polarity: int = 1) -> float:
    """Noise sigma from the side of the median opposite to pulses: 1.4826 x median |y - med|.

    For Gaussian noise, the median distance from the median of either half equals the MAD, so the
    factor 1.4826 gives sigma; pulses (on the ``polarity`` side) do not enter the half used.
    """
    y = np.asarray(y, dtype=np.float64) * polarity
    med = np.median(y)
    low = med - y[y < med]
    if low.size == 0:
        return 0.0
    return float(MAD_TO_SIGMA * np.median(low))


MIN_FLAT_RUN = 32            # samples: a run of this many identical samples is a saturated or stuck stretch
MASK_SIGMAS = 4.0            # pulse masking: filtered values beyond this many sigmas are pulses
PILEUP_FACTOR = 10.0         # plain estimate this far above the quiet-stretch one: pulses dominate
QUIET_WINDOW = 128           # samples per raw window of the quiet-stretch estimate
SATURATED_WARN = 0.01        # warn when more than this fraction of the sampled stream is flat
log = logging.getLogger("cryopipe.trigger.scan")


@dataclass
class NoiseEstimate:
    """The trigger's noise estimate of one channel and its cross-checks (all sigmas in V, filtered).

    sigma : the estimate used: robust sigma of the filtered stream with pulses masked (iterated)
    plain : robust sigma of all sampled filtered values (the one-pass estimate, pulses included)
    quiet : white-noise equivalent of the raw stream's quietest stretches: the lower quartile of the
        linearly detrended rms of QUIET_WINDOW-sample windows, times the kernel's norm. Equals the
        filtered sigma for white noise; below it for red noise; far below `plain` under pile-up.
    quiet_fraction : fraction of the sampled filtered values left after pulse masking
    saturated_fraction : fraction of the sampled raw stream in runs of >= MIN_FLAT_RUN identical
        samples (saturated or stuck); those stretches never enter the estimate
    warnings : one line per implausible situation (also logged at WARNING)
    """

    sigma: float
    plain: float
    quiet: float
    quiet_fraction: float
    saturated_fraction: float
    warnings: list = field(default_factory=list)

    def attrs(self) -> dict:
        """Store attributes (JSON-safe) of the estimate and its cross-checks."""
        return {"noise_sigma_plain": float(self.plain), "noise_sigma_quiet": float(self.quiet),
                "noise_quiet_fraction": float(self.quiet_fraction),
                "saturated_fraction": float(self.saturated_fraction), "noise_warnings": list(self.warnings)}


def flat_mask(x: np.ndarray, *, min_run: int = MIN_FLAT_RUN) -> np.ndarray:
    """Mask (..., n) of samples inside runs of >= `min_run` identical consecutive values along the
    last axis: a saturated ADC (at full scale) or a stuck stream. Noise never repeats one value so long."""
    x = np.asarray(x)
    n = x.shape[-1]
    if n < min_run:
        return np.zeros(x.shape, bool)
    same = x[..., 1:] == x[..., :-1]                     # same[i]: x[i+1] == x[i]
    # run of min_run equal samples starting at i  <=>  same[i : i + min_run - 1] all True
    c = np.concatenate([np.zeros(x.shape[:-1] + (1,), np.int64), np.cumsum(same, axis=-1)], axis=-1)
    k = min_run - 1
    start = (c[..., k:] - c[..., :-k]) == k             # (..., n - k): a run starts at i
    d = np.zeros(x.shape[:-1] + (n + 1,), np.int64)
    d[..., : n - k] += start
    d[..., min_run : n + 1] -= start
    return np.cumsum(d, axis=-1)[..., :n] > 0


@njit(cache=True)
def _flat_rows(x, min_run, out):
    for r in range(x.shape[0]):
        run = 1
        for j in range(1, x.shape[1]):
            if x[r, j] == x[r, j - 1]:
                run += 1
                if run >= min_run:
                    out[r] = True
                    break
            else:
                run = 1


def has_flat_run(x: np.ndarray, *, min_run: int = MIN_FLAT_RUN) -> np.ndarray:
    """Mask (...) of the (..., n) rows holding a run of >= `min_run` identical samples (saturated or
    stuck); a streaming scan without temporaries."""
    x = np.asarray(x)
    flat = np.ascontiguousarray(x.reshape(-1, x.shape[-1]) if x.ndim else x.reshape(1, 1))
    out = np.zeros(flat.shape[0], dtype=np.bool_)
    if flat.shape[1] >= max(min_run, 2):
        _flat_rows(flat, int(min_run), out)
    return out.reshape(x.shape[:-1])


def _dilate(mask: np.ndarray, before: int, after: int) -> np.ndarray:
    """True within [i - before, i + after] of every True sample i (1-D)."""
    idx = np.flatnonzero(mask)
    if idx.size == 0:
        return mask.copy()
    n = mask.size
    d = np.zeros(n + 1, np.int64)
    np.add.at(d, np.clip(idx - before, 0, n), 1)
    np.add.at(d, np.clip(idx + after + 1, 0, n), -1)
    return np.cumsum(d)[:n] > 0


def _quiet_rms(x: np.ndarray, flat: np.ndarray, window: int = QUIET_WINDOW) -> np.ndarray:
    """Linearly detrended rms of the raw `window`-sample windows of x without flat samples."""
    m = x.size // window
    if m == 0:
        return np.empty(0)
    w = x[: m * window].reshape(m, window).astype(np.float64)
    w = w[~flat[: m * window].reshape(m, window).any(axis=1)]
    t = np.arange(window) - (window - 1) / 2
    w = w - w.mean(axis=1, keepdims=True)
    w = w - np.outer(w @ t / (t @ t), t)
    return np.sqrt((w * w).sum(axis=1) / (window - 2))


def noise_estimate(stream, channel, kernel, anchor, n_chunks=8, chunk_size=2**18, polarity=1,
                   workers: int | None = None) -> NoiseEstimate:
    """Noise sigma (V) of the filtered stream, robust to high pulse rates and saturation.

    Filters ``n_chunks`` windows of ``chunk_size`` samples spread evenly through the stream (the
    whole stream if shorter). Samples whose kernel support touches a saturated or stuck stretch
    (`flat_mask`) are dropped. Starting from the plain robust sigma (:func:`robust_sigma`, pulses on
    one side only), filtered values beyond MASK_SIGMAS sigmas are masked with the filter response
    around them (a kernel length before, a quarter after) and sigma = 1.4826 MAD of the rest,
    iterated to 1 %. Cross-check: when the plain sigma exceeds PILEUP_FACTOR times the quiet-stretch
    estimate (`NoiseEstimate.quiet`), the iteration starts from the quiet estimate instead, doubling
    it until at least 5 % of the stream is left unmasked (pile-up: the filtered stream is never
    quiet). Implausible situations are reported in `NoiseEstimate.warnings` and logged.
    """
    if polarity not in (1, -1):
        raise InputError(f"polarity must be +1 or -1, got {polarity}")
    if n_chunks < 1 or chunk_size < 1:
        raise InputError("n_chunks and chunk_size must be positive")
    k, anchor = check_kernel(kernel, anchor)
    n = stream.n_samples
    if n_chunks * chunk_size >= n:
        ranges = [(0, n)]
    else:
        starts = np.linspace(0, n - chunk_size, n_chunks).astype(np.int64)
        ranges = [(int(s), int(s) + chunk_size) for s in starts]
    ys, oks, rms = [], [], []
    n_flat = n_raw = 0
    for lo, hi in ranges:
        y = np.concatenate([v for _, v in filter_stream(stream, channel, k, anchor, chunk_size=chunk_size, start=lo,
                                                        stop=hi, workers=workers)])
        x = stream.read(lo, hi, [channel])[0]
        flat = flat_mask(x)
        n_flat += int(flat.sum())
        n_raw += x.size
        # y[i] sees x[i - anchor, i - anchor + L): drop it if any of those is flat
        oks.append(~_dilate(flat, k.size - 1 - anchor, anchor)[: y.size])
        ys.append(polarity * y.astype(np.float64))
        rms.append(_quiet_rms(x, flat))
    y, ok, rms = np.concatenate(ys), np.concatenate(oks), np.concatenate(rms)
    saturated = n_flat / max(n_raw, 1)
    paths = getattr(stream, "paths", None)
    where = str(paths[channel]) if paths is not None and len(paths) > channel else f"channel {channel}"
    warn = []
    if saturated > SATURATED_WARN:
        warn.append(f"{where}: {100 * saturated:.1f} % of the sampled stream is saturated or stuck (runs of "
                    f">= {MIN_FLAT_RUN} identical samples); excluded from the noise estimate, such records "
                    f"are kept as 'saturated', never as particles")
    if ok.sum() < max(1000, 0.01 * y.size) or rms.size == 0:
        raise InputError(f"{where}: channel {channel} is saturated or stuck in {100 * saturated:.0f} % of the "
                         f"sampled stream: no noise left to set a trigger threshold")
    y = y[ok]
    plain = robust_sigma(y)
    quiet = float(np.percentile(rms, 25)) * float(np.sqrt(k @ k))
    pileup = False
    if quiet > 0 and plain > PILEUP_FACTOR * quiet:
        start = quiet          # pile-up suspected: find the lowest level that leaves quiet stretches
        while start < plain:
            sigma, frac = _masked_sigma(y, start, k.size, anchor)
            if frac >= 0.05:
                break
            start *= 2
        else:
            pileup = asymmetry(y) > 2.0    # pulses on one side: never quiet; else red noise
            sigma, frac = (quiet, 0.0) if pileup else _masked_sigma(y, plain, k.size, anchor)
    else:
        sigma, frac = _masked_sigma(y, plain, k.size, anchor)
    if pileup:
        warn.append(f"{where}: pile-up: the filtered stream is never quiet (pulses on one side, plain robust "
                    f"sigma {plain:.3g} V is {plain / quiet:.0f}x the quiet-stretch estimate); the "
                    f"quiet-stretch estimate {quiet:.3g} V is used (white-noise equivalent: a lower bound)")
    elif quiet > 0 and sigma > PILEUP_FACTOR * quiet:
        warn.append(f"{where}: filtered noise sigma {sigma:.3g} V is {sigma / quiet:.0f}x the quiet-stretch "
                    f"estimate {quiet:.3g} V: pile-up (pulses everywhere) or very non-white noise; the "
                    f"trigger threshold may be too high")
    if 0 < frac < 0.2:
        warn.append(f"{where}: pulses cover {100 * (1 - frac):.0f} % of the filtered stream (pile-up): the "
                    f"noise estimate {sigma:.3g} V comes from the few quiet stretches left")
    elif not pileup and plain > 2 * sigma:
        warn.append(f"{where}: pulses inflate the plain robust sigma {plain / sigma:.1f}x "
                    f"({plain:.3g} V); the pulse-masked estimate {sigma:.3g} V is used")
    for w in warn:
        log.warning("%s", w)
    return NoiseEstimate(float(sigma), float(plain), quiet, float(frac), float(saturated), warn)


def asymmetry(y: np.ndarray) -> float:
    """(q99.5 - median) / (median - q0.5) of `y`: about 1 for noise, well above 1 with pulses."""
    lo, med, hi = np.percentile(y, [0.5, 50, 99.5])
    return float((hi - med) / (med - lo)) if med > lo else float("inf")


def _masked_sigma(y: np.ndarray, sigma: float, length: int, anchor: int, iterations: int = 20):
    """Iterate: mask values beyond MASK_SIGMAS sigma (with the filter response around them) and take
    1.4826 MAD of the rest. Returns (sigma, unmasked fraction); sigma unchanged if < 1 % is left."""
    frac = 1.0
    for _ in range(iterations):
        med = np.median(y)
        pulse = _dilate(np.abs(y - med) > MASK_SIGMAS * sigma, length - anchor, anchor + length // 4)
        rest = y[~pulse]
        frac = rest.size / y.size
        if rest.size < max(100, 0.01 * y.size):
            return sigma, frac
        new = float(MAD_TO_SIGMA * np.median(np.abs(rest - np.median(rest))))
        if new <= 0:
            return sigma, frac
        done = abs(new - sigma) <= 0.01 * sigma
        sigma = new
        if done:
            break
    return sigma, frac


def filtered_noise_sigma(stream, channel, kernel, anchor, *, n_chunks=8, chunk_size=2**18, polarity=1,
                         workers: int | None = None) -> float:
    """Robust noise sigma (V) of the filtered stream: ``noise_estimate(...).sigma`` (see there; its
    warnings are logged)."""
    return noise_estimate(stream, channel, kernel, anchor, n_chunks, chunk_size, polarity, workers).sigma
