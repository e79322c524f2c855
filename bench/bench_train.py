"""Training throughput of the cleaning architectures on this CPU: records/s of forward + backward
+ Adam step on (batch, 512) inputs, for each architecture, torch thread count and batch size.

Usage: python bench/bench_train.py [--models resnet cnn_full ...] [--threads 1 2] [--batch 64 256]
       [--seconds 8]
Each setting runs in a fresh subprocess (torch's thread count is fixed once set): a warm-up of
3 steps, then as many steps as fit in --seconds; prints records/s and the fastest setting per model.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time


def measure(model: str, threads: int, batch: int, seconds: float) -> float:
    """Training records/s of `model` with `threads` torch threads at `batch` (this process)."""
    import torch

    from cryopipe.cleaning.models import build_model

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    m = build_model(model, n_classes=13).train()
    opt = torch.optim.Adam(m.parameters(), lr=1e-3)
    x, y = torch.rand(batch, 512), torch.randint(0, 13, (batch,))

    def step():
        loss = torch.nn.functional.cross_entropy(m(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    for _ in range(3):
        step()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        step()
        n += 1
    return n * batch / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["resnet", "cnn_full", "cnn", "tscn"])
    ap.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--batch", nargs="+", type=int, default=[64, 256])
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--one", nargs=3, metavar=("MODEL", "THREADS", "BATCH"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(measure(args.one[0], int(args.one[1]), int(args.one[2]), args.seconds)))
        return
    import os

    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    print(f"{'model':10s} {'threads':>7s} {'batch':>6s} {'records/s':>10s}")
    for model in args.models:
        best = None
        for threads in args.threads:
            for batch in args.batch:
                out = subprocess.run([sys.executable, __file__, "--one", model, str(threads), str(batch),
                                      "--seconds", str(args.seconds)], capture_output=True, text=True, check=True)
                rate = float(out.stdout.strip().splitlines()[-1])
                print(f"{model:10s} {threads:7d} {batch:6d} {rate:10.0f}", flush=True)
                if best is None or rate > best[0]:
                    best = (rate, threads, batch)
        print(f"{model:10s} fastest: {best[1]} thread(s), batch {best[2]}: {best[0]:.0f} records/s", flush=True)


if __name__ == "__main__":
    main()
