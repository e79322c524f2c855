"""Labels of measured records by a documented semi-automatic procedure, and the stored NIST labels.

The procedure (`label_pulse_records`, `label_noise_records`) computes robust per-record features,
labels each record by fixed rules and marks the records near a rule's threshold as *doubtful*.
Doubtful records are then looked at as plots and decided by eye; those decisions are stored with
the labels (`apply_decisions`). The same rules run without the eye pass give *automatic* labels
(for evaluation-only files such as ``regress_chan3.ljh``: doubtful records are then left out).
No threshold here was tuned on an evaluation file.

Pulse file (triggered pulses; samples y = polarity (x - baseline), ADC counts):

1. baseline = median of the pre-trigger region ``[0, pretrigger - N/64)``; sigma_bl = 1.4826 MAD there
   about its least-squares line.
2. amplitude A = max y; no rise of the smoothed derivative ds (step 4) reaches `MIN_PULSE_SIGMA`:
   ``noise`` (no pulse).
3. t50 = first sample with y >= A/2; onset = first sample of the run of samples >= A/10 that ends
   at t50. Onset more than N/8 before or after the pretrigger: ``early_or_late_trigger``; more than
   N/32 away (but within N/8): doubtful (the simulator's label rule 1, `onset_window`).
4. smoothed derivative ds(i) = mean(y[i+w : i+2w]) - mean(y[i : i+w]), w = max(4, N/128), in units of its
   robust sigma in the pre-trigger region. A second rise after the first pulse (from t50 + 2 x the
   file's median t50-to-peak time to the end) >= `PULSE_SIGMA`: ``pile_up``; a rise inside the
   pre-trigger region >= `PULSE_SIGMA`: ``pile_up`` (a pulse before the trigger).
5. pre-trigger slope (least squares, times the region's length) <= -`SLOPE_SIGMA` sigma_bl: the record
   sits on the tail of an earlier pulse, ``decaying_baseline_with_event_pulse``.
6. otherwise ``event_pulse``.

Doubtful: a step-4 figure in [`DOUBT_PULSE_SIGMA`, `PULSE_SIGMA`); a slope in [`DOUBT_SLOPE_SIGMA`,
`SLOPE_SIGMA`) of either sign (or above `SLOPE_SIGMA` rising); a template-fit residual more than
`DOUBT_CHI_RATIO` times that of the 25 records nearest in amplitude (template: the median of the
records scaled to peak 1, fitted with amplitude and a sub-sample shift of +-3 samples; the
comparison with neighbours in amplitude allows for shapes that change with energy); a one-sample
spike (a sample above or below both neighbours by min(|differences|), outside the pulse's rise and
peak, from t50 - w to the peak + w) above `SPIKE_FRACTION` of A
and `SPIKE_SIGMA` sigma of the pre-trigger's sample-to-sample noise (robust sigma of the first
differences / sqrt 2).

Noise file (records that should hold no pulse; the pulse file's template gives the filter):

1. baseline = median of the record; sigma_bl = 1.4826 MAD about its least-squares line.
2. matched filter: least-squares amplitude of the template's first N/4 samples from its onset
   (offset and linear trend projected out, so a drifting baseline gives none) at every lag; its sigma = 1.4826 MAD over all records and lags. Maximum (in the
   pulse direction) >= `PULSE_SIGMA` sigma: ``event_pulse`` if the lag is in the onset window of pulse
   step 3, else ``early_or_late_trigger``.
3. one-sample spikes: |y - running median(9)| / its robust sigma >= `NOISE_SPIKE_SIGMA`: ``spike``.
4. slope over the record (least squares, times N) beyond +-`SLOPE_SIGMA` sigma_bl:
   ``decaying_baseline`` (falling) or ``temperature_rise`` (rising).
5. otherwise ``noise`` (clean noise).

Doubtful: step-2 figure in [`DOUBT_PULSE_SIGMA`, `PULSE_SIGMA`), step-3 in [`DOUBT_NOISE_SPIKE_SIGMA`,
`NOISE_SPIKE_SIGMA`), step-4 in [`DOUBT_SLOPE_SIGMA`, `SLOPE_SIGMA`).

Categories: ``clean_pulse`` (class in `hand_labels.ACCEPTED_CLASSES`), ``clean_noise`` (class
``noise``), ``rejected`` (every other class).
"""
from __future__ import annotations

import hashlib
import json
from importlib import resources
from pathlib import Path

import numpy as np
from scipy.ndimage import median_filter

from ..errors import InputError
from ..signal.robust import as_records, mad_sigma_along
from .hand_labels import ACCEPTED_CLASSES, BOX1_CLASSES

MIN_PULSE_SIGMA = 6.0
PULSE_SIGMA = 6.0
DOUBT_PULSE_SIGMA = 4.5
SLOPE_SIGMA = 6.0
DOUBT_SLOPE_SIGMA = 4.0
DOUBT_CHI_RATIO = 2.0
SPIKE_FRACTION = 0.05
SPIKE_SIGMA = 8.0
NOISE_SPIKE_SIGMA = 9.0
DOUBT_NOISE_SPIKE_SIGMA = 7.0
NEIGHBOURS = 25
MAX_SHIFT = 3.0           # samples, template fit
LABELS_FORMAT = "cryopipe-real-labels-1"
#: the stored hand labels of the NIST example files (package data)
NIST_LABELS = "nist_hand_labels.json"

THRESHOLDS = {k: v for k, v in globals().items() if k.isupper() and isinstance(v, float)}


def category(event_class: str) -> str:
    """'clean_pulse', 'clean_noise' or 'rejected' of a Box-1 class name."""
    if event_class in ACCEPTED_CLASSES:
        return "clean_pulse"
    return "clean_noise" if event_class == "noise" else "rejected"


def _slope_drop(y):
    """Least-squares slope of each row times its length (the linear change over the row)."""
    t = np.arange(y.shape[-1], dtype=np.float64)
    t -= t.mean()
    return (y @ t) / (t @ t) * y.shape[-1]


def _detrended_sigma(y):
    """1.4826 MAD of each row about its least-squares line (a drift does not widen it)."""
    t = np.arange(y.shape[-1], dtype=np.float64)
    t -= t.mean()
    slope = (y @ t) / (t @ t)
    r = y - y.mean(axis=1, keepdims=True) - slope[:, None] * t
    return mad_sigma_along(r)


def _smoothed_rise(y, w):
    """ds(i) = mean(y[i+w:i+2w]) - mean(y[i:i+w]) for i in [0, N - 2w], (n, N - 2w + 1)."""
    c = np.cumsum(np.pad(y, ((0, 0), (1, 0))), axis=1)
    m = (c[:, w:] - c[:, :-w]) / w                        # mean of y[i:i+w], (n, N - w + 1)
    return m[:, w:] - m[:, :-w]


def onset_window(n_samples: int, pretrigger: int) -> tuple[float, float, float, float]:
    """(accepted lo, accepted hi, early below, late above), samples: an onset within [lo, hi] is at the
    trigger, one before `early` or after `late` is an early or late trigger, between them doubtful.

    The fractions are the simulator's written label rules (`simulate.classes`, rule 1): accepted
    onsets within N/32 of the trigger (its widest jitter), early/late ones at least N/8 away."""
    return (pretrigger - n_samples / 32, pretrigger + n_samples / 32, pretrigger - n_samples / 8,
            pretrigger + n_samples / 8)


def pulse_template(y, *, peak_index=None):
    """Median of the records scaled to peak 1 (records whose peak lies within 3 samples of the median peak)."""
    a = y.max(axis=1)
    ip = y.argmax(axis=1) if peak_index is None else peak_index
    ok = (np.abs(ip - np.median(ip)) <= 3) & (a > 0)
    if not ok.any():
        ok = a > 0
    return np.median(y[ok] / a[ok, None], axis=0)


def _template_chi(y, template, sigma, start):
    """Residual rms / sigma of the best (amplitude, shift) template fit over samples [start, N)."""
    n = y.shape[1]
    grid = np.arange(n, dtype=np.float64)
    shifts = np.arange(-MAX_SHIFT, MAX_SHIFT + 1e-9, 0.25)
    ts = np.stack([np.interp(grid - s, grid, template, left=0.0, right=template[-1]) for s in shifts])[:, start:]
    yy = y[:, start:]
    a = (yy @ ts.T) / np.sum(ts * ts, axis=1)                           # (n, shifts)
    res2 = np.sum(yy * yy, axis=1)[:, None] - a ** 2 * np.sum(ts * ts, axis=1)
    chi = np.sqrt(np.maximum(res2.min(axis=1), 0.0) / yy.shape[1]) / sigma
    return chi


def _neighbour_ratio(amplitude, chi, k=NEIGHBOURS):
    """chi / median chi of the k records nearest in log amplitude (itself excluded)."""
    la = np.log(np.maximum(amplitude, 1e-12))
    out = np.empty_like(chi)
    k = min(k, chi.size - 1)
    for i in range(chi.size):
        d = np.abs(la - la[i])
        d[i] = np.inf
        out[i] = chi[i] / max(np.median(chi[np.argsort(d)[:k]]), 1e-12)
    return out


def _one_sample_spikes(y, skip=None):
    """Largest |one-sample excursion| per row: min(|y_i - y_i-1|, |y_i - y_i+1|) where both differences
    have the same sign (a rising or falling edge is no spike); `skip` (n, N - 2) bool masks samples 1..N-2."""
    a, b = y[:, 1:-1] - y[:, :-2], y[:, 1:-1] - y[:, 2:]
    s = np.where(np.sign(a) == np.sign(b), np.minimum(np.abs(a), np.abs(b)), 0.0)
    if skip is not None:
        s[skip] = 0.0
    return s.max(axis=1)


def polarity_of(records) -> int:
    """+1 if the records' largest excursions from their median go up, else -1."""
    x = np.asarray(records, dtype=np.float64)
    b = np.median(x, axis=1, keepdims=True)
    return 1 if np.median((x - b).max(axis=1)) >= np.median((b - x).max(axis=1)) else -1


def pulse_features(records, pretrigger: int, *, polarity: int | None = None) -> dict:
    """The features of the pulse-file procedure (module doc), one value per record.

    Parameters
    ----------
    records : (n, N) ADC counts (or volts)
    pretrigger : trigger sample (samples before the trigger)
    polarity : +1 / -1; None: `polarity_of`

    Returns
    -------
    dict of (n,) arrays: baseline, sigma_bl, amplitude (same unit as records), t50 (sample),
    rise_after (second rise / sigma), rise_before (pre-trigger rise / sigma), slope_sigma (pre-trigger
    slope x length / sigma_bl), chi (template-fit residual / sigma_bl), chi_ratio, spike (largest
    one-sample spike, fraction of A), spike_sigma; and template (N,), polarity, pretrigger.
    """
    x = as_records(records, what="pulse records", min_samples=64, min_records=2, dtype=np.float64,
                   finite=True)
    n, big_n = x.shape
    pre = int(pretrigger)
    if not 0 < pre < big_n:
        raise InputError(f"pretrigger: {pre} outside the record of {big_n} samples")
    pol = polarity_of(x) if polarity is None else int(polarity)
    guard = max(4, big_n // 64)
    pe = max(pre - guard, 8)
    base = np.median(x[:, :pe], axis=1)
    y = pol * (x - base[:, None])
    sig = np.maximum(_detrended_sigma(y[:, :pe]), 1e-12)
    amp = y.max(axis=1)
    ip = y.argmax(axis=1)
    w = max(4, big_n // 128)
    ds = _smoothed_rise(y, w)
    sd = np.maximum(mad_sigma_along(ds[:, :max(pe - 2 * w, 4)]), 1e-12)
    t50 = np.argmax(y >= 0.5 * amp[:, None], axis=1)
    below = y < 0.1 * amp[:, None]
    t10 = np.array([int(np.flatnonzero(below[i, :t50[i]])[-1]) + 1 if below[i, :t50[i]].any() else 0
                    for i in range(n)])
    rise_time = float(np.median(ip - t50))
    start = np.minimum(t50 + int(np.ceil(2 * max(rise_time, 1.0))), ds.shape[1] - 1)
    after = np.array([ds[i, start[i]:].max() for i in range(n)]) / sd
    before = ds[:, :max(pe - 2 * w, 1)].max(axis=1) / sd
    slope = _slope_drop(y[:, :pe]) / sig
    template = pulse_template(y, peak_index=ip)
    chi = _template_chi(y, template, sig, pe)
    near = np.arange(1, big_n - 1)[None, :]
    spike = _one_sample_spikes(y, (near >= (t50 - w)[:, None]) & (near <= (ip + w)[:, None]))
    rs = np.maximum(mad_sigma_along(np.diff(y[:, :pe], axis=1)) / np.sqrt(2), 1e-12)
    return {"baseline": base, "sigma_bl": sig, "amplitude": amp, "pulse_sigma": ds.max(axis=1) / sd, "t50": t50, "onset": t10, "rise_after": after,
            "rise_before": before, "slope_sigma": slope, "chi": chi, "chi_ratio": _neighbour_ratio(amp, chi),
            "spike": spike / np.maximum(amp, 1e-12), "spike_sigma": spike / rs, "template": template,
            "polarity": pol, "pretrigger": pre}


def label_pulse_records(records, pretrigger: int, *, polarity: int | None = None) -> dict:
    """Automatic labels of a pulse file (module doc): dict with event_class (n,) str, doubtful (n,)
    bool, reason (n,) str (the rules that fired or were near), features (`pulse_features`)."""
    f = pulse_features(records, pretrigger, polarity=polarity)
    n_samples = f["template"].size
    lo, hi, early, late = onset_window(n_samples, f["pretrigger"])
    n = f["amplitude"].size
    cls = np.full(n, "event_pulse", dtype="U40")
    doubt = np.zeros(n, bool)
    reason = [[] for _ in range(n)]
    for i in range(n):
        r = reason[i]
        if f["pulse_sigma"][i] < MIN_PULSE_SIGMA:
            cls[i] = "noise"
            r.append("no pulse")
            continue
        on = f["onset"][i]
        if on < early or on > late:
            cls[i] = "early_or_late_trigger"
            r.append(f"onset {on} outside [{early:g}, {late:g}]")
        elif not lo <= on <= hi:
            doubt[i] = True
            r.append(f"onset? {on} outside [{lo:g}, {hi:g}]")
        for key, what in (("rise_after", "second pulse"), ("rise_before", "pulse before trigger")):
            v = f[key][i]
            if v >= PULSE_SIGMA and cls[i] == "event_pulse":
                cls[i] = "pile_up"
                r.append(f"{what} {v:.1f} sigma")
            elif DOUBT_PULSE_SIGMA <= v < PULSE_SIGMA:
                doubt[i] = True
                r.append(f"{what}? {v:.1f} sigma")
        s = f["slope_sigma"][i]
        if s <= -SLOPE_SIGMA and cls[i] == "event_pulse":
            cls[i] = "decaying_baseline_with_event_pulse"
            r.append(f"pre-trigger slope {s:.1f} sigma")
        elif abs(s) >= DOUBT_SLOPE_SIGMA:
            doubt[i] = True
            r.append(f"pre-trigger slope? {s:.1f} sigma")
        if f["chi_ratio"][i] >= DOUBT_CHI_RATIO:
            doubt[i] = True
            r.append(f"template residual {f['chi_ratio'][i]:.1f} x neighbours")
        if f["spike"][i] >= SPIKE_FRACTION and f["spike_sigma"][i] >= SPIKE_SIGMA:
            doubt[i] = True
            r.append(f"spike {100 * f['spike'][i]:.0f} % of A")
    return {"event_class": cls, "doubtful": doubt, "reason": np.array(["; ".join(r) for r in reason], dtype=object),
            "features": f}


def noise_features(records, template, pretrigger: int, *, polarity: int = 1) -> dict:
    """The features of the noise-file procedure (module doc), one value per record.

    Parameters
    ----------
    records : (n, N) ADC counts (or volts)
    template : (M,) pulse template (peak 1, onset near its `pretrigger`), e.g. `pulse_features`' template
    pretrigger : trigger sample of the noise records (for the onset window)
    polarity : the pulses' sign

    Returns
    -------
    dict of (n,) arrays: pulse_sigma (largest matched-filter amplitude / its sigma), pulse_lag
    (sample of that pulse's onset), spike_sigma, slope_sigma; and kernel (the filter's template part).
    """
    x = as_records(records, what="noise records", min_samples=64, min_records=2, dtype=np.float64,
                   finite=True)
    n, big_n = x.shape
    y = int(polarity) * (x - np.median(x, axis=1, keepdims=True))
    sig = np.maximum(_detrended_sigma(y), 1e-12)
    t = np.asarray(template, dtype=np.float64)
    onset = max(int(np.argmax(t >= 0.02 * t.max())) - 2, 0)
    kernel = t[onset:onset + min(big_n // 4, t.size - onset)].copy()
    if kernel.size < 8:
        raise InputError(f"template: fewer than 8 samples after its onset ({kernel.size})")
    basis = np.vstack([np.ones(kernel.size), np.linspace(-1.0, 1.0, kernel.size)])
    kernel -= basis.T @ np.linalg.lstsq(basis.T, kernel, rcond=None)[0]     # blind to offsets and linear drifts
    kernel /= kernel @ kernel
    from numpy.lib.stride_tricks import sliding_window_view

    amp = sliding_window_view(y, kernel.size, axis=1) @ kernel          # (n, N - M + 1)
    sa = max(float(mad_sigma_along(amp.ravel())), 1e-12)
    res = y - median_filter(y, size=(1, 9), mode="nearest")
    return {"pulse_sigma": amp.max(axis=1) / sa, "pulse_lag": amp.argmax(axis=1),
            "spike_sigma": np.abs(res).max(axis=1) / np.maximum(mad_sigma_along(res), 1e-12),
            "slope_sigma": _slope_drop(y) / sig, "sigma_bl": sig, "kernel": kernel,
            "pretrigger": int(pretrigger)}


def label_noise_records(records, template, pretrigger: int, *, polarity: int = 1) -> dict:
    """Automatic labels of a noise file (module doc); the same keys as `label_pulse_records`."""
    f = noise_features(records, template, pretrigger, polarity=polarity)
    big_n = np.asarray(records).shape[1]
    lo, hi, _, _ = onset_window(big_n, f["pretrigger"])
    n = f["pulse_sigma"].size
    cls = np.full(n, "noise", dtype="U40")
    doubt = np.zeros(n, bool)
    reason = [[] for _ in range(n)]
    for i in range(n):
        r = reason[i]
        p, lag = f["pulse_sigma"][i], f["pulse_lag"][i]
        if p >= PULSE_SIGMA:
            cls[i] = "event_pulse" if lo <= lag + 2 <= hi else "early_or_late_trigger"
            r.append(f"pulse {p:.1f} sigma at sample {lag}")
        elif p >= DOUBT_PULSE_SIGMA:
            doubt[i] = True
            r.append(f"pulse? {p:.1f} sigma at sample {lag}")
        s = f["spike_sigma"][i]
        if s >= NOISE_SPIKE_SIGMA and cls[i] == "noise":
            cls[i] = "spike"
            r.append(f"spike {s:.1f} sigma")
        elif DOUBT_NOISE_SPIKE_SIGMA <= s < NOISE_SPIKE_SIGMA:
            doubt[i] = True
            r.append(f"spike? {s:.1f} sigma")
        d = f["slope_sigma"][i]
        if abs(d) >= SLOPE_SIGMA and cls[i] == "noise":
            cls[i] = "decaying_baseline" if d < 0 else "temperature_rise"
            r.append(f"slope {d:.1f} sigma")
        elif abs(d) >= DOUBT_SLOPE_SIGMA:
            doubt[i] = True
            r.append(f"slope? {d:.1f} sigma")
    return {"event_class": cls, "doubtful": doubt, "reason": np.array(["; ".join(r) for r in reason], dtype=object),
            "features": f}


def apply_decisions(auto: dict, decisions: list[dict]) -> np.ndarray:
    """The automatic classes with the eye decisions applied: a copy of auto["event_class"] where
    every decision {"record": i, "class": c} sets record i's class (c a Box-1 class)."""
    cls = np.array(auto["event_class"], dtype="U40")
    for d in decisions:
        i, c = int(d["record"]), str(d["class"])
        if c not in BOX1_CLASSES:
            raise InputError(f"decision for record {i}: {c!r} is not a Box-1 class")
        if not 0 <= i < cls.size:
            raise InputError(f"decision for record {i}: outside the file's {cls.size} records")
        cls[i] = c
    return cls


# ------------------------------------------------------------------------------ files

def sha256_of(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_ljh_records(path: str | Path) -> tuple[np.ndarray, int, float]:
    """(records (n, N) float64 ADC counts, pretrigger samples, sample frequency Hz) of an LJH file."""
    try:
        from ..io.ljh import read_ljh
    except ImportError:                                             # pragma: no cover - until io.ljh lands
        raise InputError(f"{path}: this cryopipe has no LJH reader (cryopipe.io.ljh)") from None
    f = read_ljh(path)
    return np.asarray(f.records, dtype=np.float64), int(f.pretrigger), float(f.sample_frequency)


def stored_labels_path() -> Path:
    """Path of the stored NIST hand labels (package data)."""
    return Path(str(resources.files("cryopipe") / "models" / NIST_LABELS))


def load_label_file(*, path: str | Path | None = None) -> dict:
    """The labels file (JSON, format `LABELS_FORMAT`); default the stored NIST hand labels.

    Returns the parsed dict; ``files[name]["event_class"]`` is the list of per-record classes.
    """
    path = Path(path) if path is not None else stored_labels_path()
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise InputError(f"{path}: no such labels file") from None
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: cannot read the labels file ({exc})") from None
    if data.get("format") != LABELS_FORMAT or not isinstance(data.get("files"), dict):
        raise InputError(f"{path}: not a labels file of format {LABELS_FORMAT!r}")
    for name, entry in data["files"].items():
        bad = sorted(set(entry.get("event_class", [])) - set(BOX1_CLASSES))
        if bad or len(entry.get("event_class", [])) != entry.get("n_records"):
            raise InputError(f"{path}: file {name!r}: unknown classes {bad} or a class count that is not n_records")
    return data


def label_files(pulse_path: str | Path, *, noise_path: str | Path | None = None,
                pulse_decisions=(), noise_decisions=()) -> dict:
    """Run the procedure on a pulse file (and its noise file) and apply eye decisions.

    Returns {file name: {"kind", "n_records", "pretrigger", "sha256", "event_class" (list),
    "automatic_class" (list), "doubtful" (list of record indices), "reason" {record: text},
    "decisions" (list)}}. The noise file is filtered with the pulse file's template and polarity.
    """
    out = {}
    x, pre, _ = read_ljh_records(pulse_path)
    auto = label_pulse_records(x, pre)
    out[Path(pulse_path).name] = _entry("pulses", pulse_path, pre, auto, list(pulse_decisions))
    if noise_path is not None:
        xn, pre_n, _ = read_ljh_records(noise_path)
        f = auto["features"]
        auto_n = label_noise_records(xn, f["template"], pre_n, polarity=f["polarity"])
        out[Path(noise_path).name] = _entry("noise", noise_path, pre_n, auto_n, list(noise_decisions))
    return out


def _entry(kind, path, pre, auto, decisions):
    cls = apply_decisions(auto, decisions)
    doubt = np.flatnonzero(auto["doubtful"]).tolist()
    return {"kind": kind, "n_records": int(cls.size), "pretrigger": int(pre), "sha256": sha256_of(path),
            "event_class": cls.tolist(), "automatic_class": auto["event_class"].tolist(), "doubtful": doubt,
            "reason": {str(i): str(r) for i, r in enumerate(auto["reason"]) if r},
            "decisions": decisions}


def automatic_labels(pulse_path: str | Path) -> dict:
    """Automatic labels of a pulse file (no eye pass): event_class (n,), doubtful (n,) bool, pretrigger."""
    x, pre, _ = read_ljh_records(pulse_path)
    auto = label_pulse_records(x, pre)
    return {"event_class": auto["event_class"], "doubtful": auto["doubtful"], "pretrigger": pre,
            "reason": auto["reason"]}


def write_label_file(path: str | Path, files: dict, *, notes: str = "") -> dict:
    """Write a labels file (JSON, `LABELS_FORMAT`) of `label_files` entries, with the procedure
    (this module's docstring), its thresholds and `notes`; returns the written dict."""
    data = {"format": LABELS_FORMAT, "procedure": __doc__.strip(), "procedure_module": __name__,
            "thresholds": THRESHOLDS, "notes": notes, "files": files}
    for entry in files.values():
        cats = [category(c) for c in entry["event_class"]]
        entry["counts"] = {k: cats.count(k) for k in ("clean_pulse", "clean_noise", "rejected")}
    Path(path).write_text(json.dumps(data, indent=1) + "\n")
    return data


def main(*, argv=None) -> dict:
    """``python -m cryopipe.cleaning.real_labels PULSES.ljh [NOISE.ljh] --out FILE``: (re)make a labels
    file; the eye decisions are taken from ``--decisions`` (an earlier labels file), by file name."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m cryopipe.cleaning.real_labels", description=main.__doc__)
    ap.add_argument("pulses")
    ap.add_argument("noise", nargs="?")
    ap.add_argument("--out", required=True)
    ap.add_argument("--decisions", help="labels file whose 'decisions' are applied again")
    ap.add_argument("--notes", default="")
    args = ap.parse_args(argv)
    old = load_label_file(path=args.decisions)["files"] if args.decisions else {}
    dec = {name: e.get("decisions", []) for name, e in old.items()}
    files = label_files(args.pulses, noise_path=args.noise, pulse_decisions=dec.get(Path(args.pulses).name, []),
                        noise_decisions=dec.get(Path(args.noise).name, []) if args.noise else [])
    data = write_label_file(args.out, files, notes=args.notes)
    for name, e in data["files"].items():
        print(f"{name}: {e['counts']}, {len(e['doubtful'])} doubtful, {len(e['decisions'])} eye decisions")
    return data


if __name__ == "__main__":
    main()
