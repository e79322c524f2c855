"""Rule efficiency_channel: trigger and cut efficiency of one channel from injected SEV pulses."""
from cryopipe.efficiency.stage import run_efficiency_channel
from cryopipe.runner import step

sm = snakemake  # noqa: F821 (provided by Snakemake)

with step("efficiency_channel", sm.log[0], threads=sm.threads) as log:
    run_efficiency_channel(records=sm.input.records, characterization=sm.input.characterization,
                           features=sm.input.features, calibration=sm.input.calibration or None, output=sm.output[0],
                           channel=sm.wildcards.channel, cuts=dict(sm.params.cuts), params=dict(sm.params.efficiency),
                           plugins=list(sm.params.plugins), log=log)
