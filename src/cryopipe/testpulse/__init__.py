"""testpulse: `response` (band, stability, pulser model: the maths), `channel` (one channel of a run:
template, amplitudes, calibration; the figures' data), `stage` (what the workflow rules read, call
and write)."""
