"""Throughput of the labelled record simulator (records/s of 16384 samples) in detector and universal mode.

Usage: python bench/bench_simulate_records.py [n_records] [workers]
Cait 1.3 simulates about 93 records/s; target here >= 5,000/s in detector mode on 2 cores.
"""
import resource
import sys
import time

import numpy as np
import scipy.fft

from cryopipe.simulate.noise import psd_model
from cryopipe.signal.pulses import pulse_template
from cryopipe.simulate.records import EVENT_CLASSES, simulate_detector_records, simulate_universal_records

N, FS = 16384, 25000.0


def rate(fn, n_records):
    fn(max(n_records // 20, 26))  # warm-up: numba compile / cache load
    t, c = time.perf_counter(), time.process_time()
    ds = fn(n_records)
    return ds.sizes["event"] / (time.perf_counter() - t), ds.sizes["event"] / (time.process_time() - c)


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 5200
    workers = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    sev = pulse_template(N, FS, 10e-3, 1e-3, 40e-3, at_over_an=0.5)
    nps = psd_model(scipy.fft.rfftfreq(N, 1 / FS), 1e-12, 1e-11, 1.0, ((50.0, 1.0, 1e-10),))

    def mix(k):
        return {c: max(k // len(EVENT_CLASSES), 1) for c in EVENT_CLASSES}

    cases = {
        "detector": lambda k: simulate_detector_records(mix(k), sev, nps, FS, np.random.default_rng(0),
                                                        workers=workers),
        "detector+saturation+adc": lambda k: simulate_detector_records(
            mix(k), sev, nps, FS, np.random.default_rng(0), saturation=0.05, adc_step=20 / 2**16, workers=workers),
        "detector noise only": lambda k: simulate_detector_records({"noise": k}, sev, nps, FS,
                                                                   np.random.default_rng(0), workers=workers),
        "universal": lambda k: simulate_universal_records(mix(k), N, np.random.default_rng(0), workers=workers),
    }
    for name, fn in cases.items():
        k = n if not name.startswith("universal") else max(n // 4, 26)
        wall, cpu = rate(fn, k)
        print(f"{name:26s} {wall:7.0f} records/s wall, {cpu:7.0f} per CPU-second  (N={N}, {workers} workers, {k} records)")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak memory {peak:.0f} MiB")


if __name__ == "__main__":
    main()
