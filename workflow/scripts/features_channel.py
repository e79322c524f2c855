"""Rule features_channel: every feature family (and the user's plug-ins) on one channel of a run's records."""
from cryopipe.features import features_dataset, load_plugins
from cryopipe.io.stores import load_store, open_store, write_store
from cryopipe.runner import Progress, step

sm = snakemake  # noqa: F821 (provided by Snakemake)

with step("features_channel", sm.log[0], threads=sm.threads) as log:
    channel = sm.wildcards.channel
    cfg = sm.params.features
    records = open_store(sm.input.records, "records").sel(channel=[channel])
    char = load_store(sm.input.characterization, "characterization") if sm.input.characterization else None
    ds = features_dataset(records, char, plugins=load_plugins(cfg.get("plugins", [])),
                          fit_truncation=cfg["fit_truncation"], batch=cfg["batch"],
                          progress=Progress(log, "features"))
    ds.attrs["inputs"] = [str(p) for p in sm.input]
    write_store(ds, sm.output[0], "features")
