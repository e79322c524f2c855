"""What `cryopipe view` shows, without the web page: a run's stores opened lazily, per-event columns,
colourings, traces, selection means, and the two things the viewer writes (cuts, hand labels).

Nothing here writes into a pipeline store: a saved selection goes to a cuts file (YAML in the cut
language of `cryopipe.cuts.language`), hand labels to ``results/<run>/hand_labels.zarr``
(`cryopipe.cleaning.hand_labels`). A missing or broken store becomes a message (`RunData.messages`),
never an exception, so the page always opens.
"""
from __future__ import annotations

import json
import re
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xarray as xr

from ..cleaning.hand_labels import (
    ALL_CHANNELS,
    BOX1_CLASSES,
    append_hand_labels,
    event_hand_labels,
    read_hand_labels,
)
from ..errors import CryopipeError, StoreError

SEP = " · "                 # between a quantity and its channel in a column name
MEAN_MAX_EVENTS = 256       # events averaged for a selection's mean trace (a preview)
MEAN_TIME_BUDGET = 1.0      # s of chunk reading for one mean trace
CHUNK_CACHE = 3             # decoded record chunks kept in memory
CUT_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
#: per-channel flags of a calibrated model's decision (colouring and event details)
FLAG_NAMES = ("sure", "unsure", "ood")


@dataclass(frozen=True)
class Column:
    """A per-event quantity: variable `var` of store `store` (features, records, predictions/<m>),
    channel index `channel` (None for per-event variables)."""

    store: str
    var: str
    channel: int | None
    label: str


@dataclass
class Colouring:
    """Per-event colour values: integer codes into `factors` (categorical) or floats (continuous)."""

    values: np.ndarray
    factors: list | None
    label: str


class RunData:
    """The stores of one run directory (``results/<run>``), opened lazily and validated.

    Parameters
    ----------
    run_dir : the run's result directory
    cuts_file : where saved cuts go (default ``<run_dir>/cuts.yaml``, seeded with the run's cut set)
    """

    def __init__(self, run_dir, cuts_file=None):
        from ..io.stores import open_store

        self.run = Path(run_dir)
        self.messages: list[tuple[str, str]] = []        # (level 'error'|'warning'|'info', text)
        self.cuts_file = Path(cuts_file) if cuts_file else self.run / "cuts.yaml"
        self.hand_labels_path = self.run / "hand_labels.zarr"
        if not self.run.is_dir():
            self.messages.append(("error", f"{self.run}: no such run directory"))
        self.stores: dict[str, xr.Dataset] = {}
        for kind in ("features", "records", "labels", "characterization"):
            path = self.run / f"{kind}.zarr"
            if not path.exists():
                self.messages.append(("warning", f"{path.name}: not there (not run yet?)"))
                continue
            try:
                self.stores[kind] = open_store(path, kind)
            except (CryopipeError, OSError, ValueError) as exc:
                self.messages.append(("error", f"{path.name}: {exc}"))
        for path in sorted((self.run / "predictions").glob("*.zarr")):
            try:
                self.stores[f"predictions/{path.stem}"] = open_store(path, "predictions")
            except (CryopipeError, OSError, ValueError) as exc:
                self.messages.append(("error", f"predictions/{path.name}: {exc}"))
        self._shape_checks()
        self._cache: dict = {}
        self._chunks: OrderedDict = OrderedDict()
        try:
            self.hand = read_hand_labels(self.hand_labels_path)
        except StoreError as exc:
            self.messages.append(("error", f"hand_labels.zarr: {exc} (new labels cannot be saved)"))
            self.hand = None
        self.columns = self._columns()
        self.colourings = self._colouring_names()

    # ------------------------------------------------------------------ layout of the run

    def _shape_checks(self):
        """Drop stores whose event axis disagrees with the first one (with a message)."""
        self.n_events, self.events, self.channels = 0, np.zeros(0, np.int64), []
        ref = None
        for name in ["features", "records", "labels"] + sorted(k for k in self.stores if k.startswith("pred")):
            ds = self.stores.get(name)
            if ds is None:
                continue
            n = ds.sizes.get("event", 0)
            if ref is None:
                ref = name
                self.n_events = n
                self.events = (np.asarray(ds["event"].values, np.int64) if "event" in ds.coords
                               else np.arange(n, dtype=np.int64))
                if "channel" in ds.sizes:
                    self.channels = ([str(c) for c in ds["channel"].values] if "channel" in ds.coords
                                     else [f"ch{i}" for i in range(ds.sizes["channel"])])
            elif n != self.n_events:
                self.messages.append(("error", f"{name}.zarr: {n} events, {ref}.zarr {self.n_events}: "
                                               f"not shown (rerun the workflow)"))
                del self.stores[name]
        if ref is None:
            self.messages.append(("error", "no features, records, labels or predictions store to show"))

    def store_names(self) -> list[str]:
        return list(self.stores)

    def _columns(self) -> dict[str, Column]:
        out = {}
        for store in ["features", "records"] + sorted(k for k in self.stores if k.startswith("pred")):
            ds = self.stores.get(store)
            if ds is None:
                continue
            for var, arr in ds.data_vars.items():
                if arr.dtype.kind not in "fiu" or store == "records" and var in ("trace", "trigger_sample"):
                    continue
                prefix = "" if store == "features" else f"{store.split('/')[-1]} "
                if store == "records":
                    prefix = ""
                if tuple(arr.dims) == ("channel", "event"):
                    for i, ch in enumerate(self.channels):
                        label = f"{prefix}{var}{SEP}{ch}"
                        out.setdefault(label, Column(store, var, i, label))
                elif tuple(arr.dims) == ("event",):
                    out.setdefault(f"{prefix}{var}", Column(store, var, None, f"{prefix}{var}"))
        return out

    def column(self, label: str) -> np.ndarray:
        """float64 (n_events,) values of a column (loaded once; NaN where undefined)."""
        key = ("col", label)
        if key not in self._cache:
            c = self.columns[label]
            arr = self.stores[c.store][c.var]
            values = np.asarray((arr[c.channel] if c.channel is not None else arr).values, dtype=np.float64)
            self._cache[key] = values
        return self._cache[key]

    def default_axes(self) -> tuple[str | None, str | None]:
        """A sensible first scatter: pulse height against the next most telling feature."""
        names = list(self.columns)
        if not names:
            return None, None
        ch0 = self.channels[0] if self.channels else ""
        prefer_x = [f"pulse_height{SEP}{ch0}", f"of_amplitude{SEP}{ch0}", f"trigger_amplitude{SEP}{ch0}"]
        prefer_y = ([f"pulse_height{SEP}{self.channels[1]}"] if len(self.channels) > 1 else []) + \
                   [f"rise_time{SEP}{ch0}", f"decay_time{SEP}{ch0}"]
        x = next((n for n in prefer_x if n in self.columns), names[0])
        y = next((n for n in prefer_y if n in self.columns and n != x), names[min(1, len(names) - 1)])
        return x, y

    # ------------------------------------------------------------------ colourings

    def _colouring_names(self) -> list[str]:
        out = ["none"]
        if self._record_kind_array() is not None:
            out.append("record kind")
        if "labels" in self.stores:
            for ch in self.channels:
                out.append(f"cuts{SEP}{ch}")
            out.append("cuts: accepted in all channels")
        for store in sorted(k for k in self.stores if k.startswith("pred")):
            m = store.split("/")[-1]
            for ch in self.channels:
                out.append(f"{m} score{SEP}{ch}")
            for ch in self.channels:
                out.append(f"{m} decision{SEP}{ch}")
            if {"ood", "unsure"} & set(self.stores[store].variables):
                for ch in self.channels:
                    out.append(f"{m} flags{SEP}{ch}")
            out.append(f"{m} clean event")
        out.append("hand label")
        return out

    def _record_kind_array(self):
        for store in ("records", "features"):
            ds = self.stores.get(store)
            if ds is not None and "record_kind" in ds.variables:
                return ds["record_kind"]
        return None

    def record_kind(self) -> np.ndarray | None:
        if ("kind",) not in self._cache:
            arr = self._record_kind_array()
            self._cache[("kind",)] = None if arr is None else np.asarray(arr.values).astype(str)
        return self._cache[("kind",)]

    def record_kind_codes(self):
        """(kind names, int codes per event) or None; computed once."""
        if ("kindcodes",) not in self._cache:
            kinds = self.record_kind()
            self._cache[("kindcodes",)] = None if kinds is None else tuple(
                a.tolist() if i == 0 else a for i, a in enumerate(np.unique(kinds, return_inverse=True)))
        return self._cache[("kindcodes",)]

    def colouring(self, name: str) -> Colouring:
        """The per-event colour values of one of `self.colourings`."""
        n = self.n_events
        if name == "record kind":
            kinds = self.record_kind()
            factors = sorted(set(kinds.tolist()))
            return Colouring(np.searchsorted(factors, kinds).astype(np.float32), factors, name)
        if name.startswith("cuts"):
            lab = self.stores["labels"]
            cuts = [str(c) for c in lab["cut"].values] if "cut" in lab.coords else \
                [f"cut{i}" for i in range(lab.sizes["cut"])]
            key = ("cutflags",)
            if key not in self._cache:
                self._cache[key] = np.asarray(lab["cut_flags"].values, bool)   # (cut, channel, event)
            flags = self._cache[key]
            if name.endswith("accepted in all channels"):
                acc = flags.all(axis=(0, 1))
                return Colouring(np.where(acc, 0, 1).astype(np.float32), ["accepted", "rejected"], name)
            ch = self.channels.index(name.split(SEP)[-1])
            failed = ~flags[:, ch, :]                                  # (cut, event)
            first = np.where(failed.any(axis=0), np.argmax(failed, axis=0) + 1, 0)
            return Colouring(first.astype(np.float32), ["accepted"] + [f"fails {c}" for c in cuts], name)
        if name == "hand label":
            codes = np.full(n, 0, np.float32)
            if self.hand is not None:
                pos = {int(e): i for i, e in enumerate(self.events.tolist())}
                for e, lab in event_hand_labels(self.hand).items():
                    if e in pos:
                        codes[pos[e]] = BOX1_CLASSES.index(lab) + 1
            return Colouring(codes, ["unlabelled"] + list(BOX1_CLASSES), name)
        if name == "none":
            return Colouring(np.zeros(n, np.float32), ["event"], name)
        model, what = name.split(" ", 1)
        ds = self.stores[f"predictions/{model}"]
        if what == "clean event":
            v = np.asarray(ds["event_clean"].values, bool)
            return Colouring(np.where(v, 0, 1).astype(np.float32), ["clean", "not clean"], name)
        quantity, ch = what.split(SEP)
        c = self.channels.index(ch)
        if quantity == "score":
            return Colouring(np.asarray(ds["score"][c].values, np.float32), None, name)
        if quantity == "flags":
            return Colouring(self._flag_codes(f"predictions/{model}")[c].astype(np.float32), list(FLAG_NAMES), name)
        v = np.asarray(ds["decision"][c].values, bool)
        return Colouring(np.where(v, 0, 1).astype(np.float32), ["accepted", "rejected"], name)

    # ------------------------------------------------------------------ traces

    def has_traces(self) -> bool:
        return "records" in self.stores

    def _chunk_len(self) -> int:
        trace = self.stores["records"]["trace"]
        chunks = trace.encoding.get("chunks") or trace.encoding.get("preferred_chunks", {}).get("event")
        if isinstance(chunks, tuple) and len(chunks) == 3:
            return max(int(chunks[1]), 1)
        return 1024

    def _chunk(self, k: int) -> np.ndarray:
        """Decoded record chunk k: (channel, events, sample) float32 (LRU cache)."""
        if k in self._chunks:
            self._chunks.move_to_end(k)
            return self._chunks[k]
        size = self._chunk_len()
        block = np.asarray(self.stores["records"]["trace"][:, k * size:(k + 1) * size].values, np.float32)
        self._chunks[k] = block
        while len(self._chunks) > CHUNK_CACHE:
            self._chunks.popitem(last=False)
        return block

    def time_axis(self) -> np.ndarray:
        """Sample times relative to the trigger (s)."""
        rec = self.stores["records"]
        if "time" in rec.variables:
            return np.asarray(rec["time"].values, np.float64)
        fs = float(rec.attrs.get("sample_frequency", 1.0))
        n = rec.sizes["sample"]
        return (np.arange(n) - n // 4) / fs

    def event_traces(self, i: int) -> np.ndarray:
        """(channel, sample) traces of event position i (V)."""
        size = self._chunk_len()
        return self._chunk(i // size)[:, i % size]

    def mean_trace(self, positions, *, rng=None) -> tuple[np.ndarray | None, int]:
        """Baseline-subtracted mean (channel, sample) trace of up to MEAN_MAX_EVENTS of the selected event
        positions, read from as few chunks as possible within MEAN_TIME_BUDGET; (mean, number averaged)."""
        positions = np.asarray(positions, np.int64)
        if positions.size == 0 or not self.has_traces():
            return None, 0
        rng = rng or np.random.default_rng(0)
        size = self._chunk_len()
        chunks, counts = np.unique(positions // size, return_counts=True)
        cached = np.isin(chunks, list(self._chunks))
        order = np.lexsort((rng.random(chunks.size), -counts, ~cached))   # cached first, then fullest
        total, n, t0 = None, 0, time.perf_counter()
        for k in chunks[order]:
            block = self._chunk(int(k))
            pick = positions[positions // size == k] % size
            if pick.size > MEAN_MAX_EVENTS - n:
                pick = rng.choice(pick, MEAN_MAX_EVENTS - n, replace=False)
            x = block[:, pick].astype(np.float64)
            x -= x[:, :, : x.shape[-1] // 8].mean(axis=-1, keepdims=True)
            s = x.sum(axis=1)
            total = s if total is None else total + s
            n += pick.size
            if n >= MEAN_MAX_EVENTS or time.perf_counter() - t0 > MEAN_TIME_BUDGET:
                break
        return total / n, n

    def sev(self) -> np.ndarray | None:
        ch = self.stores.get("characterization")
        return None if ch is None else np.asarray(ch["sev"].values, np.float64)

    # ------------------------------------------------------------------ one event's details

    def event_info(self, i: int) -> dict:
        """Everything known about event position i: {'event', 'record kind', ..., 'rows': [(name, [per channel])]}"""
        out = {"event": int(self.events[i]), "position": int(i)}
        kinds = self.record_kind()
        if kinds is not None:
            out["record kind"] = kinds[i]
        rec = self.stores.get("records")
        if rec is not None and "trigger_time" in rec:
            out["trigger time (s)"] = float(rec["trigger_time"][i].values)
        if self.hand is not None:
            out["hand label"] = event_hand_labels(self.hand).get(int(self.events[i]), "")
        rows = []
        feats = self.stores.get("features")
        if feats is not None:
            for var, arr in feats.data_vars.items():
                if tuple(arr.dims) == ("channel", "event") and arr.dtype.kind in "fiub":
                    rows.append((var, [self._cached_var("features", var)[c, i] for c in range(len(self.channels))]))
        lab = self.stores.get("labels")
        if lab is not None:
            flags = self._cached_var("labels", "cut_flags")
            acc = self._cached_var("labels", "accepted")
            rows.append(("cuts: accepted", [bool(acc[c, i]) for c in range(len(self.channels))]))
            cuts = [str(c) for c in lab["cut"].values] if "cut" in lab.coords else list(range(flags.shape[0]))
            rows.append(("cuts: failed", [", ".join(str(cuts[k]) for k in np.nonzero(~flags[:, c, i])[0]) or "-"
                                          for c in range(len(self.channels))]))
        for store in sorted(k for k in self.stores if k.startswith("pred")):
            m = store.split("/")[-1]
            score = self._cached_var(store, "score")
            rows.append((f"{m} score", [float(score[c, i]) for c in range(len(self.channels))]))
            if {"ood", "unsure"} & set(self.stores[store].variables):
                codes = self._flag_codes(store)
                rows.append((f"{m} flags", [FLAG_NAMES[int(codes[c, i])] for c in range(len(self.channels))]))
        out["rows"] = rows
        return out

    def _flag_codes(self, store) -> np.ndarray:
        """(channel, event) index into FLAG_NAMES: ood wins over unsure (cleaning.calibration); computed once."""
        key = ("flags", store)
        if key not in self._cache:
            ds = self.stores[store]
            shape = ds["score"].shape
            ood = self._cached_var(store, "ood").astype(bool) if "ood" in ds.variables else np.zeros(shape, bool)
            unsure = (self._cached_var(store, "unsure").astype(bool) if "unsure" in ds.variables
                      else np.zeros(shape, bool))
            self._cache[key] = np.where(ood, 2, np.where(unsure, 1, 0)).astype(np.int8)
        return self._cache[key]

    def _cached_var(self, store, var):
        key = ("var", store, var)
        if key not in self._cache:
            self._cache[key] = np.asarray(self.stores[store][var].values)
        return self._cache[key]

    # ------------------------------------------------------------------ writing: hand labels

    def add_hand_labels(self, positions, label: str, *, channel: str = ALL_CHANNELS) -> int:
        """Append `label` for the events at `positions` to hand_labels.zarr; returns the number labelled."""
        if self.hand is None:
            raise StoreError(f"{self.hand_labels_path}: unreadable; move it away to start a new one")
        positions = np.asarray(positions, np.int64)
        if positions.size == 0:
            raise CryopipeError("no events selected")
        if channel != ALL_CHANNELS and channel not in self.channels:
            raise CryopipeError(f"unknown channel {channel!r}")
        self.hand = append_hand_labels(self.hand_labels_path, self.events[positions], label, channel=channel)
        return int(positions.size)

    # ------------------------------------------------------------------ writing: cuts

    def cut_from_selection(self, name: str, geometry: dict, x: str, y: str, x_log: bool, y_log: bool,
                           *, inside: bool = True, records: str = "all") -> dict:
        """The cut (cut-language mapping) of a drawn region in the scatter of columns `x`, `y`.

        `geometry`: ``{"type": "rect", "x0", "x1", "y0", "y1"}`` or ``{"type": "poly", "x": [...],
        "y": [...]}`` in plotted coordinates (log10 of the feature on a log axis). Both columns must be
        (channel, event) features of the features store. A rectangle kept inside with both features of
        one channel becomes plain ranges (``all_of``); anything else a ``polygon``.
        """
        if not CUT_NAME.match(name or ""):
            raise CryopipeError(f"cut name {name!r}: use letters, digits and _, not starting with a digit")
        cx, cy = self.columns.get(x), self.columns.get(y)
        for c, lab in ((cx, x), (cy, y)):
            if c is None or c.store != "features" or c.channel is None:
                raise CryopipeError(f"{lab!r} is not a per-channel feature of features.zarr: a cut can only "
                                    "use those (the cut language works on the features store)")
        if records not in ("all", "particle", "noise"):
            raise CryopipeError(f"records: {records!r}")
        if geometry.get("type") == "rect":
            xs = [geometry["x0"], geometry["x1"], geometry["x1"], geometry["x0"]]
            ys = [geometry["y0"], geometry["y0"], geometry["y1"], geometry["y1"]]
        elif geometry.get("type") == "poly":
            xs, ys = list(geometry["x"]), list(geometry["y"])
        else:
            raise CryopipeError("draw a box or lasso selection first")
        if len(xs) < 3:
            raise CryopipeError("the selection region has fewer than 3 corners")
        xs = [float(10 ** v) if x_log else float(v) for v in xs]
        ys = [float(10 ** v) if y_log else float(v) for v in ys]
        chx, chy = self.channels[cx.channel], self.channels[cy.channel]
        cut: dict = {"description": f"drawn in cryopipe view on run {self.run.name}: {cx.var} ({chx}) vs "
                                    f"{cy.var} ({chy})"}
        same = chx == chy
        cut["channels"] = chx if same else "all"
        if records != "all":
            cut["records"] = records
        if geometry["type"] == "rect" and inside and same:
            cut["all_of"] = [{"feature": cx.var, "min": _g(min(xs)), "max": _g(max(xs))},
                             {"feature": cy.var, "min": _g(min(ys)), "max": _g(max(ys))}]
            return cut
        poly: dict = {"x": cx.var, "y": cy.var}
        if not same:
            poly["x_channel"], poly["y_channel"] = chx, chy
        if x_log:
            poly["x_log"] = True
        if y_log:
            poly["y_log"] = True
        if not inside:
            poly["inside"] = False
        poly["vertices"] = [[_g(a), _g(b)] for a, b in zip(xs, ys)]
        cut["polygon"] = poly
        return cut

    def current_cut_set(self) -> dict | None:
        """The cut set the run's labels were made with (labels.zarr attrs), if known."""
        lab = self.stores.get("labels")
        if lab is None:
            return None
        try:
            doc = json.loads(lab.attrs.get("parameters", "{}"))
        except ValueError:
            return None
        return doc if isinstance(doc, dict) and isinstance(doc.get("cuts"), dict) and doc["cuts"] else None

    def save_cut(self, name: str, cut: dict) -> tuple[Path, int, int]:
        """Append cut `name` to the cuts file (created, seeded with the run's cut set, if missing).

        The YAML text is appended, so comments and order stay; the file is re-read and validated (and
        restored on any problem). Returns (cuts file, records of the run passing the new cut, records).
        """
        import yaml

        from cryopipe.cuts.language import apply_cuts, cut_feature_names, load_cuts, validate_cuts

        feats = self.stores.get("features")
        names = set(feats.variables) if feats is not None else None
        validate_cuts({"cuts": {name: cut}}, features=names, where="new cut")
        path = self.cuts_file
        old = path.read_text() if path.exists() else None
        if old is not None:
            existing = load_cuts(path)
            if name in existing["cuts"]:
                raise CryopipeError(f"{path}: already has a cut named {name!r}")
            text = old if old.endswith("\n") or not old else old + "\n"
            indent = _cuts_indent(text)
            if indent is None:     # not block style: rewrite (comments are lost; said in the message)
                existing["cuts"][name] = cut
                text = yaml.safe_dump(existing, sort_keys=False, width=100)
            else:
                block = yaml.safe_dump({name: cut}, sort_keys=False, width=100, default_flow_style=None,
                                       allow_unicode=True)
                text += "".join(indent + line + "\n" for line in block.splitlines())
        else:
            seed = self.current_cut_set() or {"cuts": {}}
            header = (f"# Cut set for run {self.run.name}, started by `cryopipe view` from the cuts its labels were "
                      f"made with.\n# Use it with: labels: {{cuts_file: {path}}} in your config, then rerun "
                      "snakemake (only the labels and what follows rerun).\n")
            seed["cuts"][name] = cut
            text = header + yaml.safe_dump(seed, sort_keys=False, width=100, default_flow_style=None)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(text)
        try:
            load_cuts(tmp)
        except CryopipeError:
            tmp.unlink()
            raise
        tmp.replace(path)
        passed, total = 0, 0
        if feats is not None:
            used = cut_feature_names(cut)
            sub = feats[[v for v in used if v in feats.variables] +
                        (["record_kind"] if "record_kind" in feats.variables else [])].load()
            flags = apply_cuts(sub, cuts={"cuts": {name: cut}})["accepted"].values
            passed, total = int(flags.sum()), int(flags.size)
        return path, passed, total


def _g(v: float) -> float:
    """A float rounded to 6 significant digits (readable YAML; well below any feature's resolution)."""
    return float(f"{float(v):.6g}")


def _cuts_indent(text: str) -> str | None:
    """Indentation of the entries under a block-style top-level ``cuts:`` key that ends the file."""
    lines = text.splitlines()
    top = [i for i, ln in enumerate(lines) if re.match(r"^cuts:\s*(#.*)?$", ln)]
    if len(top) != 1:
        return None
    for ln in lines[top[0] + 1:]:
        if ln.strip() and not ln.lstrip().startswith("#"):
            m = re.match(r"^(\s+)\S", ln)
            return m.group(1) if m else None
    return "  "
