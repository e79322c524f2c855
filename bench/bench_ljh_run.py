"""Wall time of a record-based LJH run through the workflow: records -> characterization ->
features -> labels.zarr and the cleaning predictions, in a fresh directory (nothing cached but
numba's compiled kernels, as for a user's second run).

    python bench/bench_ljh_run.py [--ljh FILE] [--noise FILE] [--models universal,cnn] [--cores 2]

Prints the seconds and checks that labels and predictions hold every record of the file(s).
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real" / "nist_mass"  # beside the checkout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ljh", default=str(REAL / "regress_chan1.ljh"))
    ap.add_argument("--noise", default=str(REAL / "regress_noise_chan1.ljh"))
    ap.add_argument("--models", default="universal")
    ap.add_argument("--cores", type=int, default=2)
    args = ap.parse_args()
    import xarray as xr

    from cryopipe.io.ljh import read_ljh

    models = [m for m in args.models.split(",") if m]
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "ljh.yaml"
        cfg.write_text(f"runs:\n  nist:\n    ljh: {args.ljh}\n    noise_ljh: {args.noise}\n"
                       f"    calibrate: {{line_energy: null}}\ncleaning:\n  models: [{', '.join(models)}]\n")
        targets = ["results/nist/labels.zarr"] + [f"results/nist/predictions/{m}.zarr" for m in models]
        cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory", tmp,
               "--cores", str(args.cores), f"--configfile={cfg}", *targets, "--quiet", "all"]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        seconds = time.perf_counter() - t0
        if proc.returncode:
            sys.exit(f"snakemake failed:\n{proc.stderr[-3000:]}")
        n_expected = read_ljh(args.ljh).n_records + read_ljh(args.noise).n_records
        labels = xr.open_zarr(Path(tmp) / targets[0], consolidated=False)
        counts = {"labels": labels.sizes["event"]}
        for m, t in zip(models, targets[1:]):
            counts[m] = xr.open_zarr(Path(tmp) / t, consolidated=False).sizes["event"]
        ok = all(v == n_expected for v in counts.values())
        print(f"LJH run ({read_ljh(args.ljh).n_records} records of {read_ljh(args.ljh).n_samples} samples + "
              f"{read_ljh(args.noise).n_records} noise records) to labels + predictions ({', '.join(models)}): "
              f"{seconds:.1f} s on {args.cores} cores; events: {counts} (expected {n_expected}: "
              f"{'every record present' if ok else 'MISSING RECORDS'})")
        if not ok:
            sys.exit(1)


if __name__ == "__main__":
    main()
