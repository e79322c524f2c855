"""Cuts: a small language of named feature ranges and its default cut set.

Cut language (a mapping, e.g. read from YAML; ``{"cuts": {name: cut, ...}}``):

``{feature: F, min: a, max: b, units: U, over: O}``
    a range condition on the (channel, event) variable ``F`` of the features Dataset: passes where
    ``a <= F <= b`` (either bound may be left out; NaN fails). ``units`` says what the bounds are in:
    ``feature`` (default, the feature's own units), ``record_length`` (fractions of the record duration
    N / fs, for time features in s), ``robust_sigma`` (robust standard deviations about the median of
    ``F`` over the reference records of the channel: bound = median + value * 1.4826 MAD; ``over`` picks
    the reference records: ``all`` (default), ``particle`` or ``noise`` by ``record_kind``).
``{any_of: [condition, ...]}``, ``{all_of: [condition, ...]}``
    OR / AND of conditions (ranges, regions or further combinations).
``{polygon: {x: F, y: G, vertices: [[x, y], ...], x_channel: C, y_channel: D, x_log: bool, y_log: bool, inside: bool}}``
    a region in the plane of two features (`cryopipe view` saves drawn selections this way): passes
    where the point (F, G) lies inside the closed polygon of at least 3 `vertices` (in the features'
    own units; NaN fails). ``x_channel``/``y_channel`` (optional) take F/G of that channel for every
    record of the event (e.g. light against phonon pulse height), else each record's own channel.
    ``x_log``/``y_log`` (default false): the polygon's edges are straight in log10 of that feature (as
    drawn on a log axis; values <= 0 fail). ``inside: false`` passes outside the polygon instead.
At the top level of a cut only:
    ``channels``: ``all`` (default), a channel name or a list of names; ``records``: ``all`` (default),
    ``particle`` or ``noise``: the records the cut applies to. A cut passes wherever it does not apply.
    ``description``: free text.
A record of a channel is accepted when it passes every cut (AND). Features without ``record_kind``
count all records as ``particle`` records (triggered records, e.g. simulated sets).

The features the default cuts use (of_snr, second_pulse_*, end_*, spike_*, ...) are the "shape"
family of `cryopipe.features` (`cryopipe.features.shape`); every cut feature comes from the features
store.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import xarray as xr

from cryopipe.errors import CryopipeError, InputError
from cryopipe.io.stores import provenance
from cryopipe.signal.robust import MAD_TO_SIGMA

REFERENCE_KINDS = ("particle", "noise")  # the record kinds a cut's `over` may name
UNITS = ("feature", "record_length", "robust_sigma")
OVER = ("all",) + REFERENCE_KINDS
RANGE_KEYS = {"feature", "min", "max", "units", "over"}
TOP_KEYS = {"channels", "records", "description"}
COMBINATIONS = ("any_of", "all_of")


#: The default cut set (the same as config/cuts_default.yaml). Objectives of the CRESST data cleaning
#: (seed 000, section 2): one pulse rising near N/4 and decaying in the window, saturated or not; no
#: spikes, jumps, resets, ramps, decaying baselines or pile-up; empty noise records of typical slope.
DEFAULT_CUTS: dict = {
    "cuts": {
        "pulse_present": {
            "description": "a pulse well above the OF resolution (triggered records)",
            "records": "particle", "feature": "of_snr", "min": 5.0},
        "onset_near_trigger": {
            "description": "the largest pulse starts within N/48 of the trigger at N/4",
            "records": "particle", "feature": "of_onset", "min": -0.021, "max": 0.021,
            "units": "record_length"},
        "single_pulse": {
            "description": "no second pulse (pile-up, decaying baseline): small in sigma_OF or relative "
                           "to the main pulse (below 6 %: SEV-shape mismatch), a slow tail component "
                           "(below 35 %, peaking within N/32 after the main onset), or a saturated pulse "
                           "(flat top over 1 % of the record), whose shape the SEV does not follow",
            "records": "particle",
            "any_of": [{"feature": "second_pulse_snr", "max": 8.0},
                       {"feature": "second_pulse_fraction", "max": 0.06},
                       {"all_of": [{"feature": "second_pulse_fraction", "max": 0.35},
                                   {"feature": "second_pulse_delay", "min": 0.0, "max": 0.03125,
                                    "units": "record_length"}]},
                       {"feature": "top_plateau", "min": 0.01}]},
        "decays_in_window": {
            "description": "the record ends near its starting level: within the noise or a fraction of "
                           "the pulse height (no SQUID jumps, resets, ramps; tails may linger)",
            "records": "particle",
            "any_of": [{"feature": "end_snr", "min": -7.0, "max": 7.0},
                       {"feature": "end_fraction", "min": -0.1, "max": 0.3}]},
        "flat_pretrigger": {
            "description": "no decay of an earlier pulse before the trigger (decaying baseline)",
            "records": "particle", "feature": "pretrigger_drop_snr", "min": -3.0, "max": 3.0},
        "no_spike": {
            "description": "no 1-4 sample spike, unless small next to the pulse",
            "any_of": [{"feature": "spike_snr", "max": 8.0},
                       {"feature": "spike_fraction", "max": 0.5}]},
        "noise_empty": {
            "description": "noise records hold no pulse, step or decaying baseline",
            "records": "noise", "feature": "of_snr", "max": 6.0},
        "noise_level_stable": {
            "description": "noise records start and end at the same level",
            "records": "noise", "feature": "end_snr", "min": -4.0, "max": 4.0},
        "noise_slope_typical": {
            "description": "noise records with the slope typical of the detector's noise records",
            "records": "noise", "feature": "slope", "min": -5.0, "max": 5.0, "units": "robust_sigma",
            "over": "noise"},
    }
}


# ---------------------------------------------------------------------------------------------
# cut language
# ---------------------------------------------------------------------------------------------

def load_cuts(path: str | Path) -> dict:
    """Read a cut set from a YAML file and validate it (CryopipeError naming the cut and problem)."""
    import yaml

    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise InputError(f"{path}: cannot read the cut set ({exc})") from None
    validate_cuts(doc, where=str(path))
    return doc


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


def validate_cuts(cuts: Mapping, *, features=None, where: str = "cuts") -> None:
    """Check a cut set; with `features` (a collection of names) also that every feature exists.

    Raises CryopipeError naming the cut and the problem (unknown keys, features, units, bounds).
    """
    if not isinstance(cuts, Mapping) or set(cuts) != {"cuts"} or not isinstance(cuts["cuts"], Mapping):
        raise CryopipeError(f"{where}: a cut set is a mapping with the single key 'cuts' (name -> cut)")
    if not cuts["cuts"]:
        raise CryopipeError(f"{where}: the cut set has no cuts")
    for name, cut in cuts["cuts"].items():
        if not isinstance(cut, Mapping):
            raise CryopipeError(f"{where}: cut {name!r}: must be a mapping, got {type(cut).__name__}")
        _check_top(name, cut, where)
        _check_condition(name, {k: v for k, v in cut.items() if k not in TOP_KEYS}, features, where)


def _check_top(name, cut, where):
    channels = cut.get("channels", "all")
    if not (isinstance(channels, str) or (isinstance(channels, list) and channels
                                           and all(isinstance(c, str) for c in channels))):
        raise CryopipeError(f"{where}: cut {name!r}: 'channels' must be 'all', a channel name or a list of names")
    if cut.get("records", "all") not in OVER:
        raise CryopipeError(f"{where}: cut {name!r}: 'records' must be one of {list(OVER)}, "
                            f"got {cut.get('records')!r}")


def _check_condition(name, cond, features, where):
    if not isinstance(cond, Mapping):
        raise CryopipeError(f"{where}: cut {name!r}: a condition must be a mapping, got {cond!r}")
    if "polygon" in cond:
        _check_polygon(name, cond, features, where)
        return
    combo = [k for k in COMBINATIONS if k in cond]
    if combo:
        if len(cond) != 1:
            extra = sorted(set(cond) - {combo[0]})
            raise CryopipeError(f"{where}: cut {name!r}: {combo[0]!r} cannot be mixed with {extra} "
                                "(channels/records only at the top of a cut)")
        parts = cond[combo[0]]
        if not isinstance(parts, list) or not parts:
            raise CryopipeError(f"{where}: cut {name!r}: {combo[0]!r} needs a non-empty list of conditions")
        for part in parts:
            _check_condition(name, part, features, where)
        return
    unknown = set(cond) - RANGE_KEYS
    if unknown:
        raise CryopipeError(f"{where}: cut {name!r}: unknown keys {sorted(unknown)}; a range has "
                            f"{sorted(RANGE_KEYS)}, a combination one of {list(COMBINATIONS)}")
    if "feature" not in cond:
        raise CryopipeError(f"{where}: cut {name!r}: a range needs a 'feature'")
    if features is not None and cond["feature"] not in features:
        raise CryopipeError(f"{where}: cut {name!r}: unknown feature {cond['feature']!r} (not in the features; "
                            "the features come from cryopipe.features)")
    if "min" not in cond and "max" not in cond:
        raise CryopipeError(f"{where}: cut {name!r}: a range needs 'min' and/or 'max'")
    for key in ("min", "max"):
        if key in cond and (isinstance(cond[key], bool) or not isinstance(cond[key], (int, float))):
            raise CryopipeError(f"{where}: cut {name!r}: {key!r} must be a number, got {cond[key]!r}")
    if "min" in cond and "max" in cond and cond["min"] > cond["max"]:
        raise CryopipeError(f"{where}: cut {name!r}: min {cond['min']} > max {cond['max']}")
    units = cond.get("units", "feature")
    if units not in UNITS:
        raise CryopipeError(f"{where}: cut {name!r}: units must be one of {list(UNITS)}, got {units!r}")
    if "over" in cond and units != "robust_sigma":
        raise CryopipeError(f"{where}: cut {name!r}: 'over' needs units 'robust_sigma'")
    if cond.get("over", "all") not in OVER:
        raise CryopipeError(f"{where}: cut {name!r}: 'over' must be one of {list(OVER)}, got {cond['over']!r}")


def record_kinds(features: xr.Dataset, n_events: int) -> np.ndarray:
    """Per-event record kind ('particle' or 'noise'); every event is 'particle' without ``record_kind``."""
    if "record_kind" in features.variables:
        return np.asarray(features["record_kind"].values).astype(str)
    return np.full(n_events, "particle")


class _Context:
    """What a condition needs besides the feature values: record duration, kinds, channel names."""

    def __init__(self, features: xr.Dataset):
        n_events = features.sizes["event"]
        self.kinds = record_kinds(features, n_events)
        self.channels = [str(c) for c in (features.coords["channel"].values if "channel" in features.coords
                                          else range(features.sizes["channel"]))]
        fs = features.attrs.get("sample_frequency")
        n = features.attrs.get("record_length")
        self.duration = float(n) / float(fs) if fs is not None and n is not None else None
        self.bounds = {}
        self.applies = None  # (channel, event) bool: records the cut being evaluated applies to


def _range_bounds(cut_name, cond, values, ctx):
    """(lo, hi) per channel (arrays), in the feature's units."""
    n_ch = values.shape[0]
    lo = np.full(n_ch, float(cond.get("min", -np.inf)))
    hi = np.full(n_ch, float(cond.get("max", np.inf)))
    units = cond.get("units", "feature")
    if units == "record_length":
        if ctx.duration is None:
            raise CryopipeError(f"cut {cut_name!r}: units 'record_length' need the features' attrs "
                                "sample_frequency and record_length")
        return lo * ctx.duration, hi * ctx.duration
    if units == "robust_sigma":
        over = cond.get("over", "all")
        ref = np.ones(values.shape[1], bool) if over == "all" else ctx.kinds == over
        for c in range(n_ch):
            v = values[c, ref]
            v = v[np.isfinite(v)]
            if v.size == 0:
                if not ctx.applies[c].any():  # the cut concerns no record of this channel
                    lo[c], hi[c] = np.nan, np.nan
                    continue
                raise CryopipeError(f"cut {cut_name!r}: no {over} records with a finite {cond['feature']!r} in "
                                    f"channel {ctx.channels[c]!r} for its robust range")
            med = np.median(v)
            sigma = MAD_TO_SIGMA * np.median(np.abs(v - med))
            lo[c], hi[c] = med + lo[c] * sigma, med + hi[c] * sigma
    return lo, hi


def _evaluate(cut_name, cond, features, ctx):
    """Boolean (channel, event) array of a condition."""
    for combo, reduce in (("any_of", np.logical_or), ("all_of", np.logical_and)):
        if combo in cond:
            parts = [_evaluate(cut_name, c, features, ctx) for c in cond[combo]]
            return reduce.reduce(parts)
    if "polygon" in cond:
        return _evaluate_polygon(cut_name, cond["polygon"], features, ctx)
    feature = features[cond["feature"]]
    if tuple(feature.dims) != ("channel", "event"):
        raise CryopipeError(f"cut {cut_name!r}: feature {cond['feature']!r} has dims {tuple(feature.dims)}, "
                            "expected ('channel', 'event')")
    values = np.asarray(feature.values, dtype=np.float64)
    lo, hi = _range_bounds(cut_name, cond, values, ctx)
    ctx.bounds.setdefault(cut_name, []).append(
        {"feature": cond["feature"], "min": lo.tolist(), "max": hi.tolist()})
    with np.errstate(invalid="ignore"):
        return (values >= lo[:, None]) & (values <= hi[:, None])


def _applies(cut_name, cut, ctx, shape):
    channels = cut.get("channels", "all")
    if channels == "all":
        ch = np.ones(shape[0], bool)
    else:
        names = [channels] if isinstance(channels, str) else list(channels)
        unknown = set(names) - set(ctx.channels)
        if unknown:
            raise CryopipeError(f"cut {cut_name!r}: unknown channels {sorted(unknown)}; the features have "
                                f"{ctx.channels}")
        ch = np.isin(ctx.channels, names)
    records = cut.get("records", "all")
    ev = np.ones(shape[1], bool) if records == "all" else ctx.kinds == records
    return ch[:, None] & ev[None, :]


def apply_cuts(features: xr.Dataset, *, cuts: Mapping = DEFAULT_CUTS) -> xr.Dataset:
    """Apply a cut set to a features Dataset (see the module docstring for the language).

    Parameters
    ----------
    features : Dataset with (channel, event) feature variables (store kind "features"), optional
        per-event ``record_kind``, attrs sample_frequency (Hz) and record_length (samples) for
        ``units: record_length``.
    cuts : cut set ``{"cuts": {name: cut}}``

    Returns
    -------
    Dataset (store kind "labels"): ``accepted`` (channel, event) bool, ``cut_flags`` (cut, channel,
    event) bool (True: passes the cut) with coord ``cut`` = cut names; channel/event coords of
    `features`; attrs: provenance with the cut set as parameters, ``bounds`` (JSON: resolved range
    bounds per cut and channel, in feature units).
    """
    validate_cuts(cuts, features=set(features.variables))
    ctx = _Context(features)
    shape = (features.sizes["channel"], features.sizes["event"])
    names = list(cuts["cuts"])
    flags = np.empty((len(names),) + shape, dtype=bool)
    for i, name in enumerate(names):
        cut = cuts["cuts"][name]
        cond = {k: v for k, v in cut.items() if k not in TOP_KEYS}
        ctx.applies = _applies(name, cut, ctx, shape)
        flags[i] = _evaluate(name, cond, features, ctx) | ~ctx.applies
    coords = {d: features.coords[d] for d in ("channel", "event") if d in features.coords}
    coords["cut"] = names
    attrs = provenance("labels", parameters=dict(cuts), inputs=[], bounds=json.dumps(ctx.bounds))
    return xr.Dataset({"accepted": (("channel", "event"), flags.all(axis=0)),
                       "cut_flags": (("cut", "channel", "event"), flags)}, coords=coords, attrs=attrs)


# ---------------------------------------------------------------------------------------------
# polygon regions: {polygon: {...}} (a condition like a range; see the module docstring)
# ---------------------------------------------------------------------------------------------

POLYGON_KEYS = {"x", "y", "vertices", "x_channel", "y_channel", "x_log", "y_log", "inside"}


def _check_polygon(name, cond, features, where):
    """Validate a ``{polygon: {...}}`` condition (CryopipeError naming the cut and the problem)."""
    if len(cond) != 1:
        raise CryopipeError(f"{where}: cut {name!r}: 'polygon' cannot be mixed with {sorted(set(cond) - {'polygon'})}")
    poly = cond["polygon"]
    if not isinstance(poly, Mapping):
        raise CryopipeError(f"{where}: cut {name!r}: 'polygon' must be a mapping with x, y, vertices")
    unknown = set(poly) - POLYGON_KEYS
    if unknown:
        raise CryopipeError(f"{where}: cut {name!r}: unknown polygon keys {sorted(unknown)}; known "
                            f"{sorted(POLYGON_KEYS)}")
    for axis in ("x", "y"):
        if not isinstance(poly.get(axis), str):
            raise CryopipeError(f"{where}: cut {name!r}: polygon needs a feature name {axis!r}")
        if features is not None and poly[axis] not in features:
            raise CryopipeError(f"{where}: cut {name!r}: unknown feature {poly[axis]!r} (not in the features)")
        ch = poly.get(f"{axis}_channel")
        if ch is not None and not isinstance(ch, str):
            raise CryopipeError(f"{where}: cut {name!r}: '{axis}_channel' must be a channel name")
        if not isinstance(poly.get(f"{axis}_log", False), bool):
            raise CryopipeError(f"{where}: cut {name!r}: '{axis}_log' must be true or false")
    if not isinstance(poly.get("inside", True), bool):
        raise CryopipeError(f"{where}: cut {name!r}: 'inside' must be true or false")
    v = poly.get("vertices")
    ok = (isinstance(v, list) and len(v) >= 3 and all(
        isinstance(p, (list, tuple)) and len(p) == 2
        and all(isinstance(q, (int, float)) and not isinstance(q, bool) and np.isfinite(q) for q in p) for p in v))
    if not ok:
        raise CryopipeError(f"{where}: cut {name!r}: polygon 'vertices' must be a list of at least 3 [x, y] "
                            "pairs of finite numbers")
    for axis, col in (("x", 0), ("y", 1)):
        if poly.get(f"{axis}_log", False) and any(p[col] <= 0 for p in v):
            raise CryopipeError(f"{where}: cut {name!r}: '{axis}_log' needs positive {axis} vertices")


def points_in_polygon(x, y, vx, vy) -> np.ndarray:
    """Even-odd rule: True where the points (x, y) (any equal shapes) lie inside the closed polygon
    with vertices (vx, vy); NaN coordinates are outside."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    vx, vy = np.asarray(vx, np.float64), np.asarray(vy, np.float64)
    inside = np.zeros(x.shape, dtype=bool)
    j = len(vx) - 1
    with np.errstate(invalid="ignore", divide="ignore"):
        for i in range(len(vx)):
            crosses = (vy[i] > y) != (vy[j] > y)
            xc = (vx[j] - vx[i]) * (y - vy[i]) / (vy[j] - vy[i]) + vx[i]
            inside ^= crosses & (x < xc)
            j = i
    return inside


def _polygon_axis(cut_name, poly, axis, features, ctx):
    """(channel, event) float64 values of one polygon axis (log10 if asked; NaN where not defined)."""
    feature = features[poly[axis]]
    if tuple(feature.dims) != ("channel", "event"):
        raise CryopipeError(f"cut {cut_name!r}: feature {poly[axis]!r} has dims {tuple(feature.dims)}, "
                            "expected ('channel', 'event')")
    values = np.asarray(feature.values, dtype=np.float64)
    ch = poly.get(f"{axis}_channel")
    if ch is not None:
        if ch not in ctx.channels:
            raise CryopipeError(f"cut {cut_name!r}: unknown channel {ch!r}; the features have {ctx.channels}")
        values = np.broadcast_to(values[ctx.channels.index(ch)], values.shape)
    if poly.get(f"{axis}_log", False):
        with np.errstate(invalid="ignore", divide="ignore"):
            values = np.where(values > 0, np.log10(np.where(values > 0, values, 1.0)), np.nan)
    return values


def _evaluate_polygon(cut_name, poly, features, ctx):
    """Boolean (channel, event) array of a polygon condition."""
    x = _polygon_axis(cut_name, poly, "x", features, ctx)
    y = _polygon_axis(cut_name, poly, "y", features, ctx)
    v = np.asarray(poly["vertices"], dtype=np.float64)
    vx = np.log10(v[:, 0]) if poly.get("x_log", False) else v[:, 0]
    vy = np.log10(v[:, 1]) if poly.get("y_log", False) else v[:, 1]
    inside = points_in_polygon(x, y, vx, vy)
    if poly.get("inside", True):
        return inside
    return ~inside & np.isfinite(x) & np.isfinite(y)


def and_stable(labels: xr.Dataset, stable: xr.DataArray) -> xr.Dataset:
    """`labels` (of `apply_cuts`) with the test-pulse stability cut: ``stable`` (channel, event)
    bool kept as a flag (selected at the labels' channels and events) and ANDed into ``accepted``."""
    out = labels.copy()
    out["stable"] = stable.sel(channel=labels.channel, event=labels.event).astype(bool)
    out["accepted"] = out["accepted"] & out["stable"]
    return out
