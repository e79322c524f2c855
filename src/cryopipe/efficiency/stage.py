"""Efficiency stage: trigger and cut efficiency of one channel from SEV pulses injected onto the run's
noise records, featured by the same feature families as the features stage.

Stage entry points for the workflow scripts and the CLI: plain config dicts in, Datasets
ready for cryopipe.io.stores out; no Snakemake here.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import xarray as xr

from cryopipe.io.stores import provenance
from cryopipe.characterize.stage import channel_traces
from cryopipe.cuts.language import cut_feature_names


def injected_amplitudes(resolution: float, records: xr.Dataset, cfg: dict, features: xr.Dataset | None = None
                        ) -> np.ndarray:
    """Pulse heights (V) to inject: `n_amplitudes` evenly from 0.5 to `max_resolutions` x the
    `resolution` (V; the turn-on), then `n_high_amplitudes` (default 8) spaced evenly in log up to
    1.2 x the run's largest pulse in the channel, so that losses of large pulses show.

    The largest pulse: the largest ``pulse_height`` (V) of the channel's particle and saturated
    records in its `features` store (one channel); without one, the largest filter amplitude
    ``trigger_amplitude`` of those records (known only where the channel fired the trigger).
    """
    low = np.linspace(0.5, float(cfg["max_resolutions"]), int(cfg["n_amplitudes"])) * resolution
    source = features if features is not None else records
    name = "pulse_height" if features is not None else "trigger_amplitude"
    kind = np.array([str(k) for k in source["record_kind"].values])
    amp = np.asarray(source[name].values, dtype=np.float64)[0][np.isin(kind, ("particle", "saturated"))]
    amp = amp[np.isfinite(amp)]
    top = 1.2 * float(amp.max()) if amp.size else 0.0
    n_high = int(cfg.get("n_high_amplitudes", 8))
    if n_high < 1 or not top > 1.5 * low[-1]:
        return low
    return np.concatenate([low, np.geomspace(low[-1], top, n_high + 1)[1:]])


def injection_template(sev: np.ndarray, pretrigger: int) -> np.ndarray:
    """The SEV (max 1) with its pre-trigger part (before sample `pretrigger`) set to 0: a measured
    SEV's pre-trigger noise and drift, scaled to a large pulse, would fail the pre-trigger cuts
    that a real pulse of that height passes (issue 21: every injected pulse above ~0.5 V was cut)."""
    out = np.asarray(sev, dtype=np.float64).copy()
    out[: max(int(pretrigger), 0)] = 0.0
    return out


def efficiency_channel(records: xr.Dataset, characterization: xr.Dataset, cuts: dict, cfg: dict,
                       kev_per_volt: float | None = None, plugins: Sequence = (),
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
    from cryopipe.efficiency.injection import efficiency_curve
    from cryopipe.features import ChannelContext, compute_block, default_families, families_for

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
    amps = injected_amplitudes(res, records, cfg, features)

    def cut(traces, feats):
        ds = xr.Dataset({k: (("channel", "event"), np.asarray(v)[None]) for k, v in feats.items()},
                        coords={"channel": [ch]}, attrs={"sample_frequency": fs, "record_length": n})
        ds["record_kind"] = ("event", np.full(len(traces), "particle"))
        return apply_cuts(ds, cuts)["accepted"].values[0]

    from cryopipe.io.stores import record_pretrigger

    curve = efficiency_curve(of, injection_template(ctx.sev, record_pretrigger(records)), noise, amps, threshold, cut=cut, n_per_amplitude=int(cfg["n_per_amplitude"]),
                             sample_frequency=fs, rng=np.random.default_rng(int(cfg["seed"])),
                             kev_per_volt=kev_per_volt, features=lambda tr: compute_block(tr, ctx, families))
    per_channel = {k: ("channel", [float(v)]) for k, v in curve.attrs.items() if k not in ("units", "n_per_amplitude")}
    # amplitudes differ per channel (they scale with its resolution): index the curve by point
    curve = curve.assign_coords(point=("amplitude", np.arange(curve.sizes["amplitude"]))).swap_dims(amplitude="point")
    curve = curve.reset_coords([c for c in ("amplitude", "energy") if c in curve.coords])
    curve = curve.expand_dims(channel=[ch]).transpose("channel", "point").assign(per_channel)
    curve.attrs = provenance("efficiency", cfg, [], units="V", n_per_amplitude=int(cfg["n_per_amplitude"]))
    return curve
