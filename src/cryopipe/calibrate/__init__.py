"""calibrate: `lines` (line fit, amplitude -> energy), `energy` (the energy and light-yield features),
`line_stats`, `figures` (the calibration figures' data), `stage` (what the workflow rules read, call
and write)."""
