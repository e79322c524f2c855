"""Start-up cost of every workflow job: the import time of each stage script, measured in a fresh
interpreter the way Snakemake starts a job (Python, `snakemake.script`, then the script's own
imports; the work itself is not run).

    python bench/bench_startup.py [--repeat 3] [--scripts trigger_segment.py records.py ...]

Prints, per script, the median wall time of the fresh interpreter that runs only its imports,
the `-X importtime` total of those imports, the heaviest top-level packages, and any of torch,
matplotlib, sklearn the script pulls in (only the cleaning and plot scripts may). Also times the
imports of the Snakefile's own modules (the DAG's start). tests/test_workflow_startup.py pins the rules.
"""
from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from startup_util import HEAVY, HEAVY_OK, SCRIPTS, common_imports, script_imports  # noqa: E402


def probe(code: str) -> str:
    """Python source that runs `code` and prints which heavy packages got imported."""
    return (code + "\nimport sys\nprint('HEAVY=' + ','.join(m for m in " + repr(HEAVY)
            + " if m in sys.modules))\n")


def run_once(code: str, env_extra: dict | None = None) -> tuple[float, float, dict[str, float], list[str]]:
    """(wall s, importtime total s, top packages' cumulative s, heavy packages imported)."""
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-X", "importtime", "-c", probe(code)], capture_output=True,
                          text=True, cwd=REPO)
    wall = time.perf_counter() - t0
    if proc.returncode:
        raise RuntimeError(proc.stderr[-2000:])
    tops: dict[str, float] = {}
    total = 0.0
    for line in proc.stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", line)
        if not m:
            continue
        own, cumulative, indent, name = int(m.group(1)) / 1e6, int(m.group(2)) / 1e6, len(m.group(3)), m.group(4)
        if indent == 1:          # a top-level import
            total += cumulative
        top = name.split(".")[0]  # own (self) time summed per top-level package, at any depth
        tops[top] = tops.get(top, 0.0) + own
    heavy = [h for h in proc.stdout.strip().split("HEAVY=")[-1].split(",") if h]
    return wall, total, tops, heavy


def measure(code: str, repeat: int):
    runs = [run_once(code) for _ in range(repeat)]
    wall = statistics.median(r[0] for r in runs)
    total = statistics.median(r[1] for r in runs)
    tops = runs[len(runs) // 2][2]
    return wall, total, tops, runs[0][3]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--scripts", nargs="*", help="script file names (default: all in workflow/scripts)")
    args = ap.parse_args()
    names = args.scripts or sorted(p.name for p in SCRIPTS.glob("*.py"))
    base_wall, base_total, _, _ = measure("import snakemake.script", args.repeat)
    print(f"python + snakemake.script (every job): {base_wall:.2f} s wall, imports {base_total:.2f} s")
    wall, total, tops, heavy = measure(common_imports(), args.repeat)
    top = ", ".join(f"{k} {v:.2f}" for k, v in sorted(tops.items(), key=lambda kv: -kv[1])[:4])
    print(f"Snakefile + common.smk imports (DAG start): {wall:.2f} s wall, imports {total:.2f} s ({top})")
    print(f"\n{'script':28s} {'wall s':>7s} {'imports s':>9s}  heaviest packages (own import s)")
    bad = []
    for name in names:
        code = "import snakemake.script\n" + script_imports(SCRIPTS / name)
        wall, total, tops, heavy = measure(code, args.repeat)
        top = ", ".join(f"{k} {v:.2f}" for k, v in sorted(tops.items(), key=lambda kv: -kv[1])[:4])
        flag = f"  HEAVY: {','.join(heavy)}" if heavy else ""
        print(f"{name:28s} {wall:7.2f} {total:9.2f}  {top}{flag}")
        if heavy and not HEAVY_OK.match(name):
            bad.append(name)
    if bad:
        print(f"\nscripts that import {'/'.join(HEAVY)} but should not: {', '.join(bad)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
