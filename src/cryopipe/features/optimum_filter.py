"""Feature family "optimum_filter": the channel's optimum filter (OF) applied to each record.

of_amplitude, of_chi2
    amplitude (V) and chi2 at the fixed lag 0 (the template's alignment, onset at N/4).
of_amplitude_shifted, of_shift, of_chi2_shifted
    the largest amplitude (V) over Cait's time-shift window [N/8, 7N/8) of the filtered record, its lag
    (s, positive = later than the template) and the chi2 there.
Conventions and formulas: `cryopipe.optimum_filter.of_amplitudes`.
"""
from __future__ import annotations

import numpy as np

from ..optimum_filter import of_amplitudes

UNITS: dict[str, str] = {
    "of_amplitude": "V",
    "of_chi2": "1",
    "of_amplitude_shifted": "V",
    "of_shift": "s",
    "of_chi2_shifted": "1",
}


def compute(traces: np.ndarray, ctx) -> dict[str, np.ndarray]:
    """OF features of a block (n_events, N) of one channel's records (V); `ctx` a ChannelContext."""
    of = ctx.optimum_filter()
    r = of_amplitudes(of, traces)
    return {"of_amplitude": r["amplitude"], "of_chi2": r["chi2"], "of_amplitude_shifted": r["amplitude_shifted"],
            "of_shift": r["shift"] / of.sample_frequency, "of_chi2_shifted": r["chi2_shifted"]}
