"""Rule testpulse: test-pulse response, stability cut and pulser-model calibration of a run."""
from cryopipe.io.stores import load_store, open_store, write_store
from cryopipe.runner import step
from cryopipe.testpulse.stage import testpulse_run

sm = snakemake  # noqa: F821 (provided by Snakemake)

with step("testpulse", sm.log[0], threads=sm.threads) as log:
    records = open_store(sm.input.records, "records")
    char = load_store(sm.input.characterization, "characterization")
    ds = testpulse_run(records, char, dict(sm.params.testpulse), dict(sm.params.calibrate),
                       what=f"run {sm.wildcards.run}", log=log)
    ds.attrs["inputs"] = [str(p) for p in sm.input]
    write_store(ds, sm.output[0], "testpulse")
