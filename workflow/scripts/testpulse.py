"""Rule testpulse: test-pulse response, stability cut and pulser-model calibration of a run."""
from cryopipe.runner import step
from cryopipe.testpulse.stage import run_testpulse

sm = snakemake  # noqa: F821 (provided by Snakemake)

with step("testpulse", sm.log[0], threads=sm.threads) as log:
    run_testpulse(records=sm.input.records, characterization=sm.input.characterization, output=sm.output[0],
                  run=sm.wildcards.run, testpulse=dict(sm.params.testpulse), calibrate=dict(sm.params.calibrate),
                  log=log)
