"""Rule plot_energy_dependence: OF amplitude linearity and OF chi2 against amplitude of one channel."""
import numpy as np

from cryopipe.io.stores import load_store
from cryopipe.plots import plot_energy_dependence
from cryopipe.runner import step

sm = snakemake  # noqa: F821 (provided by Snakemake)

with step("plot_energy_dependence", sm.log[0], threads=sm.threads):
    ch = sm.wildcards.channel
    feats = load_store(sm.input.features, "features").sel(channel=ch)
    particle = np.array([str(k) for k in feats["record_kind"].values]) == "particle"
    plot_energy_dependence(feats["pulse_height"].values[particle], feats["of_amplitude"].values[particle],
                           feats["of_chi2"].values[particle], sm.output[0],
                           n_samples=int(feats.attrs["record_length"]), label=f"{sm.wildcards.run} / {ch}")
