"""The feature families, their units (each name's unit declared once, in its family's module), and the
one function that runs a list of families on a block of records."""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np

from ..errors import CryopipeError
from ..calibrate import energy
from . import main, optimum_filter, sev_fit, shape


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
    shares_of_pass : `compute` reads the optimum-filter pass (`cryopipe.features.filtered`):
        `compute_block` runs such families together on slices of events, one pass per slice
    """

    name: str
    units: Mapping[str, str]
    compute: Callable[[np.ndarray, object], dict]
    needs_characterization: bool = False
    source: str = "cryopipe"
    shares_of_pass: bool = False


def _main(traces, ctx):
    return main.compute_features(traces, ctx.sample_frequency, pretrigger=getattr(ctx, "pretrigger", None))


#: the built-in families of records, in the order their features are stored
FAMILIES: tuple[Family, ...] = (
    Family("main", main.UNITS, _main),
    Family("optimum_filter", optimum_filter.UNITS, optimum_filter.compute, needs_characterization=True,
           shares_of_pass=True),
    Family("shape", shape.UNITS, shape.compute, needs_characterization=True, shares_of_pass=True),
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
    """The built-in families that can run: all with a characterization, else those that need none."""
    return [f for f in FAMILIES if characterized or not f.needs_characterization]


def families_for(names, available: Sequence[Family]) -> list[Family]:
    """The families of `available` that provide any of the feature `names` (in their order)."""
    names = set(names)
    return [f for f in available if names & set(f.units)]


#: events per slice on which `compute_block` runs the families that share the optimum-filter pass
#: (the pass holds one slice's filtered records: ~64 MB of float32 at N = 16384)
BLOCK_RECORDS = 1024


def compute_block(traces: np.ndarray, ctx, families: Sequence[Family],
                  *, block: int = BLOCK_RECORDS) -> dict[str, np.ndarray]:
    """Run `families` on a block (n_events, N) of one channel's records (V): {name: (n_events,) float64}.

    Families that share the optimum-filter pass (`Family.shares_of_pass`) run together on slices of
    `block` events, one pass per slice (`ChannelContext.sharing`, scratch memory reused from slice to
    slice); the others on the whole block. Every feature is per event: the values do not depend on it.
    """
    n = len(traces)
    results: dict[int, dict] = {}
    for i, fam in enumerate(families):
        if not fam.shares_of_pass:
            results[i] = fam.compute(traces, ctx)
    shared = [i for i, fam in enumerate(families) if fam.shares_of_pass]
    sharing = getattr(ctx, "sharing", None)
    try:
        for a in range(0, max(n, 1), max(int(block), 1)) if shared else ():
            part = traces[a:a + block] if n > block else traces
            with (sharing() if sharing is not None else nullcontext()):
                for i in shared:
                    for name, v in families[i].compute(part, ctx).items():
                        if part is traces:
                            results.setdefault(i, {})[name] = v
                            continue
                        v = np.asarray(v)
                        into = results.setdefault(i, {})
                        if name not in into:
                            into[name] = np.empty((n,) + v.shape[1:], v.dtype)
                        into[name][a:a + len(part)] = v
    finally:
        if sharing is not None:
            ctx.release_workspace()  # scratch memory lives for one call, whatever the number of channels
    out: dict[str, np.ndarray] = {}
    for i in range(len(families)):
        out.update(results.get(i, {}))
    return out
