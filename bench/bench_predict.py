"""Prediction throughput of every cleaning model (records/s of 512 samples, CPU).

batch 4096, torch threads 2, eval mode, torch.inference_mode; each model runs for about
`--seconds` after a warm-up (at least one timed batch); a model too slow for one batch of 4096
in that time (the LSTM) is timed with a smaller power-of-two batch, shown in the table. Also times the preprocessing of
16384-sample raw records. Prints a table and the peak memory (resource.getrusage).
Targets (NOTES.md, this CPU): CRESST CNN >= 40k/s (~51k/s), Cait CNN ~24k/s, TSCN ~3.5k/s, LSTM ~600/s.
"""
from __future__ import annotations

import argparse
import resource
import time

import numpy as np
import torch

from cryopipe.cleaning.architectures import UNIVERSAL
from cryopipe.cleaning.models import MODELS, build_model
from cryopipe.cleaning.universal import load_universal
from cryopipe.cleaning.preprocess import preprocess


def throughput(fn, n_per_call: int, seconds: float) -> float:
    """Calls of `fn` until `seconds` have passed (at least one); records per second."""
    calls, t0 = 0, time.perf_counter()
    while True:
        fn()
        calls += 1
        elapsed = time.perf_counter() - t0
        if elapsed >= seconds:
            return calls * n_per_call / elapsed


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=4096)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--models", nargs="*", default=list(MODELS), choices=[*MODELS, UNIVERSAL],
                    help="architectures (random weights) or 'universal' (the shipped weights)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x = torch.rand(args.batch, 512)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}")
    print(f"{'model':10s} {'parameters':>11s} {'batch':>6s} {'records/s':>11s}")
    for name in args.models:
        model = (load_universal()[0] if name == UNIVERSAL else build_model(name)).eval()
        with torch.inference_mode():
            model(x[:256])                                           # warm-up (small: LSTM is slow)
            probe = throughput(lambda: model(x[:256]), 256, 0.0)
            # a slow model (LSTM) gets a smaller batch so that one call fits in the time budget
            batch = int(min(args.batch, max(256, 2 ** int(np.log2(max(probe * args.seconds, 1))))))
            rate = throughput(lambda: model(x[:batch]), batch, args.seconds)
        n_par = sum(p.numel() for p in model.parameters())
        print(f"{name:10s} {n_par:11d} {batch:6d} {rate:11.0f}", flush=True)
    raw = np.random.default_rng(0).standard_normal((args.batch, 16384)).astype(np.float32)
    rate = throughput(lambda: preprocess(raw), args.batch, 1.0)
    print(f"{'preprocess':10s} {'16384->512':>11s} {rate:11.0f}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak memory {peak:.0f} MiB")


if __name__ == "__main__":
    main()
