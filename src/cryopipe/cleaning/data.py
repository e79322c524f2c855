"""Training data: labelled records from a Zarr "simset" store or from arrays, read chunk by chunk.

A *source* holds the labels (channel, event) and event classes in memory, but reads traces one
event chunk at a time (the chunking of the store), so a set larger than memory trains fine.
`WeakShuffleBatches` implements the weak shuffling of the CRESST paper (seed 000, section 3):
every mini-batch holds records of one chunk and one channel (one detector), the order of the
mini-batches is random. A group of `buffer_chunks` chunks is loaded and downsampled to 512
samples at a time and their mini-batches are interleaved at random; each selected record is
drawn exactly once per epoch.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..errors import InputError
from ..io.stores import EVENT_CHUNK, open_store
from .augment import augment as augment_batch
from .preprocess import LENGTH, downsample, minmax_scale


def class_indices(event_class, *, class_names=None) -> tuple[np.ndarray, list[str]]:
    """Map event-class strings to indices into `class_names` (default: sorted unique names)."""
    names = [str(c) for c in np.asarray(event_class).ravel().tolist()]    # also numpy StringDType
    class_names = sorted(set(names)) if class_names is None else [str(c) for c in class_names]
    lookup = {c: i for i, c in enumerate(class_names)}
    unknown = sorted(set(names) - set(lookup))
    if unknown:
        raise InputError(f"event_class: classes {unknown} are not in class_names {class_names}")
    return np.array([lookup[c] for c in names], dtype=np.int64), class_names


def _selected(n_events: int, select) -> np.ndarray:
    if select is None:
        return np.arange(n_events)
    sel = np.asarray(select)
    if sel.dtype == bool:
        if sel.shape != (n_events,):
            raise InputError(f"select: boolean mask of shape {sel.shape}, expected ({n_events},)")
        return np.flatnonzero(sel)
    sel = np.unique(sel.astype(np.int64))
    if sel.size and (sel[0] < 0 or sel[-1] >= n_events):
        raise InputError(f"select: event indices outside 0..{n_events - 1}")
    return sel


class RecordSource:
    """Labelled records (channel, event, sample) read by event chunk.

    Attributes: labels (C, E) bool, classes (E,) int or None, class_names, n_channels, n_events,
    n_samples, chunk_bounds (K+1,) event edges, events_in_chunk (list of selected event indices).
    """

    def __init__(self, trace, labels, event_class=None, class_names=None, chunk: int | None = None, select=None):
        self._trace = trace
        self.n_channels, self.n_events, self.n_samples = trace.shape
        self.labels = np.asarray(labels, dtype=bool).reshape(self.n_channels, self.n_events)
        if event_class is None:
            self.classes, self.class_names = None, list(class_names) if class_names is not None else None
        else:
            self.classes, self.class_names = class_indices(event_class, class_names=class_names)
            if self.classes.shape != (self.n_events,):
                raise InputError(f"event_class: {self.classes.shape[0]} entries for {self.n_events} events")
        chunk = int(chunk or EVENT_CHUNK)
        self.chunk_bounds = np.append(np.arange(0, self.n_events, chunk), self.n_events)
        sel = _selected(self.n_events, select)
        cuts = np.searchsorted(sel, self.chunk_bounds)
        self.events_in_chunk = [sel[a:b] for a, b in zip(cuts[:-1], cuts[1:])]
        self.selected = sel

    def __len__(self):
        return self.n_channels * self.selected.size

    def read_chunk(self, k: int) -> np.ndarray:
        """Raw traces (C, n, N) float32 of the selected events of chunk `k`."""
        e0, e1 = self.chunk_bounds[k], self.chunk_bounds[k + 1]
        block = np.asarray(self._read(e0, e1), dtype=np.float32)
        return block[:, self.events_in_chunk[k] - e0]

    def _read(self, e0, e1):
        return self._trace[:, e0:e1]


class ArraySource(RecordSource):
    """Records from in-memory arrays: traces (C, E, N) or (E, N), labels (C, E) or (E,)."""

    def __init__(self, traces, labels, event_class=None, class_names=None, chunk: int = EVENT_CHUNK, select=None):
        t = np.asarray(traces, dtype=np.float32)
        if t.ndim == 2:
            t = t[None]
        if t.ndim != 3:
            raise InputError(f"traces: need (channel, event, sample) or (event, sample), got shape {t.shape}")
        lab = np.asarray(labels, dtype=bool)
        if lab.size != t.shape[0] * t.shape[1]:
            raise InputError(f"labels: {lab.shape} does not match traces {t.shape[:2]}")
        super().__init__(t, lab, event_class, class_names, chunk, select)


class SimsetSource(RecordSource):
    """Records of a Zarr "simset" store (cryopipe.io.stores), read lazily chunk by chunk."""

    def __init__(self, path: str | Path, class_names=None, select=None):
        ds = open_store(path, "simset")
        self.path = Path(path)
        chunk = ds["trace"].encoding.get("chunks", (None, EVENT_CHUNK))[1]
        self._var = ds["trace"].variable
        super().__init__(self._var, ds["label"].values, ds["event_class"].values, class_names, chunk, select)
        self.attrs = dict(ds.attrs)

    def _read(self, e0, e1):
        return self._var[:, e0:e1].values


def weak_shuffle_plan(source: RecordSource, batch_size: int, rng: np.random.Generator, *, buffer_chunks: int = 4,
                      channels=None) -> list[tuple[list[int], list[tuple[int, int, np.ndarray]]]]:
    """The batches of one epoch: groups of (chunk ids to load, batches (chunk, channel, local indices)).

    Records of a chunk and channel are permuted and cut into batches of `batch_size`; chunks are
    taken in random order, `buffer_chunks` at a time, and the batches of a group are shuffled.
    """
    chans = range(source.n_channels) if channels is None else list(channels)
    order = [k for k in rng.permutation(len(source.events_in_chunk)) if source.events_in_chunk[k].size]
    plan = []
    for g in range(0, len(order), max(int(buffer_chunks), 1)):
        group = [int(k) for k in order[g:g + buffer_chunks]]
        batches = []
        for k in group:
            n = source.events_in_chunk[k].size
            for ch in chans:
                perm = rng.permutation(n)
                batches += [(k, ch, perm[i:i + batch_size]) for i in range(0, n, batch_size)]
        plan.append((group, [batches[i] for i in rng.permutation(len(batches))]))
    return plan


class WeakShuffleBatches(torch.utils.data.IterableDataset):
    """Mini-batches (x (B, 512) float32, y (B,) float32 label, c (B,) int64 class or -1) of one epoch.

    Records are downsampled on the fly, augmented (if `augment`; see cleaning.augment) and
    min-max scaled. `multiclass`: piled-up records get class `pileup_class` (no pile-up if None);
    otherwise only their label flips. Seeded by (seed, epoch): call `set_epoch` before each epoch. Iterate it
    directly or through ``DataLoader(ds, batch_size=None)`` (one worker: the plan is not split).
    """

    def __init__(self, source: RecordSource, batch_size: int = 64, seed: int = 0, augment: bool = True,
                 buffer_chunks: int = 4, channels=None, multiclass: bool = False, pileup_class: int | None = None,
                 augment_options: dict | None = None, length: int = LENGTH):
        super().__init__()
        self.source, self.batch_size, self.seed, self.augment = source, int(batch_size), seed, augment
        self.buffer_chunks, self.channels = buffer_chunks, channels
        self.multiclass, self.pileup_class = multiclass, pileup_class
        self.augment_options, self.length, self.epoch = dict(augment_options or {}), length, 0

    def set_epoch(self, epoch: int):
        self.epoch = int(epoch)

    def __len__(self):
        n_ch = self.source.n_channels if self.channels is None else len(list(self.channels))
        return n_ch * sum(-(-e.size // self.batch_size) for e in self.source.events_in_chunk)

    def __iter__(self):
        rng = np.random.default_rng([self.seed, self.epoch])
        src = self.source
        for group, batches in weak_shuffle_plan(src, self.batch_size, rng, buffer_chunks=self.buffer_chunks,
                                                channels=self.channels):
            loaded = {k: downsample(src.read_chunk(k), length=self.length) for k in group}
            for k, ch, local in batches:
                events = src.events_in_chunk[k][local]
                x, y = loaded[k][ch, local], src.labels[ch, events]
                c = src.classes[events] if src.classes is not None else np.full(events.size, -1)
                if self.augment:
                    a = augment_batch(x, y, rng, classes=c if self.multiclass else None,
                                      pileup_class=self.pileup_class, **self.augment_options)
                    x, y, c = a.records, a.labels, a.classes if self.multiclass else c
                yield _tensors(minmax_scale(x), y, c)


def _tensors(x, y, c):
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)), torch.from_numpy(
        np.asarray(y, dtype=np.float32)), torch.from_numpy(np.asarray(c, dtype=np.int64))


def ordered_batches(source: RecordSource, *, batch_size: int = 4096, channels=None, length: int = LENGTH):
    """All selected records in store order, preprocessed, no augmentation (for validation/testing).

    Yields (x (B, 512) float32 tensor, y (B,) float32 tensor, c (B,) int64 tensor, channel, events).
    """
    chans = range(source.n_channels) if channels is None else list(channels)
    for k in range(len(source.events_in_chunk)):
        events = source.events_in_chunk[k]
        if not events.size:
            continue
        block = downsample(source.read_chunk(k), length=length)
        for ch in chans:
            for i in range(0, events.size, batch_size):
                ev = events[i:i + batch_size]
                c = source.classes[ev] if source.classes is not None else np.full(ev.size, -1)
                yield (*_tensors(minmax_scale(block[ch, i:i + batch_size]), source.labels[ch, ev], c), ch, ev)


def split_events(n_events: int, *, fractions=(0.9, 0.1), seed: int = 0) -> list[np.ndarray]:
    """Random disjoint event masks (E,) bool with the given fractions (e.g. train/validation/test)."""
    f = np.asarray(fractions, dtype=float)
    if np.any(f < 0) or f.sum() > 1 + 1e-9:
        raise InputError(f"fractions: need non-negative fractions summing to <= 1, got {list(fractions)}")
    perm = np.random.default_rng(seed).permutation(n_events)
    edges = np.round(np.concatenate([[0], np.cumsum(f)]) * n_events).astype(int)
    masks = []
    for a, b in zip(edges[:-1], edges[1:]):
        m = np.zeros(n_events, dtype=bool)
        m[perm[a:b]] = True
        masks.append(m)
    return masks
