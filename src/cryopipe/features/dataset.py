"""The one batch loop: every feature family over a records store, in event slices, per channel."""
from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numba as nb
import numpy as np
import xarray as xr

from ..errors import InputError
from ..io.stores import provenance, read_values
from ..validity import describe_invalid
from .context import ChannelContext
from .main import SMOOTHING_SAMPLES
from .registry import Family, compute_block, default_families

PER_EVENT_VARIABLES = ("trigger_sample", "trigger_time", "record_kind")
log = logging.getLogger("cryopipe.features")


@nb.njit(cache=True, parallel=True)
def _finite_rows(x, out):
    """out[i] = all samples of x[i] finite (x * 0 is NaN exactly for NaN and +-inf; vectorised)."""
    for i in nb.prange(x.shape[0]):
        s = 0.0
        for k in range(x.shape[1]):
            s += x[i, k] * 0.0
        out[i] = s == 0.0


def finite_records(traces: np.ndarray) -> np.ndarray:
    """(B,) bool: the records of a (B, N) float block whose samples are all finite
    (`cryopipe.validity.finite_records` without a block-sized temporary)."""
    out = np.empty(traces.shape[0], bool)
    if traces.dtype in (np.float32, np.float64) and traces.flags.c_contiguous:
        _finite_rows(traces, out)
    else:
        out[:] = np.isfinite(traces).all(axis=-1)
    return out


def _check_records(records: xr.Dataset, batch) -> None:
    if "trace" not in records.variables or tuple(records["trace"].dims) != ("channel", "event", "sample"):
        raise InputError("records: needs a variable 'trace' with dims (channel, event, sample)")
    for a in ("sample_frequency", "record_length"):
        if a not in records.attrs:
            raise InputError(f"records: missing attribute {a!r}")
    if int(batch) < 1:
        raise InputError(f"batch: must be a positive number of events, got {batch!r}")
    n_samples = records.sizes["sample"]
    if int(records.attrs["record_length"]) != n_samples:
        raise InputError(f"records: attribute record_length={records.attrs['record_length']} but traces "
                         f"have {n_samples} samples")


def _compute_slice(block, start, stop, contexts, families, values, valid) -> None:
    """Features of the events [start, stop) of every channel (block: (channel, event, sample))."""
    for c in range(block.shape[0]):
        traces = block[c]
        ok = finite_records(traces)
        valid[c, start:stop] = ok
        for name, v in compute_block(traces, contexts[c], families).items():
            values[name][c, start:stop] = v
            if not ok.all():
                values[name][c, start:stop][~ok] = np.nan


def features_dataset(records: xr.Dataset, *, characterization: xr.Dataset | None = None, 
                     families: Sequence[Family] | None = None, plugins: Sequence[Family] = (),
                     fit_truncation: float | None = None, batch: int = 4096, progress=None) -> xr.Dataset:
    """Features of every channel and event of a records store, read in event slices.

    Parameters
    ----------
    records : Dataset of store kind "records" (``trace`` (channel, event, sample) V, attrs
        ``sample_frequency`` Hz, ``record_length`` samples); may be lazy (Zarr-backed).
    characterization : store kind "characterization" with the channels of `records` (``sev``,
        ``nps``), or None: then only the families that need no characterization run.
    families : the built-in families to run (default: `default_families`)
    plugins : further families (user plug-ins, `load_plugins`), run after the built-in ones
    fit_truncation : V above the baseline, for the SEV fit (see `cryopipe.features.sev_fit`)
    batch : events read per slice (all channels at once; memory ~ 2 * n_channels * batch * N * 4 bytes:
        the next slice is read while the families run on the current one).
    progress : optional callable ``progress(events_done, events_total)``, called after each slice.

    Returns
    -------
    Dataset of store kind "features": one (channel, event) float64 variable per feature with attr
    ``units``, dataset attr ``units`` (JSON name -> unit of the stored features), coords and per-event
    variables (trigger_sample, trigger_time, record_kind) copied from `records`, provenance attrs.
    Records with NaN or inf samples get NaN features and a (channel, event) ``valid`` flag (only
    stored when there are such records); a warning is logged.
    """
    _check_records(records, batch)
    trace = records["trace"]
    n_channels, n_events, _ = trace.shape
    channels = records["channel"].values if "channel" in records.coords else np.arange(n_channels)
    contexts = [ChannelContext.from_stores(records, characterization, ch,
                                           fit_truncation=fit_truncation) for ch in channels]
    if families is None:
        families = default_families(characterization is not None)
    families = list(families) + list(plugins)
    units = {name: unit for fam in families for name, unit in fam.units.items()}
    values = {name: np.empty((n_channels, n_events), np.float64) for name in units}
    valid = np.ones((n_channels, n_events), bool)
    source = records.encoding.get("source", "records")

    def read(start: int) -> np.ndarray:  # StoreError on a bad chunk
        return np.asarray(read_values(trace[:, start:min(start + int(batch), n_events)], source, kind="records"))

    # the next slice is read (decompressed) in the background while the families run on this one
    with ThreadPoolExecutor(1) as reader:
        ahead = reader.submit(read, 0) if n_events else None
        for start in range(0, n_events, int(batch)):
            stop = min(start + int(batch), n_events)
            block = ahead.result()
            ahead = reader.submit(read, stop) if stop < n_events else None
            _compute_slice(block, start, stop, contexts, families, values, valid)
            if progress is not None:
                progress(stop, n_events)

    coords = {d: records.coords[d] for d in ("channel", "event") if d in records.coords}
    data = {name: xr.Variable(("channel", "event"), v, {"units": units[name]}) for name, v in values.items()}
    if not valid.all():
        log.warning("%s", describe_invalid(valid))
        data["valid"] = xr.Variable(("channel", "event"), valid)
    for name in PER_EVENT_VARIABLES:
        if name in records.variables and tuple(records[name].dims) == ("event",):
            data[name] = xr.Variable(("event",), np.asarray(records[name].values), dict(records[name].attrs))
    attrs = provenance(
        "features",
        parameters={"smoothing_samples": SMOOTHING_SAMPLES, "families": [f.name for f in families],
                    "features": list(units), "fit_truncation": fit_truncation},
        inputs=[],
        sample_frequency=float(records.attrs["sample_frequency"]),
        record_length=int(records.attrs["record_length"]),
        units=json.dumps(units),
    )
    return xr.Dataset(data, coords=coords, attrs=attrs)
