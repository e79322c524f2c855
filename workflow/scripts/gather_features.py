"""Rule features: gather a run's per-channel features; with a calibration, add energy (keV) and, for a
phonon + light module, the light yield."""
from cryopipe.features import add_energy
from cryopipe.calibrate.energy import add_light_yield
from cryopipe.io.stores import concat_channels, load_store, write_store
from cryopipe.runner import step

sm = snakemake  # noqa: F821 (provided by Snakemake)

with step("features", sm.log[0], threads=sm.threads) as log:
    ds = concat_channels([load_store(p, "features") for p in sm.input.parts], inputs=list(sm.input))
    roles = dict(sm.params.roles)
    if sm.input.calibration:
        ds = add_energy(ds, load_store(sm.input.calibration, "calibration"))
        if {"phonon", "light"} <= set(roles):
            ds = add_light_yield(ds, roles["phonon"], roles["light"])
    else:
        log.info("no calibration line configured (calibrate.line_energy): no energy%s in the features",
                 " and no light yield" if roles else "")
    write_store(ds, sm.output[0], "features")
    log.info("features of %d channels x %d events", ds.sizes["channel"], ds.sizes["event"])
