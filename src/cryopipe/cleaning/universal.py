"""The shipped universal cleaning model: a CNN trained only on cryopipe's universal simulation.

The weights (``cryopipe/models/universal.pt`` + ``universal.json``, package data) come from
``tools/release/train_universal.py``: records of every event class of Cait's Box 1 from
`cryopipe.simulate.records.simulate_universal_records` (pulse shape, noise, resolution,
saturation, ADC step and sample frequency drawn per record), several record lengths, all
preprocessed to 512 samples; a multi-class head (one logit per event class) whose binary
score is the summed probability of the accepted classes (`cleaning.models.scores_from_logits`).
"""
from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..io.record_files import input_pretrigger, iter_record_blocks
from .architectures import UNIVERSAL, universal_path
from .models import Classifier
from .train import load_model



def load_universal(*, device=None) -> tuple[Classifier, dict]:
    """The shipped universal model (eval mode) and its meta (class names, accepted classes, training config)."""
    path = universal_path()
    if not path.is_file():
        raise InputError(f"{path}: the shipped universal model is missing; run tools/release/train_universal.py")
    return load_model(path, device=device)


def resolve_model(spec: str | Path, *, device=None) -> tuple[Classifier, dict]:
    """A model from ``"universal"`` (the shipped weights) or the path of a checkpoint (x.pt with x.json).

    A model whose meta holds a ``temperature`` (`cleaning.calibration`) carries it, and its
    ``ood_threshold``, as attributes: predictions then add calibrated probabilities and OOD scores.
    """
    if str(spec) == UNIVERSAL:
        return _with_calibration(*load_universal(device=device), universal_path())
    path = Path(spec)
    if path.suffix not in (".pt", ""):
        raise InputError(f"{path}: a model is 'universal' or a checkpoint path x.pt (with x.json beside it)")
    return _with_calibration(*load_model(path, device=device), path)


def _with_calibration(model, meta, path=None):
    """Attach the meta's temperature and OOD thresholds, and the feature density beside `path`."""
    from .calibration import load_feature_density

    if meta.get("temperature") is not None:
        model.temperature = float(meta["temperature"])
        model.ood_threshold = float(meta.get("ood_threshold", np.nan))
        density = load_feature_density(path) if path is not None else None
        if density is not None and meta.get("ood_feature_threshold") is not None:
            model.ood_density = density
            model.ood_feature_threshold = float(meta["ood_feature_threshold"])
    return model, meta


def model_cutoff(meta: dict, *, cutoff: float | None = None) -> float:
    """The cutoff to use: `cutoff` if given, else the model's own (its checkpoint meta), else 0.5."""
    if cutoff is not None:
        return float(cutoff)
    value = meta.get("cutoff")
    return 0.5 if value is None else float(value)


def signed_record_blocks(path: str | Path, *, events_per_block: int = 8192, invert: bool = False):
    """`iter_record_blocks`, times -1 where `invert`."""
    blocks = iter_record_blocks(path, events_per_block=events_per_block)
    yield next(blocks)
    for sl, x in blocks:
        yield sl, (-x if invert else x)


def file_run_sample(path: str | Path, *, events_per_block: int = 8192,
                    pretrigger: int | None = None, invert: bool = False) -> np.ndarray:
    """Up to `lines.MAX_RUN_SAMPLE` evenly spaced records (..., k, N) of every run (channel) of a
    records input, read in one pass over its blocks: what is looked at once per run (line pickup,
    where the pulses rise). InputError for a file without records, records of fewer than 2 samples
    or a pretrigger outside them."""
    from .lines import MAX_RUN_SAMPLE
    from .preprocess import evenly_spaced

    blocks = signed_record_blocks(path, events_per_block=events_per_block, invert=invert)
    _, lead = next(blocks)
    if int(np.prod(lead)) == 0:
        raise InputError(f"{path}: holds no records (shape {tuple(lead)}); nothing to classify")
    keep = evenly_spaced(int(lead[-1]), MAX_RUN_SAMPLE)
    parts = []
    for sl, x in blocks:
        if x.shape[-1] < 2:
            raise InputError(f"{path}: records of {x.shape[-1]} sample(s) cannot be classified")
        if pretrigger is not None and not 0 < pretrigger < x.shape[-1] - 1:
            raise InputError(f"{path}: pretrigger {pretrigger} lies outside the records of {x.shape[-1]} samples")
        inside = keep[(keep >= sl.start) & (keep < sl.stop)] - sl.start
        parts.append(x[..., inside, :])
    return np.concatenate(parts, axis=-2)


def run_pulse_checks(sample) -> tuple[np.ndarray, np.ndarray]:
    """Per run of `sample` (..., k, N): (polarity of its pulses (+1, -1; 0 where unknown,
    `trigger_check.run_polarity`), the sample where most of them rise (NaN where unknown,
    `trigger_check.run_rise_sample`; found on the records times the polarity))."""
    from .trigger_check import run_polarity, run_rise_sample

    x = np.asarray(sample)
    polarity, rise = [], []
    for run in x.reshape(-1, x.shape[-2], x.shape[-1]):
        run = run[np.all(np.isfinite(run), axis=-1)]
        sign = run_polarity(run)
        value = run_rise_sample(run if sign != -1 else -run)
        polarity.append(sign or 0)
        rise.append(np.nan if value is None else value)
    return np.asarray(polarity, dtype=np.int64), np.asarray(rise, dtype=np.float64)


def predict_file(path: str | Path, model: Classifier, *, batch: int = 4096, events_per_block: int = 8192,
                 pretrigger: int | None = None, invert: bool = False) -> dict:
    """Scores of every record of a records store, Cait HDF5 file or .npz (see `iter_record_blocks`).

    pretrigger : trigger sample of the records (None: the input's own, i.e. a records store's
        ``pretrigger`` attr, else N//4).

    Returns score (leading shape, float32 in [0, 1]; NaN for records with NaN/inf samples, which
    are not scored), valid (leading shape, bool: False for those records) and, for a multi-class
    head, class_probability (leading shape + (n_classes,)) and class_names; a calibrated model adds
    probability, ood_score, feature_distance, ood and unsure (see `predict.predict_uncertainty`).
    line_frequencies (cycles per 512-sample window) and line_channel: the coherent line pickup found
    in the whole file and removed before the network (`cleaning.lines`); empty where none.
    pulse_polarity (per run: +1, -1, 0 where unknown) and rise_sample (per run, NaN where unknown):
    which way most of the run's pulses go and where they rise (`trigger_check`), to check the
    records against what the networks expect; n_samples: the record length N; constant (leading
    shape, bool): records whose samples are all equal (`predict.record_warnings`); pretrigger: the
    trigger sample used (N//4 where none was given) and pretrigger_declared: whether one was given.
    invert : multiply the records by -1 first (negative-going pulses; an LJH file's ``Inverted``
        header is applied already).
    """
    from .predict import is_calibrated, predict_scores, predict_uncertainty

    if pretrigger is None:
        pretrigger = input_pretrigger(path)
    from .preprocess import run_line_frequencies

    sample = file_run_sample(path, events_per_block=events_per_block, pretrigger=pretrigger, invert=invert)
    lines = run_line_frequencies(sample, pretrigger=pretrigger)
    blocks = signed_record_blocks(path, events_per_block=events_per_block, invert=invert)
    _, lead = next(blocks)
    score = np.empty(lead, dtype=np.float32)
    constant = np.zeros(lead, dtype=bool)
    multi = model.n_classes > 1
    probs = np.empty((*lead, model.n_classes), dtype=np.float32) if multi else None
    calibrated = is_calibrated(model)
    names = ("probability", "ood_score", "feature_distance", "ood", "unsure")
    extra = {k: np.empty(lead, dtype=bool if k in ("ood", "unsure") else np.float32)
             for k in names} if calibrated else {}
    for sl, x in blocks:   # the record length and pretrigger were checked by file_run_sample
        if calibrated:   # one forward pass: score, class probabilities, calibrated values and OOD
            u = predict_uncertainty(model, x, batch=batch, pretrigger=pretrigger, lines=lines)
            s, p = u["score"], u["class_probability"]
            for k in extra:
                extra[k][..., sl] = u[k]
        else:
            s, p = predict_scores(model, x, batch=batch, with_probabilities=True, pretrigger=pretrigger, lines=lines)
        score[..., sl] = s
        constant[..., sl] = np.all(x == x[..., :1], axis=-1)
        if multi:
            probs[..., sl, :] = p
    out = {"score": score, "valid": np.isfinite(score), "constant": constant, **extra}
    out["pretrigger"] = np.int64(sample.shape[-1] // 4 if pretrigger is None else pretrigger)   # the sample used
    out["pretrigger_declared"] = np.bool_(pretrigger is not None)   # by the input or --pretrigger (else N/4)
    out["line_frequencies"] = np.asarray([f for run in lines for f in run], dtype=np.float64)
    out["line_channel"] = np.asarray([c for c, run in enumerate(lines) for _ in run], dtype=np.int64)
    out["pulse_polarity"], out["rise_sample"] = run_pulse_checks(sample)
    out["n_samples"] = np.int64(sample.shape[-1])
    if calibrated:
        out["temperature"] = np.float64(model.temperature)
        out["ood_threshold"] = np.float64(model.ood_threshold)
        out["ood_feature_threshold"] = np.float64(getattr(model, "ood_feature_threshold", None) or np.nan)
    if multi:
        out["class_probability"] = probs
        out["class_names"] = np.asarray(model.class_names or [str(i) for i in range(model.n_classes)])
    return out
