"""Rule simulate_records: labelled records of every event class from a run's SEV and NPS."""
from cryopipe.io.stores import load_store, write_store
from cryopipe.cleaning.stage import simulate_run_records
from cryopipe.runner import step

sm = snakemake  # noqa: F821 (provided by Snakemake)

with step("simulate_records", sm.log[0], threads=sm.threads) as log:
    cfg = sm.params.simulate
    seed = int(cfg["seed"]) + (0 if sm.wildcards.split == "train" else 1_000_003)  # disjoint test set
    n = int(cfg["n_per_class"] if sm.wildcards.split == "train" else cfg["n_test_per_class"])
    ds = simulate_run_records(load_store(sm.input[0], "characterization"), n, seed,
                              (cfg["snr_min"], cfg["snr_max"]))
    ds.attrs["inputs"] = [str(sm.input[0])]
    log.info("%d labelled records (%d per class and channel)", ds.sizes["event"], n)
    write_store(ds, sm.output[0], "simset")
