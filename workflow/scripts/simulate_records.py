"""Rule simulate_records: labelled records of every event class from a run's SEV and NPS."""
from cryopipe.cleaning.stage import run_simulate_records
from cryopipe.runner import step

sm = snakemake  # noqa: F821 (provided by Snakemake)

with step("simulate_records", sm.log[0], threads=sm.threads) as log:
    run_simulate_records(characterization=sm.input[0], output=sm.output[0], split=sm.wildcards.split,
                         simulate=dict(sm.params.simulate), log=log)
