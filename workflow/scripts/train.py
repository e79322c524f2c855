"""Rule train: train a network on a run's simulated labelled records; keep the best checkpoint."""
from pathlib import Path

from cryopipe.cleaning.train import plot_loss_curves
from cryopipe.cleaning.stage import train_on_simset
from cryopipe.runner import step

sm = snakemake  # noqa: F821 (provided by Snakemake)

with step("train", sm.log[0], threads=sm.threads) as log:
    cfg = {**sm.params.train, "cutoff": None}   # the model's own cutoff (0.5); cleaning.cutoff acts in predict
    with open(sm.log[0], "a") as progress:
        result = train_on_simset(sm.input[0], sm.wildcards.architecture, Path(sm.output.model), cfg, progress=progress)
    plot_loss_curves(result.history, sm.output.curve)
    log.info("best epoch %d, validation balanced accuracy %.4f", result.best_epoch,
             max(result.history.get("val_ba", [float("nan")])))
