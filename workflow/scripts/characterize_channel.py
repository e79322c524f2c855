"""Rule characterize_channel: NPS, SEV, fit, optimum filter and resolution of one channel."""
from cryopipe.characterize.stage import run_characterize_channel
from cryopipe.runner import step

sm = snakemake  # noqa: F821 (provided by Snakemake)

with step("characterize_channel", sm.log[0], threads=sm.threads) as log:
    run_characterize_channel(records=sm.input[0], output=sm.output[0], channel=sm.wildcards.channel,
                             run=sm.wildcards.run, params=dict(sm.params.characterize), log=log)
