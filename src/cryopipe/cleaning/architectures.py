"""The registry of cleaning models, torch-free so that the workflow and the config schema read it
at start-up: each trainable architecture's class in `cryopipe.cleaning.models` and its Adam
learning rate, and the shipped universal checkpoint.

Learning rates: CRESST paper Table 7; Cait CNN: Cait paper section 3.2; cnn_full as cnn; resnet 1e-3
(Adam's default; with BatchNorm; the universal recipe anneals it with a one-cycle schedule).
"""
from __future__ import annotations

from importlib import resources
from pathlib import Path

#: name -> (class name in cryopipe.cleaning.models, Adam learning rate)
ARCHITECTURES = {
    "cnn": ("CresstCNN", 5e-4),
    "cnn_full": ("FullWindowCNN", 5e-4),
    "lstm": ("CresstLSTM", 1e-4),
    "tscn": ("TSCN", 5e-5),
    "tst": ("TST", 1e-5),
    "cait_cnn": ("CaitCNN", 1e-3),
    "resnet": ("ResNet1D", 1e-3),
}

#: the shipped model's name (config `cleaning.models`) and checkpoint stem
UNIVERSAL = "universal"

#: every name `cleaning.models` accepts
MODEL_NAMES = (UNIVERSAL, *ARCHITECTURES)


def universal_path() -> Path:
    """Path of the shipped universal checkpoint (.pt; its .json meta lies beside it)."""
    return Path(str(resources.files("cryopipe") / "models" / f"{UNIVERSAL}.pt"))
