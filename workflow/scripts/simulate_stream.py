"""Rule simulate_stream: write a simulated module's csmpl files and its truth store."""
from cryopipe.runner import step
from cryopipe.simulate.stage import run_simulate_stream

sm = snakemake  # noqa: F821 (provided by Snakemake)

with step("simulate_stream", sm.log[0], threads=sm.threads) as log:
    run_simulate_stream(simulation=dict(sm.params.simulation), stream=sm.params.stream, output=sm.output.stream,
                        truth=sm.output.truth, log=log)
