"""Rule plot_characterization: SEV with its pulse-model fit for one channel."""
from cryopipe.characterize.stage import run_plot_characterization
from cryopipe.runner import step

sm = snakemake  # noqa: F821 (provided by Snakemake)

with step("plot_sev", sm.log[0], threads=sm.threads):
    run_plot_characterization(characterization=sm.input[0], output=sm.output.sev, channel=sm.wildcards.channel,
                              run=sm.wildcards.run)
