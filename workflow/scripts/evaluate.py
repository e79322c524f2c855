"""Rule evaluate: metrics, targets table and figures of a cleaning model on a held-out simulated set."""
from cryopipe.cleaning.stage import run_evaluate
from cryopipe.runner import step

sm = snakemake  # noqa: F821 (provided by Snakemake)

with step("evaluate", sm.log[0], threads=sm.threads) as log:
    run_evaluate(test=sm.input.test, model=sm.input.model, output=sm.output[0], model_name=sm.wildcards.model,
                 cutoff=sm.params.cutoff, log=log)
