"""Rule train: train a network on a run's simulated labelled records; keep the best checkpoint."""
from cryopipe.cleaning.stage import run_train
from cryopipe.runner import step

sm = snakemake  # noqa: F821 (provided by Snakemake)

with step("train", sm.log[0], threads=sm.threads) as log:
    run_train(simset=sm.input[0], model=sm.output.model, curve=sm.output.curve, architecture=sm.wildcards.architecture,
              train=dict(sm.params.train), progress=sm.log[0], log=log)
