"""Per-model metrics table: every architecture trained on the same universal simulation, same budget.

Each model of `cleaning.models.MODELS` (or those named) is trained exactly as the shipped universal
model (`bench/train_universal.py`: universal simulation of every event class, multi-class head,
CRESST augmentations, one-cycle Adam, best epoch by validation BA, cutoff calibrated on validation),
but on `--scale` times its training set for `--epochs` epochs, then evaluated on the same fresh
test sets (`cryopipe.evaluate.build_test_sets`: detectors never seen in training). Prints a markdown
table of the targets of issue 5 per model, with training time and prediction throughput, and
writes it to OUT/models.md (each model's figures under OUT/<model>/).

Usage: python bench/compare_models.py [--models cnn tscn ...] [--scale 0.1] [--epochs 6] [--out DIR]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from unittest import mock

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import train_universal as tu  # noqa: E402

from cryopipe.cleaning.data import ArraySource, WeakShuffleBatches  # noqa: E402
from cryopipe.cleaning.models import MODELS  # noqa: E402
from cryopipe.cleaning.predict import predict_scores  # noqa: E402
from cryopipe.cleaning.train import load_model, train_model  # noqa: E402
from cryopipe.evaluate import build_test_sets, evaluate_model  # noqa: E402
from cryopipe.simulate.records import DEFAULT_ACCEPTED, EVENT_CLASSES  # noqa: E402

COLUMNS = ["balanced_accuracy", "IOR (SNR 3-300)", "IOS (two-pulse pile-ups, SNR 3-300)", "survival event_pulse",
           "survival carrier_event", "survival tail_event", "survival pile_up", "survival noise", "survival spike"]


def train_one(name: str, train: ArraySource, val: ArraySource, out: Path, epochs: int, max_lr: float) -> float:
    """Train `name` like the universal model; returns the wall time (s)."""
    t0 = time.perf_counter()
    total = epochs * len(WeakShuffleBatches(train, tu.BATCH_SIZE))
    with mock.patch.object(torch.optim, "Adam", tu.one_cycle_adam(total, max_lr, tu.PCT_START)):
        train_model(name, train, val, out, epochs=epochs, batch_size=tu.BATCH_SIZE, seed=tu.SEED,
                    n_classes=len(EVENT_CLASSES), accepted=sorted(DEFAULT_ACCEPTED), pileup_class="pile_up",
                    augment_options=tu.AUGMENT_OPTIONS, device="cpu", progress=None,
                    meta={"name": name, "training": {"n_records": len(train), "epochs": epochs, "max_lr": max_lr}})
    tu.set_cutoff(out, val)
    wall = time.perf_counter() - t0
    meta_path = out.with_suffix(".json")
    meta = json.loads(meta_path.read_text())
    meta["train_wall_s"] = wall
    meta_path.write_text(json.dumps(meta, indent=1, sort_keys=True))
    return wall


def throughput(model, n: int = 4096) -> float:
    """Records/s of `predict_scores` on n random 512-sample records (one warm-up pass)."""
    x = np.random.default_rng(0).normal(size=(n, 512)).astype(np.float32)
    predict_scores(model, x[:256], 256)
    t0 = time.perf_counter()
    predict_scores(model, x, 1024)
    return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    ap.add_argument("--scale", type=float, default=0.1, help="fraction of the universal model's training set")
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--max-lr", type=float, default=tu.MAX_LR)
    ap.add_argument("--n-per-class", type=int, default=300, help="test records per class and mixed set")
    ap.add_argument("--pulses", type=int, default=6000)
    ap.add_argument("--pileups", type=int, default=10000)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reuse", action="store_true", help="evaluate OUT/<model>.pt where it exists instead of training")
    ap.add_argument("--out", type=Path, default=Path("results/report/model_comparison"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    names = sorted(EVENT_CLASSES)
    n_train = {c: max(int(k * args.scale), 1) for c, k in tu.N_PER_CLASS.items()}
    n_val = {c: max(int(tu.N_VAL_PER_CLASS * args.scale), 1) for c in EVENT_CLASSES}
    train = ArraySource(*tu.simulate_set(n_train, [tu.SEED]), class_names=names)
    val = ArraySource(*tu.simulate_set(n_val, [tu.SEED, 1]), class_names=names)
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
        rows.append((name, meta["cutoff"], wall, throughput(model), values))
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
