"""Feature family "sev_fit": least-squares fit of the scaled, shifted standard event (plus a linear
baseline) to each record (`cryopipe.signal.fit.fit_sev`).

fit_height (V), fit_onset (s, onset shift relative to the trigger N/4), fit_rms (V, rms residual).
With the context's ``fit_truncation`` (V above the baseline) samples above it are left out (saturated
pulses).
"""
from __future__ import annotations

import numpy as np

from cryopipe.signal.fit import FIT_UNITS, fit_sev
from .filtered import workers

UNITS: dict[str, str] = {k: FIT_UNITS[k] for k in ("fit_height", "fit_onset", "fit_rms")}


def compute(traces: np.ndarray, ctx) -> dict[str, np.ndarray]:
    """SEV-fit features of a block (n_events, N) of one channel's records (V); `ctx` a ChannelContext."""
    r = fit_sev(traces, ctx.sev, ctx.sample_frequency, truncation_level=ctx.fit_truncation,
                workers=workers(), what=f"channel {ctx.name}")
    return {k: r[k] for k in UNITS}
