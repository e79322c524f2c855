"""Rule calibrate_channel: amplitude -> energy conversion of one channel from a known line."""
from cryopipe.io.stores import load_store, write_store
from cryopipe.calibrate.stage import calibrate_channel
from cryopipe.runner import step

sm = snakemake  # noqa: F821 (provided by Snakemake)

with step("calibrate_channel", sm.log[0], threads=sm.threads) as log:
    ch = sm.wildcards.channel
    features = load_store(sm.input.features, "features")
    char = load_store(sm.input.characterization, "characterization").sel(channel=[ch])
    ds = calibrate_channel(features, char, dict(sm.params.calibrate), what=f"run {sm.wildcards.run}, channel {ch}")
    ds.attrs["inputs"] = [str(p) for p in sm.input]
    c = ds.isel(channel=0)
    log.info("channel %s: line at %.4g V -> %.4g keV/V; baseline resolution %.3g keV", ch,
             c.line_position, c.kev_per_volt, c.resolution_kev)
    write_store(ds, sm.output[0], "calibration")
