"""Rule predict: a cleaning model's score and decision for every channel and event of a run."""
from cryopipe.cleaning.stage import run_predict
from cryopipe.runner import step

sm = snakemake  # noqa: F821 (provided by Snakemake)

with step("predict", sm.log[0], threads=sm.threads) as log:
    run_predict(records=sm.input.records, model=sm.input.model, output=sm.output[0], model_name=sm.wildcards.model,
                cutoff=sm.params.cutoff, log=log)
