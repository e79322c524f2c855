"""Throughput of the feature families on an in-memory float32 block; peak RSS.

Usage: python bench/bench_features.py [--events 4096] [--samples 16384] [--threads 2] [--repeat 3]
Half the records carry a Proebst pulse, all carry white noise (25 kHz). Prints records/s of the main
parameters (`cryopipe.features.compute_features`), the cut ("shape") features and the per-event SEV
fit (`cryopipe.features.sev_fit`, i.e. `cryopipe.fit.fit_sev`), each with the SEV of the block's pulse
shape and the white-noise spectrum, on `--threads` threads (numba and FFT workers). If `cait` is
importable, its calc_main_parameters + calc_additional_parameters are timed on a few records.
"""
from __future__ import annotations

import argparse
import resource
import time

import numba
import numpy as np

from cryopipe.features import BY_NAME, ChannelContext, compute_features
from cryopipe.signal.pulses import proebst_pulse

FS = 25_000.0


NOISE_RMS = 1e-3  # V, white


def pulse_shape(n_samples: int) -> np.ndarray:
    """The block's pulse shape (max 1, onset at N/4)."""
    t = (np.arange(n_samples) - n_samples // 4) / FS
    shape = proebst_pulse(t, 0.0, 1.0, 0.5, 10e-3, 0.5e-3, 50e-3)
    return shape / shape.max()


def context(n_samples: int) -> ChannelContext:
    """A characterised channel: the block's pulse shape as SEV, the white noise's NPS (V^2/Hz)."""
    nps = np.full(n_samples // 2 + 1, 2 * NOISE_RMS ** 2 / FS)
    nps[0] /= 2
    nps[-1] /= 2
    return ChannelContext(FS, n_samples, sev=pulse_shape(n_samples), nps=nps)


def best_rate(f, block, repeat: int) -> tuple[float, float]:
    """Records per wall second and per CPU second (all threads) of f(block), best of `repeat` after a
    warm-up on a few records. On a shared machine the CPU figure divided by the thread count
    estimates the wall rate on idle cores."""
    f(block[:64])
    best, best_cpu = np.inf, np.inf
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        f(block)
        best = min(best, time.perf_counter() - t0)
        best_cpu = min(best_cpu, time.process_time() - c0)
    return len(block) / best, len(block) / best_cpu


def make_block(n_events: int, n_samples: int, seed: int = 0) -> np.ndarray:
    """(n_events, n_samples) float32 V: noise (1 mV), offsets, pulses on every other record."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n_events, n_samples), dtype=np.float32)
    x *= 1e-3
    shape = pulse_shape(n_samples).astype(np.float32)
    heights = rng.uniform(0.01, 1.0, n_events).astype(np.float32)
    heights[1::2] = 0.0
    for i in range(n_events):  # in place: no second block-sized temporary
        x[i] += heights[i] * shape + np.float32(rng.uniform(-1, 1))
    return x


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench_cait(block: np.ndarray, n: int = 50) -> float | None:
    """Records/s of Cait's main + additional parameters (one core), or None without cait."""
    try:
        from cait.features import calc_additional_parameters, calc_main_parameters
    except ImportError:
        return None
    transfer = np.ones(block.shape[1] // 2 + 1, dtype=complex)
    t0 = time.perf_counter()
    for ev in block[:n]:
        calc_main_parameters(ev)
        calc_additional_parameters(ev, transfer)
    return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=4096)
    ap.add_argument("--samples", type=int, default=16384)
    ap.add_argument("--threads", type=int, default=min(2, numba.config.NUMBA_NUM_THREADS))
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    numba.set_num_threads(args.threads)

    block = make_block(args.events, args.samples)
    compute_features(block[:8], FS)  # JIT warm-up (or cache load)
    best = np.inf
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        compute_features(block, FS)
        best = min(best, time.perf_counter() - t0)
    rate = args.events / best
    gbps = rate * args.samples * 4 / 1e9
    print(f"compute_features: {args.events} records x {args.samples} samples, {args.threads} threads: "
          f"{rate:,.0f} records/s ({gbps:.2f} GB/s of float32), best of {args.repeat}")
    ctx = context(args.samples)
    for name, label in (("shape", "cut (shape) features"), ("sev_fit", "per-event SEV fit")):
        family = BY_NAME[name]
        r, per_cpu = best_rate(lambda b: family.compute(b, ctx), block, args.repeat)
        print(f"{label}: {args.events} records x {args.samples} samples, {args.threads} threads: "
              f"{r:,.0f} records/s ({per_cpu:,.0f} per CPU second), best of {args.repeat}")
    cait_rate = bench_cait(block)
    if cait_rate is None:
        print("cait: not importable, skipped")
    else:
        print(f"cait calc_main_parameters + calc_additional_parameters: {cait_rate:,.0f} records/s "
              f"(x{rate / cait_rate:.0f})")
    print(f"peak RSS: {peak_rss_mb():,.0f} MB (block {block.nbytes / 1e6:,.0f} MB)")


if __name__ == "__main__":
    main()
