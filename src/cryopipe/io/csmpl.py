"""Continuous "csmpl" streams (the first stream source of `cryopipe.io.sources`): one int16 little-endian file per channel, read by memory map.

Volts = ADC * adc_range / 2**adc_bits (16 bit over +-10 V gives 20 / 2**16 V per ADC count).
Multi-channel modules are read in lockstep; memory stays bounded because only the requested
slice of each memory map is converted to float32.
"""
from __future__ import annotations

import mmap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from ..errors import InputError
from .base import TestPulses

BYTES_PER_SAMPLE = 2


def volts_per_adc(*, adc_bits: int = 16, adc_range: float = 20.0) -> float:
    """Conversion factor from ADC counts to volts (V per count)."""
    return float(adc_range) / float(2**adc_bits)


@dataclass
class CsmplStream:
    """A module's synchronous csmpl streams, memory-mapped.

    Attributes
    ----------
    paths : channel files, one per channel
    sample_frequency : Hz
    n_samples : samples per channel
    volts_per_adc : V per ADC count
    start_time : s since the Unix epoch of the first sample (0 when unknown)
    test_pulses : test and control pulses injected by the DAQ (CRESST stamps), if any
    """

    paths: tuple[Path, ...]
    sample_frequency: float
    n_samples: int
    volts_per_adc: float
    _maps: tuple[np.memmap, ...] = ()
    start_time: float = 0.0
    test_pulses: TestPulses = field(default_factory=TestPulses)

    @property
    def n_channels(self) -> int:
        return len(self.paths)

    @property
    def duration(self) -> float:
        """Stream length in s."""
        return self.n_samples / self.sample_frequency

    def read(self, start: int, stop: int, channels: Sequence[int] | None = None) -> np.ndarray:
        """Volts of samples [start, stop) as float32 (n_channels, stop - start).

        Samples outside the stream are filled with the nearest edge value, so that filters
        over the first and last samples see no step.
        """
        chans = range(self.n_channels) if channels is None else channels
        lo, hi = max(start, 0), min(stop, self.n_samples)
        out = np.empty((len(chans), stop - start), dtype=np.float32)
        scale = np.float32(self.volts_per_adc)
        for row, c in enumerate(chans):
            inner = out[row, lo - start : hi - start]
            np.multiply(self._maps[c][lo:hi], scale, out=inner, casting="unsafe")  # one pass int16 -> V
            out[row, : lo - start] = inner[0] if hi > lo else 0.0
            out[row, hi - start :] = inner[-1] if hi > lo else 0.0
        return out

    def release_pages(self, channel: int, start: int, stop: int) -> None:
        """Drop the memory-map pages of samples [start, stop) of a channel from this process.

        The data stay in the OS page cache (a later read refaults them cheaply), but the resident
        memory of a long scan no longer grows with the stream length. No-op without madvise.
        """
        base = getattr(self._maps[channel], "_mmap", None)
        if base is None or not hasattr(base, "madvise") or not hasattr(mmap, "MADV_DONTNEED"):
            return
        lo = -(-start * BYTES_PER_SAMPLE // mmap.PAGESIZE) * mmap.PAGESIZE
        hi = min(stop * BYTES_PER_SAMPLE, len(base)) // mmap.PAGESIZE * mmap.PAGESIZE
        if hi > lo:
            base.madvise(mmap.MADV_DONTNEED, lo, hi - lo)

    def read_records(self, starts: np.ndarray, length: int, *, channels: Sequence[int] | None = None,
                     batch: int = 1024) -> Iterator[tuple[slice, np.ndarray]]:
        """Yield (event slice, volts (n_channels, n, length)) for record windows starting at `starts`.

        The memory-map pages of each batch are released once copied, so resident memory is bounded
        by one batch however long the stream is.
        """
        chans = list(range(self.n_channels)) if channels is None else list(channels)
        for b in range(0, len(starts), batch):
            s = np.asarray(starts[b : b + batch], dtype=np.int64)
            out = np.empty((len(chans), len(s), length), dtype=np.float32)
            scale = np.float32(self.volts_per_adc)
            for row, c in enumerate(chans):
                m = self._maps[c]
                for i, start in enumerate(s):  # one pass int16 -> V per window, no index array
                    np.multiply(m[start : start + length], scale, out=out[row, i], casting="unsafe")
                if len(s):  # copied out: drop the pages, so resident memory stays one batch
                    self.release_pages(c, int(s.min()), int(s.max()) + length)
            yield slice(b, b + len(s)), out

    def iter_chunks(self, chunk_size: int, before: int = 0, after: int = 0,
                    start: int = 0, stop: int | None = None,
                    *, channels: Sequence[int] | None = None) -> Iterator[tuple[int, int, np.ndarray]]:
        """Yield (a, b, volts) for owned chunks [a, b) covering [start, stop).

        `volts` spans [a - before, b + after) (edge-padded), so filters with overlap-save see
        exact context at chunk borders and nothing is lost or doubled.
        """
        stop = self.n_samples if stop is None else min(stop, self.n_samples)
        for a in range(start, stop, chunk_size):
            b = min(a + chunk_size, stop)
            yield a, b, self.read(a - before, b + after, channels)


def open_csmpl(paths: Sequence[str | Path], sample_frequency: float, record_length: int,
               *, adc_bits: int = 16, adc_range: float = 20.0) -> CsmplStream:
    """Open and validate a module's csmpl files; raise InputError naming the file and the problem."""
    if not paths:
        raise InputError("no csmpl files given")
    if not (np.isfinite(sample_frequency) and sample_frequency > 0):
        raise InputError(f"{paths[0]}: sample_frequency must be positive, got {sample_frequency}")
    if int(record_length) != record_length or record_length <= 0:
        raise InputError(f"{paths[0]}: record_length must be positive (an integer), got {record_length}")
    if adc_bits <= 0 or adc_range <= 0:
        raise InputError(f"{paths[0]}: adc_bits and adc_range must be positive")
    lengths = []
    for p in map(Path, paths):
        if p.is_dir():
            raise InputError(f"{p}: is a directory; csmpl needs one int16 file per channel")
        if not p.is_file():
            raise InputError(f"{p}: csmpl file not found")
        size = p.stat().st_size
        if size == 0:
            raise InputError(f"{p}: csmpl file is empty")
        if size % BYTES_PER_SAMPLE:
            raise InputError(f"{p}: odd byte count {size}; a csmpl file holds int16 samples (2 bytes each)")
        n = size // BYTES_PER_SAMPLE
        if n < record_length:
            raise InputError(f"{p}: stream of {n} samples is shorter than one record ({record_length} samples)")
        lengths.append(n)
    if len(set(lengths)) > 1:
        detail = ", ".join(f"{Path(p).name}: {n}" for p, n in zip(paths, lengths))
        raise InputError(f"{paths[0]}: channels of unequal length ({detail} samples)")
    maps = tuple(np.memmap(p, dtype="<i2", mode="r") for p in paths)
    return CsmplStream(tuple(map(Path, paths)), float(sample_frequency), lengths[0],
                       volts_per_adc(adc_bits=adc_bits, adc_range=adc_range), maps)


def volts_to_adc(volts: np.ndarray, *, adc_bits: int = 16, adc_range: float = 20.0) -> np.ndarray:
    """Round volts to int16 ADC counts, clipped to the ADC range."""
    lim = 2 ** (adc_bits - 1)
    adc = np.rint(np.asarray(volts) / volts_per_adc(adc_bits=adc_bits, adc_range=adc_range))
    return np.clip(adc, -lim, lim - 1).astype("<i2")


def write_csmpl(path: str | Path, volts: np.ndarray, *, adc_bits: int = 16, adc_range: float = 20.0,
                append: bool = False) -> None:
    """Write (or append) volts of one channel as an int16 little-endian csmpl file."""
    with open(path, "ab" if append else "wb") as f:
        volts_to_adc(volts, adc_bits=adc_bits, adc_range=adc_range).tofile(f)
