"""Throughput of the batch optimum filter on (B, 16384) float32 records.

Prints records/s of `of_amplitudes` with the time-shift search (Cait window) and at a fixed lag,
scipy.fft.rfft alone for reference, and peak memory. Usage: python bench/bench_optimum_filter.py [B]
"""
import resource
import sys
import time

import numpy as np
import scipy.fft

from cryopipe.signal.optimum_filter import build_optimum_filter, of_amplitudes
from cryopipe.signal.spectra import noise_from_psd
from cryopipe.simulate.noise import psd_model
from cryopipe.signal.pulses import pulse_template

FS = 25_000.0
N = 16384


def best_rate(func, n_records: int, repeats: int = 3) -> float:
    best = np.inf
    for _ in range(repeats):
        t = time.perf_counter()
        func()
        best = min(best, time.perf_counter() - t)
    return n_records / best


def main(n_records: int = 4096) -> None:
    rng = np.random.default_rng(0)
    psd = psd_model(np.fft.rfftfreq(N, 1 / FS), white=1e-9, one_over_f=1e-8, f_ref=10.0)
    psd[0] = psd[1]
    sev = pulse_template(N, FS, 0.01, 0.001, 0.05, at_over_an=0.5)
    of = build_optimum_filter(sev, psd, FS)
    records = np.empty((n_records, N), dtype=np.float32)
    for a in range(0, n_records, 512):
        b = min(a + 512, n_records)
        records[a:b] = noise_from_psd(psd, N, FS, rng, size=b - a)
    records[::2] += (rng.uniform(0.01, 1.0, records[::2].shape[0])[:, None] * sev).astype(np.float32)
    of_amplitudes(of, records[:256])                       # compile / warm up
    rate_search = best_rate(lambda: of_amplitudes(of, records), n_records)
    rate_fixed = best_rate(lambda: of_amplitudes(of, records, search=False), n_records)
    rate_rfft = best_rate(lambda: [scipy.fft.rfft(records[a:a + 128], axis=-1, workers=2)
                                   for a in range(0, n_records, 128)], n_records)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"records: {n_records} x {N} float32")
    print(f"of_amplitudes, time-shift search (Cait window): {rate_search:,.0f} records/s")
    print(f"of_amplitudes, fixed lag only:                  {rate_fixed:,.0f} records/s")
    print(f"scipy.fft.rfft alone (workers=2):               {rate_rfft:,.0f} records/s")
    print(f"peak memory (ru_maxrss): {peak_mb:,.0f} MiB")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 4096)
