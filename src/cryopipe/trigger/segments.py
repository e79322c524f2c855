"""Stretches of a stream, as [start, stop) sample intervals: the order a sampled scan visits them
in, their union and intersection, and the stretches every channel's trigger scanned."""
from __future__ import annotations


def spread_order(n: int) -> list[int]:
    """0 .. n-1 in bit-reversed (van der Corput) order: every prefix is spread over the range
    (0, n/2, n/4, 3n/4, ...), so a scan that stops early has still sampled the whole run."""
    bits = max(int(n - 1).bit_length(), 1)
    order = [int(format(i, f"0{bits}b")[::-1], 2) for i in range(2 ** bits)]
    return [i for i in order if i < n]


def merge_intervals(intervals) -> list[list[int]]:
    """Sorted union of [start, stop) intervals (samples), touching ones joined."""
    out: list[list[int]] = []
    for lo, hi in sorted((int(lo), int(hi)) for lo, hi in intervals):
        if out and lo <= out[-1][1]:
            out[-1][1] = max(out[-1][1], hi)
        else:
            out.append([lo, hi])
    return out


def intersect_intervals(a, b) -> list[list[int]]:
    """Intersection of two sorted lists of disjoint [start, stop) intervals (samples)."""
    out, i, j = [], 0, 0
    while i < len(a) and j < len(b):
        lo, hi = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if lo < hi:
            out.append([int(lo), int(hi)])
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return out


def scanned_stretches(triggers, n_samples: int) -> list[list[int]] | None:
    """Stretches of the stream (samples) every channel's trigger scanned (the "triggers" Datasets'
    attr ``scanned``); None when that is the whole stream."""
    common = [[0, int(n_samples)]]
    for t in triggers:
        common = intersect_intervals(common, merge_intervals(t.attrs.get("scanned", [[0, n_samples]])))
    return None if common == [[0, int(n_samples)]] else common
