"""Running one pipeline step: log to a file, report user errors as one line, exit non-zero.

Used by the workflow scripts and the CLI; knows nothing of Snakemake.
"""
from __future__ import annotations

import hashlib
import importlib.util
import logging
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from .errors import CryopipeError

LOG_FORMAT = "%(asctime)s %(name)s %(levelname)s: %(message)s"


def configure_logging(log_path: str | Path | None = None, name: str = "cryopipe") -> logging.Logger:
    """Log INFO and above to `log_path` (created) and to stderr."""
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_path:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_path, mode="w"))
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT, handlers=handlers, force=True)
    return logging.getLogger(name)


@contextmanager
def step(name: str, log_path: str | Path | None = None):
    """Context for one step: yields a logger; a CryopipeError becomes one line and exit status 1."""
    log = configure_logging(log_path, f"cryopipe.{name}")
    t0 = time.perf_counter()
    try:
        yield log
    except CryopipeError as exc:
        log.error("%s", exc)
        print(f"cryopipe {name}: error: {exc}", file=sys.stderr)
        sys.exit(1)
    log.info("done in %.1f s", time.perf_counter() - t0)


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
    """Short hash of the source of `modules` (dotted names), without importing them.

    The workflow puts it in a rule's params, so editing a stage's library code reruns that stage
    (Snakemake does not track imported code by itself).
    """
    h = hashlib.sha256()
    for mod in modules:
        spec = importlib.util.find_spec(mod)
        if spec is None or spec.origin is None:
            raise CryopipeError(f"module {mod} not found: is cryopipe installed?")
        h.update(Path(spec.origin).read_bytes())
    return h.hexdigest()[:16]
