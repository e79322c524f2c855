"""Rule features_channel: features of one channel of a run's records (+ optimum-filter features)."""
from cryopipe.cuts import extra_features_dataset
from cryopipe.features import features_dataset
from cryopipe.io.stores import load_store, open_store, write_store
from cryopipe.stages.characterize import OF_FEATURE_UNITS, of_features, optimum_filter_from, sev_fit_features
from cryopipe.runner import Progress, step

sm = snakemake  # noqa: F821 (provided by Snakemake)

with step("features_channel", sm.log[0]) as log:
    channel = sm.wildcards.channel
    records = open_store(sm.input.records, "records").sel(channel=[channel])
    ds = features_dataset(records, batch=sm.params.features["batch"], progress=Progress(log, "features"))
    if sm.input.characterization:
        char = load_store(sm.input.characterization, "characterization")
        of_ds = of_features(optimum_filter_from(char, channel), records, batch=sm.params.features["batch"])
        for name, unit in OF_FEATURE_UNITS.items():
            ds[name] = of_ds[name].assign_attrs(units=unit)
        extra = extra_features_dataset(records, char.sel(channel=[channel]), batch=sm.params.features["batch"])
        fits = sev_fit_features(records, char["sev"].sel(channel=channel).values, sm.params.features["fit_truncation"],
                                batch=sm.params.features["batch"])
        ds = ds.merge(extra, combine_attrs="override").merge(fits, combine_attrs="override")
    ds.attrs["inputs"] = [str(p) for p in sm.input]
    write_store(ds, sm.output[0], "features")
