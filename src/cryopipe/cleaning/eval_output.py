"""Tables and figures of the cleaning evaluation: targets (markdown, CSV, JSON) and the evaluation
figures (matplotlib, Agg)."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np


def write_tables(result: dict, out: Path, meta: dict) -> None:
    """targets.csv, targets.md, metrics_per_set.csv and metrics.json (scalars) in `out`."""
    rows = result["targets"]
    with open(out / "targets.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    c = result["classification"]
    lines = [f"# Cleaning model evaluation ({meta.get('name', meta.get('model', 'model'))}, cutoff {result['cutoff']})",
             "", f"Sets: {', '.join(result['sets'])}. Mixed-set records: {c['n_records']}; "
             f"SNR-curve pulses: {result['snr']['n_records']}; two-pulse pile-ups: {result['pileup']['n_records']}.",
             f"Recall {c['recall']:.4f}, selectivity {c['selectivity']:.4f}, precision {c['precision']:.4f}; "
             f"IOR over log10 SNR {result['snr']['ior_log10']:.4f}. IOS with the first pulse's SNR "
             f"log-uniform in 3-300 instead of uniform: {result['pileup']['ios_log_snr']:.4f}.",
             f"Prediction throughput {result['throughput']:,.0f} records/s ({result['n_scored']} records, "
             f"{result['torch_threads']} torch thread(s)).", "",
             "| target | value | goal | pass |", "|---|---|---|---|"]
    lines += [f"| {r['target']} | {r['value']:.4f} | {r['comparison']} {r['threshold']} | "
              f"{'yes' if r['passed'] else 'NO'} |" for r in rows]
    (out / "targets.md").write_text("\n".join(lines) + "\n")
    with open(out / "metrics_per_set.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["set", "n_records", "balanced_accuracy", "recall", "selectivity", "precision"])
        for name, m in result["per_set"].items():
            w.writerow([name, m["n_records"], m["balanced_accuracy"], m["recall"], m["selectivity"], m["precision"]])
    scalars = {"cutoff": result["cutoff"], "all_passed": result["all_passed"], "targets": rows,
               **{k: c[k] for k in ("balanced_accuracy", "recall", "selectivity", "precision", "n_records")},
               "ior_linear": result["snr"]["ior_linear"], "ior_log10": result["snr"]["ior_log10"],
               "ios": result["pileup"]["ios"], "ios_log_snr": result["pileup"]["ios_log_snr"],
               "survival": result["survival"],
               "throughput_records_per_s": result["throughput"]}
    (out / "metrics.json").write_text(json.dumps(scalars, indent=1, default=float))


def plot_all(result: dict, out: Path) -> list[Path]:
    """The evaluation figures (PNG) in `out`; returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []

    def save(fig, name):
        fig.savefig(out / name, dpi=110)
        plt.close(fig)
        paths.append(out / name)

    c = result["classification"]
    fig, ax = plt.subplots(figsize=(5, 3.6), constrained_layout=True)
    ax.plot(c["scan"]["cutoff"], c["scan"]["balanced_accuracy"], "o-", label="balanced accuracy")
    ax.plot(c["scan"]["cutoff"], c["scan"]["recall"], ".--", label="recall")
    ax.plot(c["scan"]["cutoff"], c["scan"]["selectivity"], ".--", label="selectivity")
    ax.axvline(result["cutoff"], color="grey", lw=0.8)
    ax.set(xlabel="cutoff", ylabel="metric")
    ax.legend()
    save(fig, "ba_vs_cutoff.png")

    fig, ax = plt.subplots(figsize=(5, 3.6), constrained_layout=True)
    ax.plot(c["pr_curve"]["recall"], c["pr_curve"]["precision"])
    ax.plot(c["recall"], c["precision"], "o", label=f"cutoff {result['cutoff']}")
    ax.set(xlabel="recall", ylabel="precision")
    ax.legend()
    save(fig, "precision_recall.png")

    curve = result["snr"]["curve"]
    fig, ax = plt.subplots(figsize=(5, 3.6), constrained_layout=True)
    ax.step(curve["edges"][:-1], curve["recall"], where="post")
    ax.axvline(5, color="grey", ls="--", lw=0.8)
    ax.set(xscale="log", xlabel="SNR (pulse height / sigma_OF)", ylabel="recall",
           title=f"IOR {result['snr']['ior_linear']:.4f}")
    save(fig, "recall_vs_snr.png")

    fig, ax = plt.subplots(figsize=(5.5, 3.8), constrained_layout=True)
    m = result["pileup"]["map"]
    if m is not None:
        mesh = ax.pcolormesh(m["onset_edges"], m["ratio_edges"], m["selectivity"].T, vmin=0, vmax=1)
        fig.colorbar(mesh, ax=ax, label="selectivity")
    ax.set(xlabel="onset difference / record length", ylabel="height ratio (second / first)",
           title=f"IOS {result['pileup']['ios']:.4f}")
    save(fig, "selectivity_map.png")

    names = sorted(result["survival"])
    fig, ax = plt.subplots(figsize=(6, 4), constrained_layout=True)
    ax.barh(names, [result["survival"][n][2] for n in names],
            color=["tab:green" if n in result["accepted_classes"] else "tab:red" for n in names])
    ax.set(xlabel="survival rate", xscale="symlog", xlim=(0, 1))
    ax.set_xscale("symlog", linthresh=0.01)
    save(fig, "survival.png")
    return paths
