"""Efficiency stage: trigger and cut efficiency of one channel from SEV pulses injected onto the run's
noise records, featured by the same feature families as the features stage.

What each rule reads, calls and writes (the maths: `cryopipe.efficiency.injection`): plain config
dicts and store paths in; no Snakemake here.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import xarray as xr

from cryopipe.io.stores import gather_channel_stores, provenance
from cryopipe.characterize.channel import channel_traces
from cryopipe.cuts.language import cut_feature_names


def efficiency_channel(records: xr.Dataset, characterization: xr.Dataset, cuts: dict, cfg: dict,
                       *, kev_per_volt: float | None = None, plugins: Sequence = (),
                       features: xr.Dataset | None = None) -> xr.Dataset:
    """Trigger and cut efficiency of one channel: the SEV scaled to amplitudes over the run's whole
    range (:func:`injected_amplitudes`: the turn-on in resolution steps, then up to the largest pulse
    of the run), injected onto the run's noise records, triggered as the final pass does
    (shift-searched OF amplitude >= threshold), featured (the families of `cryopipe.features` that
    provide the features the cuts use, user `plugins` included) and cut with `cuts`. `features`: the
    channel's features store (its pulse heights set the top of the range). The injected shape is
    the SEV with a flat pre-trigger (:func:`injection_template`); it does not saturate, so the points
    above the channel's saturation show what the cuts do to an unsaturated pulse of that height."""
    from cryopipe.cuts.language import apply_cuts
    from cryopipe.efficiency.injection import efficiency_curve, injected_amplitudes, injection_template
    from cryopipe.features.context import ChannelContext
    from cryopipe.features.registry import compute_block, default_families, families_for

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
    amps = injected_amplitudes(res, records, cfg, features=features)

    def cut(traces, feats):
        ds = xr.Dataset({k: (("channel", "event"), np.asarray(v)[None]) for k, v in feats.items()},
                        coords={"channel": [ch]}, attrs={"sample_frequency": fs, "record_length": n})
        ds["record_kind"] = ("event", np.full(len(traces), "particle"))
        return apply_cuts(ds, cuts=cuts)["accepted"].values[0]

    from cryopipe.io.stores import record_pretrigger

    curve = efficiency_curve(of, injection_template(ctx.sev, record_pretrigger(records)), noise, amps, threshold, cut=cut, n_per_amplitude=int(cfg["n_per_amplitude"]),
                             sample_frequency=fs, rng=np.random.default_rng(int(cfg["seed"])),
                             kev_per_volt=kev_per_volt, features=lambda tr: compute_block(tr, ctx, families))
    per_channel = {k: ("channel", [float(v)]) for k, v in curve.attrs.items() if k not in ("units", "n_per_amplitude")}
    # amplitudes differ per channel (they scale with its resolution): index the curve by point
    curve = curve.assign_coords(point=("amplitude", np.arange(curve.sizes["amplitude"]))).swap_dims(amplitude="point")
    curve = curve.reset_coords([c for c in ("amplitude", "energy") if c in curve.coords])
    curve = curve.expand_dims(channel=[ch]).transpose("channel", "point").assign(per_channel)
    curve.attrs = provenance("efficiency", parameters=cfg, inputs=[], units="V",
                             n_per_amplitude=int(cfg["n_per_amplitude"]))
    return curve


def run_efficiency_channel(*, records: str, characterization: str, features: str, calibration: str | None,
                           output: str, channel: str, cuts: dict, params: dict, plugins, log) -> None:
    """Rule efficiency_channel: the channel's "efficiency" store (`efficiency_channel`) from the run's
    records and characterization, the channel's features and, where the run is calibrated, its
    calibration store (energies of the injected amplitudes; None or "": none). `plugins`: the
    feature plug-in files."""
    from cryopipe.features.plugins import load_plugins
    from cryopipe.io.stores import load_store, open_store, write_store

    recs = open_store(records, "records").sel(channel=[channel])
    char = load_store(characterization, "characterization")
    kev = None
    if calibration:
        kev = float(load_store(calibration, "calibration")["kev_per_volt"].sel(channel=channel))
    feats = open_store(features, "features")
    ds = efficiency_channel(recs, char, cuts, params, kev_per_volt=kev, plugins=load_plugins(plugins), features=feats)
    ds.attrs["inputs"] = [str(p) for p in (records, characterization, features, calibration, *plugins) if p]
    c = ds.isel(channel=0)
    log.info("channel %s: trigger 50 %% point %.3g V (threshold %.3g V), after cuts %.3g V", channel,
             c.trigger_x50, c.threshold, c.total_x50)
    write_store(ds, output, "efficiency")


def run_efficiency(*, parts: list, output: str, log) -> None:
    """Rule efficiency: the run's "efficiency" store, its channels' stores gathered."""
    ds = gather_channel_stores(parts, output, "efficiency")
    log.info("efficiency of %d channels", ds.sizes["channel"])


def run_plot_efficiency(*, efficiency: str, output: str, run: str, channel: str) -> None:
    """Rule plot_efficiency: trigger, cut and total efficiency of one channel against the injected
    amplitude (and energy, where calibrated), as a PNG file."""
    from cryopipe.efficiency.injection import channel_curve
    from cryopipe.io.stores import load_store
    from cryopipe.plots import plot_efficiency

    curve = channel_curve(load_store(efficiency, "efficiency"), channel=channel)
    plot_efficiency(curve, output, energy="energy" in curve.coords, label=f"{run} / {channel}")
