"""The feature families, their units (each name's unit declared once, in its family's module), and the
one function that runs a list of families on a block of records."""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np

from ..errors import CryopipeError
from . import energy, main, optimum_filter, sev_fit, shape


@dataclass(frozen=True)
class Family:
    """A feature family: ``compute(traces, ctx) -> {name: (n_events,) array}``.

    Attributes
    ----------
    name : family name
    units : feature name -> unit (every name `compute` returns)
    compute : pure function of a block (n_events, N) float32 of one channel's records (V) and the
        channel's `ChannelContext`
    needs_characterization : True if `compute` uses the context's sev/nps (optimum filter)
    source : where it is defined (a plug-in's file)
    """

    name: str
    units: Mapping[str, str]
    compute: Callable[[np.ndarray, object], dict]
    needs_characterization: bool = False
    source: str = "cryopipe"


def _main(traces, ctx):
    return main.compute_features(traces, ctx.sample_frequency)


#: the built-in families of records, in the order their features are stored
FAMILIES: tuple[Family, ...] = (
    Family("main", main.UNITS, _main),
    Family("optimum_filter", optimum_filter.UNITS, optimum_filter.compute, needs_characterization=True),
    Family("shape", shape.UNITS, shape.compute, needs_characterization=True),
    Family("sev_fit", sev_fit.UNITS, sev_fit.compute, needs_characterization=True),
)
BY_NAME = {f.name: f for f in FAMILIES}


def _all_units() -> dict[str, str]:
    units: dict[str, str] = {}
    for unit_map in [f.units for f in FAMILIES] + [energy.UNITS]:
        for name, unit in unit_map.items():
            if name in units:
                raise CryopipeError(f"feature {name!r} is declared by two families")
            units[name] = unit
    return units


#: every built-in feature name -> its unit (records families and energy)
FEATURE_UNITS: dict[str, str] = _all_units()


def default_families(characterized: bool) -> list[Family]:
    """The built-in families that can run: all with a characterisation, else those that need none."""
    return [f for f in FAMILIES if characterized or not f.needs_characterization]


def families_for(names, available: Sequence[Family]) -> list[Family]:
    """The families of `available` that provide any of the feature `names` (in their order)."""
    names = set(names)
    return [f for f in available if names & set(f.units)]


#: records per block that `compute_block` hands the families at once (the optimum-filter pass they
#: share holds one block's filtered records: ~64 MB of float32 at N = 16384)
BLOCK_RECORDS = 1024


def compute_block(traces: np.ndarray, ctx, families: Sequence[Family],
                  block: int = BLOCK_RECORDS) -> dict[str, np.ndarray]:
    """Run `families` on a block (n_events, N) of one channel's records (V): {name: (n_events,) float64}.

    The records go to the families in slices of `block` events (every feature is per event, so the
    values do not depend on it); within a slice, work several families need is done once
    (`ChannelContext.sharing`).
    """
    n = len(traces)
    out: dict[str, np.ndarray] = {}
    sharing = getattr(ctx, "sharing", None)
    for a in range(0, max(n, 1), max(int(block), 1)):
        part = traces[a:a + block] if n > block else traces
        with (sharing() if sharing is not None else nullcontext()):
            for fam in families:
                for name, v in fam.compute(part, ctx).items():
                    if part is traces:
                        out[name] = v
                        continue
                    v = np.asarray(v)
                    if name not in out:
                        out[name] = np.empty((n,) + v.shape[1:], v.dtype)
                    out[name][a:a + len(part)] = v
    return out
