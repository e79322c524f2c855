"""Rule plot_characterization: SEV with its pulse-model fit for one channel."""
from cryopipe.io.stores import load_store, record_pretrigger
from cryopipe.plots import plot_sev
from cryopipe.runner import step

sm = snakemake  # noqa: F821 (provided by Snakemake)

with step("plot_sev", sm.log[0], threads=sm.threads):
    char = load_store(sm.input[0], "characterization").sel(channel=sm.wildcards.channel)
    plot_sev(char["sev"].values, char.attrs["sample_frequency"], sm.output.sev, model=char["sev_fit"].values,
             label=f"{sm.wildcards.run} / {sm.wildcards.channel}", pretrigger=record_pretrigger(char))
