"""Train the shipped universal cleaning model (cryopipe/models/universal.pt + .json).

Trains ONLY on cryopipe's own universal simulation (`simulate_universal_records`: every record
from its own random detector), several record lengths, each set preprocessed (block means) to
512 samples right after simulation, so memory holds 512-sample records only. Multi-class head:
one logit per event class of EVENT_CLASSES; binary score = summed probability of DEFAULT_ACCEPTED.
Validation: a universal set of a different seed; the best epoch (validation balanced accuracy)
is kept. Prints per-epoch lines, wall time and peak memory.

Usage: python bench/train_universal.py [--out src/cryopipe/models/universal.pt] [--epochs N] [--scale F]
       python bench/train_universal.py --calibrate CHECKPOINT.pt   (only re-choose the cutoff)
(--scale multiplies every N_PER_CLASS entry: 0.1 for a quick smoke run).
"""
from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

from unittest import mock

from cryopipe.cleaning.data import ArraySource, WeakShuffleBatches, ordered_batches
from cryopipe.cleaning.models import scores_from_logits
from cryopipe.cleaning.preprocess import downsample
from cryopipe.cleaning.train import load_model, plot_loss_curves, train_model
from cryopipe.cleaning.metrics import balanced_accuracy
from cryopipe.simulate.classes import WIDE_OPTIONS, ClassOptions
from cryopipe.simulate.records import DEFAULT_ACCEPTED, EVENT_CLASSES, WIDE_RANGES, simulate_universal_records

# ----------------------------------------------------------------------------------- config
MODEL = "cnn_full"                    # CRESST CNN padded to see the whole window, 142k parameters (0.57 MB)
SEED = 0                              # train: default_rng([SEED, length, part]); validation: [SEED, 1, length, part]
RECORD_LENGTHS = (1024, 2048, 4096, 8192)   # samples; every set is downsampled to 512 (any N works at predict time)
SNR_RANGE = (3.0, 3000.0)             # pulse height / sigma_OF, log-uniform (pulses below 3 sigma are not "clean")
N_PER_CLASS = {                       # records per class and per record length (train); hard classes get more
    "event_pulse": 6000, "carrier_event": 3600, "tail_event": 2400, "pile_up": 7200, "noise": 3600,
    "early_or_late_trigger": 2400, "decaying_baseline": 800, "temperature_rise": 800, "spike": 1600,
    "squid_jump": 1600, "reset": 800, "decaying_baseline_with_event_pulse": 1600,
    "decaying_baseline_with_tail_event": 1600,
}
PARTS = 4                             # each (class, length) set is simulated in this many pieces (memory)
N_VAL_PER_CLASS = 150                 # per class and record length (validation)
EPOCHS = 30
BATCH_SIZE = 64                       # CRESST paper
#: CRESST augmentations (cleaning.augment): the piled-up copy is scaled by a ratio drawn from
#: height_range so that the model sees pile-ups whose extra pulse is smaller than the one at N/4.
#: (Tried: p_pileup 0.35 -> IOS 0.62 instead of 0.55 and pile_up survival 3.2 %, but BA 0.956 and
#: IOR 0.993; validation BA 0.954 < 0.959, so the shipped weights use the paper's 20 %.)
#: (Tried with the one-cycle schedule: event_pulse 6000, carrier 3600, pile_up 7200 per length and
#: p_pileup 0.3 -> IOS 0.61 at cutoff 0.5 but BA 0.958, IOR 0.993; at its calibrated cutoff 0.40
#: BA 0.9636, IOR 0.9954, IOS 0.574, noise 0.045, spike 0.017: not shipped.)
AUGMENT_OPTIONS = {"height_range": (0.05, 1.0), "p_pileup": 0.2}
LEARNING_RATE = None                  # None: CRESST Table 7 rate of MODEL (cnn: 5e-4)
#: One-cycle schedule (torch OneCycleLR, per optimizer step): warm up to MAX_LR over the first
#: PCT_START of the steps, then cosine-anneal to ~0. With the constant rate the validation BA
#: jumped by +-0.01 between epochs; annealing lets the last epochs settle.
MAX_LR = 1e-3
PCT_START = 0.15
#: Operating point: the cutoff on the binary score with the best validation balanced accuracy among
#: CUTOFF_GRID whose validation pile_up survival stays <= PILEUP_SURVIVAL_LIMIT (0.005 below the
#: 0.04 target, as margin for the small validation set); where none does with a better BA than at
#: 0.5, the CRESST paper's cutoff 0.5. The multi-class head puts many low-SNR pulses and carriers
#: just below 0.5, so a lower cutoff buys recall (the BA-optimal cutoff of the shipped model is
#: ~0.2, but lets ~13 % of the noise and ~15 % of the pile-up records through; `--cutoff` sets it).
CUTOFF_GRID = np.round(np.arange(0.30, 0.501, 0.01), 2)
PILEUP_SURVIVAL_LIMIT = 0.035
TORCH_THREADS = 1                     # on a shared 2-core machine one thread trains ~10x faster than two
#: Issue 15: the last WIDE_PARTS of the PARTS pieces of every (class, length) set come from the wide
#: universal distribution (records.WIDE_RANGES + classes.WIDE_OPTIONS, SNR up to WIDE_SNR_MAX);
#: 0 reproduces the issue-5 training set.
WIDE_PARTS = 2
WIDE_SNR_MAX = 10000.0
OUT = Path(__file__).resolve().parents[1] / "src" / "cryopipe" / "models" / "universal.pt"
# -------------------------------------------------------------------------------------------


def simulate_set(n_per_class: dict, seed_key: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Universal records of every RECORD_LENGTH, downsampled to 512: (records (E, 512), labels, classes)."""
    traces, labels, classes = [], [], []
    for n in RECORD_LENGTHS:
        for part in range(PARTS):
            counts = {c: k // PARTS + (part < k % PARTS) for c, k in n_per_class.items()}
            counts = {c: k for c, k in counts.items() if k}
            if not counts:
                continue
            wide = part >= PARTS - WIDE_PARTS
            kw = dict(ranges=WIDE_RANGES, options=ClassOptions(**WIDE_OPTIONS),
                      snr_range=(SNR_RANGE[0], WIDE_SNR_MAX)) if wide else dict(snr_range=SNR_RANGE)
            ds = simulate_universal_records(counts, n, np.random.default_rng([*seed_key, n, part]), **kw)
            traces.append(downsample(ds["trace"].values[0]))
            labels.append(ds["label"].values[0])
            classes.append(ds["event_class"].values.astype(str))
    order = np.random.default_rng([*seed_key, 99]).permutation(sum(len(c) for c in classes))
    return np.concatenate(traces)[order], np.concatenate(labels)[order], np.concatenate(classes)[order]


def one_cycle_adam(total_steps: int, max_lr: float, pct_start: float):
    """An Adam class whose every step also advances a OneCycleLR schedule of `total_steps` steps.

    `train_model` builds a plain ``torch.optim.Adam``; patching in this class (see `main`) adds the
    schedule without changing the training loop.
    """
    class OneCycleAdam(torch.optim.Adam):
        def __init__(self, params, lr=1e-3, **kw):
            super().__init__(params, lr=lr, **kw)
            self.schedule = torch.optim.lr_scheduler.OneCycleLR(self, max_lr=max_lr, total_steps=total_steps,
                                                                pct_start=pct_start)

        def step(self, closure=None):
            loss = super().step(closure)
            if self.schedule.last_epoch < total_steps - 1:
                self.schedule.step()
            return loss

    return OneCycleAdam


def calibrate_cutoff(model, val: ArraySource) -> tuple[float, float, float]:
    """(cutoff, validation BA, validation pile_up survival) chosen by the CUTOFF_GRID rule above."""
    scores, classes = [], []
    with torch.inference_mode():
        for x, _, c, _, _ in ordered_batches(val, 4096):
            scores.append(scores_from_logits(model(x), model.accepted)[0].numpy())
            classes.append(c.numpy())
    s, c = np.concatenate(scores), np.concatenate(classes)
    labels = np.isin(c, model.accepted)
    pile = c == model.class_names.index("pile_up")
    best = (0.5, balanced_accuracy(labels, s, 0.5), float(np.mean(s[pile] >= 0.5)))
    for cut in CUTOFF_GRID:
        ba, surv = balanced_accuracy(labels, s, cut), float(np.mean(s[pile] >= cut))
        if surv <= PILEUP_SURVIVAL_LIMIT and ba > best[1]:
            best = (float(cut), ba, surv)
    return best


def set_cutoff(checkpoint: Path, val: ArraySource) -> None:
    """Calibrate the cutoff of `checkpoint` on `val` and write it into its .json meta."""
    model, meta = load_model(checkpoint)
    cut, ba, surv = calibrate_cutoff(model, val)
    meta.update(cutoff=cut, val_balanced_accuracy_at_cutoff=ba, val_pile_up_survival_at_cutoff=surv,
                cutoff_rule=f"max validation BA over {CUTOFF_GRID.min()}-{CUTOFF_GRID.max()} with validation "
                            f"pile_up survival <= {PILEUP_SURVIVAL_LIMIT}; 0.5 if none meets it with a better BA")
    path = Path(checkpoint).with_suffix(".json")
    path.write_text(json.dumps(meta, indent=1, sort_keys=True))
    print(f"cutoff {cut:.2f}: validation BA {ba:.4f}, validation pile_up survival {surv:.4f} -> {path}")


def set_calibration(checkpoint: Path, cal: ArraySource) -> dict:
    """Temperature scaling and the OOD (energy) threshold of `checkpoint`, fitted on the held-out
    calibration set `cal` (seed [SEED, 2], never used for training, early stopping or the cutoff),
    written into its .json meta (`cleaning.calibration.calibration_meta`)."""
    from cryopipe.cleaning.calibration import calibration_meta

    model, meta = load_model(checkpoint)
    logits, classes = [], []
    with torch.inference_mode():
        for x, _, c, _, _ in ordered_batches(cal, 4096):
            logits.append(model(x).numpy())
            classes.append(c.numpy())
    cal_meta = calibration_meta(np.concatenate(logits), np.concatenate(classes))
    meta.update(cal_meta)
    path = Path(checkpoint).with_suffix(".json")
    path.write_text(json.dumps(meta, indent=1, sort_keys=True))
    print(f"temperature {cal_meta['temperature']:.3f}: calibration NLL {cal_meta['nll_uncalibrated']:.4f} -> "
          f"{cal_meta['nll_calibrated']:.4f}; OOD energy threshold {cal_meta['ood_threshold']:.3f} -> {path}")
    return cal_meta


def set_sizes(scale: float = 1.0) -> tuple[dict, dict]:
    """Records per class and length of the training and validation sets: N_PER_CLASS and
    N_VAL_PER_CLASS times `scale` (at least 1 each)."""
    return ({c: max(int(k * scale), 1) for c, k in N_PER_CLASS.items()},
            {c: max(int(N_VAL_PER_CLASS * scale), 1) for c in EVENT_CLASSES})


def universal_sets(scale: float = 1.0) -> tuple[ArraySource, ArraySource]:
    """Training and validation sets of `set_sizes(scale)`."""
    names = sorted(EVENT_CLASSES)
    n_train, n_val = set_sizes(scale)
    return (ArraySource(*simulate_set(n_train, [SEED]), class_names=names),
            ArraySource(*simulate_set(n_val, [SEED, 1]), class_names=names))


def _init_from(checkpoint: Path):
    """A build_model replacement that starts from the weights of `checkpoint` (fine-tuning)."""
    import cryopipe.cleaning.train as train_mod

    original = train_mod.build_model

    def build(name, n_classes):
        model = original(name, n_classes)
        model.load_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=True))
        return model

    return mock.patch.object(train_mod, "build_model", build)


def train_checkpoint(model: str, train: ArraySource, val: ArraySource, out: Path, epochs: int, max_lr: float,
                     progress=sys.stdout, meta: dict | None = None, init: Path | None = None):
    """Train `model` as the universal model (multi-class head, augmentations, one-cycle Adam) into
    `out`, then calibrate its cutoff on `val`; returns `train_model`'s result."""
    total_steps = epochs * len(WeakShuffleBatches(train, BATCH_SIZE))
    meta = dict(meta or {})
    meta.setdefault("training", {})["lr_schedule"] = {"kind": "OneCycleLR", "max_lr": max_lr,
                                                      "pct_start": PCT_START, "total_steps": total_steps}
    if init is not None:
        meta["training"]["init"] = str(init)
    with mock.patch.object(torch.optim, "Adam", one_cycle_adam(total_steps, max_lr, PCT_START)), \
            (_init_from(init) if init is not None else mock.patch.dict({})):
        result = train_model(model, train, val, out, epochs=epochs, batch_size=BATCH_SIZE, lr=LEARNING_RATE,
                             seed=SEED, n_classes=len(train.class_names), accepted=sorted(DEFAULT_ACCEPTED),
                             pileup_class="pile_up", augment_options=AUGMENT_OPTIONS, device="cpu",
                             progress=progress, meta=meta)
    set_cutoff(out, val)
    return result


def main() -> None:
    global WIDE_PARTS
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--epochs", type=int, default=EPOCHS)
    ap.add_argument("--model", default=MODEL, help="architecture (cleaning.models.MODELS)")
    ap.add_argument("--max-lr", type=float, default=MAX_LR, help="peak learning rate of the one-cycle schedule")
    ap.add_argument("--scale", type=float, default=1.0, help="multiplies N_PER_CLASS and N_VAL_PER_CLASS")
    ap.add_argument("--wide-parts", type=int, default=2,
                    help="pieces (of PARTS) per set from the wide distribution (0: the issue-5 set)")
    ap.add_argument("--calibrate", type=Path, help="only calibrate the cutoff of this existing checkpoint")
    ap.add_argument("--init", type=Path, help="start from this checkpoint's weights (fine-tuning)")
    ap.add_argument("--calibrate-temperature", type=Path,
                    help="only fit the temperature and OOD threshold of this existing checkpoint")
    args = ap.parse_args()
    WIDE_PARTS = args.wide_parts
    torch.set_num_threads(TORCH_THREADS)
    t0 = time.perf_counter()
    n_train, n_val = set_sizes(args.scale)
    if args.calibrate_temperature is not None:
        set_calibration(args.calibrate_temperature,
                        ArraySource(*simulate_set(n_val, [SEED, 2]), class_names=sorted(EVENT_CLASSES)))
        return
    if args.calibrate is not None:
        set_cutoff(args.calibrate, ArraySource(*simulate_set(n_val, [SEED, 1]), class_names=sorted(EVENT_CLASSES)))
        return
    train, val = universal_sets(args.scale)
    print(f"simulated {len(train)} training and {len(val)} validation records in {time.perf_counter() - t0:.0f} s",
          flush=True)
    config = {"model": args.model, "seed": SEED, "record_lengths": list(RECORD_LENGTHS), "snr_range": list(SNR_RANGE),
              "n_per_class": n_train, "n_val_per_class": n_val, "augment_options": AUGMENT_OPTIONS,
              "epochs": args.epochs, "batch_size": BATCH_SIZE,
              "simulation": "cryopipe.simulate.records.simulate_universal_records (default UNIVERSAL_RANGES)"
                            + (f"; {WIDE_PARTS}/{PARTS} of every set wide (WIDE_RANGES, WIDE_OPTIONS, SNR up to "
                               f"{WIDE_SNR_MAX:g})" if WIDE_PARTS else "")}
    result = train_checkpoint(args.model, train, val, args.out, args.epochs, args.max_lr,
                              meta={"name": "universal", "training": config}, init=args.init)
    set_calibration(args.out, ArraySource(*simulate_set(n_val, [SEED, 2]), class_names=sorted(EVENT_CLASSES)))
    curves = args.out.with_name(args.out.stem + "_loss.png")
    plot_loss_curves(result.history, curves)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    size = args.out.with_suffix(".pt").stat().st_size / 1e6
    print(f"best epoch {result.best_epoch + 1}, validation BA {result.meta['val_balanced_accuracy']:.4f}; "
          f"weights {size:.2f} MB at {args.out}; loss curves {curves}; wall {time.perf_counter() - t0:.0f} s; "
          f"peak memory {peak:.0f} MiB")


if __name__ == "__main__":
    main()
