"""Rule read_records: a run's hardware-triggered records (CRESST rdt, NIST LJH) as its records store."""
from cryopipe.io.stores import write_store_batches
from cryopipe.runner import step
from cryopipe.trigger.read_records import record_batches

sm = snakemake  # noqa: F821 (provided by Snakemake)

with step("read_records", sm.log[0], threads=sm.threads) as log:
    first, more, summary = record_batches(sm.params.stream, inputs=list(sm.input))
    log.info("%s", summary)
    write_store_batches(first, more, sm.output[0], "records")
