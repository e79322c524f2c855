"""What a feature family may use besides a channel's records: the run's characterization of it."""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import xarray as xr

from ..errors import InputError


@dataclass
class ChannelContext:
    """One channel's sample rate, record length and (optionally) characterization.

    Attributes
    ----------
    sample_frequency : Hz
    record_length : samples per record, N
    name : channel name (error messages)
    sev : (N,) standard event (max 1, onset at N/4), as stored; None without a characterization
    nps : (N//2+1,) one-sided noise power spectrum, V^2/Hz; None without a characterization
    fit_truncation : V above the baseline: the per-event SEV fit leaves out samples above it (None: all)
    of : the channel's optimum filter; built from `sev` and `nps` on first use when not given
    pretrigger : trigger sample of the records (None: N // 4; LJH records: `LjhFile.pretrigger`)

    Within `sharing()` (`compute_block` opens it around each block), `shared` keeps work on a block
    that several families need (the optimum-filter pass, `cryopipe.features.filtered`), so it runs once.
    """

    sample_frequency: float
    record_length: int
    name: str = "channel"
    sev: np.ndarray | None = None
    nps: np.ndarray | None = None
    fit_truncation: float | None = None
    of: object | None = field(default=None, repr=False)
    pretrigger: int | None = None
    _shared: dict | None = field(default=None, init=False, repr=False, compare=False)
    _workspace: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    @property
    def trigger(self) -> int:
        """Trigger sample of the records (pretrigger, default N // 4)."""
        return self.record_length // 4 if self.pretrigger is None else int(self.pretrigger)

    @property
    def characterized(self) -> bool:
        return self.sev is not None and self.nps is not None

    def optimum_filter(self):
        """The channel's optimum filter (`cryopipe.signal.optimum_filter.build_optimum_filter` of sev, nps)."""
        if self.of is None:
            if not self.characterized:
                raise InputError(f"channel {self.name!r}: the optimum filter needs a characterization (sev, nps)")
            from cryopipe.signal.optimum_filter import build_optimum_filter

            self.of = build_optimum_filter(self.sev, self.nps, self.sample_frequency, onset=self.trigger,
                                           what=str(self.name))
        return self.of

    @contextmanager
    def sharing(self):
        """Scope in which `shared` results are kept (one block of records); dropped on exit."""
        outer, self._shared = self._shared, {}
        try:
            yield self
        finally:
            self._shared = outer

    def shared(self, key: str, traces: np.ndarray, compute):
        """``compute()``, kept for this very `traces` object (identity) within `sharing()`; outside
        it, computed every time."""
        if self._shared is None:
            return compute()
        hit = self._shared.get(key)
        if hit is not None and hit[0] is traces:
            return hit[1]
        value = compute()
        self._shared[key] = (traces, value)
        return value

    def workspace(self, name: str, shape: tuple, dtype) -> np.ndarray:
        """Scratch array `name` of `shape` and `dtype`, uninitialised, reused from block to block of
        this channel (fresh block-sized arrays cost page faults) until `release_workspace`; valid
        until the next request of `name`. Only within `sharing()`: outside it, a new array every time."""
        if self._shared is None:
            return np.empty(shape, dtype)
        a = self._workspace.get(name)
        size = int(np.prod(shape))
        if a is None or a.dtype != np.dtype(dtype) or a.size < size:
            a = self._workspace[name] = np.empty(size, dtype)
        return a[:size].reshape(shape)

    def release_workspace(self) -> None:
        """Drop the scratch arrays of `workspace` (`compute_block` does after each call)."""
        self._workspace.clear()

    @classmethod
    def from_stores(cls, records: xr.Dataset, characterization: xr.Dataset | None, channel,
                    *, fit_truncation: float | None = None) -> "ChannelContext":
        """Context of `channel` from a records Dataset's attrs and a characterization store (or None)."""
        from ..io.stores import record_pretrigger

        fs = float(records.attrs["sample_frequency"])
        n = int(records.attrs["record_length"])
        pre = record_pretrigger(records)
        if characterization is None:
            return cls(fs, n, str(channel), fit_truncation=fit_truncation, pretrigger=pre)
        for v in ("sev", "nps"):
            if v not in characterization.variables:
                raise InputError(f"characterization: missing variable {v!r}")
        if str(channel) not in [str(c) for c in characterization["channel"].values]:
            raise InputError(f"characterization: has no channel {channel!r}")
        c = characterization.sel(channel=channel)
        return cls(fs, n, str(channel), sev=np.asarray(c["sev"].values), nps=np.asarray(c["nps"].values),
                   fit_truncation=fit_truncation, pretrigger=pre)
