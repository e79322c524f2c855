"""The two-component pulse model of Proebst et al. (1995), as used by Cait.

For t > t0:  An (exp(-(t-t0)/tau_n) - exp(-(t-t0)/tau_in)) + At (exp(-(t-t0)/tau_t) - exp(-(t-t0)/tau_n)),
else 0. Times in s; parameter order as Cait: t0, An, At, tau_n, tau_in, tau_t.
"""
from __future__ import annotations

import numpy as np


def proebst_pulse(t, t0, An, At, tau_n, tau_in, tau_t):
    """Evaluate the pulse model at times `t` (s); parameters broadcast against `t`."""
    t = np.asarray(t, dtype=np.float64)
    dt = np.maximum(t - t0, 0.0)
    on = t > t0
    with np.errstate(over="ignore", invalid="ignore"):
        v = An * (np.exp(-dt / tau_n) - np.exp(-dt / tau_in)) + At * (np.exp(-dt / tau_t) - np.exp(-dt / tau_n))
    return np.where(on, v, 0.0)


def pulse_template(record_length: int, sample_frequency: float, tau_n: float, tau_in: float, tau_t: float,
                   at_over_an: float = 0.5, onset_fraction: float = 0.25) -> np.ndarray:
    """Pulse of the model with onset at `onset_fraction` of the window, scaled to a maximum of 1.

    Parameters
    ----------
    record_length : samples
    sample_frequency : Hz
    tau_n, tau_in, tau_t : s (non-thermal decay, rise, thermal decay)
    at_over_an : ratio of the thermal to the non-thermal amplitude (at 1, the tau_n terms cancel)
    """
    t = (np.arange(record_length) - int(record_length * onset_fraction)) / sample_frequency
    v = proebst_pulse(t, 0.0, 1.0, at_over_an, tau_n, tau_in, tau_t)
    peak = np.max(np.abs(v))
    if peak <= 0:
        raise ValueError("pulse template is identically zero: check the time constants")
    return v / peak


def generic_template(record_length: int, *, onset_fraction: float = 0.25,
                     rise_fraction: float = 1 / 2000, decay_fraction: float = 1 / 40) -> np.ndarray:
    """A detector-agnostic pulse shape (max 1): rise and decay as fractions of the record length.

    Used by the first trigger pass on a detector nothing is known about; a 16384-sample record
    gives a rise of ~8 samples and a decay of ~410 samples.
    """
    tau_in = max(record_length * rise_fraction, 1.0)
    tau_n = max(record_length * decay_fraction, 3 * tau_in)
    t = np.arange(record_length) - int(record_length * onset_fraction)
    v = proebst_pulse(t, 0.0, 1.0, 0.0, tau_n, tau_in, tau_n)
    return v / v.max()
