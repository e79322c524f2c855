"""Rule efficiency: gather a run's per-channel efficiency stores."""
from cryopipe.efficiency.stage import run_efficiency
from cryopipe.runner import step

sm = snakemake  # noqa: F821 (provided by Snakemake)

with step("efficiency", sm.log[0], threads=sm.threads) as log:
    run_efficiency(parts=list(sm.input), output=sm.output[0], log=log)
