"""Rule read_records: a run's hardware-triggered records (CRESST rdt, NIST LJH) as its records store."""
from cryopipe.runner import step
from cryopipe.trigger.stage import run_read_records

sm = snakemake  # noqa: F821 (provided by Snakemake)

with step("read_records", sm.log[0], threads=sm.threads) as log:
    run_read_records(stream=sm.params.stream, inputs=list(sm.input), output=sm.output[0], log=log)
