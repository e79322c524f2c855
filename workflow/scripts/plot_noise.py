"""Rule plot_noise: noise power spectra and optimum-filter transfer functions of a run."""
from cryopipe.characterize.stage import run_plot_noise
from cryopipe.runner import step

sm = snakemake  # noqa: F821 (provided by Snakemake)

with step("plot_noise", sm.log[0], threads=sm.threads):
    run_plot_noise(characterization=sm.input[0], nps=sm.output.nps, transfer=sm.output.transfer, run=sm.wildcards.run)
