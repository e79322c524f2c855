"""Rule features: gather a run's per-channel features; with a calibration, add energy (keV)."""
from cryopipe.features import add_energy
from cryopipe.io.stores import concat_channels, load_store, write_store
from cryopipe.runner import step

sm = snakemake  # noqa: F821 (provided by Snakemake)

with step("features", sm.log[0]) as log:
    ds = concat_channels([load_store(p, "features") for p in sm.input.parts], inputs=list(sm.input))
    if sm.input.calibration:
        ds = add_energy(ds, load_store(sm.input.calibration, "calibration"))
    write_store(ds, sm.output[0], "features")
    log.info("features of %d channels x %d events", ds.sizes["channel"], ds.sizes["event"])
