"""Wall time and number of sbatch jobs of a workflow run through SLURM, with the SLURM profile's job
grouping on (profiles/slurm as it is) and off (the same profile without `groups` and
`group-components`), side by side on the cluster of this machine (ci/slurm/setup.sh).

    python ci/slurm/bench_grouping.py [--stream-hours H --channels C | --tiny] [--targets T ...]
                                      [--ci-polling] [--repeat N] [--workdir DIR] [--keep]

--tiny: the config of tests/test_workflow_slurm.py (one-minute two-channel module, cleaning off, target
`all`); otherwise a simulated stream of H hours and C channels (bench/bench_pipeline.py's stream
and config, calibration off, target features.zarr: issue 12's comparison). --ci-polling applies
tests/test_workflow_slurm.py's changes to the profile (1 CPU per job, first status check after 6 s).
Each run gets a fresh results folder; the stream is made once. Prints one line per run and a table.
"""
from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path[:0] = [str(REPO / "tests"), str(REPO / "bench")]

SUBMITTED = re.compile(r"has been submitted with SLURM jobid (\d+) \(log: \S+/slurm_logs/(rule|group)_([^/]+)/")


def profile(out: Path, grouping: bool, ci_polling: bool) -> Path:
    prof = yaml.safe_load((REPO / "profiles" / "slurm" / "config.yaml").read_text())
    if not grouping:
        prof.pop("groups", None)
        prof.pop("group-components", None)
    if ci_polling:
        prof["default-resources"]["cpus_per_task"] = 1
        prof["slurm-init-seconds-before-status-checks"] = 6
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(yaml.safe_dump(prof, sort_keys=False))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tiny", action="store_true")
    ap.add_argument("--stream-hours", type=float, default=2.0)
    ap.add_argument("--channels", type=int, default=1)
    ap.add_argument("--targets", nargs="*")
    ap.add_argument("--ci-polling", action="store_true")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/cryopipe_slurm_bench"))
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--modes", nargs="+", choices=["off", "on"], default=["off", "on"],
                    help="grouping off and/or on (default: both, off first)")
    ap.add_argument("--show-sbatch", action="store_true", help="print each job's CPUs, memory, time limit")
    args = ap.parse_args()

    args.workdir.mkdir(parents=True, exist_ok=True)
    if args.tiny:
        from workflow_util import tiny_config, write_config

        cfg = tiny_config(Path("results"))
        cfg["cleaning"] = {"enabled": False}
        cfg_path = write_config(args.workdir / "tiny.yaml", cfg)
        targets = args.targets or ["all"]
        what = "tests/test_workflow_slurm.py config (1-min 2-channel module, cleaning off)"
    else:
        import bench_pipeline as bp

        paths = bp.make_stream(args.workdir, args.stream_hours, args.channels)
        name = f"s{args.stream_hours:g}h"
        cfg_path = bp.write_config(args.workdir, name, paths, calibrate=False)
        cfg = yaml.safe_load(cfg_path.read_text())
        cfg["results"] = "results"  # relative: one results folder per run directory
        cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        targets = args.targets or [f"results/{name}/features.zarr"]
        what = f"{args.stream_hours:g}-h {args.channels}-channel stream"

    rows = []
    for rep in range(args.repeat):
        for grouping in [mode == "on" for mode in args.modes]:
            tag = f"{'on' if grouping else 'off'}_{rep}"
            work = args.workdir / f"run_{tag}"
            shutil.rmtree(work, ignore_errors=True)
            work.mkdir()
            prof = profile(args.workdir / f"profile_{tag}", grouping, args.ci_polling)
            cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(work),
                   "--configfile", str(cfg_path), "--cores", "2", "--executor", "slurm",
                   "--workflow-profile", str(prof), *targets]
            if args.show_sbatch:
                cmd.append("--verbose")
            t0 = time.perf_counter()
            proc = subprocess.run(cmd, capture_output=True, text=True)
            wall = time.perf_counter() - t0
            log = proc.stdout + proc.stderr
            if proc.returncode:
                print(log[-4000:])
                raise SystemExit(f"failed: {' '.join(cmd)}")
            subs = SUBMITTED.findall(log)
            groups = sum(kind == "group" for _, kind, _ in subs)
            rows.append((tag, wall, len(subs), groups))
            print(f"grouping {tag}: {wall:6.1f} s wall, {len(subs)} sbatch jobs ({groups} group jobs)", flush=True)
            if args.show_sbatch:
                for call in re.findall(r"sbatch call: (.*)", log):
                    comment = re.search(r"--comment '?([^' ]+)", call).group(1)
                    res = " ".join(re.findall(r"(--cpus-per-task=\d+|--mem \d+|-t \d+)", call))
                    print(f"    {comment[:70]:70s} {res}")
            if not args.keep:
                shutil.rmtree(work, ignore_errors=True)

    print(f"\n{what}, targets {' '.join(targets)}, --cores 2, {'ci polling' if args.ci_polling else 'profile polling'}")
    print("grouping  wall_s  sbatch_jobs  group_jobs")
    for tag, wall, n, g in rows:
        print(f"{tag:8s}  {wall:6.1f}  {n:11d}  {g:10d}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
