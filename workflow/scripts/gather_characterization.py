"""Rule characterize: gather a run's per-channel characterization stores."""
from cryopipe.characterize.stage import run_characterize
from cryopipe.runner import step

sm = snakemake  # noqa: F821 (provided by Snakemake)

with step("characterize", sm.log[0], threads=sm.threads) as log:
    run_characterize(parts=list(sm.input), output=sm.output[0], log=log)
