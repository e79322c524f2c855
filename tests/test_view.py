"""`cryopipe view`: the run data behind the page, polygon cuts, hand labels and their evaluation, and
the page itself in a real headless browser (Chromium driven by Playwright), as a person uses it.

The small run is written here with numpy (pulses on noise) and the store writers; it is not made by
the pipeline. The browser test is skipped only where no `chromium` is on PATH (the check .ci/run makes
before it installs one); in CI (CI=true) that skip fails the run (tests/conftest.py).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from cryopipe.cleaning.hand_labels import (
    ACCEPTED_CLASSES,
    BOX1_CLASSES,
    append_hand_labels,
    current_hand_labels,
    evaluate_hand_labels,
    read_hand_labels,
)
from cryopipe.cuts.language import apply_cuts, load_cuts, points_in_polygon, validate_cuts
from cryopipe.errors import CryopipeError
from cryopipe.io.stores import load_store, provenance, write_store
from cryopipe.view.data import SEP, RunData

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"   # .ci/run: `command -v chromium`
FS, N, CHANNELS = 25_000.0, 1024, ("phonon", "light")
CUTS = {"cuts": {"small_rise": {"feature": "rise_time", "max": 2e-3, "records": "particle"}}}


def _complete(ds: xr.Dataset, kind: str) -> xr.Dataset:
    """Fill the schema's variables and attrs this test does not care about (zeros), so that the
    small run stays a valid run while the store layouts grow."""
    from cryopipe.io.stores import STORES

    schema = STORES[kind]
    kinds = {"f": np.float64, "i": np.int64, "b": bool}
    for name, (dims, dt) in schema.variables.items():
        if name not in ds.variables:
            ds[name] = (dims, np.zeros([ds.sizes[d] for d in dims], dtype=kinds.get(dt, np.float64))
                        if dt != "U" else np.full([ds.sizes[d] for d in dims], ""))
    for a in schema.attrs:
        ds.attrs.setdefault(a, 0.0)
    return ds


def write_small_run(run: Path, n: int = 240, seed: int = 3) -> Path:
    """records, features, labels, characterization and one predictions store of `n` events."""
    rng = np.random.default_rng(seed)
    t = (np.arange(N) - N // 4) / FS
    sev = np.where(t >= 0, np.exp(-t / 0.004) - np.exp(-t / 0.0004), 0.0)
    sev /= sev.max()
    kind = np.where(np.arange(n) % 5 == 0, "noise", "particle")
    amp = np.where(kind == "particle", rng.exponential(0.02, n) + 0.002, 0.0)
    light = amp * 0.3 * rng.normal(1, 0.1, n)
    heights = np.stack([amp, light])
    trace = (np.array([0.2, -0.1])[:, None, None] + heights[:, :, None] * sev[None, None, :]
             + rng.normal(0, 2e-4, (2, n, N))).astype(np.float32)
    coords = {"channel": list(CHANNELS), "event": np.arange(n)}
    records = xr.Dataset(
        {"trace": (("channel", "event", "sample"), trace),
         "trigger_sample": (("event",), np.arange(n) * 5000 + 256),
         "trigger_time": (("event",), (np.arange(n) * 5000 + 256) / FS),
         "record_kind": (("event",), kind),
         "trigger_channel": (("event",), np.where(kind == "noise", -1, 0)),
         "trigger_amplitude": (("channel", "event"), heights.astype(np.float32)),
         "time": (("sample",), t)},
        coords=coords,
        attrs=provenance("records", parameters={}, inputs=[], sample_frequency=FS, record_length=N, live_time=100.0,
                         stream_duration=100.0, threshold=[1e-3, 1e-3]))
    write_store(_complete(records, "records"), run / "records.zarr", "records", event_chunk=128)
    base = trace[:, :, : N // 8].mean(axis=-1)
    features = xr.Dataset(
        {"pulse_height": (("channel", "event"), (trace.max(axis=-1) - base).astype(np.float64)),
         "onset": (("channel", "event"), rng.normal(0, 1e-4, (2, n))),
         "rise_time": (("channel", "event"), rng.lognormal(np.log(1.5e-3), 0.3, (2, n))),
         "decay_time": (("channel", "event"), rng.lognormal(np.log(4e-3), 0.2, (2, n))),
         "record_kind": (("event",), kind)},
        coords=coords,
        attrs=provenance("features", parameters={}, inputs=[], sample_frequency=FS, record_length=N, units="{}"))
    write_store(_complete(features, "features"), run / "features.zarr", "features")
    write_store(apply_cuts(features, cuts=CUTS), run / "labels.zarr", "labels")
    nf = N // 2 + 1
    write_store(xr.Dataset(
        {"sev": (("channel", "sample"), np.stack([sev, sev])), "nps": (("channel", "frequency"), np.ones((2, nf))),
         "filter_real": (("channel", "frequency"), np.ones((2, nf))),
         "filter_imag": (("channel", "frequency"), np.zeros((2, nf))),
         "resolution": (("channel",), np.ones(2)), "threshold": (("channel",), np.ones(2))},
        coords={"channel": list(CHANNELS)},
        attrs=provenance("characterization", parameters={}, inputs=[], sample_frequency=FS, record_length=N)),
        run / "characterization.zarr", "characterization")
    score = np.clip(np.where(kind == "particle", 0.8, 0.2)[None, :] + rng.normal(0, 0.2, (2, n)), 0, 1)
    write_store(xr.Dataset(
        {"score": (("channel", "event"), score.astype(np.float32)), "decision": (("channel", "event"), score >= 0.5),
         "event_clean": (("event",), (score >= 0.5).all(axis=0)),
         "ood": (("channel", "event"), score > 0.95),
         "unsure": (("channel", "event"), ((score >= 0.4) & (score <= 0.6)) | (score > 0.97))},   # some both
        coords=coords,
        attrs=provenance("predictions", parameters={}, inputs=[], model="toy",
                         cutoff=0.5)), run / "predictions" / "toy.zarr",
        "predictions")
    return run


@pytest.fixture(scope="module")
def small_run(tmp_path_factory) -> Path:
    return write_small_run(tmp_path_factory.mktemp("view") / "sim")


def snapshot(run: Path) -> dict:
    """(size, mtime) of every file of the run's pipeline stores."""
    out = {}
    for store in ["records.zarr", "features.zarr", "labels.zarr", "characterization.zarr", "predictions"]:
        for f in sorted((run / store).rglob("*")):
            if f.is_file():
                st = f.stat()
                out[str(f.relative_to(run))] = (st.st_size, st.st_mtime_ns)
    return out


# ---------------------------------------------------------------------------------------------
# without a browser
# ---------------------------------------------------------------------------------------------

def test_box1_classes_are_the_simulators():
    from cryopipe.simulate.records import DEFAULT_ACCEPTED, EVENT_CLASSES

    assert BOX1_CLASSES == EVENT_CLASSES and len(BOX1_CLASSES) == 13
    assert ACCEPTED_CLASSES == DEFAULT_ACCEPTED


def test_run_data_columns_colourings_traces(small_run):
    d = RunData(small_run)
    assert d.messages == [] and d.n_events == 240 and d.channels == list(CHANNELS)
    assert f"pulse_height{SEP}phonon" in d.columns and "trigger_time" in d.columns
    assert d.default_axes() == (f"pulse_height{SEP}phonon", f"pulse_height{SEP}light")
    for name in d.colourings:                       # every colouring has one value per event
        col = d.colouring(name)
        assert col.values.shape == (240,)
        if col.factors is not None:
            assert np.nanmax(col.values) < len(col.factors)
    kinds = d.colouring("record kind")
    assert kinds.factors == ["noise", "particle"] and int((kinds.values == 0).sum()) == 48
    tr = d.event_traces(130)                        # second chunk of 128 events
    rec = xr.open_zarr(small_run / "records.zarr", consolidated=False)
    np.testing.assert_array_equal(tr, rec["trace"][:, 130].values)
    mean, k = d.mean_trace(np.arange(1, 240, 5))    # particle events only
    assert k == 48 and mean.shape == (2, N) and mean[0].max() > 5e-3
    info = d.event_info(3)
    assert info["event"] == 3 and info["record kind"] == "particle"
    assert dict(info["rows"])["toy score"][0] == pytest.approx(float(
        xr.open_zarr(small_run / "predictions/toy.zarr", consolidated=False)["score"][0, 3]))
    # a calibrated model's flags: ood wins over unsure, per channel
    pred = xr.open_zarr(small_run / "predictions/toy.zarr", consolidated=False)
    ood, unsure = pred["ood"].values[1], pred["unsure"].values[1]
    flags = d.colouring(f"toy flags{SEP}light")
    assert flags.factors == ["sure", "unsure", "ood"]
    np.testing.assert_array_equal(flags.values, np.where(ood, 2, np.where(unsure, 1, 0)))
    assert (flags.values == 1).any() and (flags.values == 2).any() and (ood & unsure).any()
    e = int(np.flatnonzero(unsure & ~ood)[0])
    assert dict(d.event_info(e)["rows"])["toy flags"][1] == "unsure"


def test_missing_and_broken_stores_are_messages(tmp_path):
    run = tmp_path / "broken"
    (run / "features.zarr").mkdir(parents=True)
    (run / "features.zarr" / "zarr.json").write_text("{ not json")
    d = RunData(run)
    text = " ".join(t for _, t in d.messages)
    assert "features.zarr" in text and "records.zarr: not there" in text
    assert any(lvl == "error" for lvl, _ in d.messages)
    assert RunData(tmp_path / "nothing").messages[0][0] == "error"


def test_page_of_a_broken_run_shows_the_message(tmp_path):
    from bokeh.document import Document

    from cryopipe.view.app import make_document

    run = tmp_path / "broken"
    (run / "labels.zarr").mkdir(parents=True)
    doc = Document()
    make_document(RunData(run))(doc)
    from bokeh.models import Div

    html = " ".join(m.text for m in doc.roots[0].select({"type": Div}))
    assert "labels.zarr" in html and "cv-error" in html


def test_polygon_cut_language():
    f = xr.Dataset({"a": (("channel", "event"), np.array([[1.0, 2, 3, np.nan], [10, 20, 30, 40]])),
                    "b": (("channel", "event"), np.array([[1.0, 2, 3, 4], [1, 2, 3, 4]]))},
                   coords={"channel": ["p", "l"]})
    square = [[0.5, 0.5], [2.5, 0.5], [2.5, 4.5], [0.5, 4.5]]
    cuts = {"cuts": {
        "own": {"polygon": {"x": "a", "y": "b", "vertices": square}},
        "cross": {"polygon": {"x": "a", "y": "b", "x_channel": "p", "vertices": square}},
        "outside": {"channels": "l", "polygon": {"x": "a", "y": "b", "vertices": square, "inside": False}},
        "log": {"polygon": {"x": "a", "y": "b", "x_log": True, "vertices": [[1.5, 0], [35, 0], [35, 5], [1.5, 5]]}},
        "nested": {"any_of": [{"feature": "b", "max": 1.5},
                              {"polygon": {"x": "a", "y": "b", "vertices": [[2.5, 0], [3.5, 0], [3.5, 9]]}}]}}}
    flags = apply_cuts(f, cuts=cuts)["cut_flags"]
    np.testing.assert_array_equal(flags.sel(cut="own").values, [[1, 1, 0, 0], [0, 0, 0, 0]])
    np.testing.assert_array_equal(flags.sel(cut="cross").values, [[1, 1, 0, 0], [1, 1, 0, 0]])
    np.testing.assert_array_equal(flags.sel(cut="outside").values, [[1, 1, 1, 1], [1, 1, 1, 1]])
    np.testing.assert_array_equal(flags.sel(cut="log").values, [[0, 1, 1, 0], [1, 1, 1, 0]])
    np.testing.assert_array_equal(flags.sel(cut="nested").values, [[1, 0, 1, 0], [1, 0, 0, 0]])
    for bad in ({"x": "a", "y": "b", "vertices": [[0, 0], [1, 1]]},
                {"x": "a", "y": "zz", "vertices": square},
                {"x": "a", "y": "b", "vertices": square, "colour": 1},
                {"x": "a", "y": "b", "x_log": True, "vertices": [[0, 0], [1, 0], [1, 1]]}):
        with pytest.raises(CryopipeError):
            validate_cuts({"cuts": {"c": {"polygon": bad}}}, features={"a", "b"})
    # the even-odd rule on a concave polygon
    vx, vy = [0, 4, 4, 2, 0], [0, 0, 4, 1, 4]
    np.testing.assert_array_equal(points_in_polygon([1, 2, 3, 5], [0.5, 3, 2, 1], vx, vy), [1, 0, 1, 0])


def test_save_cut_appends_to_the_cuts_file(small_run, tmp_path):
    d = RunData(small_run, cuts_file=tmp_path / "cuts.yaml")
    x, y = f"pulse_height{SEP}phonon", f"pulse_height{SEP}light"
    rect = {"type": "rect", "x0": 0.01, "x1": 0.05, "y0": 0.0, "y1": 0.02}
    cut = d.cut_from_selection("big_ones", rect, x, y, False, False)
    assert cut["channels"] == "all" and cut["polygon"]["x_channel"] == "phonon"
    path, passed, total = d.save_cut("big_ones", cut)
    doc = load_cuts(path)
    assert list(doc["cuts"]) == ["small_rise", "big_ones"]        # started from the run's cut set
    assert "cryopipe view" in path.read_text().splitlines()[0]
    ph = d.column(x), d.column(y)
    inside = (ph[0] >= 0.01) & (ph[0] <= 0.05) & (ph[1] >= 0) & (ph[1] <= 0.02)
    assert passed == 2 * int(inside.sum()) and total == 480
    # a same-channel box becomes plain ranges; a lasso on log axes a polygon; both append as text
    path.write_text(path.read_text() + "# a comment of the user\n")
    same = d.cut_from_selection("fast", rect | {"y0": -4, "y1": -2.5}, x, f"rise_time{SEP}phonon", False, True)
    assert same["channels"] == "phonon" and same["all_of"][1] == {"feature": "rise_time", "min": 1e-4,
                                                                   "max": pytest.approx(10 ** -2.5)}
    d.save_cut("fast", same)
    lasso = {"type": "poly", "x": [-2.5, -1, -1], "y": [-3, -3, -2]}
    poly = d.cut_from_selection("lasso", lasso, x, f"rise_time{SEP}phonon", True, True, inside=False,
                                records="particle")
    assert poly["polygon"]["x_log"] and poly["polygon"]["inside"] is False and poly["records"] == "particle"
    d.save_cut("lasso", poly)
    text = path.read_text()
    assert "# a comment of the user" in text
    assert list(load_cuts(path)["cuts"]) == ["small_rise", "big_ones", "fast", "lasso"]
    with pytest.raises(CryopipeError, match="already has"):
        d.save_cut("fast", same)
    with pytest.raises(CryopipeError, match="not a per-channel feature"):
        d.cut_from_selection("t", rect, "trigger_time", y, False, False)
    assert load_cuts(path) and path.read_text() == text               # a refused cut changes nothing


def test_hand_labels_store_and_evaluation(small_run, tmp_path):
    path = tmp_path / "hand_labels.zarr"
    append_hand_labels(path, [1, 2, 3], "event_pulse", time="2026-01-01T00:00:00Z")
    append_hand_labels(path, [5, 10], "noise")
    ds = append_hand_labels(path, [3], "pile_up", channel="phonon")
    append_hand_labels(path, [2], "spike")                           # relabelled: the latest wins
    ds = read_hand_labels(path)
    assert ds.sizes["entry"] == 7 and set(ds.variables) >= {"event", "label", "channel", "time"}
    assert ds["time"].values[0] == "2026-01-01T00:00:00Z"
    cur = current_hand_labels(ds)
    assert cur[(2, "all")] == "spike" and cur[(3, "phonon")] == "pile_up" and cur[(3, "all")] == "event_pulse"
    with pytest.raises(CryopipeError):
        append_hand_labels(path, [1], "banana")
    pred = xr.open_zarr(small_run / "predictions/toy.zarr", consolidated=False).load()
    res = evaluate_hand_labels(ds, pred)
    clean, dec = pred["event_clean"].values, pred["decision"].values
    truth = np.array([True, False, True, False, False, False])          # 1, 2, 3, 3 (phonon), 5, 10
    model = np.array([clean[1], clean[2], clean[3], dec[0, 3], clean[5], clean[10]])
    assert res["n"] == 6 and res["model"] == "toy"
    assert res["true_accept"] == int((truth & model).sum()) and res["false_accept"] == int((~truth & model).sum())
    assert res["true_reject"] == int((~truth & ~model).sum()) and res["false_reject"] == int((truth & ~model).sum())
    assert res["survival"]["noise"]["total"] == 2 and res["survival"]["pile_up"]["total"] == 1
    assert res["survival"]["pile_up"]["survived"] == int(dec[0, 3])


def test_inspect_reads_a_hand_labels_store(tmp_path, capsys):
    """`cryopipe inspect` on the viewer's labels prints the current label per class (the latest wins);
    --verify, which needs chunk checksums, is one line."""
    from cryopipe.cli import main

    path = tmp_path / "hand_labels.zarr"
    append_hand_labels(path, [1, 2, 3], "event_pulse")
    append_hand_labels(path, [2], "spike")
    assert main(argv=["inspect", str(path)]) == 0
    out = capsys.readouterr().out
    assert "4 entries, 3 labelled (event, channel) pairs" in out
    assert "event_pulse: 2" in out and "spike: 1" in out
    assert main(argv=["inspect", "--verify", str(path)]) == 1
    assert "hand-labels store" in capsys.readouterr().err


def test_evaluate_hand_labels_mistakes_are_one_line(small_run, tmp_path, capsys):
    """No run, a folder that is no run, no hand labels yet (says where to make them), --epochs
    without --fine-tune."""
    import shutil

    from cryopipe.cli import main

    assert main(argv=["evaluate-hand-labels", str(tmp_path / "nope")]) == 1
    assert "no such run directory" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()            # a folder, but no run: not sent to `cryopipe view`, which refuses it
    assert main(argv=["evaluate-hand-labels", str(tmp_path / "empty")]) == 1
    err = capsys.readouterr().err
    assert "not a run folder" in err and "cryopipe view" not in err
    run = tmp_path / "run"
    shutil.copytree(small_run, run)
    assert main(argv=["evaluate-hand-labels", str(run)]) == 1
    err = capsys.readouterr().err
    assert "no hand labels yet" in err and f"cryopipe view {run}" in err and err.count("\n") == 1
    append_hand_labels(run / "hand_labels.zarr", np.arange(0, 20, 5), "noise")
    assert main(argv=["evaluate-hand-labels", str(run), "--epochs", "2"]) == 1
    assert "--epochs: only with --fine-tune" in capsys.readouterr().err


@pytest.mark.slow  # more than 5 s (the fast subset: pytest -m 'not slow')
def test_evaluate_hand_labels_command(small_run, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(small_run, run)
    append_hand_labels(run / "hand_labels.zarr", np.arange(1, 200, 5), "event_pulse")   # particle events
    append_hand_labels(run / "hand_labels.zarr", np.arange(0, 200, 5), "noise")
    out = subprocess.run([sys.executable, "-m", "cryopipe.cli", "evaluate-hand-labels", str(run),
                          "--output", str(tmp_path / "r.json")], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "model toy: 80 hand-labelled records" in out.stdout and "balanced accuracy" in out.stdout
    # the shipped model scores only the labelled records
    out = subprocess.run([sys.executable, "-m", "cryopipe.cli", "evaluate-hand-labels", str(run), "--model",
                          "universal"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "model universal: 80 hand-labelled records" in out.stdout and "class accuracy" in out.stdout


@pytest.mark.slow  # more than 5 s (the fast subset: pytest -m 'not slow')
def test_fine_tune_on_hand_labels(small_run, tmp_path):
    """The loop from looking to training: tune the shipped model on hand labels, evaluate on held-out ones."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(small_run, run)
    append_hand_labels(run / "hand_labels.zarr", np.arange(1, 120, 5), "event_pulse")
    append_hand_labels(run / "hand_labels.zarr", np.arange(0, 120, 5), "noise")
    out = subprocess.run([sys.executable, "-m", "cryopipe.cli", "evaluate-hand-labels", str(run), "--fine-tune",
                          str(tmp_path / "tuned.pt"), "--epochs", "2", "--output", str(tmp_path / "ft.json")],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    import json

    res = json.loads((tmp_path / "ft.json").read_text())
    assert res["n_holdout_events"] == 14 and res["n_train_records"] == 2 * (48 - 14)
    assert res["before"]["n"] == res["after"]["n"] == 14 and res["after"]["model"] == "universal_hand_tuned"
    assert (tmp_path / "tuned.pt").is_file() and (tmp_path / "tuned.json").is_file()
    assert "after fine-tuning" in out.stdout and "uncalibrated" in out.stdout
    # the original's calibration does not carry over: the tuned model predicts without ood / unsure flags
    tuned = json.loads((tmp_path / "tuned.json").read_text())
    assert "temperature" not in tuned and "ood_threshold" not in tuned and "cutoff" not in tuned
    assert tuned["fine_tuned_from"] == "universal" and tuned["class_names"]
    from cryopipe.cleaning.predict import is_calibrated
    from cryopipe.cleaning.universal import resolve_model
    assert not is_calibrated(resolve_model(tmp_path / "tuned.pt")[0])


def test_density_mode_selects_on_the_server(small_run):
    """Above points_max events the scatter is a server-side image; box and lasso select there."""
    from types import SimpleNamespace

    from bokeh.document import Document

    from cryopipe.view.app import ViewApp

    d = RunData(small_run)
    app = ViewApp(d, Document(), points_max=100)
    assert app.density and len(app.img_src.data["image"]) == 1 and len(app.src.data["x"]) == 0
    x, y = d.column(f"pulse_height{SEP}phonon"), d.column(f"pulse_height{SEP}light")
    app.on_geometry(SimpleNamespace(final=True, geometry={"type": "rect", "x0": 0.01, "x1": 0.05,
                                                         "y0": 0.0, "y1": 0.02}))
    inside = (x >= 0.01) & (x <= 0.05) & (y >= 0) & (y <= 0.02)
    np.testing.assert_array_equal(app.sel, np.nonzero(inside)[0])
    assert str(int(inside.sum())) in app.count_div.text and len(app.sel_img_src.data["image"]) == 1
    app.on_geometry(SimpleNamespace(final=True, geometry={"type": "poly", "x": [0, 0.1, 0.1], "y": [0, 0, 0.1]}))
    np.testing.assert_array_equal(app.sel, np.nonzero(points_in_polygon(x, y, [0, 0.1, 0.1], [0, 0, 0.1]))[0])


# ---------------------------------------------------------------------------------------------
# in a real browser
# ---------------------------------------------------------------------------------------------

@pytest.mark.slow  # more than 5 s (the fast subset: pytest -m 'not slow')
@pytest.mark.ci_required
@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs Debian's chromium on PATH (CI installs it)")
def test_browser_workflow(small_run, tmp_path):
    """Open the page, box-select, click a point, step with the arrow key, save a cut and hand labels;
    check the cuts file, the hand-labels store, a non-blank screenshot, the stores untouched, and
    the time from mouse up to the selection's count in the page."""
    import shutil

    from playwright.sync_api import sync_playwright

    from browser_util import CHROMIUM_ARGS, box_select, data_to_screen, free_port, start_server, wait_drawn

    run = tmp_path / "sim"
    shutil.copytree(small_run, run)
    broken = tmp_path / "broken"
    (broken / "features.zarr").mkdir(parents=True)
    (broken / "features.zarr" / "zarr.json").write_text("{ not json")
    before = snapshot(run)
    d = RunData(run)
    x, y = d.column(f"pulse_height{SEP}phonon"), d.column(f"pulse_height{SEP}light")
    box = (0.008, 0.06, -0.01, 0.03)
    inside = (x >= box[0]) & (x <= box[1]) & (y >= box[2]) & (y <= box[3])
    port, port2 = free_port(), free_port()
    server = start_server(run, port)
    server2 = start_server(broken, port2)
    shots = Path(os.environ.get("CRYOPIPE_VIEW_SCREENSHOTS", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1600, "height": 1250})
            page.goto(f"http://127.0.0.1:{port}/", timeout=60_000)
            wait_drawn(page, 60)
            # box selection: its count in the page
            n, latency = box_select(page, *box)
            print(f"selection of {n} events shown {latency:.2f} s after mouse up")
            assert n == int(inside.sum()) > 5
            assert latency < 5.0
            page.wait_for_selector(".cv-event-id")
            # click the selected event with the largest phonon pulse
            target = int(np.nanargmax(np.where(inside, x, -np.inf)))
            page.mouse.click(*data_to_screen(page, x[target], y[target]))
            t0 = time.time()
            while page.locator(".cv-event-id").inner_text() != str(target):
                assert time.time() - t0 < 10, "the clicked event was not shown"
                time.sleep(0.05)
            assert page.locator(".cv-count-n").inner_text() == str(n)     # the click kept the selection
            # arrow key: the next event of the selection
            sel = np.nonzero(inside)[0]
            k = int(np.searchsorted(sel, target))
            page.keyboard.press("ArrowLeft" if k == sel.size - 1 else "ArrowRight")
            expect = sel[k - 1] if k == sel.size - 1 else sel[k + 1]
            t0 = time.time()
            while page.locator(".cv-event-id").inner_text() != str(expect):
                assert time.time() - t0 < 10, "the arrow key did not step through the selection"
                time.sleep(0.05)
            # save the selection as a cut
            page.locator(".cv-cut-name input").fill("bright_band")
            page.locator(".cv-save-cut button").click()
            page.wait_for_selector(".cv-cut-saved", timeout=15_000)
            cuts = load_cuts(run / "cuts.yaml")
            assert list(cuts["cuts"]) == ["small_rise", "bright_band"]
            feats = load_store(run / "features.zarr", "features")
            lab = apply_cuts(feats, cuts=cuts)
            np.testing.assert_array_equal(lab["cut_flags"].sel(cut="bright_band").values[0], inside)
            # hand labels: the selection, then the current event
            page.locator(".cv-hand-class select").select_option("pile_up")
            page.locator(".cv-hand-selection button").click()
            page.wait_for_selector(".cv-hand-saved", timeout=15_000)
            page.locator(".cv-hand-class select").select_option("spike")
            page.locator(".cv-hand-event button").click()
            t0 = time.time()
            while "spike" not in page.locator(".cv-hand-saved").inner_text():
                assert time.time() - t0 < 10
                time.sleep(0.05)
            hand = read_hand_labels(run / "hand_labels.zarr", missing_ok=False)
            assert hand.sizes["entry"] == n + 1
            np.testing.assert_array_equal(np.sort(hand["event"].values[:n]), sel)
            assert set(hand["label"].values[:n]) == {"pile_up"} and hand["label"].values[-1] == "spike"
            assert hand["event"].values[-1] == expect and set(hand["channel"].values) == {"all"}
            time.sleep(0.5)
            shot = shots / "view_browser_test.png"
            page.screenshot(path=str(shot))
            # a broken run: the page opens and says what is wrong
            page2 = browser.new_page(viewport={"width": 1200, "height": 600})
            page2.goto(f"http://127.0.0.1:{port2}/", timeout=60_000)
            page2.wait_for_selector(".cv-error", timeout=30_000)
            assert "features.zarr" in page2.locator(".cv-header").first.inner_text() or \
                "features.zarr" in " ".join(page2.locator(".cv-error").all_inner_texts())
            browser.close()
    finally:
        for s in (server, server2):
            s.terminate()
            s.wait(10)
    import matplotlib.image

    img = matplotlib.image.imread(shot)
    assert img.shape[0] > 500 and img[..., :3].std() > 0.05
    assert len(np.unique((img[..., :3] * 255).astype(np.uint8).reshape(-1, 3), axis=0)) > 50
    assert snapshot(run) == before                   # no pipeline store was written


def _cli_one_line(capsys, argv, *words, timeout=20):
    """`cryopipe ARGV` returns 1 within `timeout` s with one line on stderr holding `words`."""
    import threading

    from cryopipe.cli import main

    box = {}
    t = threading.Thread(target=lambda: box.setdefault("rc", main(argv=argv)), daemon=True)
    t.start()
    t.join(timeout)
    assert not t.is_alive(), f"cryopipe {' '.join(argv)} still running (serving?) after {timeout} s"
    err = capsys.readouterr().err.strip()
    assert box.get("rc") == 1 and err.count("\n") == 0 and "Traceback" not in err, err
    for w in words:
        assert w in err, err
    return err


def test_view_of_a_missing_directory_exits_with_one_line(tmp_path, capsys):
    _cli_one_line(capsys, ["view", str(tmp_path / "nope")], "nope", "no such run directory")


def test_view_of_a_folder_that_is_no_run_exits_with_one_line_naming_its_runs(tmp_path, capsys):
    (tmp_path / "results" / "sim" / "features.zarr").mkdir(parents=True)
    _cli_one_line(capsys, ["view", str(tmp_path / "results")], "not a run directory",
                  f"runs in it: {tmp_path / 'results' / 'sim'}")
    _cli_one_line(capsys, ["view", str(tmp_path)], "not a run directory", "give results/<run>")


@pytest.mark.parametrize("port", ["99999", "0", "-1"])
def test_view_on_an_impossible_port_is_one_line(tmp_path, capsys, port):
    _cli_one_line(capsys, ["view", str(tmp_path), "--port", port], f"--port {port}", "1 to 65535")


def test_view_on_a_busy_port_is_one_line(tmp_path, capsys):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        _cli_one_line(capsys, ["view", str(tmp_path), "--port", str(port)], f"port {port} is in use", "--port")


def test_simulate_onto_an_existing_file_or_stream_is_one_line(tmp_path, capsys):
    from cryopipe.cli import main

    f = tmp_path / "taken"
    f.write_text("mine")
    _cli_one_line(capsys, ["simulate", str(f), "--duration", "1"], "taken", "not a directory")
    assert f.read_text() == "mine"
    out = tmp_path / "sim"
    assert main(argv=["simulate", str(out), "--duration", "1"]) == 0
    capsys.readouterr()
    before = (out / "ch0.csmpl").read_bytes()
    _cli_one_line(capsys, ["simulate", str(out), "--duration", "2", "--seed", "9"], "ch0.csmpl", "truth.zarr",
                  "nothing is overwritten")
    assert (out / "ch0.csmpl").read_bytes() == before
