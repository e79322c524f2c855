"""Rule plot_spectrum: amplitude spectrum of one channel with the calibration line fit."""
from cryopipe.calibrate.stage import run_plot_spectrum
from cryopipe.runner import step

sm = snakemake  # noqa: F821 (provided by Snakemake)

with step("plot_spectrum", sm.log[0], threads=sm.threads):
    run_plot_spectrum(features=sm.input.features, calibration=sm.input.calibration or None, output=sm.output[0],
                      run=sm.wildcards.run, channel=sm.wildcards.channel, calibrate=dict(sm.params.calibrate))
