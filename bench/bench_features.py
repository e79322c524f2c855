"""Throughput of the feature families on an in-memory float32 block; peak RSS.

Usage: python bench/bench_features.py [--events 4096] [--samples 16384] [--threads 2] [--repeat 5]
Half the records carry a Proebst pulse, all carry white noise (25 kHz). Prints records/s of the main
parameters (`cryopipe.features.main.compute_features`), then of each feature family run on its own through
`cryopipe.features.registry.compute_block` (main, optimum_filter, the cut ("shape") features, the per-event SEV
fit), each with the SEV of the block's pulse shape and the white-noise spectrum, and of ALL families
together as the features rule runs them: `compute_block` over the default families (families share
the optimum-filter pass) and `features_dataset` on an in-memory records store (the one loop of the
features stage, with its finiteness check, in batches of `--batch` events); on `--threads` threads
(numba and FFT workers). Rates are the median over `--repeat` runs (and the best); "per CPU second"
divides by the process CPU time of all threads (on a shared machine, the CPU figure times the thread
count estimates the wall rate on idle cores). If `cait` is importable, its calc_main_parameters +
calc_additional_parameters are timed on a few records.
"""
from __future__ import annotations

import argparse
import resource
import time

import numba
import numpy as np

import xarray as xr

from cryopipe.features.context import ChannelContext
from cryopipe.features.dataset import features_dataset
from cryopipe.features.main import compute_features
from cryopipe.features.registry import BY_NAME, compute_block, default_families
from cryopipe.io.stores import provenance
from cryopipe.signal.pulses import proebst_pulse

FS = 25_000.0


NOISE_RMS = 1e-3  # V, white


def pulse_shape(n_samples: int) -> np.ndarray:
    """The block's pulse shape (max 1, onset at N/4)."""
    t = (np.arange(n_samples) - n_samples // 4) / FS
    shape = proebst_pulse(t, 0.0, 1.0, 0.5, 10e-3, 0.5e-3, 50e-3)
    return shape / shape.max()


def context(n_samples: int) -> ChannelContext:
    """A characterized channel: the block's pulse shape as SEV, the white noise's NPS (V^2/Hz)."""
    nps = np.full(n_samples // 2 + 1, 2 * NOISE_RMS ** 2 / FS)
    nps[0] /= 2
    nps[-1] /= 2
    return ChannelContext(FS, n_samples, sev=pulse_shape(n_samples), nps=nps)


def rates(f, block, repeat: int) -> tuple[float, float, float]:
    """Records per wall second (median and best of `repeat`) and per CPU second (all threads; median)
    of f(block), after a warm-up on a few records."""
    f(block[:64])
    wall, cpu = [], []
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        f(block)
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    n = len(block)
    return n / float(np.median(wall)), n / min(wall), n / float(np.median(cpu))


def records_store(block: np.ndarray) -> xr.Dataset:
    """One-channel records store of `block` in memory."""
    return xr.Dataset({"trace": (("channel", "event", "sample"), block[None])},
                      coords={"channel": ["ch0"], "event": np.arange(len(block))},
                      attrs=provenance("records", parameters={}, inputs=[], sample_frequency=FS,
                                       record_length=block.shape[1]))


def characterization(ctx: ChannelContext) -> xr.Dataset:
    return xr.Dataset({"sev": (("channel", "sample"), ctx.sev[None]), "nps": (("channel", "frequency"), ctx.nps[None])},
                      coords={"channel": ["ch0"]}, attrs={"sample_frequency": FS})


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
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--batch", type=int, default=4096, help="events per slice of features_dataset")
    args = ap.parse_args()
    numba.set_num_threads(args.threads)

    block = make_block(args.events, args.samples)
    compute_features(block[:8], FS)  # JIT warm-up (or cache load)
    rate = rates(lambda b: compute_features(b, FS), block, args.repeat)[0]
    gbps = rate * args.samples * 4 / 1e9
    head = f"{args.events} records x {args.samples} samples, {args.threads} threads"
    print(f"compute_features: {head}: {rate:,.0f} records/s ({gbps:.2f} GB/s of float32), median of {args.repeat}")

    def show(label: str, r: tuple) -> None:
        print(f"{label}: {head}: {r[0]:,.0f} records/s (best {r[1]:,.0f}; {r[2]:,.0f} per CPU second), "
              f"median of {args.repeat}")

    ctx = context(args.samples)
    for name, label in (("main", "family main"), ("optimum_filter", "family optimum_filter"),
                        ("shape", "cut (shape) features"), ("sev_fit", "per-event SEV fit")):
        family = BY_NAME[name]
        show(label, rates(lambda b: compute_block(b, ctx, [family]), block, args.repeat))
    families = default_families(True)
    show("ALL families (compute_block)", rates(lambda b: compute_block(b, ctx, families), block, args.repeat))
    char = characterization(ctx)
    show(f"ALL families (features_dataset, batch {args.batch})",
         rates(lambda b: features_dataset(records_store(b), characterization=char, batch=args.batch), block,
               args.repeat))
    cait_rate = bench_cait(block)
    if cait_rate is None:
        print("cait: not importable, skipped")
    else:
        print(f"cait calc_main_parameters + calc_additional_parameters: {cait_rate:,.0f} records/s "
              f"(x{rate / cait_rate:.0f})")
    print(f"peak RSS: {peak_rss_mb():,.0f} MB (block {block.nbytes / 1e6:,.0f} MB)")


if __name__ == "__main__":
    main()
