"""Rule plot_light_yield: light yield vs phonon energy of a phonon + light module, accepted events marked."""
import numpy as np

from cryopipe.io.stores import load_store
from cryopipe.plots import plot_light_yield
from cryopipe.runner import step

sm = snakemake  # noqa: F821 (provided by Snakemake)

with step("plot_light_yield", sm.log[0], threads=sm.threads):
    feats = load_store(sm.input.features, "features")
    labels = load_store(sm.input.labels, "labels")
    phonon = sm.params.roles["phonon"]
    particle = np.array([str(k) for k in feats["record_kind"].values]) == "particle"
    accepted = labels["accepted"].sel(channel=phonon).values.astype(bool)
    plot_light_yield(feats["energy"].sel(channel=phonon).values[particle], feats["light_yield"].values[particle],
                     accepted[particle], sm.output[0], label=sm.wildcards.run)
