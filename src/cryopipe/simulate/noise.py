"""Noise spectrum models of simulated detectors (white, 1/f, lines), one-sided V^2/Hz.

PSD convention and noise synthesis: `cryopipe.signal.spectra`.
"""
from __future__ import annotations

import numpy as np



def psd_model(freqs, white: float, one_over_f: float = 0.0, f_ref: float = 1.0,
              lines: tuple = (), exponent: float = 1.0) -> np.ndarray:
    """One-sided PSD in V^2/Hz: white + one_over_f * (f_ref/f)^exponent + Lorentzian lines.

    Parameters
    ----------
    freqs : Hz
    white : V^2/Hz
    one_over_f : V^2/Hz at f_ref (Hz)
    lines : iterable of (frequency Hz, width Hz, peak V^2/Hz)
    """
    f = np.asarray(freqs, dtype=np.float64)
    psd = np.full_like(f, float(white))
    with np.errstate(divide="ignore"):
        pink = one_over_f * (f_ref / np.where(f > 0, f, np.inf)) ** exponent
    psd += pink
    for f0, width, peak in lines:
        psd += peak / (1.0 + ((f - f0) / (0.5 * width)) ** 2)
    psd[f == 0] = 0.0
    return psd
