"""Rule plot_efficiency: trigger, cut and total efficiency of one channel."""
from cryopipe.efficiency.stage import run_plot_efficiency
from cryopipe.runner import step

sm = snakemake  # noqa: F821 (provided by Snakemake)

with step("plot_efficiency", sm.log[0], threads=sm.threads):
    run_plot_efficiency(efficiency=sm.input[0], output=sm.output[0], run=sm.wildcards.run,
                        channel=sm.wildcards.channel)
