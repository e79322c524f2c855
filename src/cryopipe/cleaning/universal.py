"""The shipped universal cleaning model: a CNN trained only on cryopipe's universal simulation.

The weights (``cryopipe/models/universal.pt`` + ``universal.json``, package data) come from
``bench/train_universal.py``: records of every event class of Cait's Box 1 from
`cryopipe.simulate.records.simulate_universal_records` (pulse shape, noise, resolution,
saturation, ADC step and sample frequency drawn per record), several record lengths, all
preprocessed to 512 samples; a multi-class head (one logit per event class) whose binary
score is the summed probability of the accepted classes (`cleaning.models.scores_from_logits`).
"""
from __future__ import annotations

from importlib import resources
from pathlib import Path

from ..errors import InputError
from .models import Classifier
from .train import load_model

UNIVERSAL = "universal"


def universal_path() -> Path:
    """Path of the shipped universal checkpoint (.pt; its .json meta lies beside it)."""
    return Path(str(resources.files("cryopipe") / "models" / f"{UNIVERSAL}.pt"))


def load_universal(device=None) -> tuple[Classifier, dict]:
    """The shipped universal model (eval mode) and its meta (class names, accepted classes, training config)."""
    path = universal_path()
    if not path.is_file():
        raise InputError(f"{path}: the shipped universal model is missing; run bench/train_universal.py")
    return load_model(path, device)


def resolve_model(spec: str | Path, device=None) -> tuple[Classifier, dict]:
    """A model from ``"universal"`` (the shipped weights) or the path of a checkpoint (x.pt with x.json)."""
    if str(spec) == UNIVERSAL:
        return load_universal(device)
    path = Path(spec)
    if path.suffix not in (".pt", ""):
        raise InputError(f"{path}: a model is 'universal' or a checkpoint path x.pt (with x.json beside it)")
    return load_model(path, device)
