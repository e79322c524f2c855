"""Rule plot_noise: noise power spectra and optimum-filter transfer functions of a run."""
from cryopipe.io.stores import load_store
from cryopipe.characterize.stage import optimum_filter_from
from cryopipe.plots import plot_filter_transfer, plot_nps
from cryopipe.runner import step

sm = snakemake  # noqa: F821 (provided by Snakemake)

with step("plot_noise", sm.log[0], threads=sm.threads):
    char = load_store(sm.input[0], "characterization")
    names = [str(c) for c in char["channel"].values]
    plot_nps(char["nps"].values, char.attrs["sample_frequency"], sm.output.nps, channels=names, label=sm.wildcards.run)
    filters = {ch: optimum_filter_from(char, ch) for ch in names}
    plot_filter_transfer(filters, sm.output.transfer, label=sm.wildcards.run)
