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


def pocketfft_with_output():
    """scipy.fft's own pocketfft binding (real FFTs into a caller's output array, so per-block
    FFTs allocate nothing), or None when this scipy lacks it or its call signature differs: it is
    private, so it is checked against scipy.fft on a small block before use."""
    try:
        import numpy as np
        import scipy.fft
        from scipy.fft._pocketfft import pypocketfft as binding

        x = np.arange(24, dtype=np.float32).reshape(2, 12) ** 1.5
        spec = np.empty((2, 7), np.complex64)
        binding.r2c(x, (1,), True, 0, spec, 1)
        back = np.empty_like(x)
        binding.c2r(spec.copy(), (1,), 12, False, 2, back, 1)
        # atol: float32 round-off of the transforms (x[0] = 0 comes back as ~6e-7 with scipy 1.17)
        if (np.allclose(spec, scipy.fft.rfft(x, axis=-1), rtol=1e-4, atol=1e-3)
                and np.allclose(back, x, rtol=1e-4, atol=1e-3)):
            return binding
    except Exception:  # ImportError, or a changed signature (TypeError, ValueError)
        pass
    return None
