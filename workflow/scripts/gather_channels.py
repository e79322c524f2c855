"""Rules characterize, calibrate, efficiency: gather a run's per-channel stores of one kind."""
from cryopipe.io.stores import concat_channels, load_store, write_store
from cryopipe.runner import step

sm = snakemake  # noqa: F821 (provided by Snakemake)
KIND = {"characterize": "characterization", "calibrate": "calibration", "efficiency": "efficiency"}[sm.rule]

with step(sm.rule, sm.log[0], threads=sm.threads) as log:
    ds = concat_channels([load_store(p, KIND) for p in sm.input], inputs=list(sm.input))
    write_store(ds, sm.output[0], KIND)
    log.info("%s of %d channels", KIND, ds.sizes["channel"])
