"""Per-event features: one module per family, units declared once, one batch loop.

Families of records (each a pure function of a block (n_events, N) of one channel's records and the
channel's `ChannelContext`, returning named (n_events,) arrays; units in the module's ``UNITS``):

- `main` -- Cait's main and additional parameters (numba kernel)
- `optimum_filter` -- OF amplitude, chi2 and time shift (needs the characterisation)
- `shape` -- the shape features of the default cuts (needs the characterisation)
- `sev_fit` -- per-event standard-event fit (needs the characterisation)

and `energy` (the calibrated amplitude, added from a calibration store), `selection` (the pulse
features of the standard-event selection, not stored), `plugins` (user families from a Python file).
`features_dataset` runs them over a records store (the features stage); `compute_block` over an
in-memory block (the efficiency stage). To add a built-in feature: add it to its family's module
(value and ``UNITS`` entry); a new family is a module with ``UNITS`` and ``compute`` plus one line in
`registry.FAMILIES`.
"""
from .context import ChannelContext
from .dataset import PER_EVENT_VARIABLES, features_dataset
from cryopipe.calibrate.energy import add_energy
from .main import FEATURES, SMOOTHING_SAMPLES, compute_features
from .plugins import PluginError, file_hash, load_plugins
from .registry import (BY_NAME, FAMILIES, FEATURE_UNITS, Family, compute_block, default_families,
                       families_for)

__all__ = ["ChannelContext", "PER_EVENT_VARIABLES", "features_dataset", "add_energy", "FEATURES",
           "SMOOTHING_SAMPLES", "compute_features", "PluginError", "file_hash", "load_plugins", "BY_NAME",
           "FAMILIES", "FEATURE_UNITS", "Family", "compute_block", "default_families", "families_for"]
