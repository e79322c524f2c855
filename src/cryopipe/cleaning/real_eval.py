"""Cleaning decisions on measured records against labels: kept, flagged unsure, silently wrong.

For every labelled record the model decides (score >= cutoff: kept) and, for a calibrated model,
says whether it is unfamiliar (``ood``: energy or feature distance above its threshold) or unsure
(``unsure``: calibrated P(clean) inside `calibration.UNSURE_BAND`). A record is

- *right* when kept and labelled clean pulse, or removed and labelled anything else;
- *flagged* when wrong but marked ``ood`` or ``unsure``;
- *silently wrong* when wrong and not marked.

`decision_figures` counts these per label category (`real_labels.category`): clean pulses kept,
clean pulses lost (flagged / silent), rejected records kept (flagged / silent), clean noise kept.
`evaluate_real_file` scores an LJH file with a model, passing the file's pretrigger to the
prediction (the model sees the trigger at 1/4 of its window, `preprocess.trigger_window`).
"""
from __future__ import annotations

import numpy as np

from ..errors import InputError
from .real_labels import category


def decision_figures(event_class, kept, *, ood=None, unsure=None, predicted_class=None,
                     accepted_means: str = "clean_pulse") -> dict:
    """Counts and fractions of the decisions against labelled classes.

    Parameters
    ----------
    event_class : (n,) Box-1 class per record (the labels)
    kept : (n,) bool, the model's (or the cuts') acceptance
    ood : (n,) bool flags of unfamiliar records, or None (no OOD score)
    unsure : (n,) bool flags of ambiguous decisions, or None; a wrong record is flagged by either
    predicted_class : (n,) the model's most probable class, optional
    accepted_means : the category an accepted record should have: "clean_pulse" (a cleaning model, or
        the cuts on pulse records) or "clean_noise" (the cuts on noise records, where passing means
        a clean noise record)

    Returns
    -------
    dict with n, and per category ("clean_pulse", "clean_noise", "rejected") a dict: n, kept,
    kept_fraction, lost_or_kept_wrongly (wrong decisions), wrong_flagged (ood or unsure), wrong_ood,
    wrong_unsure, wrong_silent (counts; for `accepted_means` the wrong ones are those not kept, for the
    others those kept), flagged_fraction_of_wrong,
    ood_fraction (of all records of the category), and predicted (class -> count) when given.
    Overall: right, flagged, silently_wrong, right_unsure (right decisions flagged unsure) (counts),
    ood_available, accepted_means.
    """
    if accepted_means not in ("clean_pulse", "clean_noise"):
        raise InputError(f"accepted_means: 'clean_pulse' or 'clean_noise', got {accepted_means!r}")
    cls = np.asarray(event_class).astype(str)
    keep = np.asarray(kept, bool)
    if keep.shape != cls.shape:
        raise InputError(f"decisions: {keep.shape} for {cls.shape} labels")
    is_ood = np.zeros(cls.shape, bool) if ood is None else np.asarray(ood, bool)
    is_unsure = np.zeros(cls.shape, bool) if unsure is None else np.asarray(unsure, bool)
    flag = is_ood | is_unsure
    cat = np.array([category(c) for c in cls])
    wrong = np.where(cat == accepted_means, ~keep, keep)
    out = {"n": int(cls.size), "ood_available": ood is not None, "accepted_means": accepted_means,
           "right": int(np.sum(~wrong)),
           "flagged": int(np.sum(wrong & flag)), "silently_wrong": int(np.sum(wrong & ~flag)),
           "right_unsure": int(np.sum(~wrong & is_unsure))}
    for c in ("clean_pulse", "clean_noise", "rejected"):
        m = cat == c
        n, w = int(m.sum()), wrong & m
        row = {"n": n, "kept": int(keep[m].sum()), "kept_fraction": float(keep[m].mean()) if n else float("nan"),
               "wrong": int(w.sum()), "wrong_flagged": int((w & flag).sum()), "wrong_silent": int((w & ~flag).sum()),
               "wrong_ood": int((w & is_ood).sum()), "wrong_unsure": int((w & is_unsure).sum()),
               "flagged_fraction_of_wrong": float((w & flag).sum() / w.sum()) if w.any() else float("nan"),
               "ood_fraction": float(is_ood[m].mean()) if n and ood is not None else float("nan")}
        if predicted_class is not None and n:
            names, counts = np.unique(np.asarray(predicted_class).astype(str)[m], return_counts=True)
            row["predicted"] = {str(a): int(b) for a, b in sorted(zip(names, counts), key=lambda t: -t[1])}
        out[c] = row
    return out


def model_decisions(model, records, pretrigger: int | None, cutoff: float, *, batch: int = 1024) -> dict:
    """kept (n,), ood (n,) or None, unsure (n,) or None, predicted_class (n,) or None of a model on (n, N) records.

    The records' trigger sample `pretrigger` is passed to the prediction (None: N//4)."""
    from .predict import predict_logits, predict_scores, uncertainty_from_logits

    x = np.asarray(records, dtype=np.float32)
    if model.n_classes == 1:
        s = predict_scores(model, x, batch=batch, pretrigger=pretrigger)
        return {"kept": s >= cutoff, "score": s, "ood": None, "unsure": None, "predicted_class": None}
    z = predict_logits(model, x, batch=batch, pretrigger=pretrigger)
    names = list(getattr(model, "class_names", None) or [str(i) for i in range(model.n_classes)])
    temp = getattr(model, "temperature", None)
    u = uncertainty_from_logits(z, model.accepted, temperature=temp if temp is not None else 1.0,
                                threshold=getattr(model, "ood_threshold", None) if temp is not None else None)
    return {"kept": u["score"] >= cutoff, "score": u["score"], "ood": u.get("ood"),
            "unsure": u["unsure"] if temp is not None else None,
            "predicted_class": np.asarray(names)[np.argmax(z, axis=-1)]}


def evaluate_real_file(model, records, pretrigger: int, event_class, cutoff: float, *, batch: int = 1024,
                       exclude=None) -> dict:
    """`decision_figures` of a model on labelled records; `exclude` (n,) bool leaves records out
    (e.g. doubtful automatic labels). Adds predicted-class counts of a multi-class model."""
    d = model_decisions(model, records, pretrigger, cutoff, batch=batch)
    keep = np.ones(len(event_class), bool) if exclude is None else ~np.asarray(exclude, bool)
    pred = None if d["predicted_class"] is None else d["predicted_class"][keep]
    out = decision_figures(np.asarray(event_class)[keep], d["kept"][keep],
                           ood=None if d["ood"] is None else d["ood"][keep],
                           unsure=None if d["unsure"] is None else d["unsure"][keep], predicted_class=pred)
    out["cutoff"] = float(cutoff)
    out["pretrigger"] = None if pretrigger is None else int(pretrigger)
    out["excluded"] = int((~keep).sum())
    return out


def format_figures(title: str, f: dict) -> str:
    """One markdown block of `decision_figures`."""
    lines = [f"**{title}** ({f['n']} records" + (f", {f['excluded']} doubtful left out" if f.get("excluded") else "")
             + ("" if f["ood_available"] else "; the model has no OOD score") + "):"]
    good = f.get("accepted_means", "clean_pulse")
    for c, what in (("clean_pulse", "clean pulses kept"), ("clean_noise", "clean noise kept"),
                    ("rejected", "rejected records kept")):
        r = f[c]
        if not r["n"]:
            continue
        wrong = "lost" if c == good else "kept"
        what += "" if c == good else " (wrongly)"
        text = (f"- {what}: {r['kept']}/{r['n']} = {r['kept_fraction']:.3f}; of the {r['wrong']} {wrong} wrongly: "
                f"{r['wrong_flagged']} flagged (ood {r.get('wrong_ood', r['wrong_flagged'])}, unsure "
                f"{r.get('wrong_unsure', 0)}), {r['wrong_silent']} silently")
        if "predicted" in r:
            text += "; most probable classes: " + ", ".join(f"{k} {v}" for k, v in list(r["predicted"].items())[:4])
        lines.append(text)
    lines.append(f"- overall: {f['right']} right ({f.get('right_unsure', 0)} of them flagged unsure), "
                 f"{f['flagged']} wrong but flagged ood or unsure, {f['silently_wrong']} silently wrong")
    return "\n".join(lines) + "\n"
