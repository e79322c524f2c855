"""Records with NaN or infinite samples: found, counted and reported, never given a number.

Used by every consumer of records (features, cleaning prediction): such a record is flagged
``valid = False`` and its derived values are NaN.
"""
from __future__ import annotations

import numpy as np


def finite_records(records) -> np.ndarray:
    """Mask (...) of the (..., N) records whose samples are all finite (no NaN, no +-inf)."""
    x = np.asarray(records)
    if x.dtype.kind not in "fc":
        return np.ones(x.shape[:-1], dtype=bool)
    return np.isfinite(x).all(axis=-1)


def describe_invalid(valid, *, what: str = "records", n_first: int = 5) -> str:
    """One line on the records that `valid` (bool, any shape; the last axis is the event) marks False:
    their count and first indices; empty string if all are valid."""
    valid = np.atleast_1d(np.asarray(valid, dtype=bool))
    bad = np.argwhere(~valid)
    if bad.size == 0:
        return ""
    first = ", ".join(str(tuple(int(i) for i in b)) if valid.ndim > 1 else str(int(b[0])) for b in bad[:n_first])
    more = ", ..." if len(bad) > n_first else ""
    index = "(channel, event)" if valid.ndim == 2 else "index"
    return (f"{what}: {len(bad)} of {valid.size} record(s) contain NaN or inf samples and are not scored "
            f"(valid = False, score NaN); first {index}: {first}{more}")
