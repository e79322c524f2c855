"""Block-parallel loops over records: threads for code that releases the GIL (scipy.fft, numba)."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Callable


def run_blocks(run_block: Callable[[int], None], n_records: int, batch: int, workers: int) -> None:
    """Call ``run_block(a)`` for block starts a = 0, batch, 2 batch, ... < n_records, in `workers`
    threads (serially for one worker or one block). Each call handles records [a, a + batch)."""
    starts = range(0, n_records, max(int(batch), 1))
    if workers > 1 and n_records > batch:
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(run_block, starts))
    else:
        for a in starts:
            run_block(a)
