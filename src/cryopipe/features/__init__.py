"""features: per-event features, one module per family, units declared once, one batch loop.

Families of records (each a pure function of a block (n_events, N) of one channel's records and the
channel's `context.ChannelContext`, returning named (n_events,) arrays; units in the module's ``UNITS``):
`main` (Cait's main and additional parameters, numba kernel), `optimum_filter` (OF amplitude, chi2
and time shift), `shape` (the shape features of the default cuts), `sev_fit` (per-event
standard-event fit; these three need the characterization), `plugins` (user families from a Python
file) and `energy` (`cryopipe.calibrate.energy`, added from a calibration store).
`dataset.features_dataset` runs them over a records store; `registry.compute_block` over an
in-memory block (the efficiency stage); `stage` holds what the workflow rules read, call and write.
To add a built-in feature: add it to its family's module (value and ``UNITS`` entry); a new family
is a module with ``UNITS`` and ``compute`` plus one line in `registry.FAMILIES`.

Import from the modules (``from cryopipe.features.dataset import features_dataset``): this package
imports nothing, so a job pays only for the families it uses.
"""
