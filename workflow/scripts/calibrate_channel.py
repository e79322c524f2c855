"""Rule calibrate_channel: amplitude -> energy conversion of one channel from a known line."""
from cryopipe.calibrate.stage import run_calibrate_channel
from cryopipe.runner import step

sm = snakemake  # noqa: F821 (provided by Snakemake)

with step("calibrate_channel", sm.log[0], threads=sm.threads) as log:
    run_calibrate_channel(features=sm.input.features, characterization=sm.input.characterization, output=sm.output[0],
                          run=sm.wildcards.run, channel=sm.wildcards.channel, params=dict(sm.params.calibrate),
                          log=log)
