"""Noise power spectrum conventions used throughout cryopipe.

One-sided PSD in V^2/Hz at the rfft frequencies f_k = k fs / N, k = 0..N/2, with
sum_k PSD_k * df = variance (df = fs / N). Bins 0 < k < N/2 carry both signs of frequency; DC and
Nyquist carry one. The optimum filter (two-sided J, weights w_k), the periodogram and the noise synthesis
(`noise_from_psd`, Carrettoni & Cremonesi, CPC 181 (2010) 1982) build on these helpers.
"""
from __future__ import annotations

import numpy as np


def positive_frequency_share(n_samples: int) -> np.ndarray:
    """Share of the one-sided PSD bin that belongs to positive frequencies (1/2 or 1 at DC/Nyquist)."""
    w = np.full(n_samples // 2 + 1, 0.5)
    w[0] = 1.0
    if n_samples % 2 == 0:
        w[-1] = 1.0
    return w


def spectrum_weights(n_samples: int) -> np.ndarray:
    """Weights w_k of a real spectrum's bins in sums over both signs of frequency: 0 at DC (excluded),
    2 for 0 < k < N/2, 1 at Nyquist (even N). The optimum filter's W and chi2 use them."""
    w = 1.0 / positive_frequency_share(n_samples)
    w[0] = 0.0
    return w


def two_sided_psd(nps_one_sided, n_samples: int) -> np.ndarray:
    """One-sided PSD (V^2/Hz) -> two-sided J: halved for 0 < k < N/2, unchanged at DC and Nyquist."""
    return np.asarray(nps_one_sided, dtype=np.float64) * positive_frequency_share(n_samples)


def periodogram_psd(x, sample_frequency: float) -> np.ndarray:
    """One-sided PSD (V^2/Hz) of records `x` (..., N), rectangular window, averaged over leading axes.

    Satisfies Parseval: sum(psd) * fs / N equals the mean of x**2 over samples.
    """
    x = np.asarray(x, dtype=np.float64)
    n = x.shape[-1]
    X = np.fft.rfft(x, axis=-1)
    p = np.abs(X) ** 2 / (n * sample_frequency) / positive_frequency_share(n)
    return p.reshape(-1, p.shape[-1]).mean(axis=0)


def noise_from_psd(psd, n_samples: int, sample_frequency: float, rng: np.random.Generator,
                   *, size: int | tuple = (), dtype=np.float32) -> np.ndarray:
    """Draw Gaussian noise whose expected one-sided PSD is `psd` (V^2/Hz, length n_samples//2 + 1).

    Returns shape size + (n_samples,). Fourier coefficients are complex Gaussian with
    E|X_k|^2 = N fs PSD_k w_k (w_k = 1/2 inside, 1 at DC and Nyquist, where X is real).
    """
    psd = np.asarray(psd, dtype=np.float64)
    n_f = n_samples // 2 + 1
    if psd.shape[-1] != n_f:
        raise ValueError(f"psd has {psd.shape[-1]} bins, need {n_f} for {n_samples} samples")
    size = (size,) if isinstance(size, int) else tuple(size)
    power = n_samples * sample_frequency * psd * positive_frequency_share(n_samples)
    re = rng.standard_normal(size + (n_f,))
    im = rng.standard_normal(size + (n_f,))
    real_only = np.zeros(n_f, dtype=bool)
    real_only[0] = True
    if n_samples % 2 == 0:
        real_only[-1] = True
    scale = np.where(real_only, np.sqrt(power), np.sqrt(power / 2.0))
    X = (re + 1j * np.where(real_only, 0.0, im)) * scale
    return np.fft.irfft(X, n=n_samples, axis=-1).astype(dtype, copy=False)
