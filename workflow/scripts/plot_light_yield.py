"""Rule plot_light_yield: light yield vs phonon energy of a phonon + light module, accepted events marked."""
from cryopipe.calibrate.stage import run_plot_light_yield
from cryopipe.runner import step

sm = snakemake  # noqa: F821 (provided by Snakemake)

with step("plot_light_yield", sm.log[0], threads=sm.threads):
    run_plot_light_yield(features=sm.input.features, labels=sm.input.labels, output=sm.output[0],
                         run=sm.wildcards.run, phonon=sm.params.roles["phonon"])
