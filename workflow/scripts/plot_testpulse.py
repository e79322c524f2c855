"""Rule plot_testpulse: test-pulse response vs time (unstable intervals shaded) and the pulser-model
calibration curve of one channel."""
from cryopipe.runner import step
from cryopipe.testpulse.stage import run_plot_testpulse

sm = snakemake  # noqa: F821 (provided by Snakemake)

with step("plot_testpulse", sm.log[0], threads=sm.threads):
    run_plot_testpulse(testpulse=sm.input[0], response=sm.output.response, curve=sm.output.curve,
                       run=sm.wildcards.run, channel=sm.wildcards.channel)
