"""Benchmark of the stream trigger: stream-hours per wall-minute and peak memory, one 25 kHz channel.

Writes a csmpl stream (white noise with pulses, default 1 hour) to a temporary directory, then in
fresh subprocesses (so that peak RSS belongs to the trigger pass alone) estimates the filtered
noise sigma and triggers at 5 sigma, with the default generic kernel and with a 16384-sample
template kernel. Memory is measured on growing prefixes of the stream and extrapolated linearly
to 10 hours: it must not grow with the stream length. The stream is deleted afterwards.

    python bench/bench_trigger.py [--hours 1] [--workers 2]
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

FS = 25_000.0
RECORD = 16384
HOLDOFF = RECORD // 2


def write_stream(path: Path, hours: float, seed: int = 0) -> int:
    """White noise (2 mV) plus generic-template pulses (5-100 mV, 0.5 Hz), written in blocks."""
    from cryopipe.io.csmpl import write_csmpl
    from cryopipe.signal.pulses import generic_template

    rng = np.random.default_rng(seed)
    n_total = int(hours * 3600 * FS)
    shape = generic_template(RECORD).astype(np.float32)
    onset = RECORD // 4
    block = 2**22
    for a in range(0, n_total, block):
        n = min(block, n_total - a)
        x = rng.standard_normal(n + RECORD, dtype=np.float32) * np.float32(2e-3)
        for t0 in rng.integers(0, n, rng.poisson(0.5 * n / FS)):
            x[t0 : t0 + RECORD] += rng.uniform(5e-3, 0.1) * shape
        write_csmpl(path, x[onset : onset + n], append=a > 0)
    return n_total


def _cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def run_trigger(path: str, kernel_kind: str, stop: int, workers: int) -> dict:
    """One trigger pass (sigma estimate + threshold scan) on [0, stop); timing and peak RSS."""
    from cryopipe.trigger.filters import filtered_noise_sigma, generic_kernel, matched_kernel
    from cryopipe.io.csmpl import open_csmpl
    from cryopipe.signal.pulses import pulse_template
    from cryopipe.trigger.scan import scan_channel

    stream = open_csmpl([path], FS, RECORD)
    if kernel_kind == "generic":
        kernel, anchor = generic_kernel(RECORD)
    else:
        kernel, anchor = matched_kernel(pulse_template(RECORD, FS, 0.01, 5e-4, 0.05, 0.5))
    scan_channel(stream, 0, kernel, anchor, 1.0, HOLDOFF, stop=2**18, workers=workers)  # numba warm-up
    cpu0 = _cpu_seconds()
    t0 = time.perf_counter()
    sigma = filtered_noise_sigma(stream, 0, kernel, anchor, workers=workers)
    samples, _ = scan_channel(stream, 0, kernel, anchor, 5 * sigma, HOLDOFF, stop=stop, workers=workers)
    wall = time.perf_counter() - t0
    cpu = _cpu_seconds() - cpu0
    return {"kernel": kernel_kind, "kernel_length": int(kernel.size), "hours": stop / FS / 3600,
            "wall_s": wall, "cpu_s": cpu, "triggers": int(samples.size),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def child(path: str, kernel_kind: str, stop: int, workers: int) -> dict:
    cmd = [sys.executable, __file__, "--child", path, kernel_kind, str(stop), "--workers", str(workers)]
    return json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hours", type=float, default=1.0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--child", nargs=3)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(run_trigger(args.child[0], args.child[1], int(args.child[2]), args.workers)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench_Ch0.csmpl"
        t0 = time.perf_counter()
        n = write_stream(path, args.hours)
        print(f"wrote {args.hours:g} h stream ({n} samples, {path.stat().st_size / 2**20:.0f} MiB) "
              f"in {time.perf_counter() - t0:.1f} s; workers={args.workers}")
        for kind in ("generic", "template"):
            runs = [child(str(path), kind, int(n * f), args.workers) for f in (0.25, 0.5, 1.0)]
            full = runs[-1]
            rates = [r["hours"] / (r["wall_s"] / 60) for r in runs]
            cpu_rate = sum(r["hours"] for r in runs) / (sum(r["cpu_s"] for r in runs) / 60)
            h = np.array([r["hours"] for r in runs])
            rss = np.array([r["peak_rss_mb"] for r in runs])
            slope, icpt = np.polyfit(h, rss, 1)
            print(f"{kind:8s} kernel {full['kernel_length']:5d} samples, {full['triggers']} triggers in "
                  f"{full['hours']:g} h: {rates[-1]:.1f} stream-h/wall-min on the full stream "
                  f"(best of 3 passes {max(rates):.1f}; {cpu_rate:.1f} stream-h per CPU-min)")
            print(f"{'':8s} peak RSS {', '.join(f'{r:.0f}' for r in rss)} MB after "
                  f"{', '.join(f'{x:g}' for x in h)} h -> {icpt + 10 * slope:.0f} MB extrapolated to 10 h "
                  f"({slope:+.1f} MB/h)")

if __name__ == "__main__":
    main()
