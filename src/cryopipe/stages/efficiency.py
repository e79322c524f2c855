"""Efficiency stage: trigger and cut efficiency of one channel from SEV pulses injected onto the run's
noise records, featured by the same feature families as the features stage.

Stage entry points for the workflow scripts and the CLI: plain config dicts in, Datasets
ready for cryopipe.io.stores out; no Snakemake here.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import xarray as xr

from ..io.stores import provenance
from .characterize import channel_traces


def cut_feature_names(cuts: Mapping) -> set[str]:
    """Every feature a cut set refers to (ranges' ``feature``, polygons' ``x`` and ``y``)."""
    names: set[str] = set()

    def walk(node):
        if isinstance(node, Mapping):
            if isinstance(node.get("feature"), str):
                names.add(node["feature"])
            poly = node.get("polygon")
            if isinstance(poly, Mapping):
                names.update(v for k, v in poly.items() if k in ("x", "y") and isinstance(v, str))
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(cuts)
    return names


def efficiency_channel(records: xr.Dataset, characterization: xr.Dataset, cuts: dict, cfg: dict,
                       kev_per_volt: float | None = None, plugins: Sequence = ()) -> xr.Dataset:
    """Trigger and cut efficiency of one channel: the SEV scaled to amplitudes from 0.5 to
    `max_resolutions` x the resolution, injected onto the run's noise records, triggered as the final
    pass does (shift-searched OF amplitude >= threshold), featured (the families of `cryopipe.features`
    that provide the features the cuts use, user `plugins` included) and cut with `cuts`."""
    from ..cuts import apply_cuts
    from ..efficiency import efficiency_curve
    from ..features import ChannelContext, compute_block, default_families, families_for

    ch = str(records["channel"].values[0])
    char = characterization.sel(channel=[ch])
    ctx = ChannelContext.from_stores(records, characterization, ch)
    of = ctx.optimum_filter()
    families = families_for(cut_feature_names(cuts), default_families(True) + list(plugins))
    fs = float(records.attrs["sample_frequency"])
    n = int(records.attrs["record_length"])
    kind = np.array([str(k) for k in records["record_kind"].values])
    noise = channel_traces(records, kind == "noise", 2000, np.random.default_rng(1))
    threshold = float(char["threshold"].values[0])
    res = float(char["resolution"].values[0])
    amps = np.linspace(0.5, float(cfg["max_resolutions"]), int(cfg["n_amplitudes"])) * res

    def cut(traces, feats):
        ds = xr.Dataset({k: (("channel", "event"), np.asarray(v)[None]) for k, v in feats.items()},
                        coords={"channel": [ch]}, attrs={"sample_frequency": fs, "record_length": n})
        ds["record_kind"] = ("event", np.full(len(traces), "particle"))
        return apply_cuts(ds, cuts)["accepted"].values[0]

    curve = efficiency_curve(of, ctx.sev, noise, amps, threshold, cut=cut, n_per_amplitude=int(cfg["n_per_amplitude"]),
                             sample_frequency=fs, rng=np.random.default_rng(int(cfg["seed"])),
                             kev_per_volt=kev_per_volt, features=lambda tr: compute_block(tr, ctx, families))
    per_channel = {k: ("channel", [float(v)]) for k, v in curve.attrs.items() if k not in ("units", "n_per_amplitude")}
    # amplitudes differ per channel (they scale with its resolution): index the curve by point
    curve = curve.assign_coords(point=("amplitude", np.arange(curve.sizes["amplitude"]))).swap_dims(amplitude="point")
    curve = curve.reset_coords([c for c in ("amplitude", "energy") if c in curve.coords])
    curve = curve.expand_dims(channel=[ch]).transpose("channel", "point").assign(per_channel)
    curve.attrs = provenance("efficiency", cfg, [], units="V", n_per_amplitude=int(cfg["n_per_amplitude"]))
    return curve
