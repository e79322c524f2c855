"""Rule plot_energy_dependence: OF amplitude linearity and OF chi2 against amplitude of one channel."""
from cryopipe.calibrate.stage import run_plot_energy_dependence
from cryopipe.runner import step

sm = snakemake  # noqa: F821 (provided by Snakemake)

with step("plot_energy_dependence", sm.log[0], threads=sm.threads):
    run_plot_energy_dependence(features=sm.input.features, output=sm.output[0], run=sm.wildcards.run,
                               channel=sm.wildcards.channel)
