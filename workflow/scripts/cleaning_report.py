"""Rule cleaning_report: amplitude spectra raw / after cuts / after a model, and the PCA manifold before and after."""
from cryopipe.cleaning.stage import run_cleaning_report
from cryopipe.runner import step

sm = snakemake  # noqa: F821 (provided by Snakemake)

with step("cleaning_report", sm.log[0], threads=sm.threads) as log:
    run_cleaning_report(records=sm.input.records, features=sm.input.features, labels=sm.input.labels,
                        predictions=sm.input.predictions, output=sm.output[0], run=sm.wildcards.run,
                        model=sm.wildcards.model, max_pca_events=sm.params.max_pca_events, log=log)
