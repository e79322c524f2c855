"""Rule labels: apply the cut set to a run's features; one flag per cut and an accepted flag."""
from cryopipe.cuts.stage import run_labels
from cryopipe.runner import step

sm = snakemake  # noqa: F821 (provided by Snakemake)

with step("labels", sm.log[0], threads=sm.threads) as log:
    run_labels(features=sm.input[0], testpulse=sm.input.testpulse or None, output=sm.output[0],
               cuts=dict(sm.params.cuts), log=log)
