"""Rule predict: a cleaning model's score and decision for every channel and event of a run."""
from cryopipe.cleaning.predict import predictions_dataset
from cryopipe.cleaning.universal import model_cutoff, resolve_model
from cryopipe.io.stores import open_store, write_store
from cryopipe.runner import step

sm = snakemake  # noqa: F821 (provided by Snakemake)

with step("predict", sm.log[0], threads=sm.threads) as log:
    model, meta = resolve_model(sm.input.model)
    records = open_store(sm.input.records, "records")
    cutoff = model_cutoff(meta, sm.params.cutoff)
    pretrigger = records.attrs.get("pretrigger")      # the records' trigger sample (None: N/4)
    particle = records["record_kind"].values.astype(str) == "particle"   # what the rate warnings count
    ds = predictions_dataset(model, records["trace"], sm.wildcards.model, cutoff=cutoff,
                             inputs=[str(p) for p in sm.input], pretrigger=pretrigger, particle=particle)
    ds = ds.assign(record_kind=records["record_kind"])
    log.info("model %s: %d of %d events clean (all channels accepted)", sm.wildcards.model,
             int(ds["event_clean"].sum()), ds.sizes["event"])
    write_store(ds, sm.output[0], "predictions")
