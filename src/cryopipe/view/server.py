"""Serve `cryopipe view` with a Bokeh server on 127.0.0.1 (local only; BokehJS comes from the package)."""
from __future__ import annotations

import logging
from pathlib import Path

from .app import make_document
from .data import RunData


def serve(run_dir: str | Path, port: int = 5006, cuts_file: str | Path | None = None, show: bool = False,
          address: str = "127.0.0.1") -> None:
    """Open the run's stores and serve the viewer at http://ADDRESS:PORT/ until interrupted."""
    from bokeh.application import Application
    from bokeh.application.handlers.function import FunctionHandler
    from bokeh.server.server import Server

    data = RunData(run_dir, cuts_file)
    for level, text in data.messages:
        logging.getLogger("cryopipe.view").warning("%s: %s", level, text)
    app = Application(FunctionHandler(make_document(data)))
    origins = [f"127.0.0.1:{port}", f"localhost:{port}", f"{address}:{port}"]
    server = Server({"/": app}, port=port, address=address, allow_websocket_origin=origins,
                    websocket_max_message_size=1 << 30)
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
