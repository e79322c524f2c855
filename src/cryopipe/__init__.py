"""cryopipe: raw-data pipeline for cryogenic particle detectors (TES calorimeters)."""

__version__ = "0.1.0"
