"""Optimum filter (OF): amplitude, time shift, chi2 and resolution of pulses of known shape.

Conventions (checked against QETpy, see shared NOTES "Optimum filter conventions"): with
X = rfft(record), S = rfft(template), J the two-sided noise PSD (V^2/Hz; one-sided / 2 inside,
equal to it at Nyquist), N samples, fs the sample rate and weights w_k = 0 at DC, 2 for
0 < k < N/2, 1 at Nyquist:

- W = sum_k w_k |S_k|^2 / (N fs J_k)            (1/V^2);  sigma_A = 1 / sqrt(W)   (V)
- A(n) = irfft(conj(S) X / J)[n] / (fs W)       amplitude of a template delayed by n samples
- chi2_0 = sum_k w_k |X_k|^2 / (N fs J_k),  chi2(n) = chi2_0 - W A(n)^2
  (on noise E[chi2_0] = N - 1, E[chi2(n)] = N - 2 at a fixed lag).

The transfer function stored in :class:`OptimumFilter` already carries 1/(fs W), so
A(n) = irfft(transfer * X)[n]; a noiseless template-shaped pulse of height A (template max 1)
gives exactly A at lag 0. The DC bin is excluded everywhere, so baseline offsets do not matter.
"""
from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np
import scipy.fft

from cryopipe.errors import CryopipeError, InputError
from cryopipe.parallel import run_blocks
from cryopipe.signal.spectra import spectrum_weights, two_sided_psd
from cryopipe.signal.robust import as_records, check_sev_nps

__all__ = ["OptimumFilter", "build_optimum_filter", "expected_resolution", "of_amplitudes",
           "of_kernel", "measured_resolution", "cait_shift_window", "of_weights", "expected_resolutions"]


@dataclass(frozen=True)
class OptimumFilter:
    """An optimum filter for one channel.

    Attributes
    ----------
    transfer : complex (N//2+1,), conj(S) / (J fs W) with DC set to 0; A(n) = irfft(transfer X)[n]
    template_fft : complex (N//2+1,), rfft of the template (max 1, V/V)
    psd_two_sided : float (N//2+1,), J in V^2/Hz (DC entry unused)
    norm : W in 1/V^2; expected amplitude resolution is 1/sqrt(W) V
    sample_frequency : Hz
    record_length : N, samples
    onset : samples, the template's onset index (trigger position, N//4 by default)
    """

    transfer: np.ndarray
    template_fft: np.ndarray
    psd_two_sided: np.ndarray
    norm: float
    sample_frequency: float
    record_length: int
    onset: int

    @property
    def chi2_weights(self) -> np.ndarray:
        """q_k = w_k / (N fs J_k) (0 at DC), so that chi2_0 = sum_k q_k |X_k|^2."""
        denominator = self.record_length * self.sample_frequency * self.psd_two_sided
        q = np.zeros(denominator.shape)
        np.divide(of_weights(self.record_length), denominator, out=q, where=np.arange(q.size) > 0)
        return q


of_weights = spectrum_weights  # w_k: 0 at DC, 2 for 0 < k < N/2, 1 at Nyquist


def cait_shift_window(record_length: int, *, onset: int | None = None) -> tuple[int, int]:
    """Lag window (samples, half-open) equivalent to Cait's search range [N/8, 7N/8) of the filtered
    record, for a template whose onset (the trigger) sits at `onset` (default N//4)."""
    onset = record_length // 4 if onset is None else int(onset)
    return record_length // 8 - onset, 7 * record_length // 8 - onset


def build_optimum_filter(sev, nps_one_sided, sample_frequency: float, *, onset: int | None = None,
                         what: str = "channel") -> OptimumFilter:
    """Optimum filter from a standard event and a noise power spectrum.

    Parameters
    ----------
    sev : (N,) template, V/V, maximum 1, onset at `onset`
    nps_one_sided : (N//2+1,) one-sided noise PSD, V^2/Hz at the rfft frequencies
    sample_frequency : Hz
    onset : samples; the template's onset (trigger position), default N//4
    what : name of the run/channel for error messages
    """
    sev, nps = check_sev_nps(sev, nps_one_sided, sample_frequency, what=what)
    n = sev.size
    j = two_sided_psd(nps, n)
    s = np.fft.rfft(sev)
    w = of_weights(n)
    norm = float(np.sum(w[1:] * np.abs(s[1:]) ** 2 / (n * sample_frequency * j[1:])))
    if not (np.isfinite(norm) and norm > 0):
        raise CryopipeError(f"{what}: optimum filter normalisation is {norm}: the standard event has no "
                            "power above DC")
    transfer = np.zeros_like(s)
    transfer[1:] = np.conj(s[1:]) / (j[1:] * sample_frequency * norm)
    return OptimumFilter(transfer=transfer, template_fft=s, psd_two_sided=j, norm=norm,
                         sample_frequency=float(sample_frequency), record_length=n,
                         onset=int(n // 4 if onset is None else onset))


def expected_resolution(of: OptimumFilter) -> float:
    """Expected amplitude resolution sigma_A = 1/sqrt(W), V."""
    return float(1.0 / np.sqrt(of.norm))


def expected_resolutions(template, nps, sample_frequency) -> np.ndarray:
    """Expected resolution sigma_A = 1/sqrt(W) of many filters at once (V per unit template height);
    the simulator scales its pulses with it.

    W = sum_k w_k |S_k|^2 / (N fs J_k), S = rfft(template), J = two-sided PSD (one-sided `nps` V^2/Hz
    halved inside, equal at DC and Nyquist), w_k = 0 at DC, 2 inside, 1 at Nyquist. Broadcasts over
    leading axes of `template` (..., N), `nps` (..., N//2+1) and `sample_frequency` (Hz).
    """
    template = np.asarray(template)
    if template.dtype != np.float32:
        template = template.astype(np.float64)
    n = template.shape[-1]
    s2 = np.abs(scipy.fft.rfft(template, axis=-1)) ** 2
    two_sided = two_sided_psd(nps, n)
    w = spectrum_weights(n)
    fs = np.asarray(sample_frequency, dtype=np.float64)[..., None]
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(w > 0, w * s2 / (n * fs * two_sided), 0.0)
    return 1.0 / np.sqrt(np.sum(terms, axis=-1))


@numba.njit(cache=True, nogil=True)
def _filter_spectra(spectra, transfer, q, fixed_weights, inv_n, chi2_0, amp0):
    """Per record: chi2_0 = sum q |X|^2 and A(0); overwrite spectra with transfer * X."""
    n_rec, n_f = spectra.shape
    for i in range(n_rec):
        c = 0.0
        a = 0.0
        for k in range(n_f):
            x = spectra[i, k]
            xr = x.real
            xi = x.imag
            c += q[k] * (xr * xr + xi * xi)
            y = transfer[k] * x
            a += fixed_weights[k] * y.real
            spectra[i, k] = y
        chi2_0[i] = c
        amp0[i] = a * inv_n


@numba.njit(cache=True, nogil=True)
def _search_max(filtered, lo, hi, amp, lag):
    """Largest value of each filtered record over lags lo <= n < hi (negative lags wrap around)."""
    n_rec, n = filtered.shape
    for i in range(n_rec):
        best = -np.inf
        best_lag = lo
        # negative lags sit at the end of the circular output: scan them first, in lag order
        for n_lag in range(lo, min(hi, 0)):
            v = filtered[i, n_lag + n]
            if v > best:
                best = v
                best_lag = n_lag
        for n_lag in range(max(lo, 0), hi):
            v = filtered[i, n_lag]
            if v > best:
                best = v
                best_lag = n_lag
        amp[i] = best
        lag[i] = best_lag


def of_amplitudes(of: OptimumFilter, records, *, shift_window: tuple[int, int] | None = None,
                  search: bool = True, batch: int = 128, workers: int = 2) -> dict:
    """Apply the optimum filter to records with one rfft per record.

    Blocks of `batch` records go through rfft -> filter (+ irfft -> lag search) in `workers`
    threads, each thread running its block serially (faster on few cores than threading each FFT).

    Parameters
    ----------
    of : the filter
    records : (B, N) float32 (fastest; computed in single precision) or float64 records, V
    shift_window : (lo, hi) lags in samples, half-open, relative to the template's alignment
        (positive = pulse later than the template); default Cait's window, see `cait_shift_window`
    search : also search the lag window (one irfft per record); False returns the fixed-lag keys only
    batch : records per block
    workers : threads

    Returns
    -------
    dict of (B,) arrays: "amplitude" (V, fixed lag 0), "chi2" (fixed lag, N-2 dof on noise) and,
    with `search`, "amplitude_shifted" (V, largest over the window), "shift" (samples, int64),
    "chi2_shifted" (N-2 dof at the true lag).
    """
    records = as_records(records, what="optimum filter", allow_single=True, length=of.record_length)
    n = of.record_length
    lo, hi = cait_shift_window(n, onset=of.onset) if shift_window is None else (int(shift_window[0]),
                                                                                int(shift_window[1]))
    if search and not (hi > lo and hi - lo <= n and -n < lo and hi <= n):
        raise InputError(f"shift_window {shift_window} must satisfy -N < lo < hi <= N and hi - lo <= N (N={n})")
    single = records.dtype == np.float32
    cdtype, rdtype = (np.complex64, np.float32) if single else (np.complex128, np.float64)
    transfer = of.transfer.astype(cdtype)
    q = of.chi2_weights.astype(rdtype)
    fixed_weights = of_weights(n).astype(rdtype)
    n_rec = records.shape[0]
    amplitude, chi2_0 = np.empty(n_rec), np.empty(n_rec)
    amp_shift = np.empty(n_rec)
    shift = np.zeros(n_rec, dtype=np.int64)

    def run_block(a: int) -> None:
        b = min(a + batch, n_rec)
        spectra = scipy.fft.rfft(records[a:b], axis=-1)
        _filter_spectra(spectra, transfer, q, fixed_weights, 1.0 / n, chi2_0[a:b], amplitude[a:b])
        if search:
            filtered = scipy.fft.irfft(spectra, n=n, axis=-1)
            _search_max(filtered, lo, hi, amp_shift[a:b], shift[a:b])

    run_blocks(run_block, n_rec, batch, workers)
    out = {"amplitude": amplitude, "chi2": chi2_0 - of.norm * amplitude ** 2}
    if search:
        out.update(amplitude_shifted=amp_shift, shift=shift, chi2_shifted=chi2_0 - of.norm * amp_shift ** 2)
    return out


def of_kernel(of: OptimumFilter) -> tuple[np.ndarray, int]:
    """Time-domain OF kernel and anchor for stream filtering.

    Returns (kernel (N,) float64, anchor samples) such that y[n] = sum_m kernel[m] x[n - anchor + m]
    is the fixed-lag OF amplitude of the record starting at n - anchor; a template-shaped pulse of
    height A with onset n0 on a stream gives y[n0] = A.
    """
    kernel = np.fft.irfft(np.conj(of.transfer), n=of.record_length)
    return kernel, of.onset


def measured_resolution(of: OptimumFilter, noise_records, *, batch: int = 128) -> float:
    """Measured resolution, V: standard deviation of the fixed-lag amplitude on noise-only records.

    Never from the shift-searched amplitude, which on noise picks the largest value in the window.
    """
    amp = of_amplitudes(of, noise_records, search=False, batch=batch)["amplitude"]
    if amp.size < 2:
        raise CryopipeError(f"measured resolution needs at least 2 noise records, got {amp.size}")
    return float(np.std(amp, ddof=1))
