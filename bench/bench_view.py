"""Bench of `cryopipe view` on a generated features store of many events (default 1,000,000).

Writes a run directory (features, labels and predictions stores; no records: 1e6 records of 16384
samples would be 130 GB) to a temporary folder, serves it with `cryopipe view`, opens it in headless
Chromium (Playwright, /usr/bin/chromium) and times, as seen in the browser: page load until the
scatter is drawn, a box selection until the page shows its count (mouse up -> count text), a lasso
selection, a change of colouring. Prints the times and the server's peak memory.

    python bench/bench_view.py [--events 1000000] [--keep DIR]
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import xarray as xr

CHROMIUM = "/usr/bin/chromium"
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from browser_util import (CHROMIUM_ARGS, box_select, free_port,  # noqa: E402
                          lasso_select, scatter_ranges, start_server, wait_drawn)


def make_run(run: Path, n: int, seed: int = 0, channels=("phonon", "light")) -> Path:
    """A synthetic run with features (pulse_height, rise_time, decay_time, onset, record_kind),
    labels (one range cut) and predictions (random scores) of `n` events; no records store."""
    from cryopipe.cuts.language import apply_cuts
    from cryopipe.io.stores import provenance, write_store

    rng = np.random.default_rng(seed)
    n_ch = len(channels)
    energy = np.where(rng.random(n) < 0.3, rng.normal(5.9, 0.1, n), rng.exponential(2.0, n))
    ph = np.stack([energy * 0.005, energy * 0.0015 * rng.normal(1, 0.05, n)]) + rng.normal(0, 2e-4, (n_ch, n))
    kind = np.where(rng.random(n) < 0.1, "noise", "particle")
    ph[:, kind == "noise"] = rng.normal(0, 2e-4, (n_ch, int((kind == "noise").sum())))
    coords = {"channel": list(channels), "event": np.arange(n)}
    feats = xr.Dataset(
        {"pulse_height": (("channel", "event"), ph.astype(np.float32)),
         "rise_time": (("channel", "event"), rng.lognormal(np.log(1e-3), 0.2, (n_ch, n)).astype(np.float32)),
         "decay_time": (("channel", "event"), rng.lognormal(np.log(2e-2), 0.3, (n_ch, n)).astype(np.float32)),
         "onset": (("channel", "event"), rng.normal(0, 1e-4, (n_ch, n)).astype(np.float32)),
         "record_kind": (("event",), kind)},
        coords=coords,
        attrs=provenance("features", parameters={"synthetic": True}, inputs=[], sample_frequency=25000.0,
                         record_length=16384,
                         units="{}"))
    write_store(feats, run / "features.zarr", "features", event_chunk=1 << 17)
    cuts = {"cuts": {"small_rise": {"feature": "rise_time", "max": 1.5e-3}}}
    write_store(apply_cuts(feats, cuts=cuts), run / "labels.zarr", "labels", event_chunk=1 << 17)
    score = rng.beta(2, 2, (n_ch, n)).astype(np.float32)
    pred = xr.Dataset({"score": (("channel", "event"), score), "decision": (("channel", "event"), score >= 0.5),
                       "event_clean": (("event",), (score >= 0.5).all(axis=0))}, coords=coords,
                      attrs=provenance("predictions", parameters={}, inputs=[], model="synthetic", cutoff=0.5))
    write_store(pred, run / "predictions" / "synthetic.zarr", "predictions", event_chunk=1 << 17)
    return run


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--keep", help="build the run here and keep it (default: a temporary folder)")
    ap.add_argument("--screenshot", help="save a screenshot of the page after the selection here (PNG)")
    args = ap.parse_args(argv)
    from playwright.sync_api import sync_playwright

    base = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench_view_"))
    run = base / "big"
    t0 = time.perf_counter()
    if not (run / "features.zarr").exists():
        make_run(run, args.events)
    print(f"run of {args.events:,} events written in {time.perf_counter() - t0:.1f} s: {run}")
    port = free_port()
    t0 = time.perf_counter()
    proc = start_server(run, port)
    print(f"server up in {time.perf_counter() - t0:.1f} s")
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1600, "height": 1250})
            t0 = time.perf_counter()
            page.goto(f"http://127.0.0.1:{port}/", timeout=120_000)
            wait_drawn(page, 120)
            print(f"page load until the scatter is drawn: {time.perf_counter() - t0:.2f} s")
            x0, x1, y0, y1 = scatter_ranges(page)
            results = []
            for frac in (0.5, 0.2, 0.8):
                n, dt = box_select(page, x0 + 0.05 * (x1 - x0), x0 + frac * (x1 - x0), y0 + 0.05 * (y1 - y0),
                                   y0 + frac * (y1 - y0))
                results.append(dt)
                print(f"box selection of {n:,} events: count in the page {dt:.2f} s after mouse up")
            cx, cy, rx, ry = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 3, (y1 - y0) / 3
            ang = np.linspace(0, 2 * np.pi, 24, endpoint=False)
            n, dt = lasso_select(page, cx + rx * np.cos(ang), cy + ry * np.sin(ang))
            results.append(dt)
            print(f"lasso selection of {n:,} events: count in the page {dt:.2f} s after mouse up")
            t0 = time.perf_counter()
            page.locator(".cv-colour select").select_option("cuts · phonon")
            page.wait_for_function("() => true")
            while "cuts" not in page.locator(".cv-legend-label").inner_text():
                if time.perf_counter() - t0 > 60:
                    raise TimeoutError("the colouring did not change")
                time.sleep(0.01)
            print(f"colour change: legend in the page after {time.perf_counter() - t0:.2f} s")
            if args.screenshot:
                time.sleep(1.0)
                page.screenshot(path=args.screenshot)
            print(f"worst selection answer: {max(results):.2f} s (goal: < 2 s)")
            browser.close()
        try:
            hwm = [ln for ln in Path(f"/proc/{proc.pid}/status").read_text().splitlines() if ln.startswith("VmHWM")]
            print(f"peak memory of the cryopipe view server: {int(hwm[0].split()[1]) / 1024:.0f} MB")
        except (OSError, IndexError):
            pass
    finally:
        proc.terminate()
        proc.wait(10)
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
