"""Labels stage: the config's cut set (`cryopipe.cuts.language`) applied to a run's features, and
on runs with test pulses the stability cut ANDed in.

What the rule reads, calls and writes: plain config dicts and store paths in; no Snakemake here.
"""
from __future__ import annotations

from cryopipe.cuts.language import and_stable, apply_cuts
from cryopipe.io.stores import load_store, write_store


def run_labels(*, features: str, testpulse: str | None, output: str, cuts: dict, log) -> None:
    """Rule labels: one flag per cut and ``accepted`` for every channel and event of the run's
    features store; with a "testpulse" store (None: none) its ``stable`` flag too, ANDed into
    ``accepted``."""
    ds = apply_cuts(load_store(features, "features"), cuts=cuts)
    ds.attrs["inputs"] = [str(features)]
    if testpulse:  # runs with test pulses: the stability cut, kept as a flag and ANDed in
        ds = and_stable(ds, load_store(testpulse, "testpulse")["stable"])
        ds.attrs["inputs"] = [str(features), str(testpulse)]
    for ch in ds.channel.values:
        acc = ds["accepted"].sel(channel=ch)
        log.info("channel %s: %d of %d records pass all cuts", ch, int(acc.sum()), acc.size)
    write_store(ds, output, "labels")
