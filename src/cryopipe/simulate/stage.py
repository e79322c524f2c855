"""Simulation stage: what the rule simulate_stream reads, calls and writes.

No Snakemake here: paths and plain config dicts in.
"""
from __future__ import annotations

from cryopipe.io.stores import atomic_directory, write_store


def run_simulate_stream(*, simulation: dict, stream: dict, output: str, truth: str, log) -> None:
    """Rule simulate_stream: write a simulated module's csmpl files (one per channel) into the
    folder `output` and its truth store `truth`.

    `simulation` is the run's `simulate` section, `stream` its source spec (sample_frequency Hz,
    channels, adc_bits, adc_range V peak to peak). The folder appears only when complete.
    """
    from cryopipe.runner import Progress
    from cryopipe.simulate.stream import simulate_stream

    with atomic_directory(output) as tmp:
        paths, truth_ds = simulate_stream(tmp, simulation, stream["sample_frequency"], stream["channels"],
                                          progress=Progress(log, "simulating stream"),
                                          adc_bits=stream["adc_bits"], adc_range=stream["adc_range"])
        write_store(truth_ds, truth, "truth")
    log.info("wrote %d channels and %d truth entries", len(paths), truth_ds.sizes["pulse"])
