"""Issue 19 item 3, as a measured experiment: does a detector-aware second input channel help?

Self-contained: nothing of this experiment is in the library (the measured verdict was "no gain";
see the numbers at the end of this docstring). The architecture "resnet_whitened" below is the
shipped `ResNet1D` with a 2-channel stem; its forward computes the second channel from the
(min-max scaled) record it is given: the record whitened with an autoregressive model of its own
pre-trigger noise (`ar_whiten`), asinh-compressed. Whitening is invariant under the min-max
scaling (an affine map with a positive scale), so computing it from the scaled input is the same
as computing it from the raw block means: no change to preprocessing, training data or prediction
is needed. The script registers the architecture in `cleaning.models.MODELS` at run time (this
process only), so `load_model`, `train_model` and the evaluation protocol use it unchanged.

Arms, both fine-tuned from the shipped universal model with the SAME data, records, order,
schedule and seed; only the input differs:

- control : `resnet`, the shipped one-channel input;
- whitened: `resnet_whitened`, channel 1's first-conv weights start at zero (it starts as the
  shipped model).
(`--init none`: both from scratch, all weights random.)

Training data: the universal recipe's sets (`tools/release/train_universal.py`: `simulate_set`, seeds [0],
[0, 1], [0, 2]), simulated once and cached (--cache); `--train-records` records (epochs over the
first N of the shuffled training set), one-cycle Adam (peak --max-lr), the last weights kept, 1
torch thread. Then the recipe's calibration (temperature, OOD thresholds, feature density) on the
held-out universal set [0, 2]; the cutoff stays 0.5 in both arms (nothing chosen on a test set).

Usage:
  nice -n 10 python tools/experiments/experiment_detector_input.py --arm control  --out /tmp/det_input
  nice -n 10 python tools/experiments/experiment_detector_input.py --arm whitened --out /tmp/det_input
  python tools/experiments/experiment_detector_input.py --evaluate /tmp/det_input/control.pt  --out /tmp/det_input/eval_control
  python tools/experiments/experiment_detector_input.py --evaluate /tmp/det_input/whitened.pt --out /tmp/det_input/eval_whitened
  python tools/experiments/experiment_detector_input.py --compare /tmp/det_input/eval_control /tmp/det_input/eval_whitened
Measured 2026-12-06 (2 shared CPU cores, 1 torch thread, sets of the recipe, 170k training records;
evaluate at default sizes: 24 + 20 detectors x 100 records per class per seed; cutoff 0.5):
- fine-tune from the shipped model, 340k records (2 epochs), max_lr 3e-4: control and whitened
  agree within noise everywhere (independent BA 0.915/0.916 vs 0.915/0.916 for seeds 1001/1011;
  own 0.948/0.946 vs 0.948/0.947; event_pulse survival SNR 3-5 0.422 vs 0.427). The network barely
  uses the new channel: its stem weights reached 1 % of channel 0's; zeroing it flips 0.3 % of
  the decisions.
- from scratch, 170k records (1 epoch), max_lr 1e-3, one seed: whitened keeps more low-SNR
  pulses (own simulator event_pulse SNR 5-10 0.626 -> 0.671, 10-30 0.914 -> 0.965; own BA
  0.926/0.920 -> 0.929/0.931) but lets more artefacts through (independent pile_up 0.130/0.137 ->
  0.145/0.155, spike 0.006 -> 0.015) and its worst independent detector is worse (0.783 -> 0.730);
  independent BA 0.906/0.905 -> 0.900/0.909. No net gain on the target figures: not kept.
Why little can be expected: min-max scaling is an affine map, so the per-record whitened channel
is a function of the min-max input (this model computes it from there): it adds no information,
only a precomputed feature. A channel that could add information needs what the record does not
hold (the run's noise spectrum and template from many records), and a training set that carries
each simulated detector's true spectrum and template.

(training options: --train-records N, --max-lr X, --scale F, --cache PATH, --init CHECKPOINT|none, --seed S;
--evaluate runs `cleaning.evaluate_cli.run` (the protocol of ``python -m cryopipe.cleaning.evaluate``,
default sizes) in this process, where resnet_whitened is known.)
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "release"))
import train_universal as tu  # noqa: E402

from cryopipe.cleaning import models as cm  # noqa: E402
from cryopipe.cleaning.architectures import universal_path  # noqa: E402
from cryopipe.cleaning.data import ArraySource  # noqa: E402
from cryopipe.cleaning.train import load_model, save_model, train_model  # noqa: E402
from cryopipe.simulate.records import DEFAULT_ACCEPTED, EVENT_CLASSES  # noqa: E402

#: order of the autoregressive noise model, fitted on the pre-trigger quarter of each record
AR_ORDER = 8


def ar_whiten(x: torch.Tensor, order: int = AR_ORDER) -> torch.Tensor:
    """Whiten (B, L) records with an AR model of their own pre-trigger noise (float64 inside).

    The first L/4 samples (the pre-trigger region) minus their mean give the autocorrelation
    r[0..order]; Yule-Walker (1e-3 r[0] ridge) gives the AR coefficients a; the prediction error
    e[n] = y[n] - sum_k a_k y[n-k] (y: record minus the pre-trigger mean; the first `order` samples,
    without full history, set to 0) is divided by its robust sigma over the pre-trigger region
    (1.4826 x MAD; the plain std where that is 0). Noise of that spectrum comes out white with unit
    variance, a pulse in units of the noise. A flat pre-trigger gives zeros. Checked against ground
    truth (white noise -> unit variance; AR(1) noise with lag-1 correlation 0.9 -> 0.06; an
    exponential pulse in AR(1) noise -> the analytic whitened shape within 6 %).
    """
    y = x.double()
    b, n = y.shape
    n_fit = max(n // 4, 2)
    p = int(max(0, min(order, n_fit - 2)))
    y = y - y[:, :n_fit].mean(dim=1, keepdim=True)
    pre = y[:, :n_fit]
    e = y.clone()
    if p > 0:
        r = torch.stack([(pre[:, :n_fit - k] * pre[:, k:]).sum(dim=1) for k in range(p + 1)], dim=1) / n_fit
        idx = (torch.arange(p)[:, None] - torch.arange(p)[None, :]).abs()
        toeplitz = r[:, idx] + 1e-3 * r[:, :1, None] * torch.eye(p, dtype=y.dtype)
        ok = r[:, 0] > 0
        a = torch.zeros(b, p, dtype=y.dtype)
        if bool(ok.any()):
            a[ok] = torch.linalg.solve(toeplitz[ok], r[ok, 1:, None])[..., 0]
        for k in range(1, p + 1):
            e[:, k:] -= a[:, k - 1:k] * y[:, :-k]
        e[:, :p] = 0.0
    ref = e[:, p:n_fit]
    med = torch.quantile(ref, 0.5, dim=1, keepdim=True)
    sigma = 1.4826 * torch.quantile((ref - med).abs(), 0.5, dim=1)
    sigma = torch.where(sigma > 0, sigma, ref.std(dim=1, unbiased=False))
    safe = torch.where(sigma > 0, sigma, torch.ones_like(sigma))
    return torch.where(sigma[:, None] > 0, e / safe[:, None], torch.zeros_like(e)).float()


class WhitenedResNet1D(cm.ResNet1D):
    """`ResNet1D` whose stem sees two channels: the (min-max scaled) record and `asinh(ar_whiten(record))`."""

    name = "resnet_whitened"

    def __init__(self, n_classes: int = 1):
        super().__init__(n_classes)
        self.stem[0] = nn.Conv1d(2, self.widths[0], 7, stride=2, padding=3, bias=False)

    def features(self, x):
        with torch.no_grad():
            w = torch.asinh(ar_whiten(x))
        h = self.stages(self.stem(torch.stack([x, w], dim=1)))
        return torch.cat([h.mean(dim=-1), h.amax(dim=-1)], dim=1)


cm.MODELS[WhitenedResNet1D.name] = WhitenedResNet1D          # this process only (see the module doc)
cm.LEARNING_RATES[WhitenedResNet1D.name] = cm.LEARNING_RATES["resnet"]
ARMS = {"control": "resnet", "whitened": WhitenedResNet1D.name}


def whitened_init(init: Path, out: Path) -> Path:
    """`init` (a one-channel resnet checkpoint) as a resnet_whitened checkpoint whose channel-1 stem
    weights are zero: it predicts exactly as `init`."""
    one, meta = load_model(init)
    two = WhitenedResNet1D(one.n_classes)
    state = dict(one.state_dict())
    w = torch.zeros_like(two.stem[0].weight)
    w[:, :1] = state["stem.0.weight"]
    state["stem.0.weight"] = w
    two.load_state_dict(state)
    two.class_names, two.accepted = one.class_names, one.accepted
    keep = {k: meta[k] for k in ("class_names", "accepted", "accepted_names") if k in meta}
    return save_model(out, two, {**keep, "name": f"{meta.get('name')} with a zero whitened channel"})


def cached_sets(cache: Path, scale: float) -> dict:
    """Training, validation and calibration arrays of the universal recipe (seeds [0], [0, 1], [0, 2])."""
    if cache.is_file():
        z = np.load(cache)
        return {k: z[k] for k in z.files}
    t0 = time.perf_counter()
    n_train, n_val = tu.set_sizes(scale)
    out = {}
    for name, n, key in (("train", n_train, [tu.SEED]), ("val", n_val, [tu.SEED, 1]), ("cal", n_val, [tu.SEED, 2])):
        x, y, c = tu.simulate_set(n, key)
        out.update({f"{name}_x": x, f"{name}_y": y, f"{name}_c": c.astype(str)})
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, **out)
    print(f"simulated the sets in {time.perf_counter() - t0:.0f} s -> {cache}", flush=True)
    return out


def train_arm(args) -> dict:
    """Train one arm (see the module doc); returns its summary (also written to OUT/<tag>_summary.json)."""
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)     # the training state is saved there every 5 min
    sets = cached_sets(args.cache or args.out / "sets.npz", args.scale)
    names = sorted(EVENT_CLASSES)
    n = min(args.train_records, len(sets["train_y"]))
    epochs = max(1, int(round(args.train_records / n)))
    train = ArraySource(sets["train_x"], sets["train_y"], sets["train_c"], class_names=names, select=np.arange(n))
    val = ArraySource(sets["val_x"], sets["val_y"], sets["val_c"], class_names=names)
    tag = args.arm if args.seed == tu.SEED else f"{args.arm}_seed{args.seed}"
    out = args.out / f"{tag}.pt"
    init = None if args.init == "none" else Path(args.init)
    if init is not None and args.arm == "whitened":
        init = whitened_init(init, args.out / "init_whitened.pt")
    t0 = time.perf_counter()
    result = train_model(ARMS[args.arm], train, val, out, epochs=epochs, batch_size=tu.BATCH_SIZE, seed=args.seed,
                         n_classes=len(names), accepted=sorted(DEFAULT_ACCEPTED), pileup_class="pile_up",
                         augment_options=tu.AUGMENT_OPTIONS, device="cpu", progress=sys.stdout,
                         meta={"name": f"detector-input experiment: {args.arm}",
                               "experiment": {"arm": args.arm, "train_records": n * epochs, "init": args.init,
                                              "max_lr": args.max_lr, "scale": args.scale, "seed": args.seed}},
                         schedule={"kind": "one_cycle", "max_lr": args.max_lr, "pct_start": tu.PCT_START},
                         init=init, keep="last")
    wall = time.perf_counter() - t0
    cal = ArraySource(sets["cal_x"], sets["cal_y"], sets["cal_c"], class_names=names)
    tu.set_calibration(out, cal)
    tu._update_meta(out, train_seconds=result.meta["train_seconds"],
                    train_records_per_second=result.meta["train_records_per_second"])
    summary = {"arm": args.arm, "seed": args.seed, "init": args.init, "train_records": n * epochs, "epochs": epochs,
               "train_seconds": result.meta["train_seconds"],
               "records_per_second": result.meta["train_records_per_second"],
               "wall_seconds": wall, "val_balanced_accuracy": result.meta["val_balanced_accuracy"],
               "checkpoint": str(out)}
    (args.out / f"{tag}_summary.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary), flush=True)
    return summary


def compare(dirs: list[Path]) -> str:
    """Markdown: the protocol figures (protocol.json of `--evaluate` or ``python -m
    cryopipe.cleaning.evaluate --out DIR``) of several models side by side: per generator and seed
    the mean / worst detector, pooled survival per SNR bin, and the NIST real-data counts."""
    data = {d.name: json.loads((d / "protocol.json").read_text()) for d in dirs}
    names = list(data)
    lines = ["| figure | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]

    def first(block):
        return next(iter(block.values()))

    def cell(x):
        return "-" if x is None or not np.isfinite(x) else f"{x:.3f}"

    for gen in ("independent", "own"):
        per_model = [first(data[n][gen]) for n in names]
        for i, r0 in enumerate(per_model[0]):
            for key in ("balanced_accuracy", "balanced_accuracy_snr_ge_10", "pulse_snr_ge_10", "survival pile_up",
                        "survival reset", "survival noise", "survival spike", "survival carrier_event",
                        "survival tail_event", "ood_fraction"):
                if key not in r0["summary"]:
                    continue
                cells = [f"{cell(m[i]['summary'][key]['mean'])} / {cell(m[i]['summary'][key]['worst'])}"
                         for m in per_model]
                lines.append(f"| {gen} seed {r0['seed']}: {key} (mean / worst) | " + " | ".join(cells) + " |")
        for cls in ("event_pulse", "carrier_event", "tail_event", "pile_up"):
            bins = per_model[0][0]["snr_table"].get(cls, [])
            for j, (lo, hi, _, _) in enumerate(bins):
                cells = []
                for m in per_model:
                    kept = sum(r["snr_table"][cls][j][2] for r in m)
                    n = sum(r["snr_table"][cls][j][3] for r in m)
                    cells.append(f"{kept / n:.3f} ({n})" if n else "-")
                lines.append(f"| {gen}, both seeds: {cls} survival, SNR {lo:g}-{hi:g} | " + " | ".join(cells) + " |")
    for fname in ("regress_chan1.ljh", "regress_noise_chan1.ljh", "regress_chan3.ljh"):
        for part in ("clean_pulse", "clean_noise", "rejected"):
            cells = []
            for n in names:
                real = (data[n].get("real") or {}).get(fname)
                f = first(real)[part] if real else None
                cells.append("-" if not f or not f["n"] else
                             f"{f['kept']}/{f['n']} kept ({f['wrong_flagged']} of {f['wrong']} wrong flagged)")
            if any(c != "-" for c in cells):
                lines.append(f"| {fname}: {part} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arm", choices=sorted(ARMS))
    ap.add_argument("--evaluate", type=Path, help="run the evaluation protocol on this checkpoint into --out")
    ap.add_argument("--compare", type=Path, nargs="+", help="protocol folders to put side by side")
    ap.add_argument("--nist-dir", default=None, help="for --evaluate (default: the protocol's)")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--cache", type=Path, default=None, help="npz of the simulated sets (default OUT/sets.npz)")
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--train-records", type=int, default=340_000,
                    help="records trained on (epochs over the first N of the shuffled set)")
    ap.add_argument("--max-lr", type=float, default=3e-4)
    ap.add_argument("--init", default=str(universal_path()), help="checkpoint to fine-tune from, or 'none'")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=tu.SEED, help="training seed (order, augmentation); sets stay seed 0")
    args = ap.parse_args(argv)
    if args.compare:
        print(compare(args.compare))
    elif args.evaluate:
        from cryopipe.cleaning import evaluate_cli

        torch.set_num_threads(args.threads)
        kw = {} if args.nist_dir is None else {"nist_dir": args.nist_dir}
        res = evaluate_cli.run(model_spec=str(args.evaluate), out=args.out, **kw)
        print(res["markdown"])
    elif args.arm and args.out:
        train_arm(args)
    else:
        ap.error("give --arm and --out, --evaluate and --out, or --compare")


if __name__ == "__main__":
    main()
