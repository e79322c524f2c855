"""User feature plug-ins: every public function ``name(trace, sample_frequency)`` of a Python file.

``trace`` is a read-only float32 array (events, samples) in volts of one channel's records (trigger
at N/4; the built-in features read the same memory, so a plug-in that wants to modify it works on
``trace.copy()``),
``sample_frequency`` in Hz; the function returns an array (events,) that is stored in the features
under ``name``, per channel like the built-in features. A file may declare units in a module-level
dict ``UNITS = {name: unit}``; others are stored with unit "unknown". Public: defined in the file
itself (not imported) and not starting with "_". Config: ``features: {plugins: [path, ...]}``.
"""
from __future__ import annotations

import hashlib
import importlib.util
import inspect
import sys
from pathlib import Path

import numpy as np

from ..errors import CryopipeError
from .registry import FEATURE_UNITS, Family

UNKNOWN_UNIT = "unknown"


class PluginError(CryopipeError):
    """A feature plug-in that cannot be loaded or that returned something unusable."""


def file_hash(path: str | Path) -> str:
    """sha256 of a plug-in file's content (for the features rule's params: editing it reruns)."""
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError as exc:
        raise PluginError(f"feature plug-in {path}: cannot read the file ({exc})") from None


def _import(path: Path):
    name = "cryopipe_plugin_" + hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:16]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise PluginError(f"feature plug-in {path}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # the user's code: any error, reported with the file
        sys.modules.pop(name, None)
        raise PluginError(f"feature plug-in {path}: importing the file raised {type(exc).__name__}: {exc}") from exc
    return module


def _wrap(path: Path, name: str, fn):
    def compute(traces, ctx):
        n_events = traces.shape[0]
        view = traces.view()
        view.flags.writeable = False  # the built-in features read the same memory after the plug-ins
        try:
            value = fn(view, ctx.sample_frequency)
        except ValueError as exc:
            if "read-only" in str(exc):
                raise PluginError(f"feature plug-in {path}, function {name}: tried to modify the trace, which is "
                                  f"read-only (the built-in features use it); work on trace.copy()") from None
            raise PluginError(f"feature plug-in {path}, function {name}: raised {type(exc).__name__}: {exc}") from exc
        except Exception as exc:
            raise PluginError(f"feature plug-in {path}, function {name}: raised {type(exc).__name__}: {exc}") from exc
        try:
            value = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise PluginError(f"feature plug-in {path}, function {name}: returned {type(value).__name__}, "
                              f"not numbers ({exc})") from None
        if value.shape != (n_events,):
            raise PluginError(f"feature plug-in {path}, function {name}: returned shape {value.shape}, expected "
                              f"({n_events},): one value per event of the (events, samples) trace")
        return {name: value}

    return compute


def load_plugins(paths, *, builtin=FEATURE_UNITS) -> list[Family]:
    """One Family per public function of each plug-in file (in file order, then definition order).

    Raises PluginError naming the file and function for: an unreadable or failing file, a public
    function whose signature is not ``(trace, sample_frequency)``, a name that is a built-in feature
    (`builtin`) or already defined by another plug-in, a file without public functions.
    """
    families: list[Family] = []
    seen: dict[str, Path] = {}
    for p in paths or ():
        path = Path(p)
        if not path.is_file():
            raise PluginError(f"feature plug-in {path}: no such file")
        module = _import(path)
        units = getattr(module, "UNITS", {})
        if not isinstance(units, dict):
            raise PluginError(f"feature plug-in {path}: UNITS must be a dict name -> unit")
        functions = [(n, f) for n, f in vars(module).items()
                     if inspect.isfunction(f) and not n.startswith("_") and f.__module__ == module.__name__]
        if not functions:
            raise PluginError(f"feature plug-in {path}: defines no public function name(trace, sample_frequency)")
        for name, fn in functions:
            where = f"feature plug-in {path}, function {name}"
            try:
                inspect.signature(fn).bind(None, None)
            except (TypeError, ValueError):
                raise PluginError(f"{where}: must take (trace, sample_frequency), has {inspect.signature(fn)}") from None
            if name in builtin:
                raise PluginError(f"{where}: {name!r} is a built-in feature; rename the function")
            if name in seen:
                raise PluginError(f"{where}: {name!r} is already defined by the plug-in {seen[name]}")
            if name in ("trigger_sample", "trigger_time", "record_kind", "valid"):
                raise PluginError(f"{where}: {name!r} is a per-event variable of the features; rename the function")
            seen[name] = path
            families.append(Family(f"plugin:{path}:{name}", {name: str(units.get(name, UNKNOWN_UNIT))},
                                   _wrap(path, name, fn), source=str(path)))
    return families
