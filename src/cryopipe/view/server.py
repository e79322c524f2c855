"""Serve `cryopipe view` with a Bokeh server on 127.0.0.1 (local only; BokehJS comes from the package)."""
from __future__ import annotations

import errno
import logging
import socket
from pathlib import Path

from ..errors import InputError

from .app import make_document
from .data import RunData


#: what makes a folder a run for the viewer (any of them, readable or not)
RUN_STORES = ("features.zarr", "records.zarr", "labels.zarr", "predictions")


def serve(run_dir: str | Path, *, port: int = 5006, cuts_file: str | Path | None = None, show: bool = False,
          address: str = "127.0.0.1") -> None:
    """Open the run's stores and serve the viewer at http://ADDRESS:PORT/ until interrupted.

    InputError (one line) for a missing run directory, a port outside 1-65535 or one already in use,
    before anything is loaded. A run directory with missing or broken stores is served, with the
    problems shown in the page.
    """
    from bokeh.application import Application
    from bokeh.application.handlers.function import FunctionHandler
    from bokeh.server.server import Server

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise InputError(f"{run_dir}: no such run directory (give results/<run>)")
    check_port(address, port)
    if not any((run_dir / name).exists() for name in RUN_STORES):   # a results folder, a data folder ...
        runs = sorted(p.parent.name for p in run_dir.glob("*/features.zarr"))
        hint = f"; runs in it: {', '.join(str(run_dir / r) for r in runs)}" if runs else " (give results/<run>)"
        raise InputError(f"{run_dir}: not a run directory: no features, records, labels or predictions store{hint}")
    data = RunData(run_dir, cuts_file)   # a run whose stores are broken opens and says what is wrong
    for level, text in data.messages:
        logging.getLogger("cryopipe.view").warning("%s: %s", level, text)
    app = Application(FunctionHandler(make_document(data)))
    origins = [f"127.0.0.1:{port}", f"localhost:{port}", f"{address}:{port}"]
    try:
        server = Server({"/": app}, port=port, address=address, allow_websocket_origin=origins,
                        websocket_max_message_size=1 << 30)
    except OSError as exc:  # taken between check_port and now
        raise InputError(_port_problem(address, port, exc)) from None
    server.start()
    print(f"cryopipe view: {data.run} ({data.n_events:,} events) at http://{address}:{server.port}/ "
          "(Ctrl-C to stop)", flush=True)
    if show:
        server.io_loop.add_callback(server.show, "/")
    try:
        server.io_loop.start()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


def _port_problem(address: str, port: int, exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        return f"port {port} is in use (another cryopipe view?); choose another with --port"
    return f"cannot serve on {address}:{port}: {exc.strerror or exc}"


def check_port(address: str, port: int) -> None:
    """InputError unless `port` (1-65535) can be bound on `address` (as the server binds it, with
    SO_REUSEADDR)."""
    if not isinstance(port, int) or not 1 <= port <= 65535:
        raise InputError(f"--port {port}: a port is a number from 1 to 65535 (default 5006)")
    with socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((address, port))
        except OSError as exc:
            raise InputError(_port_problem(address, port, exc)) from None
