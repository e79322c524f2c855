"""Drive `cryopipe view` in a real browser (Playwright + chromium): shared by tests/test_view.py and
bench/bench_view.py."""
from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(run: Path, port: int, timeout: float = 120.0, cuts_file: Path | None = None):
    """`cryopipe view RUN --port PORT` in a subprocess; returns it once the port answers."""
    cmd = [sys.executable, "-m", "cryopipe.cli", "view", str(run), "--port", str(port)]
    if cuts_file is not None:
        cmd += ["--cuts-file", str(cuts_file)]
    log = open(run.parent / f"view_{port}.log", "w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"cryopipe view exited: {(run.parent / f'view_{port}.log').read_text()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("cryopipe view did not start")


def data_to_screen(page, x: float, y: float) -> tuple[float, float]:
    """Page coordinates of data point (x, y) of the scatter (BokehJS's own scales)."""
    return tuple(page.evaluate(
        """([x, y]) => { const fig = Bokeh.documents[0].get_model_by_name('scatter');
           const v = Bokeh.index.find_one(fig); const r = v.el.getBoundingClientRect();
           return [r.left + v.frame.x_scale.compute(x), r.top + v.frame.y_scale.compute(y)]; }""", [x, y]))


def scatter_ranges(page) -> list[float]:
    return page.evaluate("""() => { const f = Bokeh.documents[0].get_model_by_name('scatter');
        return [f.x_range.start, f.x_range.end, f.y_range.start, f.y_range.end]; }""")


def wait_drawn(page, timeout: float = 60.0):
    """Until the scatter's ranges are set (data arrived and was drawn once)."""
    t0 = time.time()
    while time.time() - t0 < timeout:
        try:
            r = scatter_ranges(page)
            if all(v is not None and np.isfinite(v) for v in r) and r[1] > r[0]:
                return
        except Exception:
            pass
        time.sleep(0.05)
    raise TimeoutError("the scatter was not drawn")


def count_text(page) -> str:
    loc = page.locator(".cv-count-n")
    return loc.inner_text() if loc.count() else ""


def release_and_count(page, before: str, timeout: float, what: str) -> tuple[int, float]:
    """Release the mouse; (count shown, seconds until the page shows a count other than `before`)."""
    t0 = time.perf_counter()
    page.mouse.up()
    while time.perf_counter() - t0 < timeout:
        now = count_text(page)
        if now and now != before:
            return int(now.replace(",", "")), time.perf_counter() - t0
        time.sleep(0.01)
    raise TimeoutError(f"{what} did not appear")


def box_select(page, x0, x1, y0, y1, timeout: float = 30.0) -> tuple[int, float]:
    """Drag a box over data coordinates; (count shown, seconds from mouse up to the count in the page)."""
    before = count_text(page)
    page.locator(".cv-scatter").hover()
    a, b = data_to_screen(page, x0, y1), data_to_screen(page, x1, y0)
    page.mouse.move(*a)
    page.mouse.down()
    page.mouse.move((a[0] + b[0]) / 2, (a[1] + b[1]) / 2, steps=4)
    page.mouse.move(*b, steps=4)
    return release_and_count(page, before, timeout, "the selection count")


def lasso_select(page, xs, ys, timeout: float = 30.0) -> tuple[int, float]:
    """Draw a lasso through data points (xs, ys); (count shown, seconds from mouse up to the count)."""
    lasso = page.locator(".cv-scatter .bk-tool-icon-lasso-select")
    if lasso.count():
        lasso.first.click()
    before = count_text(page)
    pts = [data_to_screen(page, x, y) for x, y in zip(xs, ys)]
    page.mouse.move(*pts[0])
    page.mouse.down()
    for p in pts[1:] + pts[:1]:
        page.mouse.move(*p, steps=3)
    return release_and_count(page, before, timeout, "the lasso count")
