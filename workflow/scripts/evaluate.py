"""Rule evaluate: metrics, targets table and figures of a cleaning model on a held-out simulated set."""
from cryopipe.cleaning.universal import model_cutoff, resolve_model
from cryopipe.cleaning.evaluate import evaluate_model
from cryopipe.io.stores import load_store
from cryopipe.runner import step

sm = snakemake  # noqa: F821 (provided by Snakemake)

with step("evaluate", sm.log[0], threads=sm.threads) as log:
    model, meta = resolve_model(sm.input.model)
    test = load_store(sm.input.test, "simset")
    cutoff = model_cutoff(meta, sm.params.cutoff)
    result = evaluate_model(model, meta, {"detector": test}, sm.output[0], cutoff=cutoff)
    c = result["classification"]
    log.info("model %s on %s: balanced accuracy %.4f, recall %.4f, precision %.4f", sm.wildcards.model,
             sm.input.test, c["balanced_accuracy"], c["recall"], c["precision"])
