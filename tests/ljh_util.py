"""An independent LJH writer for tests (struct, by hand, from the layout of doc/LJHfiles.md in
usnistgov/mass), and LJH files of simulated pulses of known height and onset."""
from __future__ import annotations

import struct
from pathlib import Path

import numpy as np


def write_ljh_by_hand(path, version, samples, *, timebase=5.12e-6, presamples=None, rows=4, row=1,
                      offset=1000.0, row_counts=None, posix_usec=None, ms=None, ticks=None,
                      newline="\n", extra=(), drop=()):
    """An independent LJH writer: header lines and each record packed with struct."""
    samples = np.asarray(samples, np.uint16)
    n_rec, n = samples.shape
    presamples = n // 3 if presamples is None else presamples
    lines = ["#LJH Memorial File Format", f"Save File Format Version: {version}",
             "Software Version: hand-written test (DASTARD layout)", f"Number of rows: {rows}",
             f"Row number (from 0-{rows - 1} inclusive): {row}", "Digitized Word Size In Bytes: 2",
             f"Timestamp offset (s): {offset:.6f}", f"Timebase: {timebase:e}",
             "Number of samples per point: 1", f"Presamples: {presamples}", f"Total Samples: {n}", *extra]
    lines = [ln for ln in lines if not any(ln.startswith(d) for d in drop)]
    lines.append("#End of Header")
    out = bytearray(newline.join(lines).encode() + newline.encode())
    for i in range(n_rec):
        if version.startswith("2.2"):
            out += struct.pack("<qq", int(row_counts[i]), int(posix_usec[i]))
        else:
            out += struct.pack("<BBI", int(ticks[i]), 0, int(ms[i]))
        out += struct.pack(f"<{n}H", *(int(v) for v in samples[i]))
    Path(path).write_bytes(bytes(out))
    return path


def pulse_shape(n: int, fs: float, rise: float = 1e-4, decay: float = 1e-3) -> np.ndarray:
    """Two-exponential pulse of maximum 1 starting at sample 0 (n samples at fs Hz)."""
    t = np.arange(n) / fs
    p = np.exp(-t / decay) - np.exp(-t / rise)
    return p / p.max()


def write_pulse_ljh(path, *, n_records=120, n=512, presamples=256, fs=195312.5, version="2.2.0",
                    heights=None, noise_counts=6.0, baseline=3000, seed=0, start_frame=10_000,
                    gap_frames=5000, rows=1, back_to_back=False, pulses=True, extra=()):
    """Records of white noise (sigma `noise_counts` counts) on `baseline` counts with a pulse of
    `heights[i]` counts starting exactly at `presamples` (or no pulse where pulses is False).

    Returns (path, heights, frames): the true heights (counts) and trigger frames.
    """
    rng = np.random.default_rng(seed)
    if heights is None:
        heights = rng.uniform(200.0, 2000.0, n_records) if pulses else np.zeros(n_records)
    heights = np.asarray(heights, float)
    shape = np.zeros(n)
    shape[presamples:] = pulse_shape(n - presamples, fs)
    x = baseline + heights[:, None] * shape[None, :] + rng.normal(0.0, noise_counts, (n_records, n))
    samples = np.clip(np.rint(x), 0, 65535).astype(np.uint16)
    step = n if back_to_back else n + gap_frames
    frames = start_frame + step * np.arange(n_records)
    usec = np.rint(1.6e15 + frames / fs * 1e6).astype(np.int64)
    ms = np.floor(frames / fs * 1e3).astype(np.int64)
    ticks = np.floor((frames / fs * 1e6 - ms * 1e3) / 4).astype(np.int64)
    write_ljh_by_hand(path, version, samples, timebase=1 / fs, presamples=presamples, rows=rows, row=0,
                      row_counts=frames * rows, posix_usec=usec, ms=ms, ticks=ticks, extra=extra)
    return Path(path), heights, frames
