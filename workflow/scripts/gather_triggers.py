"""Rule gather_triggers(_pass1): gather the time segments' trigger lists of one channel."""
from cryopipe.runner import step
from cryopipe.trigger.stage import run_gather_triggers

sm = snakemake  # noqa: F821 (provided by Snakemake)

with step("trigger_channel", sm.log[0], threads=sm.threads) as log:
    run_gather_triggers(parts=list(sm.input), output=sm.output[0], channel=sm.wildcards.channel, log=log)
