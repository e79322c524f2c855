"""Rule gather_triggers: gather the time segments' trigger lists of one channel."""
from cryopipe.io.stores import load_store, write_store
from cryopipe.trigger.stage import gather_segments
from cryopipe.runner import step

sm = snakemake  # noqa: F821 (provided by Snakemake)

with step("trigger_channel", sm.log[0], threads=sm.threads) as log:
    ds = gather_segments([load_store(p, "triggers") for p in sm.input], inputs=list(sm.input))
    log.info("channel %s: %d triggers from %d segments", sm.wildcards.channel, ds.sizes["trigger"], len(sm.input))
    write_store(ds, sm.output[0], "triggers")
