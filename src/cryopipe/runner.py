"""Running one pipeline step: log to a file, report user errors as one line, exit non-zero.

Used by the workflow scripts and the CLI; knows nothing of Snakemake.
"""
from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from .errors import CryopipeError

LOG_FORMAT = "%(asctime)s %(name)s %(levelname)s: %(message)s"


def configure_logging(*, log_path: str | Path | None = None, name: str = "cryopipe") -> logging.Logger:
    """Log INFO and above to `log_path` (created) and to stderr."""
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_path:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_path, mode="w"))
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT, handlers=handlers, force=True)
    return logging.getLogger(name)


@contextmanager
def step(name: str, log_path: str | Path | None = None, threads: int | None = None):
    """Context for one step: yields a logger; a CryopipeError becomes one line and exit status 1.
    `threads` (a workflow job's share of the cores) limits the step's threads (:func:`use_threads`)."""
    use_threads(threads)
    log = configure_logging(log_path=log_path, name=f"cryopipe.{name}")
    t0 = time.perf_counter()
    try:
        yield log
    except CryopipeError as exc:
        log.error("%s", exc)
        print(f"cryopipe {name}: error: {exc}", file=sys.stderr)
        sys.exit(1)
    log.info("done in %.1f s", time.perf_counter() - t0)


THREADS_ENV = "CRYOPIPE_THREADS"


def use_threads(n: int | None) -> None:
    """Run this process on at most `n` threads (None: all usable cores): scipy.fft workers
    (`cryopipe.trigger.filters.default_workers`), numba's parallel kernels and torch. Snakemake schedules
    jobs by their `threads`; a job that used every core anyway would slow the jobs beside it."""
    if not n:
        return
    n = max(int(n), 1)
    os.environ[THREADS_ENV] = str(n)
    if "numba" in sys.modules:
        import numba

        numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    else:
        os.environ["NUMBA_NUM_THREADS"] = str(n)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(n)
    else:
        os.environ["OMP_NUM_THREADS"] = str(n)


def thread_limit() -> int | None:
    """The thread limit set by :func:`use_threads` in this process (None: none)."""
    value = os.environ.get(THREADS_ENV, "")
    return int(value) if value.isdigit() and int(value) > 0 else None


class Progress:
    """Logs progress of a long loop at most every `every` seconds: call with (done, total) or a fraction."""

    def __init__(self, log: logging.Logger, what: str, every: float = 10.0):
        self.log, self.what, self.every = log, what, every
        self._last = time.perf_counter()

    def __call__(self, done: float, total: float = 1.0) -> None:
        fraction = done / total if total else 1.0
        now = time.perf_counter()
        if now - self._last >= self.every or fraction >= 1.0:
            self._last = now
            self.log.info("%s: %.0f %%", self.what, 100.0 * min(fraction, 1.0))


def code_version(*modules: str) -> str:
    """Short hash of the source of `modules` (dotted names) and of every cryopipe module they
    import, transitively, found by reading the sources (nothing is imported).

    The workflow puts it in a rule's params, so editing any library code a stage runs reruns that
    stage (Snakemake does not track imported code by itself).
    """
    h = hashlib.sha256()
    for path in sorted(module_closure(modules)):
        h.update(path.encode())
        h.update(Path(path).read_bytes())
    return h.hexdigest()[:16]


def module_closure(modules) -> set[str]:
    """Source paths of `modules` and of every module of their top package they import
    (transitively), located on disk without importing anything."""
    seen: set[str] = set()
    todo = list(modules)
    while todo:
        name = todo.pop()
        path = _source_path(name)
        if path is None:
            raise CryopipeError(f"module {name} not found: is cryopipe installed?")
        if str(path) in seen:
            continue
        seen.add(str(path))
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        parents = [".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)]
        todo += parents + _imported_modules(path, package)
    return seen


def script_modules(path: str | Path, *, top: str = "cryopipe") -> list[str]:
    """The modules of package `top` that a (workflow) script imports."""
    return sorted(set(_imported_modules(Path(path), top)))


def _source_path(name: str) -> Path | None:
    """The .py file of a dotted module name of an installed top package (None if there is none)."""
    top, *rest = name.split(".")
    root = _package_root(top)
    if root is None:
        if not rest:  # a plain top-level module (not a package)
            spec = importlib.util.find_spec(top)
            if spec is not None and spec.origin and spec.origin.endswith(".py"):
                return Path(spec.origin)
        return None
    base = root.joinpath(*rest)
    for candidate in (base / "__init__.py", base.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def _package_root(top: str) -> Path | None:
    spec = importlib.util.find_spec(top)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


_PARSED: dict[tuple[str, str, bytes], list[str]] = {}


def _imported_modules(path: Path, package: str) -> list[str]:
    """Dotted names a source file imports (relative imports resolved against `package`); for
    `from a import b` both `a` and `a.b` (b may be a module) where they exist.

    Memoised on the file's content: a workflow hashes ~30 scripts whose import closures share
    most modules, and parsing them again for each rule made up half of the DAG's start-up.
    """
    source = path.read_bytes()
    key = (str(path), package, hashlib.sha256(source).digest())
    if key not in _PARSED:
        _PARSED[key] = _parse_imports(path, source, package)
    return list(_PARSED[key])


def _statements(body):
    """Every statement in a body, nested ones included (imports are statements: no need to walk
    the expressions, which are most of a module's nodes)."""
    import ast

    for node in body:
        yield node
        for field in ("body", "orelse", "finalbody", "handlers"):
            sub = getattr(node, field, None)
            if isinstance(sub, list):
                yield from _statements(sub)
        if isinstance(node, ast.Match):
            for case in node.cases:
                yield from _statements(case.body)


def _parse_imports(path: Path, source: bytes, package: str) -> list[str]:
    import ast

    names = []
    for node in _statements(ast.parse(source, str(path)).body):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parent = ".".join(parts[: len(parts) - node.level + 1])
                base = f"{parent}.{base}" if base else parent
            names.append(base)
            names += [f"{base}.{a.name}" for a in node.names]
    top = package.split(".")[0]
    return [n for n in names if n.split(".")[0] == top and _source_path(n) is not None]
