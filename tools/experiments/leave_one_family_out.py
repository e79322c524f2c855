"""Leave-one-family-out generalisation (issue 15): train small universal models without one family
of the wide distribution (shapes, saturation or noise), test them on records of that family.

For every family F: model "all" is trained on the wide universal distribution, model "without F"
on the same distribution with F switched off; both are tested on a wide set where F is always on
(universal records of a new seed). The gap between the two on the F-set measures how much of F the
model could infer from the rest (0: generalises; large: F must be in the training set).

Families (ranges of `cryopipe.simulate.records.UNIVERSAL_RANGES`):
- slow_shapes: the wide pulse shapes (tau_in, tau_n up to 0.9 tau_t, tau_t up to half the window);
  without it the training shapes are the original ones (wide_probability 0 for shapes: a training set
  of original shapes only). Test: wide shapes.
- saturation: training without saturation (saturation_probability 0); test: every record saturating
  with a ceiling of 10-300 sigma_OF.
- lowpass_noise: training without low-passed noise; test: every record's noise low-passed.

Usage: python tools/experiments/leave_one_family_out.py [--scale 0.15] [--epochs 8] [--out DIR]
(small budget: cnn_full, --scale times the issue-5 set sizes; prints a table and writes lofo.json).
       python tools/experiments/leave_one_family_out.py --evaluate old=universal.pt new=wide.pt
(no training: test existing checkpoints on every family's test set, e.g. the issue-5 model, trained
without the wide families, against one trained with them).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "release"))
import train_universal as tu  # noqa: E402

from cryopipe.cleaning.data import ArraySource  # noqa: E402
from cryopipe.cleaning.predict import predict_scores  # noqa: E402
from cryopipe.cleaning.preprocess import downsample  # noqa: E402
from cryopipe.cleaning.train import load_model  # noqa: E402
from cryopipe.cleaning.metrics import balanced_accuracy, survival_rates  # noqa: E402
from cryopipe.simulate.classes import WIDE_OPTIONS, ClassOptions  # noqa: E402
from cryopipe.simulate.records import EVENT_CLASSES, simulate_universal_records  # noqa: E402

WIDE = {"wide_probability": 1.0}
FAMILIES = {   # name -> (training ranges without the family, test ranges with the family always on)
    "slow_shapes": ({"wide_probability": 0.0}, {"wide_probability": 1.0, "wide_tau_t": (0.1, 0.5)}),
    "saturation": ({**WIDE, "saturation_probability": 0.0},
                   {**WIDE, "saturation_probability": 1.0, "wide_saturation": (10.0, 300.0)}),
    "lowpass_noise": ({**WIDE, "wide_lowpass_probability": 0.0}, {**WIDE, "wide_lowpass_probability": 1.0,
                                                                   "wide_lowpass": (0.01, 0.1)}),
}
LENGTHS = (1024, 4096)


def make_set(n_per_class: dict, ranges: dict, seed: int):
    traces, labels, classes, snrs = [], [], [], []
    for n in LENGTHS:
        ds = simulate_universal_records(n_per_class, n, np.random.default_rng([seed, n]), ranges=ranges,
                                        options=ClassOptions(**WIDE_OPTIONS), snr_range=(3.0, 3000.0))
        traces.append(downsample(ds["trace"].values[0]))
        labels.append(ds["label"].values[0])
        classes.append(ds["event_class"].values.astype(str))
        snrs.append(ds["snr"].values[0])
    return np.concatenate(traces), np.concatenate(labels), np.concatenate(classes), np.concatenate(snrs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--scale", type=float, default=0.15, help="fraction of the universal training set")
    ap.add_argument("--epochs", type=int, default=8, help="training epochs per model")
    ap.add_argument("--test-per-class", type=int, default=150, help="test records per class")
    ap.add_argument("--families", nargs="+", default=list(FAMILIES), help="families left out, one model each")
    ap.add_argument("--out", type=Path, default=Path("results/lofo"), help="output folder")
    ap.add_argument("--evaluate", nargs="+", metavar="NAME=CKPT", help="only test these checkpoints")
    args = ap.parse_args()
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.evaluate:
        test_models(dict(a.split("=", 1) for a in args.evaluate), args.families, args.test_per_class, args.out)
        return
    names = sorted(EVENT_CLASSES)
    n_train = {c: max(int(k * args.scale), 1) for c, k in tu.N_PER_CLASS.items()}
    n_val = {c: max(int(tu.N_VAL_PER_CLASS * args.scale), 1) for c in EVENT_CLASSES}
    runs = {"all": WIDE, **{f"without_{f}": FAMILIES[f][0] for f in args.families}}
    results = {}
    for run, ranges in runs.items():
        t0 = time.perf_counter()
        x, y, c, _ = make_set(n_train, ranges, 1)
        xv, yv, cv, _ = make_set(n_val, ranges, 2)
        ckpt = args.out / f"{run}.pt"
        tu.train_checkpoint(tu.MODEL, ArraySource(x, y, c, class_names=names),
                            ArraySource(xv, yv, cv, class_names=names), ckpt, args.epochs, tu.MAX_LR,
                            progress=open(args.out / f"{run}.log", "w"))
        results[run] = {"train_s": time.perf_counter() - t0}
        print(f"trained {run} in {results[run]['train_s']:.0f} s", flush=True)
    rows = []
    for fam in args.families:
        xt, yt, ct, st = make_set({k: args.test_per_class for k in EVENT_CLASSES}, FAMILIES[fam][1], 3)
        for run in ("all", f"without_{fam}"):
            rows.append(test_row(fam, run, args.out / f"{run}.pt", xt, yt, ct, st))
    (args.out / "lofo.json").write_text(json.dumps({"runs": results, "rows": rows, "scale": args.scale,
                                                    "epochs": args.epochs}, indent=1, default=float))


def test_models(models: dict, families, per_class: int, out: Path) -> None:
    rows = []
    for fam in families:
        xt, yt, ct, st = make_set({k: per_class for k in EVENT_CLASSES}, FAMILIES[fam][1], 3)
        for run, path in models.items():
            rows.append(test_row(fam, run, Path(path), xt, yt, ct, st))
    (out / "lofo_evaluate.json").write_text(json.dumps({"models": models, "rows": rows}, indent=1, default=float))


def test_row(fam, run, path, xt, yt, ct, st) -> dict:
    """BA, pulse survival (SNR >= 10) and survival per class of checkpoint `path` on a family's test set."""
    model, meta = load_model(path)
    cut = meta.get("cutoff", 0.5)
    s = predict_scores(model, xt)   # 512 block means; min-max scaling is applied here (idempotent)
    keep = s >= cut
    pulses = (ct == "event_pulse") & (st >= 10)
    row = {"family": fam, "model": run, "balanced_accuracy": balanced_accuracy(yt, s, cutoff=cut),
           "pulse_snr_ge_10": float(keep[pulses].mean()),
           **{f"survival {k}": v[2] for k, v in survival_rates(ct, keep).items()}}
    print(f"{fam:14s} {run:24s} BA {row['balanced_accuracy']:.4f}  pulse(SNR>=10) {row['pulse_snr_ge_10']:.3f}  "
          f"tail {row['survival tail_event']:.3f}  carrier {row['survival carrier_event']:.3f}  "
          f"pile-up {row['survival pile_up']:.3f}  noise {row['survival noise']:.3f}", flush=True)
    return row

if __name__ == "__main__":
    main()
