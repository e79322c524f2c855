"""Rule features: gather a run's per-channel features; with a calibration, add energy (keV) and, for a
phonon + light module, the light yield."""
from cryopipe.features.stage import run_features
from cryopipe.runner import step

sm = snakemake  # noqa: F821 (provided by Snakemake)

with step("features", sm.log[0], threads=sm.threads) as log:
    run_features(parts=list(sm.input.parts), calibration=sm.input.calibration, output=sm.output[0],
                 roles=dict(sm.params.roles), inputs=list(sm.input), log=log)
