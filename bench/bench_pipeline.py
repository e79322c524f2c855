"""End-to-end bench: trigger and features (two trigger passes, characterisation, features with the
optimum-filter, SEV-fit and cut features, calibration) on a long 2-channel simulated stream with
`--cores 2`, target results/long/features.zarr.

Prints stream-hours per wall-minute and the peak memory (max RSS) of the largest job, read from
the benchmark files Snakemake writes for the heavy rules.

    python bench/bench_pipeline.py --hours 24 [--workdir /tmp/cryopipe_bench] [--keep]

The stream is one simulated hour (the default module's detector, cryopipe.simulate.stream) tiled
`--hours` times, so making a 24-hour stream costs a minute, not half an hour; trigger and feature
throughput do not depend on the events repeating. Needs ~180 MB of disk per stream-hour.
"""
from __future__ import annotations

import argparse
import copy
import csv
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

from cryopipe.simulate.stream import DEFAULT_SIMULATION, simulate_stream

REPO = Path(__file__).resolve().parents[1]
FS = 25000.0


def make_stream(work: Path, hours: float) -> list[Path]:
    """One simulated hour per channel, tiled to `hours` (csmpl files in work/stream)."""
    block_dir = work / "one_hour"
    sim = copy.deepcopy(DEFAULT_SIMULATION)
    sim["duration"] = min(3600.0, hours * 3600.0)
    paths, _ = simulate_stream(block_dir, sim, FS, ["phonon", "light"])
    out_dir = work / "stream"
    out_dir.mkdir(parents=True, exist_ok=True)
    out = []
    for p in paths:
        target = out_dir / p.name
        block = p.read_bytes()
        n_full, rest = divmod(hours * 3600.0, sim["duration"])
        with open(target, "wb") as f:
            for _ in range(int(n_full)):
                f.write(block)
            f.write(block[: int(rest * FS) * 2])
        out.append(target)
    shutil.rmtree(block_dir)
    return out


def config(work: Path, paths: list[Path]) -> Path:
    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    cfg["results"] = str(work / "results")
    cfg["runs"] = {"long": {"csmpl": [str(p) for p in paths], "sample_frequency": FS, "record_length": 16384,
                            "channels": ["phonon", "light"]}}
    path = work / "bench.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def peak_job_memory(results: Path) -> tuple[float, str]:
    """Largest max_rss (MB) over the benchmark files, and the job it belongs to."""
    best, name = 0.0, ""
    for tsv in results.rglob("benchmarks/**/*.tsv"):
        with open(tsv) as f:
            for row in csv.DictReader(f, delimiter="\t"):
                try:
                    rss = float(row["max_rss"])
                except (KeyError, ValueError):
                    continue
                if rss > best:
                    best, name = rss, str(tsv.relative_to(results))
    return best, name


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hours", type=float, default=24.0)
    ap.add_argument("--workdir", default="/tmp/cryopipe_bench_pipeline")
    ap.add_argument("--keep", action="store_true", help="keep the stream and results")
    args = ap.parse_args()
    work = Path(args.workdir)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    t0 = time.perf_counter()
    paths = make_stream(work, args.hours)
    print(f"stream: {args.hours:g} h x 2 channels written in {time.perf_counter() - t0:.0f} s")
    cfg = config(work, paths)
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(work), "--configfile",
           str(cfg), "--cores", "2", str(work / "results" / "long" / "features.zarr")]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode:
        print(proc.stderr[-4000:])
        return 1
    rss, job = peak_job_memory(work / "results")
    print(f"trigger + features wall time: {wall / 60:.1f} min -> {args.hours / (wall / 60):.1f} stream-hours per wall-minute "
          f"(2 channels, --cores 2)")
    print(f"peak memory of the largest job: {rss:.0f} MB ({job})")
    if not args.keep:
        shutil.rmtree(work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
