"""``python -m cryopipe.cleaning.evaluate``: the figures of the cleaning issue, by a protocol that
cannot flatter the model (`cleaning.protocol`).

Reported, for the model (``--model``: "universal" or a checkpoint) and a per-run model
(``--run-model``), on test sets only:

- the independent generator (`independent_sim`), two seeds (`protocol.TEST_SEEDS`): per-detector
  balanced accuracy (mean and worst), BA at SNR >= 10, pulse survival at SNR >= 10, pile-up
  survival of all its pile-ups and of the visible ones (the target's figure: label rule 2, every pulse
  adds >= 5 sigma_OF at its peak through the saturation and onsets >= 1.5 onset-to-peak times apart;
  the generator draws extra pulses >= 5 sigma_OF and >= N/64 apart, 69-85 % of them visible by seed),
  the survival of every other class, and survival per SNR bin (pooled);
- our own simulator, 20 random detectors, two seeds: the same figures (its pile_up class follows the
  simulator's label rules);
- real NIST TES records: ``regress_chan1.ljh`` + ``regress_noise_chan1.ljh`` with the stored hand
  labels (`real_labels`, a development check), and ``regress_chan3.ljh`` with the automatic
  labels of the same procedure (doubtful records left out; evaluation only; ``--model`` only: the
  per-run model is regress_chan1's run's); with ``--cut-labels`` also the pipeline's cut labels of
  the regress_chan1 run.

Nothing is selected here: the cutoff is the model's own (its meta) or ``--cutoff``; the command
prints which sets were used for what, including the selection set the model's meta names.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from ..errors import InputError
from . import protocol as pr

#: figure -> (comparison, threshold) of the cleaning issue (19); BA also has a worst-detector target
ISSUE_TARGETS = {
    "balanced_accuracy": (">=", 0.95),
    "balanced_accuracy_snr_ge_10": (">=", 0.98),
    "pulse_snr_ge_10": (">=", 0.98),
    "survival pile_up (visible)": ("<=", 0.05),
}
WORST_BA_TARGET = 0.85
OWN_BA_TARGET = 0.97
ARTEFACT_TARGET = 0.02
DEFAULT_NIST = "../shared/data/real/nist_mass"
SIZES = {"default": {"independent": (24, 100), "own": (20, 100)},
         "quick": {"independent": (6, 40), "own": (5, 40)}}


def summarise(rows: list[dict]) -> dict:
    """figure -> {mean, worst, worst_detector, n}; worst is the minimum for BA and accepted-class
    survival, the maximum for rejected-class survival."""
    keys = sorted({k for r in rows for k in r if k != "n_records"})
    out = {}
    for k in keys:
        v = np.array([r.get(k, np.nan) for r in rows], dtype=float)
        ok = np.isfinite(v)
        if not ok.any():
            continue
        rejected_survival = k.startswith("survival ") and k.split(" ", 1)[1] not in pr.ACCEPTED
        higher_is_worse = rejected_survival or k in ("ood_fraction", "unsure_fraction")
        i = int(np.nanargmax(v) if higher_is_worse else np.nanargmin(v))
        out[k] = {"mean": float(np.mean(v[ok])), "worst": float(v[i]), "worst_detector": i, "n": int(ok.sum())}
    return out


def evaluate_on_set(model, evalset: pr.EvalSet, cutoff: float, *, batch: int = 4096) -> dict:
    """Per-detector figures (`protocol.set_figures`), their summary and the pooled survival per SNR bin."""
    from .evaluate import snr_table

    if evalset.role != "test":
        raise InputError(f"{evalset.name}: the reported figures come from test sets only")
    scores = pr.score_set(model, evalset, batch=batch)
    rows = pr.set_figures(evalset, scores, cutoff)
    cls = np.concatenate([d["event_class"] for d in evalset.detectors])
    snr = np.concatenate([d["snr"] for d in evalset.detectors])
    score = np.concatenate([s["score"] for s in scores])
    return {"set": evalset.name, "seed": evalset.seed, "generator": evalset.generator, "cutoff": cutoff,
            "per_detector": rows, "summary": summarise(rows), "snr_table": snr_table(cls, snr, score, cutoff),
            "detectors": [d.get("info", {}) for d in evalset.detectors]}


def worst_detectors_markdown(results: list[dict], *, n: int = 3) -> list[str]:
    """Markdown lines: the `n` detectors of each seed with the lowest balanced accuracy, with what the
    generator drew for them (record length, sample frequency (Hz), pulse times (ms), saturation), so
    that a failure can be traced to a kind of detector."""
    lines = ["", f"Worst {n} detectors per seed (balanced accuracy; event_pulse survival at SNR >= 10; the detector):",
             "",
             "| seed | detector | BA | pulses SNR >= 10 | detector drawn |", "|---|---|---|---|---|"]
    for r in results:
        ba = np.array([row["balanced_accuracy"] for row in r["per_detector"]], dtype=float)
        infos = r.get("detectors") or [{}] * ba.size
        for i in np.argsort(ba, kind="stable")[:n]:
            info = ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in infos[i].items())
            lines.append(f"| {r['seed']} | {i} | {_fmt(ba[i])} | {_fmt(r['per_detector'][i]['pulse_snr_ge_10'])} | "
                         f"{info or '-'} |")
    return lines


def _fmt(x):
    return "-" if x is None or not np.isfinite(x) else f"{x:.3f}"


def generator_markdown(title: str, results: list[dict], *, own: bool = False) -> str:
    """Markdown: one column per seed (mean / worst detector), the issue's target and pass."""
    lines = [f"### {title}", "", f"{len(results[0]['per_detector'])} detectors per seed, cutoff {results[0]['cutoff']}; "
             "cells: mean over detectors / worst detector.", "",
             "| figure | " + " | ".join(f"seed {r['seed']}" for r in results) + " | target |",
             "|---|" + "---|" * (len(results) + 1)]
    keys = ["balanced_accuracy", "balanced_accuracy_snr_ge_10", "pulse_snr_ge_10", "survival pile_up (visible)",
            "survival pile_up"]
    keys += sorted(k for k in results[0]["summary"] if k.startswith("survival ") and k not in keys)
    keys += [k for k in ("ood_fraction", "unsure_fraction", "unsure_share_of_wrong") if k in results[0]["summary"]]
    for k in keys:
        cells = []
        for r in results:
            s = r["summary"].get(k)
            cells.append("-" if s is None else f"{_fmt(s['mean'])} / {_fmt(s['worst'])}")
        if k == "balanced_accuracy":
            goal = f">= {OWN_BA_TARGET} mean" if own else f">= 0.95 mean, >= {WORST_BA_TARGET} worst"
        elif k in ISSUE_TARGETS and not own:
            goal = " ".join(map(str, ISSUE_TARGETS[k]))
        elif k == "survival pile_up (visible)":
            goal = "<= 0.05"
        elif k == "survival pile_up":
            goal = "(all drawn; the target is on the visible ones)"
        elif k.startswith("survival ") and k.split(" ", 1)[1] not in pr.ACCEPTED:
            goal = f"<= {ARTEFACT_TARGET}"
        else:
            goal = ""
        lines.append(f"| {k} | " + " | ".join(cells) + f" | {goal} |")
    lines += ["", "Survival per SNR bin (pooled over detectors and seeds):", ""]
    table = {}
    for r in results:
        for cls, rows in r["snr_table"].items():
            acc = table.setdefault(cls, [[lo, hi, 0, 0] for lo, hi, _, _ in rows])
            for a, (_, _, s, t) in zip(acc, rows):
                a[2] += s
                a[3] += t
    first = next(iter(table.values()))
    lines += ["| class | " + " | ".join(f"{lo:g}-{hi:g}" for lo, hi, _, _ in first) + " |",
              "|---|" + "---|" * len(first)]
    for cls, rows in table.items():
        lines.append(f"| {cls} | " + " | ".join(f"{s / t:.3f} ({t})" if t else "-" for _, _, s, t in rows) + " |")
    lines += worst_detectors_markdown(results)
    return "\n".join(lines) + "\n"


def real_data_section(models: dict, nist_dir: Path, *, labels_path=None, cut_labels=None, batch: int = 1024,
                      eval_models: dict | None = None) -> dict:
    """Decisions on the NIST files (`real_eval.decision_figures`) of each model in `models`
    (name -> (model, cutoff)) and of the cut labels store `cut_labels` (regress_chan1's run).

    `eval_models` (default `models`) are the models reported on the evaluation-only file: a per-run
    model belongs to regress_chan1's run, and one trained on regress_chan3's own SEV and noise
    would be trained on the evaluation file, so none is reported there.

    Returns {"markdown": str, "results": {file -> {name -> figures}}}; a missing data folder gives
    a note instead of figures."""
    from . import real_eval as re_
    from . import real_labels as rl

    nist_dir = Path(nist_dir)
    out, md = {}, ["## Real TES records (NIST)", ""]
    if not nist_dir.is_dir():
        md.append(f"{nist_dir}: no such folder; real-data figures skipped (`--nist-dir`).\n")
        return {"markdown": "\n".join(md), "results": out}
    labels = rl.load_label_file(path=labels_path)
    dev = ("regress_chan1.ljh", "regress_noise_chan1.ljh")
    for name in dev:
        path = nist_dir / name
        entry = labels["files"].get(name)
        if entry is None or not path.is_file():
            md.append(f"{name}: missing file or labels, skipped.\n")
            continue
        if rl.sha256_of(path) != entry["sha256"]:
            raise InputError(f"{path}: differs from the file the hand labels were made on (SHA-256)")
        x, pre, _ = rl.read_ljh_records(path)
        out[name] = {}
        md.append(f"### {name}: hand labels ({entry['counts']}; development check, not a test set)\n")
        for mname, (model, cutoff) in models.items():
            f = re_.evaluate_real_file(model, x, pre, entry["event_class"], cutoff, batch=batch)
            out[name][mname] = f
            md.append(re_.format_figures(f"{mname}, cutoff {cutoff}, pretrigger {pre}", f))
        if name == dev[0] and pre != x.shape[1] // 4:            # what a caller who ignores the pretrigger gets
            mname, (model, cutoff) = next(iter(models.items()))
            f = re_.evaluate_real_file(model, x, None, entry["event_class"], cutoff, batch=batch)
            out[name][f"{mname} (pretrigger not passed)"] = f
            md.append(re_.format_figures(f"{mname}, cutoff {cutoff}, pretrigger NOT passed (N/4 = {x.shape[1] // 4} "
                                         "assumed)", f))
            from .trigger_check import run_rise_sample, trigger_mismatch

            said = trigger_mismatch(run_rise_sample(x), x.shape[1], None, what=name)
            f["run_warning"] = said
            md.append(f"- the run's warning (`cryopipe predict`, `cleaning.trigger_check`): {said or 'none'}\n")
        if cut_labels is not None:
            # the run's labels store holds regress_chan1's records, then (noise_ljh) the noise file's
            from ..io.stores import open_store

            acc = np.asarray(open_store(cut_labels, "labels")["accepted"].values)[0]
            n = len(entry["event_class"])
            first = 0 if name == dev[0] else len(labels["files"][dev[0]]["event_class"])
            if name == dev[0] and acc.size < n:
                raise InputError(f"{cut_labels}: {acc.size} events, but {name} has {n} records")
            if acc.size < first + n:      # a run without the noise file: no cut labels for it
                continue
            # on the noise file the cuts answer "a clean noise record?", not "a clean pulse?"
            means = "clean_pulse" if name == dev[0] else "clean_noise"
            f = re_.decision_figures(entry["event_class"], acc[first:first + n], accepted_means=means)
            out[name]["cut labels"] = f
            md.append(re_.format_figures(f"cut labels ({cut_labels}; accepted = {means.replace('_', ' ')})", f))
    for name in pr.EVALUATION_ONLY_FILES:
        path = nist_dir / name
        if not path.is_file():
            md.append(f"{name}: missing, skipped.\n")
            continue
        auto = rl.automatic_labels(path)
        x, pre, _ = rl.read_ljh_records(path)
        cats = [rl.category(c) for c in auto["event_class"][~auto["doubtful"]]]
        md.append(f"### {name}: AUTOMATIC labels of the same procedure (evaluation only; "
                  f"{cats.count('clean_pulse')} clean pulses, {cats.count('rejected')} rejected, "
                  f"{int(auto['doubtful'].sum())} doubtful left out)\n")
        out[name] = {}
        for mname, (model, cutoff) in (models if eval_models is None else eval_models).items():
            f = re_.evaluate_real_file(model, x, pre, auto["event_class"], cutoff, batch=batch,
                                       exclude=auto["doubtful"])
            out[name][mname] = f
            md.append(re_.format_figures(f"{mname}, cutoff {cutoff}, pretrigger {pre}", f))
    return {"markdown": "\n".join(md), "results": out}


def sets_statement(meta: dict, seeds: dict, real: bool) -> str:
    """Which sets were used for what (markdown)."""
    sel = meta.get("selection_set") or meta.get("calibration_set") or meta.get("cutoff_rule")
    lines = ["## Sets used", "",
             f"- Test (reported here, never used to select): independent generator seeds {list(seeds['independent'])}, "
             f"our simulator seeds {list(seeds['own'])}"
             + (", regress_chan3.ljh (automatic labels)." if real else "."),
             "- Development check (hand labels, may guide development, not a test): regress_chan1.ljh + "
             "regress_noise_chan1.ljh." if real else "- Real data: skipped.",
             f"- Selection (checkpoint and cutoff, by the training script, `protocol.select_checkpoint`): "
             f"{sel if sel else 'not recorded in the model meta'}; nothing is selected by this command "
             f"(cutoff: the model's own or --cutoff)."]
    return "\n".join(lines) + "\n"


def run(*, model_spec="universal", run_model=None, cut_labels=None, nist_dir=DEFAULT_NIST, labels=None, quick=False,
        seeds=None, cutoff=None, independent_detectors=None, own_detectors=None, per_class=None, record_length=4096,
        out=None, batch=4096) -> dict:
    """Everything of the command (module doc); returns {"markdown", "independent", "own", "real"}."""
    from .universal import model_cutoff, resolve_model

    t0 = time.perf_counter()
    size = SIZES["quick" if quick else "default"]
    seeds = seeds or pr.TEST_SEEDS
    models, metas = {}, {}
    for name, spec in (("model", model_spec), ("per-run model", run_model)):
        if spec is None:
            continue
        m, meta = resolve_model(spec)
        label = f"{name} {meta.get('name', spec) if spec == 'universal' else spec}"
        models[label] = (m, model_cutoff(meta, cutoff=cutoff))
        metas[label] = meta
    n_ind, k_ind = size["independent"]
    n_own, k_own = size["own"]
    n_ind = n_ind if independent_detectors is None else independent_detectors
    n_own = n_own if own_detectors is None else own_detectors
    k_ind = k_own = per_class or None
    k_ind = k_ind or size["independent"][1]
    k_own = k_own or size["own"][1]
    md = ["# Cleaning evaluation (issue 19 protocol)", ""]
    res = {"independent": {}, "own": {}}
    for gen, build, n, k in (("independent", lambda s: pr.independent_set(s, n_detectors=n_ind, n_per_class=k_ind),
                              n_ind, k_ind),
                             ("own", lambda s: pr.own_set(s, n_detectors=n_own, n_per_class=k_own,
                                                          record_length=record_length), n_own, k_own)):
        if n <= 0:
            continue
        t = time.perf_counter()
        sets = [build(s) for s in seeds[gen]]
        t_sim = time.perf_counter() - t
        for label, (m, cut) in models.items():
            rs = [evaluate_on_set(m, s, cut, batch=batch) for s in sets]
            res[gen][label] = rs
            title = ("Independent generator (cleaning.independent_sim)" if gen == "independent"
                     else "Our simulator, random detectors (detector mode)")
            md.append(generator_markdown(f"{title}: {label}", rs, own=gen == "own"))
        md.append(f"({gen}: {sum(sum(len(d['event_class']) for d in s.detectors) for s in sets)} records simulated "
                  f"in {t_sim:.0f} s)\n")
    real = None
    if nist_dir:
        first = next(iter(models))
        real = real_data_section(models, Path(nist_dir), labels_path=labels, cut_labels=cut_labels,
                                 eval_models={first: models[first]})
        md.append(real["markdown"])
    md.append(sets_statement(next(iter(metas.values())), seeds, real is not None and bool(real["results"])))
    md.append(f"Wall time {time.perf_counter() - t0:.0f} s.")
    text = "\n".join(md) + "\n"
    if out:
        o = Path(out)
        o.mkdir(parents=True, exist_ok=True)
        (o / "protocol.md").write_text(text)
        (o / "protocol.json").write_text(json.dumps({"independent": res["independent"], "own": res["own"],
                                                     "real": None if real is None else real["results"]},
                                                    indent=1, default=float))
    return {"markdown": text, **res, "real": None if real is None else real["results"]}


def add_arguments(ap) -> None:
    """The protocol's command-line options."""
    ap.add_argument("--model", default="universal", help="'universal' or a checkpoint path x.pt")
    ap.add_argument("--run-model", default=None,
                    help="the per-run model checkpoint (x.pt) of the regress_chan1 run, reported beside --model")
    ap.add_argument("--cut-labels", default=None, help="labels store (labels.zarr) of the regress_chan1 run")
    ap.add_argument("--nist-dir", default=DEFAULT_NIST, help="folder of the NIST LJH files ('' to skip)")
    ap.add_argument("--hand-labels", default=None, help="labels file (default: the stored NIST hand labels)")
    ap.add_argument("--quick", action="store_true", help="6 + 5 detectors of 40 records per class per seed")
    ap.add_argument("--independent-detectors", type=int, default=None, help="per seed (default 24, quick 6)")
    ap.add_argument("--own-detectors", type=int, default=None, help="per seed (default 20, quick 5)")
    ap.add_argument("--detector-per-class", type=int, default=None, help="records per class and detector")
    ap.add_argument("--record-length", type=int, default=4096, help="samples of our simulator's records")
    ap.add_argument("--cutoff", type=float, default=None, help="decision cutoff (default: the model's own)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    ap.add_argument("--out", default="results/report/universal_evaluation", help="folder for protocol.md/json")


def main(*, argv=None) -> dict:
    """``python -m cryopipe.cleaning.evaluate``: the issue-19 protocol (`cleaning.evaluate_cli`): independent
    generator and our simulator (two test seeds each) and the NIST real-data figures; ``--standard`` adds
    the CRESST-style standard test sets (recall vs SNR, IOR, IOS; slow at default sizes)."""
    import argparse

    import torch

    from .evaluate import CUTOFF, build_test_sets, evaluate_model
    from .universal import resolve_model

    ap = argparse.ArgumentParser(prog="python -m cryopipe.cleaning.evaluate", description=main.__doc__)
    add_arguments(ap)
    ap.add_argument("--standard", action="store_true", help="also the standard test sets (tens of minutes)")
    ap.add_argument("--skip-standard", action="store_true", help="(default now; kept for old command lines)")
    ap.add_argument("--n-per-class", type=int, default=2000, help="standard: records per class in each mixed set")
    ap.add_argument("--pulses", type=int, default=50_000, help="standard: event_pulse records (SNR 3-300)")
    ap.add_argument("--pileups", type=int, default=50_000, help="standard: two-pulse pile-ups")
    ap.add_argument("--seed", type=int, default=1000, help="standard: seed of the standard test sets")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    result = run(model_spec=args.model, run_model=args.run_model, cut_labels=args.cut_labels, nist_dir=args.nist_dir,
                 labels=args.hand_labels, quick=args.quick,
                              cutoff=args.cutoff, independent_detectors=args.independent_detectors,
                              own_detectors=args.own_detectors, per_class=args.detector_per_class,
                              record_length=args.record_length, out=args.out)
    print(result["markdown"])
    if not args.standard or args.skip_standard:
        return result
    t0 = time.perf_counter()
    model, meta = resolve_model(args.model)
    cutoff = float(args.cutoff if args.cutoff is not None else meta.get("cutoff", CUTOFF))
    sets = build_test_sets(args.n_per_class, args.pulses, args.pileups, record_length=args.record_length,
                           seed=args.seed)
    t1 = time.perf_counter()
    result["standard"] = evaluate_model(model, meta, sets, args.out, cutoff=cutoff)
    print((Path(args.out) / "targets.md").read_text())
    print(f"simulated {sum(s.sizes['event'] for s in sets.values())} records in {t1 - t0:.0f} s, "
          f"evaluated in {time.perf_counter() - t1:.0f} s; figures and tables in {args.out}")
    return result
