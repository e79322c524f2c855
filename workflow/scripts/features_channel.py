"""Rule features_channel: features of one channel of a run's records."""
from cryopipe.features import features_dataset
from cryopipe.io.stores import open_store, write_store
from cryopipe.runner import Progress, step

sm = snakemake  # noqa: F821 (provided by Snakemake)

with step("features_channel", sm.log[0]) as log:
    records = open_store(sm.input[0], "records").sel(channel=[sm.wildcards.channel])
    ds = features_dataset(records, batch=sm.params.features["batch"], progress=Progress(log, "features"))
    ds.attrs["inputs"] = [str(sm.input[0])]
    write_store(ds, sm.output[0], "features")
