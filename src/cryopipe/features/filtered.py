"""The optimum-filter (OF) pass over a block of records, shared by the families that need it.

One rfft and one irfft per record give everything the `optimum_filter` and `shape` families read:
the fixed-lag amplitude and chi2_0 (`cryopipe.signal.optimum_filter` conventions) are summed over the
spectrum X of the record, and ``irfft(transfer * X)`` is the OF amplitude (V) at every circular
lag. float32 records are transformed in single precision, float64 records in double.

Within `cryopipe.features.registry.compute_block` the pass runs once per block however many families use it
(`ChannelContext.shared`); called on their own, the families compute it themselves.
"""
from __future__ import annotations

import queue
from dataclasses import dataclass

import numba as nb
import numpy as np
import scipy.fft

from cryopipe.signal.optimum_filter import of_weights
from ..signal.robust import as_records
from ..parallel import pocketfft_with_output, run_blocks

# scipy.fft's own pocketfft binding (rfft/irfft into an output array), checked; None: scipy.fft
_pocketfft = pocketfft_with_output()

FFT_BATCH = 128  # records per FFT block (one thread's work item)


@dataclass
class FilteredBlock:
    """The OF pass over a block of B records of N samples.

    Attributes
    ----------
    filtered : (B, N), the records' dtype: OF amplitude (V) at each circular lag
    amplitude : (B,) float64, fixed-lag (lag 0) OF amplitude (V)
    chi2_0 : (B,) float64, sum_k q_k |X_k|^2 (chi2 = chi2_0 - W A^2)
    """

    filtered: np.ndarray
    amplitude: np.ndarray
    chi2_0: np.ndarray


def workers() -> int:
    """Threads of the block loops: numba's thread count (the features' one knob)."""
    return max(int(nb.get_num_threads()), 1)


def _rfft(x: np.ndarray, out: np.ndarray) -> np.ndarray:
    """rfft of the rows of x into out (no new array: fresh block-sized arrays cost page faults)."""
    if _pocketfft is None:
        out[...] = scipy.fft.rfft(x, axis=-1)
        return out
    return _pocketfft.r2c(x, (1,), True, 0, out, 1)


def _irfft(spectra: np.ndarray, n: int, out: np.ndarray) -> np.ndarray:
    """irfft (length n) of the rows of spectra into out; spectra may be overwritten."""
    if _pocketfft is None:
        out[...] = scipy.fft.irfft(spectra, n=n, axis=-1, overwrite_x=True)
        return out
    return _pocketfft.c2r(spectra, (1,), n, False, 2, out, 1)


@nb.njit(cache=True, nogil=True, fastmath={"reassoc", "contract", "nsz"})
def _filter_spectra(spectra, transfer, q, fixed_weights, inv_n, chi2_0, amp0):
    """Per record: chi2_0 = sum q |X|^2 and the fixed-lag amplitude A(0) = sum w Re(transfer X) / N;
    spectra overwritten with transfer * X. Complex arrays as (re, im) float pairs (vectorised)."""
    n_rec, n_f = spectra.shape
    t = transfer.view(q.dtype)
    for i in range(n_rec):
        x = spectra[i].view(q.dtype)
        c = 0.0
        a = 0.0
        for k in range(n_f):
            xr = x[2 * k]
            xi = x[2 * k + 1]
            tr = t[2 * k]
            ti = t[2 * k + 1]
            yr = tr * xr - ti * xi
            c += q[k] * (xr * xr + xi * xi)
            a += fixed_weights[k] * yr
            x[2 * k] = yr
            x[2 * k + 1] = tr * xi + ti * xr
        chi2_0[i] = c
        amp0[i] = a * inv_n


def of_pass(traces: np.ndarray, of, *, n_workers: int | None = None, workspace=None) -> FilteredBlock:
    """The OF pass over `traces` (B, N) float32 or float64 with the filter `of` (see module doc).

    workspace : optional ``workspace(name, shape, dtype) -> array`` of reusable scratch memory (a
        `ChannelContext`'s); the result then lives in it until the next call with the same names.
    """
    b, n = traces.shape
    single = traces.dtype == np.float32
    cdtype, rdtype = (np.complex64, np.float32) if single else (np.complex128, np.float64)
    transfer = of.transfer.astype(cdtype)
    with np.errstate(divide="ignore", invalid="ignore"):  # a zero DC bin of the PSD: q[0] is 0 anyway
        q = of.chi2_weights.astype(rdtype)
    fixed_weights = of_weights(n).astype(rdtype)
    n_workers = workers() if n_workers is None else max(int(n_workers), 1)
    if workspace is None:
        def workspace(name, shape, dtype):
            return np.empty(shape, dtype)
    filtered = workspace("of_filtered", (b, n), rdtype)
    amplitude, chi2_0 = np.empty(b), np.empty(b)
    scratch = queue.SimpleQueue()
    for i in range(min(n_workers, -(-b // FFT_BATCH))):
        scratch.put(workspace(f"of_spectra_{i}", (FFT_BATCH, n // 2 + 1), cdtype))

    def run_block(a: int) -> None:
        e = min(a + FFT_BATCH, b)
        buf = scratch.get()
        try:
            spectra = _rfft(traces[a:e], buf[:e - a])
            _filter_spectra(spectra, transfer, q, fixed_weights, 1.0 / n, chi2_0[a:e], amplitude[a:e])
            _irfft(spectra, n, filtered[a:e])
        finally:
            scratch.put(buf)

    run_blocks(run_block, b, FFT_BATCH, n_workers)
    return FilteredBlock(filtered, amplitude, chi2_0)


def filtered_block(traces: np.ndarray, ctx) -> FilteredBlock:
    """The OF pass of `ctx`'s optimum filter over `traces`, shared through the context when it can."""
    of = ctx.optimum_filter()
    shared = getattr(ctx, "shared", None)
    if shared is None:
        return of_pass(as_records(traces, what="traces", contiguous=True), of)
    return shared("of_pass", traces, lambda: of_pass(as_records(traces, what="traces", contiguous=True), of, workspace=ctx.workspace))
