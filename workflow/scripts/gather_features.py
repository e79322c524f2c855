"""Rule features: gather the per-channel feature stores of a run into one."""
from cryopipe.io.stores import concat_channels, load_store, write_store
from cryopipe.runner import step

sm = snakemake  # noqa: F821 (provided by Snakemake)

with step("features", sm.log[0]) as log:
    parts = [load_store(p, "features") for p in sm.input]
    ds = concat_channels(parts, inputs=list(sm.input))
    write_store(ds, sm.output[0], "features")
    log.info("features of %d channels x %d events", ds.sizes["channel"], ds.sizes["event"])
