"""The Bokeh document of `cryopipe view`: scatter + histograms, event traces, selection, cuts, hand labels.

One `ViewApp` per browser session; the run's stores (`RunData`) are shared by all sessions. The
scatter sends float32 columns (x, y, colour code) to the browser once per axis or colouring change
and draws them with WebGL; selections are made in the browser (box, lasso) and their indices come
back to the server, which updates the count, the histograms of the selection and the mean trace.
"""
from __future__ import annotations

import html
import logging
import time

import numpy as np
from bokeh.events import DocumentReady, RangesUpdate, SelectionGeometry, Tap
from bokeh.layouts import column, row
from bokeh.models import (
    BoxSelectTool,
    Button,
    CheckboxGroup,
    ColumnDataSource,
    CustomJS,
    CustomJSTickFormatter,
    Div,
    LassoSelectTool,
    LinearColorMapper,
    NumeralTickFormatter,
    Range1d,
    Select,
    Slider,
    TextInput,
)
from bokeh.palettes import Category10_10, Category20_20, Viridis256
from bokeh.plotting import figure

from ..cleaning.hand_labels import ALL_CHANNELS, BOX1_CLASSES
from ..errors import CryopipeError
from .data import RunData

N_BINS = 80
POINTS_MAX = 50_000       # above this many events the scatter is a server-side density image
RASTER = (420, 380)       # density image bins (x, y): about one per screen pixel of the frame
SELECTED_RGB = (214, 0, 143)   # magenta: not in Category10
CHANNEL_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")
LOG_TICKS = CustomJSTickFormatter(code="return Number(Math.pow(10, tick).toPrecision(2)).toString();")

# Arrow keys step through the selection (unless typing in a field): they move the step slider.
KEYS_JS = """
document.addEventListener('keydown', (e) => {
  const t = e.composedPath()[0];
  if (t && ['INPUT', 'SELECT', 'TEXTAREA'].includes(t.tagName)) return;
  if (e.key !== 'ArrowRight' && e.key !== 'ArrowLeft') return;
  if (step.disabled) return;
  const v = step.value + (e.key === 'ArrowRight' ? 1 : -1);
  if (v >= step.start && v <= step.end) step.value = v;
  e.preventDefault();
});
"""


def _palette(n: int) -> list[str]:
    if n <= 10:
        return list(Category10_10[:max(n, 1)])
    return [Category20_20[i % 20] for i in range(n)]


def _hex_rgb(colours) -> np.ndarray:
    return np.array([[int(c[i:i + 2], 16) for i in (1, 3, 5)] for c in colours], dtype=np.float64)


_VIRIDIS_RGB = _hex_rgb(Viridis256)


def _rgba(rgb, total, h, w, dim: bool = False) -> np.ndarray:
    """(h, w) uint32 RGBA image: colour `rgb` (w*h, 3), opacity growing with log(total) (0 where empty)."""
    top = np.log1p(total.max()) if total.size and total.max() > 0 else 1.0
    alpha = np.where(total > 0, (0.35 + 0.65 * np.log1p(total) / top) * (0.45 if dim else 1.0), 0.0)
    c = np.clip(np.nan_to_num(rgb), 0, 255).astype(np.uint32)
    a = (alpha * 255).astype(np.uint32)
    img = c[:, 0] | (c[:, 1] << 8) | (c[:, 2] << 16) | (a << 24)
    return img.reshape(h, w)


def _fmt(v) -> str:
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "no"
    if isinstance(v, (float, np.floating)):
        return f"{float(v):.4g}"
    return html.escape(str(v))


class ViewApp:
    """The widgets and callbacks of one browser session on `data`."""

    def __init__(self, data: RunData, doc, points_max: int = POINTS_MAX):
        self.data, self.doc = data, doc
        self.density = data.n_events > points_max     # server-rasterised scatter (datashader-like)
        self._pix, self._box, self._codes, self._factors_rgb = None, None, np.zeros(0, np.float32), None
        self.sel = np.zeros(0, np.int64)             # selected event positions (sorted)
        self.current: int | None = None               # event position shown
        self.geometry: dict | None = None             # last final selection geometry (plot coords)
        self.plotted = {"x": np.zeros(0), "y": np.zeros(0)}
        d = data
        names = sorted(d.columns)
        x0, y0 = d.default_axes()
        self.header = Div(text=self._header_html(), css_classes=["cv-header"], width=1500)
        self.x_sel = Select(title="x", value=x0 or "", options=names, width=230, css_classes=["cv-x"])
        self.y_sel = Select(title="y", value=y0 or "", options=names, width=230, css_classes=["cv-y"])
        self.logs = CheckboxGroup(labels=["log x", "log y"], active=[], inline=True, css_classes=["cv-log"])
        self.colour_sel = Select(title="colour by", value="none", options=d.colourings, width=230,
                                 css_classes=["cv-colour"])
        self.legend = Div(text="", width=600, css_classes=["cv-legend"])
        self.status = Div(text="", width=600, css_classes=["cv-status"])

        # ---- scatter and histograms
        self.src = ColumnDataSource(data=dict(x=np.zeros(0, np.float32), y=np.zeros(0, np.float32),
                                              c=np.zeros(0, np.float32)))
        self.mapper = LinearColorMapper(palette=["#1f77b4"], low=-0.5, high=0.5)
        self.fig = figure(width=620, height=560, output_backend="webgl", name="scatter",
                          tools=[box := BoxSelectTool(), LassoSelectTool(continuous=False), "pan", "wheel_zoom", "reset", "save"],
                          active_drag=box, css_classes=["cv-scatter"], toolbar_location="above",
                          **({"x_range": Range1d(0, 1), "y_range": Range1d(0, 1)} if self.density else {}))
        self.points = self.fig.scatter("x", "y", source=self.src, size=4, line_color=None,
                                       fill_color={"field": "c", "transform": self.mapper}, fill_alpha=0.6,
                                       nonselection_fill_alpha=0.12, selection_fill_alpha=0.9)
        self.img_src = ColumnDataSource(data=dict(image=[], x=[], y=[], dw=[], dh=[]))
        self.sel_img_src = ColumnDataSource(data=dict(image=[], x=[], y=[], dw=[], dh=[]))
        if self.density:
            self.fig.image_rgba(image="image", x="x", y="y", dw="dw", dh="dh", source=self.img_src)
            self.fig.image_rgba(image="image", x="x", y="y", dw="dw", dh="dh", source=self.sel_img_src)
            for tool in self.fig.tools:
                if isinstance(tool, (BoxSelectTool, LassoSelectTool)):
                    tool.renderers = [self.points]
            self.fig.on_event(RangesUpdate, self.on_ranges)
        self.cur_src = ColumnDataSource(data=dict(x=[], y=[]))
        self.fig.scatter("x", "y", source=self.cur_src, size=16, fill_color=None, line_color="black", line_width=2)
        self.hx = figure(width=620, height=160, x_range=self.fig.x_range, tools="", toolbar_location=None,
                         css_classes=["cv-hx"])
        self.hy = figure(width=200, height=560, y_range=self.fig.y_range, tools="", toolbar_location=None,
                         css_classes=["cv-hy"])
        self.hx.yaxis.formatter = NumeralTickFormatter(format="0.[0]a")
        self.hy.xaxis.formatter = NumeralTickFormatter(format="0.[0]a")
        self.hy.xaxis.ticker.desired_num_ticks = 3
        self.hx_all = ColumnDataSource(data=dict(l=[], r=[], t=[]))
        self.hx_selected = ColumnDataSource(data=dict(l=[], r=[], t=[]))
        self.hy_all = ColumnDataSource(data=dict(b=[], t=[], r=[]))
        self.hy_selected = ColumnDataSource(data=dict(b=[], t=[], r=[]))
        self.hx.quad(left="l", right="r", top="t", bottom=0, source=self.hx_all, fill_color="#bbbbbb", line_color=None)
        self.hx.quad(left="l", right="r", top="t", bottom=0, source=self.hx_selected, fill_color="#d6008f",
                     line_color=None, fill_alpha=0.8)
        self.hy.quad(left=0, right="r", top="t", bottom="b", source=self.hy_all, fill_color="#bbbbbb", line_color=None)
        self.hy.quad(left=0, right="r", top="t", bottom="b", source=self.hy_selected, fill_color="#d6008f",
                     line_color=None, fill_alpha=0.8)

        # ---- event panel
        self.step = Slider(start=0, end=1, value=0, step=1, title="event in selection", width=300,
                           disabled=True, css_classes=["cv-step"])
        self.prev_btn = Button(label="◀ previous", width=100, css_classes=["cv-prev"])
        self.next_btn = Button(label="next ▶", width=100, css_classes=["cv-next"])
        self.event_div = Div(text="<i>click a point to see its event</i>", width=560, css_classes=["cv-event"])
        self.trace_srcs, self.trace_figs = [], []
        self.mean_srcs, self.sev_srcs, self.mean_figs = [], [], []
        if d.has_traces():
            t_ms = d.time_axis() * 1e3
            self.t_ms = t_ms
            shared = None
            for i, ch in enumerate(d.channels):
                f = figure(width=560, height=150, title=f"event traces: {ch}", tools="pan,wheel_zoom,box_zoom,reset",
                           x_range=shared or (float(t_ms[0]), float(t_ms[-1])), css_classes=[f"cv-trace-{i}"])
                shared = shared or f.x_range
                s = ColumnDataSource(data=dict(t=[], v=[]))
                f.line("t", "v", source=s, color=CHANNEL_COLOURS[i % 6])
                f.yaxis.axis_label = "V"
                self.trace_srcs.append(s)
                self.trace_figs.append(f)
            f.xaxis.axis_label = "time from trigger (ms)"
            for i, ch in enumerate(d.channels):
                f = figure(width=560, height=130, title=f"mean of the selection (SEV preview): {ch}",
                           tools="pan,wheel_zoom,reset", x_range=shared, css_classes=[f"cv-mean-{i}"])
                s, r = ColumnDataSource(data=dict(t=[], v=[])), ColumnDataSource(data=dict(t=[], v=[]))
                f.line("t", "v", source=s, color=CHANNEL_COLOURS[i % 6], legend_label="selection mean")
                f.line("t", "v", source=r, color="black", line_dash="dashed", legend_label="run SEV (scaled)")
                f.legend.location = "top_right"
                f.legend.label_text_font_size = "8pt"
                self.mean_srcs.append(s)
                self.sev_srcs.append(r)
                self.mean_figs.append(f)
        self.count_div = Div(text="<b>selection:</b> none (box or lasso on the scatter)", width=560,
                             css_classes=["cv-count"])

        # ---- cuts and hand labels
        self.cut_name = TextInput(title="cut name", value="my_region", width=160, css_classes=["cv-cut-name"])
        self.cut_keep = Select(title="passes", value="inside", options=["inside", "outside"], width=90,
                               css_classes=["cv-cut-keep"])
        self.cut_records = Select(title="applies to records", value="all", options=["all", "particle", "noise"],
                                  width=120, css_classes=["cv-cut-records"])
        self.cut_btn = Button(label="save selection as cut", button_type="primary", width=170,
                              css_classes=["cv-save-cut"])
        self.cut_div = Div(text=f"cuts file: <code>{html.escape(str(d.cuts_file))}</code>", width=560,
                           css_classes=["cv-cut-msg"])
        self.hand_class = Select(title="hand label (Box-1 class)", value=BOX1_CLASSES[0], options=list(BOX1_CLASSES),
                                 width=250, css_classes=["cv-hand-class"])
        self.hand_channel = Select(title="channel", value=ALL_CHANNELS, options=[ALL_CHANNELS] + d.channels,
                                   width=100, css_classes=["cv-hand-channel"])
        self.hand_sel_btn = Button(label="label selection", width=120, css_classes=["cv-hand-selection"])
        self.hand_evt_btn = Button(label="label this event", width=120, css_classes=["cv-hand-event"])
        self.hand_div = Div(text=self._hand_summary(), width=560, css_classes=["cv-hand-msg"])

        # ---- callbacks
        self.x_sel.on_change("value", lambda a, o, n: self.replot())
        self.y_sel.on_change("value", lambda a, o, n: self.replot())
        self.logs.on_change("active", lambda a, o, n: self.replot())
        self.colour_sel.on_change("value", lambda a, o, n: self.recolour())
        self.src.selected.on_change("indices", self.on_select)
        self.fig.on_event(SelectionGeometry, self.on_geometry)
        self.fig.on_event(Tap, self.on_tap)
        self.step.on_change("value", lambda a, o, n: self.show_step())
        self.prev_btn.on_click(lambda: self.move(-1))
        self.next_btn.on_click(lambda: self.move(+1))
        self.cut_btn.on_click(self.save_cut)
        self.hand_sel_btn.on_click(lambda: self.hand_label(self.sel))
        self.hand_evt_btn.on_click(lambda: self.hand_label([] if self.current is None else [self.current]))
        doc.js_on_event(DocumentReady, CustomJS(args=dict(step=self.step), code=KEYS_JS))

        left = column(row(self.x_sel, self.y_sel, self.colour_sel), row(self.logs, self.legend),
                      self.hx, row(self.fig, self.hy), self.status)
        right = column(self.count_div, *self.mean_figs,
                       row(self.prev_btn, self.next_btn, self.step), *self.trace_figs, self.event_div,
                       row(self.cut_name, self.cut_keep, self.cut_records, self.cut_btn), self.cut_div,
                       row(self.hand_class, self.hand_channel, self.hand_sel_btn, self.hand_evt_btn), self.hand_div)
        doc.add_root(column(self.header, row(left, right)))
        doc.title = f"cryopipe view: {d.run}"
        d.record_kind_codes()              # once, so that the first selection does not pay for it
        if d.n_events:
            d.event_info(0)
        if x0 is not None:
            self.replot()
            self.recolour()

    # ------------------------------------------------------------------ page text

    def _header_html(self) -> str:
        d = self.data
        msg = "".join(
            f'<div class="cv-msg cv-{lvl}" style="color:{ {"error": "#b00", "warning": "#a60"}.get(lvl, "#333")}">'
            f"{html.escape(lvl)}: {html.escape(text)}</div>" for lvl, text in d.messages)
        stores = ", ".join(d.store_names()) or "none"
        return (f"<h3 style='margin:4px 0'>cryopipe view: {html.escape(str(d.run))}</h3>"
                f"<div>{d.n_events:,} events, channels {', '.join(d.channels) or '-'}; stores: {stores}</div>{msg}")

    def _hand_summary(self, extra: str = "") -> str:
        d = self.data
        n = 0 if d.hand is None else d.hand.sizes.get("entry", 0)
        return (f"{extra}hand labels: {n} entries in <code>{html.escape(str(d.hand_labels_path))}</code>"
                if d.hand is not None else "<span style='color:#b00'>hand_labels.zarr unreadable</span>")

    def _set_status(self, text: str):
        self.status.text = text

    # ------------------------------------------------------------------ scatter

    def _axis(self, label: str, log: bool) -> tuple[np.ndarray, int]:
        v = self.data.column(label)
        if log:
            with np.errstate(divide="ignore", invalid="ignore"):
                v = np.where(v > 0, np.log10(np.where(v > 0, v, 1.0)), np.nan)
        return v, int(np.sum(~np.isfinite(v)))

    def replot(self):
        t0 = time.perf_counter()
        xl, yl = 0 in self.logs.active, 1 in self.logs.active
        x, nx = self._axis(self.x_sel.value, xl)
        y, ny = self._axis(self.y_sel.value, yl)
        self.plotted = {"x": x, "y": y}
        self.geometry = None
        self.src.selected.indices = []
        codes = self._colour_codes()
        if self.density:
            self._reset_ranges(x, y)
        else:
            self.src.data = dict(x=x.astype(np.float32), y=y.astype(np.float32), c=codes)
        for axis, lab, log in ((self.fig.xaxis, self.x_sel.value, xl), (self.fig.yaxis, self.y_sel.value, yl)):
            axis.axis_label = f"{lab} (log)" if log else lab
            axis.formatter = LOG_TICKS if log else type(axis[0].formatter)()
        self.hx.xaxis.formatter = LOG_TICKS if xl else type(self.hx.xaxis[0].formatter)()
        self.hy.yaxis.formatter = LOG_TICKS if yl else type(self.hy.yaxis[0].formatter)()
        self._histograms(self.hx_all, self.hy_all, np.arange(x.size))
        self._histograms(self.hx_selected, self.hy_selected, np.zeros(0, np.int64))
        self._set_selection(np.zeros(0, np.int64))
        self._mark_current()
        hidden = int(np.sum(~(np.isfinite(x) & np.isfinite(y))))
        self._set_status(f"{x.size:,} events; {hidden:,} not drawn (NaN, or <= 0 on a log axis); "
                         f"plotted in {1e3 * (time.perf_counter() - t0):.0f} ms")

    def _range(self, v) -> tuple[float, float]:
        f = v[np.isfinite(v)]
        if f.size == 0:
            return 0.0, 1.0
        lo, hi = float(f.min()), float(f.max())
        return (lo - 0.5, hi + 0.5) if hi <= lo else (lo, hi)

    def _histograms(self, sx, sy, idx):
        """Histograms (N_BINS uniform bins over each axis' finite range) of the events `idx`."""
        x, y = self.plotted["x"], self.plotted["y"]
        if sx is self.hx_all:
            self._hist_ranges = self._range(x), self._range(y)
        (xa, xb), (ya, yb) = self._hist_ranges
        ex, ey = np.linspace(xa, xb, N_BINS + 1), np.linspace(ya, yb, N_BINS + 1)
        hx = np.histogram(x[idx], N_BINS, range=(xa, xb))[0] if idx.size else np.zeros(N_BINS)
        hy = np.histogram(y[idx], N_BINS, range=(ya, yb))[0] if idx.size else np.zeros(N_BINS)
        sx.data = dict(l=ex[:-1], r=ex[1:], t=hx)
        sy.data = dict(b=ey[:-1], t=ey[1:], r=hy)

    def _colour_codes(self) -> np.ndarray:
        col = self.data.colouring(self.colour_sel.value)
        self._codes = col.values
        self._factors_rgb = None if col.factors is None else _hex_rgb(_palette(len(col.factors)))
        if col.factors is None:
            finite = col.values[np.isfinite(col.values)]
            lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
            self.mapper.update(palette=Viridis256, low=lo, high=hi if hi > lo else lo + 1)
            self.legend.text = (f"<b class='cv-legend-label'>{html.escape(col.label)}</b>: {lo:.3g} "
                                f"<span style='background:linear-gradient(90deg,{Viridis256[0]},{Viridis256[128]},"
                                f"{Viridis256[-1]});padding:0 60px'></span> {hi:.3g}")
        else:
            pal = _palette(len(col.factors))
            self.mapper.update(palette=pal, low=-0.5, high=len(col.factors) - 0.5)
            counts = np.bincount(np.nan_to_num(col.values).astype(int), minlength=len(col.factors))
            self.legend.text = "<b class='cv-legend-label'>{}</b>: ".format(html.escape(col.label)) + " ".join(
                f"<span style='white-space:nowrap'><span style='color:{c}'>&#9679;</span> {html.escape(str(f))} "
                f"({k})</span>" for f, c, k in zip(col.factors, pal, counts) if k > 0)
        return col.values.astype(np.float32)

    def recolour(self):
        codes = self._colour_codes()
        if self.density:
            self._raster()
        else:
            self.src.data["c"] = codes
            self.src.data = dict(self.src.data)

    # ------------------------------------------------------------------ density image (many events)

    def _reset_ranges(self, x, y):
        for rng, v in ((self.fig.x_range, x), (self.fig.y_range, y)):
            f = v[np.isfinite(v)]
            lo, hi = (float(f.min()), float(f.max())) if f.size else (0.0, 1.0)
            pad = 0.03 * (hi - lo) if hi > lo else 0.5
            rng.update(start=lo - pad, end=hi + pad, reset_start=lo - pad, reset_end=hi + pad)
        self._raster()

    def on_ranges(self, event):
        if None not in (event.x0, event.x1, event.y0, event.y1):
            self._raster((event.x0, event.x1, event.y0, event.y1))

    def _pixels(self, box):
        """Flat pixel index of every plotted point in the view box, -1 outside."""
        x, y = self.plotted["x"], self.plotted["y"]
        x0, x1, y0, y1 = box
        w, h = RASTER
        with np.errstate(invalid="ignore"):
            ix = np.floor((x - x0) * (w / (x1 - x0)))
            iy = np.floor((y - y0) * (h / (y1 - y0)))
            ok = (ix >= 0) & (ix < w) & (iy >= 0) & (iy < h)
        return np.where(ok, iy * w + ix, -1).astype(np.int64)

    def _raster(self, box=None):
        """Draw the density image of all events (colour: mean colour of the pixel's events, opacity: log
        count) and the selected events' image over it, for the view `box` (x0, x1, y0, y1)."""
        if box is None:
            xr_, yr_ = self.fig.x_range, self.fig.y_range
            box = (xr_.start, xr_.end, yr_.start, yr_.end)
        self._box = box
        w, h = RASTER
        pix = self._pixels(box)
        self._pix = pix
        inside = pix >= 0
        p = pix[inside]
        total = np.bincount(p, minlength=w * h).astype(np.float64)
        codes = self._codes[inside]
        if self._factors_rgb is not None:
            k = len(self._factors_rgb)
            idx = p * k + np.clip(np.nan_to_num(codes).astype(np.int64), 0, k - 1)
            cnt = np.bincount(idx, minlength=w * h * k).reshape(w * h, k)
            with np.errstate(invalid="ignore", divide="ignore"):
                rgb = (cnt @ self._factors_rgb) / total[:, None]
        else:
            good = np.isfinite(codes)
            s = np.bincount(p[good], weights=codes[good], minlength=w * h)
            n = np.bincount(p[good], minlength=w * h)
            with np.errstate(invalid="ignore", divide="ignore"):
                mean = s / n
            lo, hi = self.mapper.low, self.mapper.high
            j = np.clip(np.nan_to_num((mean - lo) / ((hi - lo) or 1.0)) * 255, 0, 255).astype(int)
            rgb = _VIRIDIS_RGB[j]
        self.img_src.data = dict(image=[_rgba(rgb, total, h, w, dim=self.sel.size > 0)],
                                 x=[box[0]], y=[box[2]], dw=[box[1] - box[0]], dh=[box[3] - box[2]])
        self._raster_selection()

    def _raster_selection(self):
        if not self.density or getattr(self, "_pix", None) is None:
            return
        w, h = RASTER
        if self.sel.size == 0:
            self.sel_img_src.data = dict(image=[], x=[], y=[], dw=[], dh=[])
            return
        p = self._pix[self.sel]
        total = np.bincount(p[p >= 0], minlength=w * h).astype(np.float64)
        rgb = np.broadcast_to(np.asarray(SELECTED_RGB, float), (w * h, 3))
        box = self._box
        self.sel_img_src.data = dict(image=[_rgba(rgb, total, h, w)], x=[box[0]], y=[box[2]],
                                     dw=[box[1] - box[0]], dh=[box[3] - box[2]])

    def select_region(self, geometry: dict) -> np.ndarray:
        """Event positions inside a box or lasso geometry (plot coordinates), computed here."""
        from cryopipe.cuts.language import points_in_polygon

        x, y = self.plotted["x"], self.plotted["y"]
        with np.errstate(invalid="ignore"):
            if geometry.get("type") == "rect":
                x0, x1 = sorted((geometry["x0"], geometry["x1"]))
                y0, y1 = sorted((geometry["y0"], geometry["y1"]))
                hit = (x >= x0) & (x <= x1) & (y >= y0) & (y <= y1)
            elif geometry.get("type") == "poly":
                vx, vy = np.asarray(geometry["x"], float), np.asarray(geometry["y"], float)
                hit = np.zeros(x.size, bool)
                bb = (x >= vx.min()) & (x <= vx.max()) & (y >= vy.min()) & (y <= vy.max())
                cand = np.nonzero(bb)[0]
                hit[cand] = points_in_polygon(x[cand], y[cand], vx, vy)
            else:
                return np.zeros(0, np.int64)
        return np.nonzero(hit)[0]

    # ------------------------------------------------------------------ selection

    def on_geometry(self, event):
        if not getattr(event, "final", True):
            return
        self.geometry = dict(event.geometry)
        if self.density:
            t0 = time.perf_counter()
            self._set_selection(self.select_region(self.geometry))
            self._set_status(f"selection of {self.sel.size:,} events handled in "
                             f"{1e3 * (time.perf_counter() - t0):.0f} ms on the server")

    def on_select(self, attr, old, new):
        if self.density:
            return
        t0 = time.perf_counter()
        self._set_selection(np.sort(np.asarray(new, dtype=np.int64)))
        self._set_status(f"selection of {self.sel.size:,} events handled in "
                         f"{1e3 * (time.perf_counter() - t0):.0f} ms on the server")

    def _set_selection(self, sel):
        self.sel = sel
        n = sel.size
        self._histograms(self.hx_selected, self.hy_selected, sel)
        if self.density and getattr(self, "_pix", None) is not None:
            self._raster(self._box)
        if n == 0:
            self.count_div.text = "<b>selection:</b> none (box or lasso on the scatter)"
            self.step.update(disabled=True, start=0, end=1, value=0)
            for s in self.mean_srcs + self.sev_srcs:
                s.data = dict(t=[], v=[])
            return
        extra = ""
        kind_codes = self.data.record_kind_codes()
        if kind_codes is not None:
            names, codes = kind_codes
            c = np.bincount(codes[sel], minlength=len(names))
            extra = " (" + ", ".join(f"{k} {int(v):,}" for k, v in zip(names, c) if v) + ")"
        mean, k = self.data.mean_trace(sel)
        self.count_div.text = (f"<b>selection: <span class='cv-count-n'>{n:,}</span> events</b>{extra}"
                               + (f"; mean trace of {k:,} of them" if k else ""))
        if mean is not None:
            sev = self.data.sev()
            for i, (s, r) in enumerate(zip(self.mean_srcs, self.sev_srcs)):
                s.data = dict(t=self.t_ms, v=mean[i])
                if sev is not None and i < sev.shape[0]:
                    peak = mean[i][np.argmax(np.abs(mean[i]))]
                    r.data = dict(t=self.t_ms, v=sev[i] * peak)
        self.step.update(disabled=n < 2, start=0, end=max(n - 1, 1), value=0)
        self.show_event(int(sel[0]))

    # ------------------------------------------------------------------ one event

    def on_tap(self, event):
        x, y = self.plotted["x"], self.plotted["y"]
        if x.size == 0 or event.x is None:
            return
        xr_, yr_ = self.fig.x_range, self.fig.y_range
        sx = (xr_.end - xr_.start) if xr_.end is not None and xr_.start is not None else np.nanstd(x) or 1.0
        sy = (yr_.end - yr_.start) if yr_.end is not None and yr_.start is not None else np.nanstd(y) or 1.0
        with np.errstate(invalid="ignore"):
            d2 = ((x - event.x) / sx) ** 2 + ((y - event.y) / sy) ** 2
        if not np.isfinite(d2).any():
            return
        i = int(np.nanargmin(d2))
        if d2[i] > 0.05 ** 2:
            return
        hit = np.searchsorted(self.sel, i)
        if hit < self.sel.size and self.sel[hit] == i and not self.step.disabled:
            self.step.value = int(hit)          # shows it through show_step
        else:
            self.show_event(i)

    def move(self, delta: int):
        if self.step.disabled:
            return
        self.step.value = int(np.clip(self.step.value + delta, self.step.start, self.step.end))

    def show_step(self):
        if self.sel.size and 0 <= self.step.value < self.sel.size:
            self.show_event(int(self.sel[int(self.step.value)]))

    def _mark_current(self):
        i = self.current
        if i is None or i >= self.plotted["x"].size:
            self.cur_src.data = dict(x=[], y=[])
        else:
            self.cur_src.data = dict(x=[float(self.plotted["x"][i])], y=[float(self.plotted["y"][i])])

    def show_event(self, i: int):
        d = self.data
        self.current = i
        self._mark_current()
        if d.has_traces():
            try:
                tr = d.event_traces(i)
                for c, s in enumerate(self.trace_srcs):
                    s.data = dict(t=self.t_ms, v=tr[c].astype(np.float64))
            except Exception as exc:   # a corrupt chunk: say so in the page
                self.event_div.text = f"<span style='color:#b00'>cannot read the traces: {html.escape(str(exc))}</span>"
                return
        info = d.event_info(i)
        pos = ""
        hit = np.searchsorted(self.sel, i)
        if hit < self.sel.size and self.sel[hit] == i:
            pos = f" ({hit + 1} of {self.sel.size:,} selected)"
        head = " &nbsp; ".join(f"{html.escape(k)}: <b>{_fmt(v)}</b>" for k, v in info.items()
                               if k not in ("rows", "event", "position"))
        rows = "".join(f"<tr><td>{html.escape(name)}</td>" + "".join(f"<td>{_fmt(v)}</td>" for v in vals) + "</tr>"
                       for name, vals in info["rows"])
        chans = "".join(f"<th>{html.escape(c)}</th>" for c in d.channels)
        self.event_div.text = (
            f"<div class='cv-event-head'><b>event <span class='cv-event-id'>{info['event']}</span></b>{pos} &nbsp; "
            f"{head}</div><div style='max-height:260px;overflow-y:auto;font-size:11px'>"
            f"<table><tr><th></th>{chans}</tr>{rows}</table></div>")

    # ------------------------------------------------------------------ cuts, hand labels

    def save_cut(self):
        d = self.data
        try:
            if self.geometry is None or self.sel.size == 0:
                raise CryopipeError("draw a box or lasso selection first")
            cut = d.cut_from_selection(self.cut_name.value.strip(), self.geometry, self.x_sel.value,
                                       self.y_sel.value, 0 in self.logs.active, 1 in self.logs.active,
                                       inside=self.cut_keep.value == "inside", records=self.cut_records.value)
            path, passed, total = d.save_cut(self.cut_name.value.strip(), cut)
        except (CryopipeError, OSError, ValueError) as exc:
            self.cut_div.text = f"<span style='color:#b00'>cut not saved: {html.escape(str(exc))}</span>"
            return
        self.cut_div.text = (
            f"<span class='cv-cut-saved'>saved cut <b>{html.escape(self.cut_name.value)}</b></span> to "
            f"<code>{html.escape(str(path))}</code>: {passed:,} of {total:,} records of this run pass it. "
            f"Set <code>labels: {{cuts_file: {html.escape(str(path))}}}</code> in the config and rerun "
            "snakemake: the labels and what follows are remade.")

    def hand_label(self, positions):
        d = self.data
        try:
            n = d.add_hand_labels(np.asarray(positions, np.int64), self.hand_class.value,
                                  channel=self.hand_channel.value)
        except (CryopipeError, OSError, ValueError) as exc:
            self.hand_div.text = f"<span style='color:#b00'>not labelled: {html.escape(str(exc))}</span>"
            return
        self.hand_div.text = self._hand_summary(
            f"<span class='cv-hand-saved'>labelled {n:,} event{'s' if n != 1 else ''} <b>{html.escape(self.hand_class.value)}</b></span>; ")
        if self.colour_sel.value == "hand label":
            self.recolour()


def make_document(data: RunData, *, points_max: int = POINTS_MAX):
    """A Bokeh application function (doc -> None) showing `data`."""
    def build(doc):
        try:
            ViewApp(data, doc, points_max)
        except Exception as exc:   # show what went wrong in the page rather than a blank one
            import traceback

            doc.clear()
            doc.add_root(Div(text=f"<h3>cryopipe view: cannot show {html.escape(str(data.run))}</h3>"
                                  f"<pre class='cv-msg cv-error'>{html.escape(traceback.format_exc())}</pre>"))
            logging.getLogger("cryopipe.view").exception("cannot build the page: %s", exc)
    return build
