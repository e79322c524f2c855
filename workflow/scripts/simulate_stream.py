"""Rule simulate_stream: write a simulated module's csmpl files and its truth store."""
import os
import shutil
from pathlib import Path

from cryopipe.io.stores import write_store
from cryopipe.runner import Progress, step
from cryopipe.simulate.stream import simulate_stream

sm = snakemake  # noqa: F821 (provided by Snakemake)

with step("simulate_stream", sm.log[0], threads=sm.threads) as log:
    stream = sm.params.stream
    out = Path(sm.output.stream)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        paths, truth = simulate_stream(tmp, dict(sm.params.simulation), stream["sample_frequency"],
                                       stream["channels"], progress=Progress(log, "simulating stream"),
                                       adc_bits=stream["adc_bits"], adc_range=stream["adc_range"])
        write_store(truth, sm.output.truth, "truth")
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("wrote %d channels and %d truth entries", len(paths), truth.sizes["pulse"])
