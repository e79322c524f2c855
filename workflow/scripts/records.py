"""Rule records: merge the channels' triggers, add noise triggers, cut records of all channels."""
from cryopipe.io.stores import load_store, write_store_batches
from cryopipe.io.sources import open_stream
from cryopipe.trigger.stage import record_batches
from cryopipe.runner import step

sm = snakemake  # noqa: F821 (provided by Snakemake)

with step("records", sm.log[0], threads=sm.threads) as log:
    stream_cfg = sm.params.stream
    stream = open_stream(stream_cfg)
    triggers = [load_store(p, "triggers") for p in sm.input.triggers]
    first, more, summary = record_batches(stream, triggers, stream_cfg, dict(sm.params.trigger),
                                          inputs=list(sm.input.triggers))
    log.info("%s", summary)
    write_store_batches(first, more, sm.output[0], "records")
