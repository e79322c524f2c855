"""CRESST files written by another tool: Cait's own test-data generator (cait.data.TestData) writes
a stream run (csmpl + par + test_stamps + dig_stamps) and a hardware-triggered run (rdt + par +
con); cryopipe runs both to labels.zarr and this prints the records per kind against the stamps.

    python tools/converters/cresst_from_cait.py --cait-python /path/to/venv-with-cait/bin/python [--duration 1800]

Cait is not a dependency: it runs in its own environment (e.g. `python -m venv /tmp/caitenv;
/tmp/caitenv/bin/pip install torch==2.13.0 cait==1.3.0`).
"""
from __future__ import annotations

import argparse
import warnings
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import xarray as xr
import yaml

from cryopipe.io.cresst import read_test_stamps, record_kind_from_tpa

REPO = Path(__file__).resolve().parents[2]
GENERATE = """
import cait
td = cait.data.TestData(filepath="{out}/mock_001", duration={duration}, channels=[0, 1],
                        sample_frequency=25000, start_s=1602879720)
td.generate(start_offset=0, source="hw")
td.generate(start_offset=0, source="stream")
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cait-python", required=True, help="python of an environment where `import cait` works")
    ap.add_argument("--duration", type=float, default=1800.0, help="s of stream (default 1800)")
    ap.add_argument("--keep", type=Path, help="work here instead of a temporary folder")
    args = ap.parse_args()
    work = (args.keep or Path(tempfile.mkdtemp(prefix="cresst_cait_"))).resolve()
    work.mkdir(parents=True, exist_ok=True)
    subprocess.run([args.cait_python, "-c", GENERATE.format(out=work, duration=args.duration)], check=True,
                   capture_output=True)
    cfg = {"runs": {"stream": {"csmpl": ["mock_001_Ch0.csmpl", "mock_001_Ch1.csmpl"], "par": "mock_001.par",
                               "test_stamps": "mock_001.test_stamps", "dig_stamps": "mock_001.dig_stamps",
                               "channels": ["phonon", "light"]},
                    "hw": {"rdt": "mock_001.rdt", "par": "mock_001.par", "con": "mock_001.con",
                           "channels": ["phonon", "light"]}},
           "cleaning": {"enabled": False}}
    (work / "cait.yaml").write_text(yaml.safe_dump(cfg))
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(work), "--cores", "2",
                    "results/stream/labels.zarr", "results/hw/labels.zarr", f"--configfile={work / 'cait.yaml'}"],
                   check=True, capture_output=True)
    wall = time.perf_counter() - t0
    stamps = read_test_stamps(work / "mock_001.test_stamps")
    kinds, counts = np.unique(record_kind_from_tpa(stamps["tpa"]), return_counts=True)
    print(f"Cait TestData, {args.duration:.0f} s, 2 channels; cryopipe wall {wall:.1f} s to labels.zarr (both runs)")
    print("stamps written by Cait:", dict(zip(kinds.tolist(), counts.tolist())))
    warnings.filterwarnings("ignore", message=".*snakemake_timestamp")
    for run in ("stream", "hw"):
        rec = xr.open_zarr(work / "results" / run / "records.zarr", consolidated=False)
        lab = xr.open_zarr(work / "results" / run / "labels.zarr", consolidated=False)
        k = np.array([str(v) for v in rec["record_kind"].values])
        got = dict(zip(*[a.tolist() for a in np.unique(k, return_counts=True)]))
        acc = lab["accepted"].values[0][k == "particle"].mean() if (k == "particle").any() else float("nan")
        print(f"{run:>6}: records per kind {got}; particle records accepted by the default cuts (phonon) {acc:.2f}")


if __name__ == "__main__":
    main()
