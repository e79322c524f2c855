"""Rule records(_pass1): merge the channels' triggers, add noise triggers, cut records of all channels."""
from cryopipe.runner import step
from cryopipe.trigger.stage import run_records

sm = snakemake  # noqa: F821 (provided by Snakemake)

with step("records", sm.log[0], threads=sm.threads) as log:
    run_records(stream=sm.params.stream, trigger=dict(sm.params.trigger), triggers=list(sm.input.triggers),
                output=sm.output[0], log=log)
