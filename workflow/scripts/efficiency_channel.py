"""Rule efficiency_channel: trigger and cut efficiency of one channel from injected SEV pulses."""
from cryopipe.features import load_plugins
from cryopipe.io.stores import load_store, open_store, write_store
from cryopipe.runner import step
from cryopipe.efficiency.stage import efficiency_channel

sm = snakemake  # noqa: F821 (provided by Snakemake)

with step("efficiency_channel", sm.log[0], threads=sm.threads) as log:
    ch = sm.wildcards.channel
    records = open_store(sm.input.records, "records").sel(channel=[ch])
    char = load_store(sm.input.characterization, "characterization")
    kev = None
    if sm.input.calibration:
        kev = float(load_store(sm.input.calibration, "calibration")["kev_per_volt"].sel(channel=ch))
    features = open_store(sm.input.features, "features")
    ds = efficiency_channel(records, char, dict(sm.params.cuts), dict(sm.params.efficiency), kev_per_volt=kev,
                            plugins=load_plugins(sm.params.plugins), features=features)
    ds.attrs["inputs"] = [str(p) for p in sm.input]
    c = ds.isel(channel=0)
    log.info("channel %s: trigger 50 %% point %.3g V (threshold %.3g V), after cuts %.3g V", ch,
             c.trigger_x50, c.threshold, c.total_x50)
    write_store(ds, sm.output[0], "efficiency")
