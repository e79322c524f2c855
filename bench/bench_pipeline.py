"""End-to-end bench of the workflow on long simulated streams, with `--cores 2` (Snakemake's own
start included in every wall time).

    python bench/bench_pipeline.py [--hours 1 4 24] [--channels 2] [--compare-hours 2]
                                   [--cait-python /path/to/cait-env/bin/python] [--repo DIR ...]
                                   [--repeat N] [--default-job] [--workdir /tmp/cryopipe_bench] [--keep]

Prints, in one run:
- scaling: for each stream length, the default two-pass analysis (characterization, optimum-filter
  trigger, features with calibration, labels) of a `--channels`-channel module to features.zarr
  and labels.zarr: wall time, channel-hours per wall-minute, the fit wall = a + b * hours (growth
  must be linear with a small constant a), per-stage times (summed over the stage's jobs; `jobs`
  counts them) and the peak memory (VmHWM) of the largest job of each stage;
- compare: a `--compare-hours` one-channel stream to features.zarr (calibration off) -- the
  issue's comparison -- and, with `--cait-python`, Cait's whole chain on the same stream in that
  separate environment (bench/cait_chain.py: two trigger passes, main parameters, SEV, NPS,
  optimum filter) and the ratio; `--repeat N` interleaves N rounds (checkouts, then Cait) and
  reports medians, since a shared machine's load drifts;
- with `--default-job`, `snakemake --cores all` of the embedded default config (cleaning CNN
  included) in a fresh directory.
`--repo DIR` (repeatable) runs the same streams with another checkout (its Snakefile and its
src/ first on PYTHONPATH), e.g. a copy of the code before a change: side by side in one run.

The stream is one simulated hour (the default module's detector, cryopipe.simulate.stream) tiled
to the length, so making a 24-hour stream costs a minute; trigger and feature throughput do not
depend on the events repeating. Needs ~90 MB of disk per channel and stream-hour, plus results.
Job memory and times come from polling /proc for the Snakemake job processes every 50 ms.
"""
from __future__ import annotations

import argparse
import copy
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
FS = 25000.0
CHANNELS = ["phonon", "light"]
TAG = "CRYOPIPE_BENCH_TAG"


# ----------------------------------------------------------------------------------- streams
def one_hour(work: Path) -> list[Path]:
    """One simulated hour of the default module (both channels), made once per work folder."""
    from cryopipe.simulate.stream import DEFAULT_SIMULATION, simulate_stream

    block_dir = work / "one_hour"
    paths = [block_dir / f"{c}.csmpl" for c in CHANNELS]
    if not all(p.exists() for p in paths):
        sim = copy.deepcopy(DEFAULT_SIMULATION)
        sim["duration"] = 3600.0
        paths, _ = simulate_stream(block_dir, sim, FS, CHANNELS)
    return [Path(p) for p in paths]


def make_stream(work: Path, hours: float, channels: int) -> list[Path]:
    """csmpl files of `channels` channels, `hours` long (the simulated hour tiled)."""
    out_dir = work / f"stream_{hours:g}h_{channels}ch"
    out_dir.mkdir(parents=True, exist_ok=True)
    out = []
    for src in one_hour(work)[:channels]:
        target = out_dir / src.name
        if not target.exists():
            block = src.read_bytes()
            n_full, rest = divmod(hours * 3600.0, 3600.0)
            with open(target, "wb") as f:
                for _ in range(int(n_full)):
                    f.write(block)
                f.write(block[: int(rest * FS) * 2])
        out.append(target)
    return out


def write_config(work: Path, name: str, paths: list[Path], calibrate: bool, repo: Path = REPO) -> Path:
    """A config of one csmpl run from the checkout's own embedded config (its other sections)."""
    cfg = yaml.safe_load((repo / "config" / "config.yaml").read_text())
    cfg["results"] = str(work / "results")
    cfg["runs"] = {name: {"csmpl": [str(p) for p in paths], "sample_frequency": FS, "record_length": 16384,
                          "channels": CHANNELS[: len(paths)]}}
    if not calibrate:
        cfg["calibrate"] = {"line_energy": None}
    path = work / f"{name}_{label(repo).replace(' ', '_')}.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


# ------------------------------------------------------------------------------ job polling
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class JobPoller(threading.Thread):
    """Polls /proc for processes carrying our tag in their environment (Snakemake's job scripts):
    per process its script name, first and last time seen and peak resident memory (VmHWM)."""

    def __init__(self, tag: str, every: float = 0.05):
        super().__init__(daemon=True)
        self.tag, self.every = f"{TAG}={tag}".encode(), every
        self.jobs: dict[int, dict] = {}
        self.stop = threading.Event()

    def run(self):
        mine: dict[int, bool] = {}
        while not self.stop.is_set():
            now = time.perf_counter()
            for entry in os.scandir("/proc"):
                if not entry.name.isdigit():
                    continue
                pid = int(entry.name)
                try:
                    if pid not in mine:
                        with open(f"/proc/{pid}/environ", "rb") as f:
                            mine[pid] = self.tag in f.read().split(b"\0")
                    if not mine[pid]:
                        continue
                    with open(f"/proc/{pid}/cmdline", "rb") as f:
                        cmd = f.read().split(b"\0")
                    with open(f"/proc/{pid}/status") as f:
                        hwm = next((int(l.split()[1]) for l in f if l.startswith("VmHWM")), 0)
                    with open(f"/proc/{pid}/stat") as f:   # utime + stime (fields 14, 15) in clock ticks
                        ticks = sum(map(int, f.read().rsplit(")", 1)[1].split()[11:13]))
                except (OSError, StopIteration):
                    continue
                script = next((c.decode() for c in cmd if b"/.snakemake/scripts/" in c), None)
                if script is None:
                    continue
                name = re.sub(r"^tmp[^.]*\.", "", Path(script).name).removesuffix(".py")
                job = self.jobs.setdefault(pid, {"stage": name, "first": now, "rss_mb": 0.0})
                job["last"] = now
                job["rss_mb"] = max(job["rss_mb"], hwm / 1024)
                job["cpu_s"] = ticks / CLOCK_TICKS
            time.sleep(self.every)


def run_snakemake(repo: Path, work: Path, cfg: Path, targets: list[str], cores: str = "2",
                  extra: list[str] = ()) -> dict:
    """Run Snakemake of checkout `repo` on `targets`; wall time, per-job stats, main process peak."""
    tag = uuid.uuid4().hex
    env = dict(os.environ, **{TAG: tag})
    if repo != REPO:
        env["PYTHONPATH"] = os.pathsep.join([str(repo / "src"), env.get("PYTHONPATH", "")])
    cmd = [sys.executable, "-m", "snakemake", "-s", str(repo / "Snakefile"), "-d", str(work),
           "--cores", cores, *extra]
    if cfg is not None:
        cmd += [f"--configfile={cfg}"]
    cmd += [str(t) for t in targets]
    poller = JobPoller(tag)
    poller.start()
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    poller.stop.set()
    poller.join()
    if proc.returncode:
        print(proc.stderr[-4000:])
        raise SystemExit(f"snakemake failed ({' '.join(cmd)})")
    n_jobs = len(re.findall(r"^Finished job", proc.stderr, re.M)) or None
    cpu = sum(j.get("cpu_s", 0.0) for j in poller.jobs.values())
    return {"wall": wall, "jobs": list(poller.jobs.values()), "n_jobs": n_jobs, "cpu": cpu,
            "load": os.getloadavg()[0]}


def stage_table(jobs: list[dict]) -> list[str]:
    stages: dict[str, dict] = {}
    for j in jobs:
        s = stages.setdefault(j["stage"], {"n": 0, "s": 0.0, "cpu": 0.0, "rss": 0.0})
        s["n"] += 1
        s["s"] += j.get("last", j["first"]) - j["first"] + 0.05
        s["cpu"] += j.get("cpu_s", 0.0)
        s["rss"] = max(s["rss"], j["rss_mb"])
    # cpu s: the jobs' own CPU time (all threads); sum s well above it means waiting (I/O, or a
    # machine shared with other work)
    lines = [f"    {'stage (script)':22s} {'jobs':>4s} {'sum s':>7s} {'cpu s':>7s} {'peak MB':>8s}"]
    for name, s in sorted(stages.items(), key=lambda kv: -kv[1]["s"]):
        lines.append(f"    {name:22s} {s['n']:4d} {s['s']:7.1f} {s['cpu']:7.1f} {s['rss']:8.0f}")
    return lines


# ------------------------------------------------------------------------------------- parts
def scaling(work: Path, repos: list[Path], hours: list[float], channels: int) -> None:
    print(f"\n== scaling: default two-pass analysis, {channels} channel(s), to features.zarr + labels.zarr "
          f"(--cores 2) ==")
    walls: dict[Path, list[float]] = {r: [] for r in repos}
    for h in hours:
        paths = make_stream(work, h, channels)
        for repo in repos:
            cfg = write_config(work, "long", paths, calibrate=True, repo=repo)
            out = work / "results"
            shutil.rmtree(out, ignore_errors=True)
            res = run_snakemake(repo, work, cfg, [out / "long" / "features.zarr", out / "long" / "labels.zarr"])
            walls[repo].append(res["wall"])
            peak = max((j["rss_mb"] for j in res["jobs"]), default=0.0)
            rate = channels * h / (res["wall"] / 60)
            print(f"\n  {h:g} h x {channels} ch [{label(repo)}]: wall {res['wall']:.1f} s, {len(res['jobs'])} jobs, "
                  f"{rate:.1f} channel-hours per wall-minute, peak job memory {peak:.0f} MB; jobs' CPU "
                  f"{res['cpu']:.0f} s, load average {res['load']:.1f} at the end")
            print("\n".join(stage_table(res["jobs"])))
    if len(hours) >= 2:
        for repo in repos:
            b, a = np.polyfit(hours, walls[repo], 1)
            print(f"\n  [{label(repo)}] wall ~ {a:.1f} s + {b:.2f} s per stream-hour "
                  f"({b / channels:.2f} s per channel-hour; max deviation from the line "
                  f"{np.max(np.abs(np.polyval([b, a], hours) - walls[repo])):.1f} s)")


def cait_chain(cait_python: str, stream: Path, work: Path) -> tuple[float, str] | None:
    shutil.rmtree(work, ignore_errors=True)
    t0 = time.perf_counter()
    proc = subprocess.run([cait_python, str(REPO / "bench" / "cait_chain.py"), str(stream), str(work)],
                          capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=""))
    wall = time.perf_counter() - t0
    if proc.returncode:
        print(f"\n  cait chain failed:\n{proc.stderr[-3000:]}")
        return None
    return wall, proc.stdout.strip().splitlines()[-1]


def compare(work: Path, repos: list[Path], hours: float, cait_python: str | None, repeat: int) -> None:
    """Interleaved rounds (each checkout, then Cait) so that load drifts hit all alike; medians."""
    print(f"\n== compare: {hours:g} h one-channel stream to features.zarr, calibration off (--cores 2), "
          f"{repeat} interleaved round(s) ==")
    paths = make_stream(work, hours, 1)
    walls: dict = {r: [] for r in repos}
    cait: list[float] = []
    cait_work: list[float] = []
    for i in range(repeat):
        for repo in repos:
            cfg = write_config(work, "one", paths, calibrate=False, repo=repo)
            out = work / "results"
            shutil.rmtree(out, ignore_errors=True)
            res = run_snakemake(repo, work, cfg, [out / "one" / "features.zarr"])
            walls[repo].append(res["wall"])
            print(f"\n  round {i + 1} cryopipe [{label(repo)}]: wall {res['wall']:.1f} s, {len(res['jobs'])} jobs")
            if i == 0:
                print("\n".join(stage_table(res["jobs"])))
        if cait_python:
            got = cait_chain(cait_python, paths[0], work / "cait")
            if got is None:
                cait_python = None
            else:
                cait.append(got[0])
                m = re.search(r"of which ([0-9.]+) s import", got[1])
                cait_work.append(got[0] - (float(m.group(1)) if m else 0.0))
                print(f"\n  round {i + 1} cait whole chain (one process): wall {got[0]:.1f} s; {got[1]}")
    print()
    for repo in repos:
        print(f"  cryopipe [{label(repo)}]: median wall {np.median(walls[repo]):.1f} s "
              f"({', '.join(f'{w:.1f}' for w in walls[repo])})")
    if not cait:
        print("  cait: no --cait-python given (or it failed), skipped")
        return
    print(f"  cait: median wall {np.median(cait):.1f} s ({', '.join(f'{w:.1f}' for w in cait)}); "
          f"without its import (numba compiled on every start): median {np.median(cait_work):.1f} s")
    for repo in repos:
        ratios = [c / w for c, w in zip(cait, walls[repo])]
        work_ratios = [c / w for c, w in zip(cait_work, walls[repo])]
        print(f"  speed cryopipe [{label(repo)}] / cait: median {np.median(ratios):.2f}x per round "
              f"({', '.join(f'{r:.2f}' for r in ratios)}; >= 1: cryopipe faster); against Cait without "
              f"its import: {np.median(work_ratios):.2f}x")


def default_job(work: Path, repos: list[Path]) -> None:
    print("\n== default job: snakemake --cores all (embedded config, cleaning included) ==")
    for repo in repos:
        d = work / f"default_{label(repo).replace(' ', '_')}"
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
        res = run_snakemake(repo, d, None, [], cores="all")
        peak = max((j["rss_mb"] for j in res["jobs"]), default=0.0)
        print(f"\n  [{label(repo)}]: wall {res['wall']:.1f} s, {len(res['jobs'])} jobs, peak job memory {peak:.0f} MB; "
              f"jobs' CPU {res['cpu']:.0f} s, load average {res['load']:.1f} at the end")
        print("\n".join(stage_table(res["jobs"])))


def label(repo: Path) -> str:
    return "this checkout" if repo == REPO else repo.name


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hours", type=float, nargs="*", default=[1.0, 4.0, 24.0])
    ap.add_argument("--channels", type=int, default=2, choices=[1, 2])
    ap.add_argument("--compare-hours", type=float, default=2.0, help="0: skip the comparison")
    ap.add_argument("--cait-python", help="python of a separate environment where cait is importable")
    ap.add_argument("--repo", action="append", default=[], help="another checkout to run side by side")
    ap.add_argument("--repeat", type=int, default=1, help="interleaved rounds of the comparison")
    ap.add_argument("--default-job", action="store_true")
    ap.add_argument("--workdir", default="/tmp/cryopipe_bench_pipeline")
    ap.add_argument("--keep", action="store_true", help="keep streams and results")
    args = ap.parse_args()
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    repos = [Path(r).resolve() for r in args.repo] + [REPO]
    t0 = time.perf_counter()
    one_hour(work)
    print(f"one simulated hour ready in {time.perf_counter() - t0:.0f} s; repos: "
          f"{', '.join(label(r) for r in repos)}")
    try:
        if args.compare_hours:
            compare(work, repos, args.compare_hours, args.cait_python, args.repeat)
        if args.hours:
            scaling(work, repos, args.hours, args.channels)
        if args.default_job:
            default_job(work, repos)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
