"""Features stage: what the rules features_channel and features read, call and write.

Every feature family runs on one channel's records (`cryopipe.features.dataset.features_dataset`,
the user's plug-ins after the built-in families); the gather adds the energy (keV) and, for a
phonon + light module, the light yield (`cryopipe.calibrate.energy`). No Snakemake here: paths,
plain config dicts and wildcard values in.
"""
from __future__ import annotations

from cryopipe.io.stores import concat_channels, load_store, open_store, write_store


def run_features_channel(*, records: str, characterization, output: str, channel: str, params: dict,
                         inputs: list, log) -> None:
    """Rule features_channel: the features of `channel` of the records store `records` (with the
    characterization store `characterization`, when given: empty or None for none) into `output`.

    `params` is the config's `features` section (plugins, fit_truncation, batch); `inputs` the
    rule's input paths, kept as provenance.
    """
    from cryopipe.features.dataset import features_dataset
    from cryopipe.features.plugins import load_plugins
    from cryopipe.runner import Progress

    recs = open_store(records, "records").sel(channel=[channel])
    char = load_store(characterization, "characterization") if characterization else None
    ds = features_dataset(recs, characterization=char, plugins=load_plugins(params.get("plugins", [])),
                          fit_truncation=params["fit_truncation"], batch=params["batch"],
                          progress=Progress(log, "features"))
    ds.attrs["inputs"] = [str(p) for p in inputs]
    write_store(ds, output, "features")


def run_features(*, parts: list, calibration, output: str, roles: dict, inputs: list, log) -> None:
    """Rule features: gather a run's per-channel feature stores `parts` into `output`; with the
    calibration store `calibration` (empty or None: none) add the energy (keV) and, where `roles`
    names a phonon and a light channel, the light yield."""
    ds = concat_channels([load_store(p, "features") for p in parts], inputs=list(inputs))
    if calibration:
        from cryopipe.calibrate.energy import add_energy, add_light_yield

        ds = add_energy(ds, load_store(calibration, "calibration"))
        if {"phonon", "light"} <= set(roles):
            ds = add_light_yield(ds, roles["phonon"], roles["light"])
    else:
        log.info("no calibration line configured (calibrate.line_energy): no energy%s in the features",
                 " and no light yield" if roles else "")
    write_store(ds, output, "features")
    log.info("features of %d channels x %d events", ds.sizes["channel"], ds.sizes["event"])
