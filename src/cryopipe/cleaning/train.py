"""Training of the cleaning classifiers (CRESST paper, seed 000, section 3).

Class-weighted binary cross entropy (or cross entropy for a multi-class head) so that both
classes (all classes) weigh equally; Adam with the learning rates of CRESST Table 7
(`models.LEARNING_RATES`), optionally on a one-cycle schedule; mini-batches of 64 with weak
shuffling; validation after every epoch; the checkpoint with the best validation balanced accuracy
is kept (ties: the lower validation loss), or the last one. Seeded (torch, numpy). Resumable: the
training state (model, optimiser, schedule, epoch, step, history, random state) is saved at every
epoch end and every few minutes, so a long CPU training runs in pieces (`resume=True`).
"""
from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.utils.class_weight import compute_class_weight

from .. import __version__
from ..errors import InputError
from .data import RecordSource, WeakShuffleBatches, ordered_batches
from .models import LEARNING_RATES, Classifier, build_model, scores_from_logits
from .preprocess import PREPROCESSING


def balanced_weights(targets, n_classes: int) -> np.ndarray:
    """Per-class loss weights n / (n_classes * count_c): every class carries the same total weight.

    Binary head (`n_classes` 1): targets are labels, weights for (rejected, accepted).
    A class absent from `targets` gets weight 0.
    """
    t = np.asarray(targets).astype(np.int64).ravel()
    k = 2 if n_classes == 1 else n_classes
    present = np.unique(t)
    w = np.zeros(k)
    w[present] = compute_class_weight("balanced", classes=present, y=t) * present.size / k
    return w


def weighted_loss(logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of w[target] * (binary) cross entropy.

    logits (B, 1) with targets (B,) in {0, 1}: BCE; logits (B, C) with targets (B,) class indices: CE.
    """
    idx = targets.long()
    if logits.shape[-1] == 1:
        per = F.binary_cross_entropy_with_logits(logits[:, 0], targets.float(), reduction="none")
    else:
        per = F.cross_entropy(logits, idx, reduction="none")
    return (weights[idx] * per).mean()


def default_device() -> torch.device:
    """CUDA when available, else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def save_model(path: str | Path, model: Classifier, meta: dict) -> Path:
    """Write `path` (.pt state_dict) and its .json meta (model, n_classes, class names, accepted, ...)."""
    path = Path(path).with_suffix(".pt")
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {**meta, "model": model.name, "n_classes": model.n_classes}
    meta.setdefault("preprocessing", PREPROCESSING)
    meta.setdefault("cryopipe_version", __version__)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    torch.save(state, tmp)
    os.replace(tmp, path)
    tmp_json = tmp.with_suffix(".json")
    tmp_json.write_text(json.dumps(meta, indent=1, sort_keys=True, default=_jsonable))
    os.replace(tmp_json, path.with_suffix(".json"))
    return path


def _jsonable(x):
    return x.item() if isinstance(x, np.generic) else x.tolist() if isinstance(x, np.ndarray) else str(x)


def load_model(path: str | Path, *, device=None) -> tuple[Classifier, dict]:
    """Rebuild a model saved by `save_model` (eval mode); returns (model, meta)."""
    path = Path(path).with_suffix(".pt")
    if not path.is_file() or not path.with_suffix(".json").is_file():
        raise InputError(f"{path}: no model checkpoint (.pt with its .json meta)")
    meta = json.loads(path.with_suffix(".json").read_text())
    model = build_model(meta["model"], n_classes=meta["n_classes"])
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    model.class_names = meta.get("class_names")
    model.accepted = meta.get("accepted")
    return model.to(device or "cpu").eval(), meta


@dataclass
class TrainResult:
    """The best model (loaded, eval mode), its meta, and the history of the run."""

    model: Classifier
    meta: dict
    best_epoch: int
    history: dict = field(default_factory=dict)   # train_loss (per step), val_loss, val_ba, epoch_time, best_epoch


def evaluate(model: Classifier, source: RecordSource, weights: torch.Tensor, device, *, batch: int = 4096,
             cutoff: float = 0.5) -> tuple[float, float]:
    """Weighted validation loss and balanced accuracy (at `cutoff`) of `model` on `source`."""
    from sklearn.metrics import balanced_accuracy_score

    model.eval()
    loss_sum, n, scores, labels = 0.0, 0, [], []
    with torch.inference_mode():
        for x, y, c, _, _ in ordered_batches(source, batch_size=batch):
            logits = model(x.to(device))
            target = y if model.n_classes == 1 else c
            loss_sum += float(weighted_loss(logits, target.to(device), weights)) * len(x)
            n += len(x)
            scores.append(scores_from_logits(logits, accepted=model.accepted)[0].cpu().numpy())
            labels.append(y.numpy() > 0.5)
    s, lab = np.concatenate(scores), np.concatenate(labels)
    return loss_sum / max(n, 1), float(balanced_accuracy_score(lab, s >= cutoff))


def lr_schedule(opt: torch.optim.Optimizer, schedule: dict | None, total_steps: int):
    """A per-step learning-rate schedule for `opt` from its config, or None (constant rate).

    schedule : {"kind": "one_cycle", "max_lr": peak rate, "pct_start": warm-up share of the steps}
        (torch's OneCycleLR: warm up to max_lr, then cosine-anneal to ~0 over `total_steps`).
    """
    if not schedule:
        return None
    if schedule.get("kind") != "one_cycle":
        raise InputError(f"schedule: unknown kind {schedule.get('kind')!r}; known: 'one_cycle'")
    return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=float(schedule["max_lr"]), total_steps=max(total_steps, 1),
                                               pct_start=float(schedule.get("pct_start", 0.15)))


def state_path(checkpoint: str | Path) -> Path:
    """Where `train_model` keeps its resumable training state for `checkpoint` (x.pt -> x.state.pt)."""
    checkpoint = Path(checkpoint).with_suffix(".pt")
    return checkpoint.with_name(checkpoint.stem + ".state.pt")


def _save_state(path: Path, state: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    torch.save(state, tmp)
    os.replace(tmp, path)


def train_model(name: str, train: RecordSource, val: RecordSource, checkpoint: str | Path, epochs: int = 15,
                batch_size: int = 64, lr: float | None = None, seed: int = 0, n_classes: int = 1,
                accepted=None, pileup_class: str | None = "pile_up", augment: bool = True,
                augment_options: dict | None = None, cutoff: float = 0.5, device=None,
                progress=sys.stdout, meta: dict | None = None, schedule: dict | None = None,
                init: str | Path | None = None, keep: str = "best", resume: bool = False,
                stop_after_steps: int | None = None, stop_after_seconds: float | None = None,
                state_every_seconds: float = 300.0) -> TrainResult:
    """Train model `name` on `train`, validate on `val` after each epoch, keep the best (or last) checkpoint.

    Parameters
    ----------
    n_classes : 1 for a binary head (targets: labels), else the number of `train.class_names`
        (targets: event classes) with `accepted` the accepted class names.
    pileup_class : class name that pile-up augmentation flips to (multi-class head only).
    checkpoint : path of the kept checkpoint (.pt + .json).
    schedule : per-step learning-rate schedule (`lr_schedule`), e.g. one-cycle; None: constant `lr`.
    init : start from the weights of this checkpoint (fine-tuning) instead of a random init.
    keep : "best" (the epoch with the best validation balanced accuracy; ties: lower loss) or
        "last" (the final weights: with an annealed schedule the validation set then chooses nothing).
    resume : continue from `state_path(checkpoint)` if it exists (model, optimiser, schedule, epoch,
        step, history, random state): the run goes on exactly as if never interrupted.
    stop_after_steps, stop_after_seconds : end this call early (after that many optimiser steps or
        seconds of this call), saving the training state; ``TrainResult.meta["finished"]`` is False.
        Call again with ``resume=True`` to go on.
    state_every_seconds : also save the training state this often (a killed run loses at most this).
    progress : stream for a per-epoch line (None: silent).
    """
    if epochs < 1:
        raise InputError(f"epochs: need at least 1, got {epochs}")
    if keep not in ("best", "last"):
        raise InputError(f"keep: 'best' or 'last', got {keep!r}")
    torch.manual_seed(seed)
    np.random.seed(seed)
    device = torch.device(device) if device is not None else default_device()
    model = build_model(name, n_classes=n_classes).to(device)
    if init is not None:
        init_model, _ = load_model(init)
        model.load_state_dict(init_model.state_dict())
    meta = dict(meta or {})
    pile_idx = None
    if n_classes > 1:
        names = train.class_names
        if names is None or len(names) != n_classes:
            raise InputError(f"n_classes: {n_classes} does not match the training classes {names}")
        if not accepted or set(accepted) - set(names):
            raise InputError(f"accepted: need accepted classes among {names}, got {accepted}")
        model.class_names, model.accepted = list(names), [names.index(a) for a in accepted]
        pile_idx = names.index(pileup_class) if pileup_class in names else None
        targets = train.classes[train.selected]
        meta.update(class_names=list(names), accepted=model.accepted, accepted_names=list(accepted))
    else:
        targets = train.labels[:, train.selected]
        meta.update(class_names=train.class_names, accepted=None)
    weights = torch.as_tensor(balanced_weights(targets, n_classes), dtype=torch.float32, device=device)
    lr = LEARNING_RATES[name] if lr is None else lr
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    batches = WeakShuffleBatches(train, batch_size, seed=seed, augment=augment, multiclass=n_classes > 1,
                                 pileup_class=pile_idx,
                                 augment_options=augment_options)
    sched = lr_schedule(opt, schedule, epochs * len(batches))
    meta.update(lr=lr, seed=seed, batch_size=batch_size, epochs=epochs, cutoff=cutoff, augment=augment,
                n_train_records=len(train), n_val_records=len(val), loss_weights=weights.tolist(),
                schedule=schedule, init=None if init is None else str(init), keep=keep)
    history = {"train_loss": [], "val_loss": [], "val_ba": [], "epoch_time": []}
    run = {"epoch": 0, "step": 0, "best_ba": -1.0, "best_loss": np.inf, "best_epoch": -1, "train_seconds": 0.0,
           "records_trained": 0}
    best_state = None
    spath = state_path(checkpoint)
    Path(checkpoint).parent.mkdir(parents=True, exist_ok=True)   # the state is saved there before the weights
    if resume and not spath.is_file() and progress is not None:
        print(f"resume: no training state at {spath} (never started, or already finished): training from the "
              f"start", file=progress, flush=True)
    if resume and spath.is_file():
        st = torch.load(spath, map_location="cpu", weights_only=False)
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["optimizer"])
        if sched is not None:
            sched.load_state_dict(st["schedule"])
        torch.set_rng_state(st["torch_rng"])
        history, run, best_state = st["history"], st["run"], st["best_state"]
        if progress is not None:
            print(f"resumed {spath}: epoch {run['epoch'] + 1}, step {run['step']}", file=progress, flush=True)

    def save_state():
        _save_state(spath, {"model": model.state_dict(), "optimizer": opt.state_dict(),
                            "schedule": None if sched is None else sched.state_dict(),
                            "torch_rng": torch.get_rng_state(), "history": history, "run": dict(run),
                            "best_state": best_state})

    t_call, t_saved, steps_this_call = time.perf_counter(), time.perf_counter(), 0
    while run["epoch"] < epochs:
        epoch = run["epoch"]
        t0 = t_epoch = time.perf_counter()      # t0: last time training seconds were counted
        model.train()
        batches.set_epoch(epoch)
        for step, (x, y, c) in enumerate(batches):
            if step < run["step"]:          # resumed mid-epoch: replay the epoch's draws up to where it stopped
                continue
            logits = model(x.to(device))
            loss = weighted_loss(logits, (y if n_classes == 1 else c).to(device), weights)
            opt.zero_grad()
            loss.backward()
            opt.step()
            if sched is not None and sched.last_epoch < sched.total_steps - 1:
                sched.step()
            history["train_loss"].append(loss.item())
            run["step"], run["records_trained"] = step + 1, run["records_trained"] + len(x)
            steps_this_call += 1
            _progress_bar(progress, epoch, epochs, step + 1, len(batches), history["train_loss"][-1])
            now = time.perf_counter()
            if ((stop_after_steps is not None and steps_this_call >= stop_after_steps)
                    or (stop_after_seconds is not None and now - t_call >= stop_after_seconds)):
                run["train_seconds"] += now - t0
                save_state()
                meta.update(finished=False, state=str(spath))
                if progress is not None:
                    print(f"\nstopped at epoch {epoch + 1}, step {step + 1}; training state {spath} "
                          f"(run again with resume to go on)", file=progress, flush=True)
                model.eval()
                return TrainResult(model, meta, run["best_epoch"], history)
            if now - t_saved >= state_every_seconds:
                run["train_seconds"] += now - t0
                t0 = now
                save_state()
                t_saved = now
        run["train_seconds"] += time.perf_counter() - t0
        val_loss, val_ba = evaluate(model, val, weights, device, cutoff=cutoff)
        history["val_loss"].append(val_loss)
        history["val_ba"].append(val_ba)
        history["epoch_time"].append(time.perf_counter() - t_epoch)
        improved = val_ba > run["best_ba"] or (val_ba == run["best_ba"] and val_loss < run["best_loss"])
        if improved:
            run.update(best_ba=val_ba, best_loss=val_loss, best_epoch=epoch)
        if keep == "last" or improved:
            kept = epoch if keep == "last" else run["best_epoch"]
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            save_model(checkpoint, model, {**meta, "best_epoch": kept, "val_balanced_accuracy": val_ba})
        if progress is not None:
            n_steps = len(batches)
            train_loss = float(np.mean(history["train_loss"][-n_steps:])) if n_steps else float("nan")
            print(f"\repoch {epoch + 1}/{epochs}  train loss {train_loss:.4f}  val loss {val_loss:.4f}  "
                  f"val BA {val_ba:.4f}  {history['epoch_time'][-1]:.1f} s{'  *best' if improved else ''}",
                  file=progress, flush=True)
        run.update(epoch=epoch + 1, step=0)
        save_state()
        t_saved = time.perf_counter()
    model.load_state_dict(best_state)
    model.eval()
    kept = epochs - 1 if keep == "last" else run["best_epoch"]
    rate = run["records_trained"] / run["train_seconds"] if run["train_seconds"] > 0 else float("nan")
    meta.update(best_epoch=kept, val_balanced_accuracy=history["val_ba"][kept], finished=True,
                train_seconds=run["train_seconds"], train_records_per_second=rate)
    meta.pop("state", None)
    history["best_epoch"] = kept
    if spath.is_file():
        spath.unlink()
    return TrainResult(model, meta, kept, history)


def _progress_bar(stream, epoch, epochs, step, n_steps, loss, width=30):
    """Redraw a one-line progress bar on a terminal; on files and pipes (logs) a plain line at
    every tenth of an epoch, so a long training shows where it is."""
    if stream is None or n_steps == 0:
        return
    if not getattr(stream, "isatty", lambda: False)():
        if step != n_steps and step % max(n_steps // 10, 1) == 0:
            stream.write(f"epoch {epoch + 1}/{epochs}: step {step}/{n_steps}, loss {loss:.4f}\n")
            stream.flush()
        return
    if step != n_steps and step % max(n_steps // 100, 1):
        return
    done = int(width * step / n_steps)
    stream.write(f"\repoch {epoch + 1}/{epochs} [{'#' * done}{'.' * (width - done)}] {step}/{n_steps} loss {loss:.4f}")
    stream.flush()


def plot_loss_curves(history: dict, path: str | Path) -> Path:
    """Training loss per step and validation loss per epoch (best epoch marked) to an image file."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train_loss, val_loss = np.asarray(history["train_loss"]), np.asarray(history["val_loss"])
    steps_per_epoch = len(train_loss) / max(len(val_loss), 1)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8), constrained_layout=True)
    ax1.plot(np.arange(1, train_loss.size + 1), train_loss, lw=0.6)
    ax1.set(xlabel="optimizer step", ylabel="training loss", yscale="log" if np.all(train_loss > 0) else "linear")
    epoch_steps = steps_per_epoch * np.arange(1, val_loss.size + 1)
    ax2.plot(epoch_steps, val_loss, "o-", label="validation loss")
    if history.get("val_ba"):
        best = int(history.get("best_epoch", np.argmax(history["val_ba"])))
        ax2.plot(epoch_steps[best], val_loss[best], "o", color="gold", ms=10, label="best balanced accuracy")
    ax2.set(xlabel="optimizer step", ylabel="validation loss")
    ax2.legend()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
