"""Rule labels: apply the cut set to a run's features; one flag per cut and an accepted flag."""
from cryopipe.cuts.language import apply_cuts
from cryopipe.io.stores import load_store, write_store
from cryopipe.runner import step

sm = snakemake  # noqa: F821 (provided by Snakemake)

with step("labels", sm.log[0], threads=sm.threads) as log:
    features = load_store(sm.input[0], "features")
    ds = apply_cuts(features, dict(sm.params.cuts))
    ds.attrs["inputs"] = [str(sm.input[0])]
    if sm.input.testpulse:  # runs with test pulses: the stability cut, kept as a flag and ANDed in
        stable = load_store(sm.input.testpulse, "testpulse")["stable"].sel(channel=ds.channel, event=ds.event)
        ds["stable"] = stable.astype(bool)
        ds["accepted"] = ds["accepted"] & ds["stable"]
        ds.attrs["inputs"] = [str(p) for p in sm.input]
    for ch in ds.channel.values:
        acc = ds["accepted"].sel(channel=ch)
        log.info("channel %s: %d of %d records pass all cuts", ch, int(acc.sum()), acc.size)
    write_store(ds, sm.output[0], "labels")
