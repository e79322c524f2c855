"""Cuts: a small language of named feature ranges, its default cut set, and the extra features it needs.

Cut language (a mapping, e.g. read from YAML; ``{"cuts": {name: cut, ...}}``):

``{feature: F, min: a, max: b, units: U, over: O}``
    a range condition on the (channel, event) variable ``F`` of the features Dataset: passes where
    ``a <= F <= b`` (either bound may be left out; NaN fails). ``units`` says what the bounds are in:
    ``feature`` (default, the feature's own units), ``record_length`` (fractions of the record duration
    N / fs, for time features in s), ``robust_sigma`` (robust standard deviations about the median of
    ``F`` over the reference records of the channel: bound = median + value * 1.4826 MAD; ``over`` picks
    the reference records: ``all`` (default), ``particle`` or ``noise`` by ``record_kind``).
``{any_of: [condition, ...]}``, ``{all_of: [condition, ...]}``
    OR / AND of conditions (ranges or further combinations).
At the top level of a cut only:
    ``channels``: ``all`` (default), a channel name or a list of names; ``records``: ``all`` (default),
    ``particle`` or ``noise``: the records the cut applies to. A cut passes wherever it does not apply.
    ``description``: free text.
A record of a channel is accepted when it passes every cut (AND). Features without ``record_kind``
count all records as ``particle`` records (triggered records, e.g. simulated sets).

Extra features (`extra_features`; the default cuts need them, all dimensionless unless stated). They
use the channel's standard event (SEV, max 1, onset at N/4) and noise power spectrum (NPS), as in
Cait's standard analysis, through the optimum filter (OF, `cryopipe.optimum_filter`):

of_snr
    The record minus the straight line through the means of its first and last ``N/128`` samples is
    filtered with the OF at every lag (circularly); the largest amplitude over pulse onsets in
    [N/64, 15N/16) (closer to the ends the circular filter sees the record boundary) divided by the OF resolution sigma_OF: the main pulse.
of_onset
    Onset of that pulse relative to the trigger N/4 (s).
second_pulse_snr, second_pulse_fraction
    The OF response of a SEV-shaped main pulse (its amplitude times the filtered SEV, shifted to its
    lag) is subtracted; the largest remaining amplitude over onsets at least ``N/256`` from the main
    one, in units of sigma_OF and as a fraction of the main amplitude: a second pulse (pile-up, or the
    decay of an earlier pulse wrapped around to the end of the record).
second_pulse_delay
    Onset of that second pulse minus the main pulse's onset (s): a slow tail component of the main
    pulse peaks just after it (a few N/1000 to N/40), a piled-up pulse anywhere.
end_snr, end_fraction
    Mean of the last N/8 samples minus the mean of the first N/8 (V), in units of the baseline noise
    rms sigma_BL (from the NPS) and as a fraction of the largest excursion above the first-eighth
    baseline (at least sigma_BL; the raw height, right also for saturated pulses): pulses that do not decay in the window, steps (SQUID jumps, resets), ramps.
pretrigger_drop_snr
    Mean of the first N/64, N/32 or N/16 samples (the largest in magnitude) minus the mean of
    [N/8, 7N/32) (before the earliest accepted onset), in units of sigma_BL: the decay of a pulse before the window (decaying baseline).
top_plateau
    Fraction of the samples above 95 % of the largest excursion from the first-eighth baseline: long
    for the flat top of a saturated pulse, short for an unsaturated peak.
spike_snr, spike_fraction
    A spike (1-4 samples) lifts a sample above (or below) BOTH the means of x[k-8 : k-4] and of
    x[k+5 : k+9], which a rising or falling edge does not: the largest such lift, in units of the
    robust (MAD) scale of x[k] minus the mean of the two side windows, and as a fraction of the largest
    raw deviation from the first-eighth baseline (a pulse's peak lifts by a small fraction of it).
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import scipy.fft
import xarray as xr

from .errors import CryopipeError, InputError
from .io.stores import provenance
from .optimum_filter import build_optimum_filter, expected_resolution

MAD_TO_SIGMA = 1.4826
RECORD_KINDS = ("particle", "noise")
UNITS = ("feature", "record_length", "robust_sigma")
OVER = ("all",) + RECORD_KINDS
RANGE_KEYS = {"feature", "min", "max", "units", "over"}
TOP_KEYS = {"channels", "records", "description"}
COMBINATIONS = ("any_of", "all_of")

EXTRA_FEATURE_UNITS: dict[str, str] = {
    "of_snr": "1",
    "of_onset": "s",
    "second_pulse_snr": "1",
    "second_pulse_fraction": "1",
    "second_pulse_delay": "s",
    "end_snr": "1",
    "end_fraction": "1",
    "spike_snr": "1",
    "spike_fraction": "1",
    "pretrigger_drop_snr": "1",
    "top_plateau": "1",
}
SPIKE_WIDTH = 4  # samples: the widest spike the spike features see

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


def validate_cuts(cuts: Mapping, features=None, where: str = "cuts") -> None:
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
                            "extra features come from cryopipe.cuts.extra_features_dataset)")
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


def apply_cuts(features: xr.Dataset, cuts: Mapping = DEFAULT_CUTS) -> xr.Dataset:
    """Apply a cut set to a features Dataset (see the module docstring for the language).

    Parameters
    ----------
    features : Dataset with (channel, event) feature variables (store kind "features", plus extra
        features if the cuts use them), optional per-event ``record_kind``, attrs sample_frequency (Hz)
        and record_length (samples) for ``units: record_length``.
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
# extra features
# ---------------------------------------------------------------------------------------------

def _main_and_second_pulse(x, of, sigma_of, response):
    """of_snr, onset lag (samples), second_pulse_snr, second pulse lag (samples) for records x (B, N) float64, V."""
    b, n = x.shape
    edge = max(n // 128, 1)
    ramp = np.linspace(0.0, 1.0, n)
    start, end = x[:, :edge].mean(axis=1), x[:, -edge:].mean(axis=1)
    detrended = x - start[:, None] - (end - start)[:, None] * ramp[None, :]
    amp = scipy.fft.irfft(scipy.fft.rfft(detrended, axis=1) * of.transfer, n=n, axis=1) / sigma_of
    lags = np.arange(n)
    lags = np.where(lags >= n - of.onset, lags - n, lags)          # lag = onset - N/4, in [-N/4, 3N/4)
    onset = lags + of.onset
    valid = (onset >= n // 64) & (onset < n - n // 16)
    i0 = np.argmax(np.where(valid[None, :], amp, -np.inf), axis=1)
    a0 = amp[np.arange(b), i0]
    rolled = response[(np.arange(n)[None, :] - i0[:, None]) % n]   # main pulse's response at its lag
    rest = amp - a0[:, None] * rolled
    far = np.abs(lags[None, :] - lags[i0][:, None]) >= max(n // 256, 1)
    rest = np.where(valid[None, :] & far, rest, -np.inf)
    i1 = np.argmax(rest, axis=1)
    return a0, lags[i0], rest[np.arange(b), i1], lags[i1]


def _spike_features(x):
    """spike_snr, spike_fraction of records x (B, N) float64 (see module docstring)."""
    n = x.shape[1]
    w = SPIKE_WIDTH
    c = np.concatenate([np.zeros((x.shape[0], 1)), np.cumsum(x, axis=1)], axis=1)
    k = np.arange(2 * w, n - 2 * w)
    left = (c[:, k - w] - c[:, k - 2 * w]) / w          # mean of x[k-2w : k-w]
    right = (c[:, k + 2 * w + 1] - c[:, k + w + 1]) / w  # mean of x[k+w+1 : k+2w+1]
    xk = x[:, k]
    up = np.minimum(xk - left, xk - right)
    down = np.minimum(left - xk, right - xk)
    biggest = np.max(np.maximum(up, down), axis=1)
    centred = xk - 0.5 * (left + right)
    scale = MAD_TO_SIGMA * np.median(np.abs(centred - np.median(centred, axis=1, keepdims=True)), axis=1)
    excursion = np.max(np.abs(x - x[:, :n // 8].mean(axis=1, keepdims=True)), axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return biggest / scale, biggest / excursion


def _pretrigger_drop(x):
    """Signed largest of mean(x[:L]) - mean(x[N/8 : 7N/32]) for L = N/64, N/32, N/16 (V)."""
    n = x.shape[1]
    ref = x[:, n // 8:7 * n // 32].mean(axis=1)
    drops = np.stack([x[:, :n // k].mean(axis=1) - ref for k in (64, 32, 16)])
    return np.take_along_axis(drops, np.argmax(np.abs(drops), axis=0)[None], axis=0)[0]


def extra_features(traces, sample_frequency: float, sev, nps, batch: int = 256) -> dict[str, np.ndarray]:
    """Extra per-record features of one channel (see module docstring) for the default cuts.

    Parameters
    ----------
    traces : (n_events, N) records, V, trigger at N/4
    sample_frequency : Hz
    sev : (N,) standard event of the channel (max 1, onset at N/4)
    nps : (N//2+1,) one-sided noise power spectrum of the channel, V^2/Hz
    batch : records per FFT block

    Returns
    -------
    dict name -> (n_events,) float64, units in EXTRA_FEATURE_UNITS.
    """
    traces = np.asarray(traces)
    if traces.ndim != 2 or traces.dtype.kind != "f":
        raise InputError(f"traces: expected a 2-d float (event, sample) array, got {traces.dtype} {traces.shape}")
    n = traces.shape[1]
    if n < 256:
        raise InputError(f"traces: records of {n} samples are too short for the extra features (need >= 256)")
    fs = float(sample_frequency)
    of = build_optimum_filter(sev, nps, fs, what="extra features")
    if of.record_length != n:
        raise InputError(f"sev: has {of.record_length} samples, the records {n}")
    sigma_of = expected_resolution(of)
    sigma_bl = float(np.sqrt(np.sum(np.asarray(nps, float)[1:]) * fs / n))
    response = scipy.fft.irfft(of.template_fft * of.transfer, n=n)  # OF output of the SEV, 1 at lag 0
    out = {k: np.empty(traces.shape[0]) for k in EXTRA_FEATURE_UNITS}
    n8 = n // 8
    for a in range(0, traces.shape[0], batch):
        sl = slice(a, min(a + batch, traces.shape[0]))
        x = traces[sl].astype(np.float64)
        a0, lag, second, lag2 = _main_and_second_pulse(x, of, sigma_of, response)
        end = x[:, -n8:].mean(axis=1) - x[:, :n8].mean(axis=1)
        out["of_snr"][sl] = a0
        out["of_onset"][sl] = lag / fs
        out["second_pulse_snr"][sl] = second
        out["second_pulse_fraction"][sl] = second / np.maximum(a0, 1.0)
        out["second_pulse_delay"][sl] = (lag2 - lag) / fs
        out["end_snr"][sl] = end / sigma_bl
        height = x.max(axis=1) - x[:, :n8].mean(axis=1)
        out["end_fraction"][sl] = end / np.maximum(height, sigma_bl)
        out["spike_snr"][sl], out["spike_fraction"][sl] = _spike_features(x)
        out["pretrigger_drop_snr"][sl] = _pretrigger_drop(x) / sigma_bl
        base = x[:, :n8].mean(axis=1)
        top = base + 0.95 * (x.max(axis=1) - base)
        out["top_plateau"][sl] = np.mean(x >= top[:, None], axis=1)
    return out


def extra_features_dataset(records: xr.Dataset, characterization: xr.Dataset, batch: int = 4096) -> xr.Dataset:
    """Extra features of every channel and event of a records store, to merge with its features.

    Parameters
    ----------
    records : store kind "records" (``trace`` (channel, event, sample) V, attr ``sample_frequency`` Hz)
    characterization : store kind "characterization" (``sev`` (channel, sample), ``nps`` (channel,
        frequency) V^2/Hz), channels in the same order as `records`
    batch : events read per slice

    Returns
    -------
    Dataset of (channel, event) float64 variables with attr ``units``, coords of `records`.
    """
    if "trace" not in records.variables or tuple(records["trace"].dims) != ("channel", "event", "sample"):
        raise InputError("records: needs a variable 'trace' with dims (channel, event, sample)")
    for v in ("sev", "nps"):
        if v not in characterization.variables:
            raise InputError(f"characterization: missing variable {v!r}")
    trace = records["trace"]
    n_ch, n_ev, _ = trace.shape
    if characterization["sev"].shape[0] != n_ch:
        raise InputError(f"characterization: has {characterization['sev'].shape[0]} channels, records {n_ch}")
    fs = float(records.attrs["sample_frequency"])
    sev = np.asarray(characterization["sev"].values)
    nps = np.asarray(characterization["nps"].values)
    values = {k: np.empty((n_ch, n_ev)) for k in EXTRA_FEATURE_UNITS}
    for start in range(0, n_ev, int(batch)):
        stop = min(start + int(batch), n_ev)
        block = np.asarray(trace[:, start:stop].values)
        for c in range(n_ch):
            for k, v in extra_features(block[c], fs, sev[c], nps[c]).items():
                values[k][c, start:stop] = v
    coords = {d: records.coords[d] for d in ("channel", "event") if d in records.coords}
    data = {k: xr.Variable(("channel", "event"), v, {"units": EXTRA_FEATURE_UNITS[k]}) for k, v in values.items()}
    return xr.Dataset(data, coords=coords)
