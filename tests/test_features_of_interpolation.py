"""Sub-sample OF amplitude (features "of_amplitude_interpolated", "of_shift_interpolated"): a pulse
of known amplitude delayed by a known fraction of a sample (exact band-limited shift) is measured
closer to its true amplitude and delay than at the best whole-sample lag."""
from __future__ import annotations

import numpy as np
import pytest

from cryopipe.features.context import ChannelContext
from cryopipe.features.optimum_filter import compute, interpolate_peak

FS, N = 100_000.0, 512


def _template(rise=4.0, decay=60.0):
    t = np.arange(N) - N // 4
    s = np.where(t > 0, np.exp(-t / decay) - np.exp(-t / rise), 0.0)
    return s / s.max()


def _delayed(x, d):
    """x delayed by d samples (band-limited: a phase ramp on the spectrum)."""
    f = np.fft.rfftfreq(x.size)
    return np.fft.irfft(np.fft.rfft(x) * np.exp(-2j * np.pi * f * d), x.size)


def test_parabola_vertex_by_hand():
    y = np.zeros((1, 8))
    y[0, 2:5] = [1.0, 3.0, 2.0]          # vertex of the parabola through (-1,1), (0,3), (1,2)
    amp, d = interpolate_peak(y, np.array([3]))
    # y = 3 + 0.5 d - 1.5 d^2  ->  d = 1/6, y = 3 + 1/24
    assert d[0] == pytest.approx(1 / 6) and amp[0] == pytest.approx(3 + 1 / 24)


@pytest.mark.parametrize("delay", [0.25, 0.4, -0.35])
def test_fractional_delay(delay):
    sev = _template()
    nps = np.full(N // 2 + 1, 1e-10)
    ctx = ChannelContext(FS, N, sev=sev, nps=nps)
    amplitude = 0.3
    x = (amplitude * _delayed(sev, delay))[None, :].astype(np.float64)
    r = compute(x, ctx)
    err_int = abs(r["of_amplitude_shifted"][0] - amplitude)
    err_par = abs(r["of_amplitude_interpolated"][0] - amplitude)
    assert err_par < 0.5 * err_int
    assert err_par < 2e-3 * amplitude
    assert r["of_shift_interpolated"][0] * FS == pytest.approx(delay, abs=0.1)
