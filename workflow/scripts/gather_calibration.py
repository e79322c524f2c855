"""Rule calibrate: gather a run's per-channel calibration stores."""
from cryopipe.calibrate.stage import run_calibrate
from cryopipe.runner import step

sm = snakemake  # noqa: F821 (provided by Snakemake)

with step("calibrate", sm.log[0], threads=sm.threads) as log:
    run_calibrate(parts=list(sm.input), output=sm.output[0], log=log)
