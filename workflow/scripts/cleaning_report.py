"""Rule cleaning_report: amplitude spectra raw / after cuts / after a model, and the PCA manifold before and after."""
import json
from pathlib import Path

from cryopipe.cleaning.report import cleaning_report
from cryopipe.io.stores import open_store
from cryopipe.plots import plot_cleaning_spectra, plot_pca_manifold
from cryopipe.runner import step

sm = snakemake  # noqa: F821 (provided by Snakemake)

with step("cleaning_report", sm.log[0], threads=sm.threads) as log:
    model = sm.wildcards.model
    rep = cleaning_report(open_store(sm.input.records, "records"), open_store(sm.input.features, "features"),
                          open_store(sm.input.labels, "labels"), open_store(sm.input.predictions, "predictions"),
                          max_pca_events=sm.params.max_pca_events)
    out = Path(sm.output[0])
    out.mkdir(parents=True, exist_ok=True)
    label = sm.wildcards.run
    plot_cleaning_spectra(rep["amplitude"], rep["cut_clean"], rep["model_clean"], out / "spectrum.png",
                          channels=rep["channels"], units=rep["units"], model=model, label=label)
    plot_pca_manifold(rep["pca"]["projection"], rep["model_clean"][rep["pca_events"]], out / "pca.png",
                      explained=rep["pca"]["explained_variance_ratio"], model=model, label=label)
    summary = {**rep["summary"], "model": model, "amplitude": rep["amplitude_name"],
               "pca_events": int(len(rep["pca_events"])),
               "pca_explained_variance_ratio": [float(v) for v in rep["pca"]["explained_variance_ratio"]]}
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    s = rep["summary"]
    for w in s.get("warnings", []):
        log.warning("%s on %s: %s", model, sm.wildcards.run, w)
    log.info("%s on %s: %d particle events, %d pass the cuts, %d the model, %d both (agreement %.3f)",
             model, sm.wildcards.run, s["events"], s["after_cuts"], s["after_model"], s["after_both"], s["agreement"])
