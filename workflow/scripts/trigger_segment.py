"""Rule trigger_segment(_pass1): trigger one time segment of one channel of a run's stream."""
from cryopipe.runner import step
from cryopipe.trigger.stage import run_trigger_segment

sm = snakemake  # noqa: F821 (provided by Snakemake)

with step(sm.rule, sm.log[0], threads=sm.threads) as log:
    run_trigger_segment(stream=sm.params.stream, trigger=dict(sm.params.trigger), sampling=sm.params.sampling,
                        characterization=sm.input.characterization, output=sm.output[0],
                        channel=sm.wildcards.channel, segment=int(sm.wildcards.segment), log=log)
