"""Cait's whole chain on one csmpl channel, in one process: the reference of bench_pipeline.py.

    /path/to/cait-env/bin/python bench/cait_chain.py STREAM.csmpl WORKDIR

Runs in a separate environment where `cait` (1.3) is importable; imports nothing of cryopipe.
The chain mirrors cryopipe's default two-pass analysis: pass 1 triggers the stream (a plain
transfer function without DC, 5 robust sigmas), records are cut, main and additional parameters
computed, the standard event (SEV) built from them; noise triggers and noise records give the
noise power spectrum; the optimum filter follows; pass 2 triggers with the optimum filter at 5
times its resolution, cuts the records and computes main, additional parameters and the OF
amplitude. Prints one line with the counts and the time.
"""
import sys
import time
from pathlib import Path

import numpy as np

t_start = time.perf_counter()
import cait as ai  # noqa: E402

t_import = time.perf_counter() - t_start  # Cait compiles its numba kernels on import (no cache)

FS, N = 25000, 16384


def triggered_records(stream: str, work: str, name: str, threshold: float, of: np.ndarray):
    """A Cait DataHandler (HDF5 file `name` in `work`) with the stream triggered with filter `of`
    at `threshold` (V), the records cut and their main and additional parameters."""
    dh = ai.DataHandler(record_length=N, sample_frequency=FS, channels=[0])
    dh.set_filepath(path_h5=work, fname=name, appendix=False)
    dh.init_empty()
    dh.include_csmpl_triggers(csmpl_paths=[stream], thresholds=[threshold], of=of)
    dh.include_triggered_events(csmpl_paths=[stream], exclude_tp=False)
    dh.calc_mp()
    dh.calc_additional_mp(no_of=True)
    return dh


def main(stream: str, work: str) -> None:
    Path(work).mkdir(parents=True, exist_ok=True)
    raw = np.memmap(stream, dtype="<i2", mode="r")
    hours = raw.size / FS / 3600
    volts = raw[: 2**20].astype(np.float32) * 20 / 2**16
    y = volts - np.median(volts)
    sigma1 = 1.4826 * np.median(np.abs(np.diff(y))) / np.sqrt(2)
    flat = np.ones((1, N // 2 + 1), dtype=complex)
    flat[:, 0] = 0

    # pass 1: trigger, records, main parameters, SEV, noise, NPS, optimum filter
    dh = triggered_records(stream, work, "pass1", 5 * sigma1, flat)
    ph = dh.get("events", "mainpar")[0, :, 0]
    lo, hi = np.quantile(ph, [0.3, 0.7])
    dh.calc_sev(use_idx=list(np.flatnonzero((ph >= lo) & (ph <= hi))))
    # noise triggers: random times at least a record window away from every particle trigger
    # (Cait 1.3's include_noise_triggers fails with numpy 2: the same selection written directly)
    trig = dh.get("stream", "trigger_hours") * 3600
    rng = np.random.default_rng(0)
    cand = rng.uniform(N / FS, hours * 3600 - N / FS, 3000)
    near = np.abs(cand[:, None] - trig[None, :]).min(axis=1) if len(trig) else np.full(cand.shape, np.inf)
    noise_s = np.sort(cand[near > N / FS][:300])
    with dh.get_filehandle() as h5f:
        h5f["stream"].create_dataset("noise_hours", data=noise_s / 3600)
    dh.include_noise_events(csmpl_paths=[stream])
    dh.calc_nps()
    dh.calc_of()
    of = np.zeros((1, N // 2 + 1), dtype=complex)
    of.real = dh.get("optimumfilter", "optimumfilter_real")
    of.imag = dh.get("optimumfilter", "optimumfilter_imag")
    dh.apply_of(type="noise")
    resolution = float(np.std(np.ravel(dh.get("noise", "of_ph"))))

    # pass 2: optimum-filter trigger at 5 resolutions, records, features
    dh2 = triggered_records(stream, work, "final", 5 * resolution, of)
    dh2.include_sev(sev=dh.get("stdevent", "event"), fitpar=dh.get("stdevent", "fitpar"),
                    mainpar=dh.get("stdevent", "mainpar"))
    dh2.include_nps(dh.get("noise", "nps"))
    dh2.include_of(of.real, of.imag)
    dh2.apply_of()
    n1 = dh.get("events", "mainpar").shape[1]
    n2 = dh2.get("events", "mainpar").shape[1]
    print(f"cait {ai.__version__}: {hours:g} h, pass 1 {n1} records, final {n2} records, resolution "
          f"{resolution:.3g} V; {time.perf_counter() - t_start:.1f} s in-process, of which {t_import:.1f} s "
          f"import")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
