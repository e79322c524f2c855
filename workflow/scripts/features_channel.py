"""Rule features_channel: every feature family (and the user's plug-ins) on one channel of a run's records."""
from cryopipe.features.stage import run_features_channel
from cryopipe.runner import step

sm = snakemake  # noqa: F821 (provided by Snakemake)

with step("features_channel", sm.log[0], threads=sm.threads) as log:
    run_features_channel(records=sm.input.records, characterization=sm.input.characterization, output=sm.output[0],
                         channel=sm.wildcards.channel, params=dict(sm.params.features), inputs=list(sm.input),
                         log=log)
