"""Per-model metrics table: every architecture trained on the same universal simulation, same budget.

Each model of `cleaning.models.MODELS` (or those named) is trained exactly as the shipped universal
model (`tools/release/train_universal.py`: universal simulation of every event class, multi-class head,
CRESST augmentations, one-cycle Adam, best epoch by validation BA, cutoff calibrated on validation),
but on `--scale` times its training set for `--epochs` epochs, then evaluated on the same fresh
test sets (`cryopipe.cleaning.evaluate.build_test_sets`: detectors never seen in training). Prints a markdown
table of the targets of issue 5 per model, with training time and prediction throughput (records/s
of scoring the test sets, `evaluate_model`), and
writes it to OUT/models.md (each model's figures under OUT/<model>/).

Usage: python tools/experiments/compare_models.py [--models cnn tscn ...] [--scale 0.1] [--epochs 6] [--out DIR]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "release"))
import train_universal as tu  # noqa: E402

from cryopipe.cleaning.data import ArraySource  # noqa: E402
from cryopipe.cleaning.models import MODELS  # noqa: E402
from cryopipe.cleaning.train import load_model  # noqa: E402
from cryopipe.cleaning.evaluate import build_test_sets, evaluate_model  # noqa: E402

COLUMNS = ["balanced_accuracy", "IOR (SNR 3-300)", "IOS (two-pulse pile-ups, SNR 3-300)", "survival event_pulse",
           "survival carrier_event", "survival tail_event", "survival pile_up", "survival noise", "survival spike"]


def train_one(name: str, train: ArraySource, val: ArraySource, out: Path, epochs: int, max_lr: float) -> None:
    """Train `name` like the universal model, with its training wall time (s) in the checkpoint meta."""
    t0 = time.perf_counter()
    tu.train_checkpoint(name, train, val, out, epochs, max_lr, progress=None,
                        meta={"name": name, "training": {"n_records": len(train), "epochs": epochs}})
    meta_path = out.with_suffix(".json")
    meta = json.loads(meta_path.read_text())
    meta["train_wall_s"] = time.perf_counter() - t0
    meta_path.write_text(json.dumps(meta, indent=1, sort_keys=True))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    ap.add_argument("--scale", type=float, default=0.1, help="fraction of the universal model's training set")
    ap.add_argument("--epochs", type=int, default=6, help="training epochs per model")
    ap.add_argument("--max-lr", type=float, default=tu.MAX_LR, help="peak one-cycle learning rate")
    ap.add_argument("--n-per-class", type=int, default=300, help="test records per class and mixed set")
    ap.add_argument("--pulses", type=int, default=6000, help="test pulses (SNR curve)")
    ap.add_argument("--pileups", type=int, default=10000, help="test pile-ups (IOS map)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    ap.add_argument("--reuse", action="store_true", help="evaluate OUT/<model>.pt where it exists instead of training")
    ap.add_argument("--out", type=Path, default=Path("results/report/model_comparison"), help="output folder")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    train, val = tu.universal_sets(args.scale)
    tests = build_test_sets(args.n_per_class, args.pulses, args.pileups)
    print(f"{len(train)} training, {len(val)} validation, {sum(t.sizes['event'] for t in tests.values())} test "
          f"records; {args.epochs} epochs", flush=True)
    rows = []
    for name in args.models:
        ckpt = args.out / f"{name}.pt"
        if not (args.reuse and ckpt.is_file()):
            train_one(name, train, val, ckpt, args.epochs, args.max_lr)
        model, meta = load_model(ckpt)
        wall = float(meta.get("train_wall_s", float("nan")))
        result = evaluate_model(model, meta, tests, args.out / name)
        values = {r["target"]: r for r in result["targets"]}
        rows.append((name, meta["cutoff"], wall, result["throughput"], values))
        print(f"{name}: trained in {wall:.0f} s, BA {result['classification']['balanced_accuracy']:.4f}", flush=True)
    lines = [f"Trained on {len(train)} universal records for {args.epochs} epochs (one-cycle, peak lr "
             f"{args.max_lr}), {args.threads} torch thread(s); tested on {', '.join(tests)}.", "",
             "| model | cutoff | train s | pred rec/s | " + " | ".join(COLUMNS) + " | targets met |",
             "|---" * (len(COLUMNS) + 5) + "|"]
    for name, cut, wall, rate, v in rows:
        cells = [f"{v[c]['value']:.4f}{'' if v[c]['passed'] else ' ✗'}" for c in COLUMNS]
        met = sum(r["passed"] for r in v.values())
        lines.append(f"| {name} | {cut:.2f} | {wall:.0f} | {rate:,.0f} | " + " | ".join(cells)
                     + f" | {met}/{len(v)} |")
    table = "\n".join(lines) + "\n"
    (args.out / "models.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
