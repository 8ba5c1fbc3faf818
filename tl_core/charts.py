"""Plotly figure builders for the dashboard and the HTML report (pure functions: data in, figure out).

They live in tl_core (plotly, numpy and pandas only; no streamlit) so that both the pages (through
:mod:`tl_ui.charts`) and :mod:`tl_core.report` draw the same figures.

Every figure has a title that says what is plotted and its unit, large fonts, and a
constant ``uirevision`` so that a live update keeps the user's zoom. Domains are always
blue (source) and orange (target); runs get their own colours (see :mod:`tl_core.theme`).

Figures are assembled from plain dicts and wrapped without plotly's property validation:
the Monitor redraws four charts every two seconds in the process that also trains, and
validated ``graph_objects`` cost about half a second of CPU per redraw, against a few
milliseconds this way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from tl_core import downsample, theme

MAX_POINTS = downsample.MAX_POINTS  # points per line sent to the browser; longer series are thinned
FEW_POINTS = 30    # below this, lines also get markers (a single point has no line)


@dataclass
class Series:
    """One run's data for an overlay chart."""

    label: str
    steps: pd.DataFrame
    epochs: pd.DataFrame
    color: str
    dash: str = "solid"


# ------------------------------------------------------------------ plumbing
def _axis(title: str, **kw: Any) -> dict[str, Any]:
    return {"title": {"text": title, "font": {"size": theme.CHART_FONT_SIZE}}, "showgrid": True, "zeroline": False,
            "gridcolor": "#e5e7eb", "automargin": True, "tickfont": {"size": 14}, **kw}


#: Characters of a chart title per line: a chart in one of two columns of a 1280-px window is about
#: 440 px wide (about 9 px a character at CHART_TITLE_SIZE), where plotly cuts a longer one-line
#: title ("… source validation vs ta…").
TITLE_CHARS = 44
TITLE_LINE_PX = 24  # height of one more title line at CHART_TITLE_SIZE


def wrap_title(title: str, chars: int = TITLE_CHARS) -> str:
    """``title`` broken into lines of at most ``chars`` characters at spaces, joined by ``<br>``
    (plotly does not wrap titles); a single word longer than ``chars`` stays whole."""
    lines: list[str] = []
    for word in str(title).split():
        if lines and len(lines[-1]) + 1 + len(word) <= chars:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return "<br>".join(lines)


def _layout(title: str, *, revision: str, x_title: str, y_title: str, height: int = theme.CHART_HEIGHT,
            title_chars: int = TITLE_CHARS, title_size: int = theme.CHART_TITLE_SIZE, **extra: Any) -> dict[str, Any]:
    """Shared look: white background, big fonts, legend below, zoom kept across updates. The title
    wraps at ``title_chars`` characters, and the top margin grows by a line for each extra line."""
    text = wrap_title(title, title_chars)
    extra_lines = text.count("<br>")
    return {
        "title": {"text": text, "font": {"size": title_size}, "x": 0.0, "xanchor": "left"},
        "font": {"size": theme.CHART_FONT_SIZE},
        "height": height + TITLE_LINE_PX * extra_lines,
        "margin": {"l": 10, "r": 10, "t": 56 + TITLE_LINE_PX * extra_lines, "b": 10, "autoexpand": True},
        "paper_bgcolor": "white",
        "plot_bgcolor": "white",
        "legend": {"orientation": "h", "yref": "container", "yanchor": "bottom", "y": 0.0, "x": 0.0,
                   "font": {"size": 14}},
        "hovermode": "x unified",
        "uirevision": revision,
        "xaxis": _axis(x_title),
        "yaxis": _axis(y_title),
        "annotations": [],
        "shapes": [],
        **extra,
    }


def _figure(traces: list[dict[str, Any]], layout: dict[str, Any], empty_note: str | None = None) -> go.Figure:
    if not traces and empty_note:
        layout["annotations"].append({"text": empty_note, "xref": "paper", "yref": "paper", "x": 0.5, "y": 0.8,
                                      "showarrow": False, "font": {"size": 16, "color": theme.NEUTRAL}})
    return SpecFigure(traces, layout)


def smooth(values: pd.Series, n: int) -> pd.Series:
    """Exponential moving average whose span grows with the number of points."""
    span = max(1, min(50, n // 30))
    return values.ewm(span=span, adjust=False).mean() if span > 1 else values


def thin(df: pd.DataFrame, max_points: int = MAX_POINTS) -> pd.DataFrame:
    """Every k-th row (always keeping the last) so a line has at most ``max_points`` points."""
    n = len(df)
    if n <= max_points:
        return df
    idx = np.unique(np.r_[np.arange(0, n, int(np.ceil(n / (max_points - 1)))), n - 1])  # the last one too
    return df.iloc[idx]


def _line(x: Any, y: Any, name: str, color: str, dash: str = "solid", *, markers: bool = False,
          hover: str = "%{y:.3g}", **kw: Any) -> dict[str, Any]:
    return {"type": "scatter", "x": np.asarray(x), "y": np.asarray(y, dtype=float), "name": name,
            "mode": "lines+markers" if markers else "lines", "line": {"color": color, "width": 3, "dash": dash},
            "marker": {"size": 8, "color": color}, "hovertemplate": hover, **kw}


def _step_lines(df: pd.DataFrame, col: str, name: str, color: str, dash: str, *, scale: float = 1.0,
                raw: bool = True, **kw: Any) -> list[dict[str, Any]]:
    """A smoothed line (and a faint raw one) of df[col] against step; [] when there is no data."""
    if df.empty or col not in df:
        return []
    d = df[["step", col]].dropna()
    if d.empty:
        return []
    y = d[col] * scale
    full = d.assign(y=y, sm=smooth(y, len(d)))
    d = thin(full)  # the smoothed line: every k-th point is enough
    out = []
    if raw and len(d) > FEW_POINTS:
        # the raw line keeps each bucket's lowest and highest value: a spike stays visible
        rx, ry = downsample.minmax_downsample(full["step"].to_numpy(), full["y"].to_numpy(dtype=float))
        out.append({"type": "scatter", "x": rx, "y": ry,
                    "mode": "lines", "line": {"color": color, "width": 1}, "opacity": 0.22, "showlegend": False,
                    "hoverinfo": "skip", "name": name, **kw})
    out.append(_line(d["step"], d["sm"], name, color, dash, markers=len(d) <= FEW_POINTS, **kw))
    return out


def _prefix(runs: list[Series], r: Series) -> str:
    return f"{r.label} · " if len(runs) > 1 else ""


# ------------------------------------------------------------------ monitor
def loss_figure(runs: list[Series], revision: str = "loss") -> go.Figure:
    """Task loss (solid) and domain loss (dotted) per step, one colour per run."""
    traces = []
    for r in runs:
        traces += _step_lines(r.steps, "loss_task", f"{_prefix(runs, r)}task loss", r.color, "solid")
        traces += _step_lines(r.steps, "loss_domain", f"{_prefix(runs, r)}domain loss", r.color, "dot")
    layout = _layout("Training loss per step (cross-entropy, smoothed)", revision=revision, x_title="step",
                     y_title="loss")
    return _figure(traces, layout, "Waiting for the first training steps…")


def accuracy_figure(runs: list[Series], revision: str = "accuracy") -> go.Figure:
    """Source validation (blue) and target test (orange) accuracy per epoch; line style per run."""
    traces = []
    for r in runs:
        e = r.epochs
        for col, domain, color in (("source_val_acc", "source (validation)", theme.SOURCE),
                                   ("target_test_acc", "target (test)", theme.TARGET)):
            if e.empty or col not in e:
                continue
            d = e[["epoch", col]].dropna()
            if not d.empty:
                traces.append(_line(d["epoch"], d[col] * 100, _prefix(runs, r) + domain, color, r.dash,
                                    markers=True, hover="%{y:.1f} %"))
    layout = _layout("Accuracy (%) per epoch: source validation vs target test", revision=revision,
                     x_title="epoch", y_title="accuracy (%)")
    layout["yaxis"]["range"] = [0, 101]
    _note_unlabelled(runs, layout)
    layout["xaxis"]["rangemode"] = "tozero"
    if max((len(r.epochs) for r in runs), default=0) <= 20:
        layout["xaxis"]["dtick"] = 1
    return _figure(traces, layout, "The first evaluation comes at the end of epoch 1…")


def domain_accuracy_figure(runs: list[Series], revision: str = "domain_acc", metric: str = "domain_acc",
                           title: str = "Domain discriminator accuracy (%) per step") -> go.Figure:
    """How often a method's domain discriminator tells source from target, per step (the methods
    that declare this chart in their ``step_charts``)."""
    traces = []
    for r in runs:
        traces += _step_lines(r.steps, metric, r.label if len(runs) > 1 else "discriminator accuracy",
                              r.color, "solid", scale=100.0)
    layout = _layout(title, revision=revision, x_title="step", y_title="accuracy (%)")
    layout["yaxis"]["range"] = [0, 101]
    layout["shapes"].append({"type": "line", "xref": "paper", "x0": 0, "x1": 1, "yref": "y", "y0": 50, "y1": 50,
                             "line": {"dash": "dash", "color": theme.NEUTRAL, "width": 2}})
    layout["annotations"].append({"text": "50 %: domains indistinguishable", "xref": "paper", "x": 1,
                                  "xanchor": "right", "yref": "y", "y": 50, "yanchor": "top", "showarrow": False,
                                  "font": {"size": 14, "color": theme.NEUTRAL}})
    return _figure(traces, layout, "No discriminator accuracy yet.")


def schedule_figure(runs: list[Series], revision: str = "schedule", metric: str | None = "lambda",
                    title: str = "DANN λ (left) and learning rate (right) per step") -> go.Figure:
    """A method's schedule value (left axis, solid; e.g. DANN's λ) and the learning rate (right axis,
    dotted) per step; with ``metric`` None, the learning rate alone."""
    traces = []
    for r in runs:
        if metric:
            traces += _step_lines(r.steps, metric, f"{_prefix(runs, r)}{metric.replace('lambda', 'λ')}", r.color,
                                  "solid", raw=False)
        traces += _step_lines(r.steps, "lr", f"{_prefix(runs, r)}learning rate", r.color, "dot", raw=False,
                              yaxis="y2")
    layout = _layout(title, revision=revision, x_title="step", y_title=(metric or "").replace("lambda", "λ"))
    layout["yaxis2"] = _axis("learning rate", overlaying="y", side="right", showgrid=False, tickformat=".2~g")
    return _figure(traces, layout, "Waiting for the first training steps…")


# --------------------------------------------------------------------- runs
def compare_accuracy_figure(runs: list[Series], revision: str = "compare_acc") -> go.Figure:
    """Target test accuracy per epoch, one colour per run."""
    traces = []
    for r in runs:
        e = r.epochs
        if e.empty or "target_test_acc" not in e:
            continue
        d = e[["epoch", "target_test_acc"]].dropna()
        traces.append(_line(d["epoch"], d["target_test_acc"] * 100, r.label, r.color, markers=True,
                            hover="%{y:.1f} %"))
    layout = _layout("Target test accuracy (%) per epoch", revision=revision, x_title="epoch",
                     y_title="accuracy (%)")
    layout["yaxis"]["range"] = [0, 101]
    _note_unlabelled(runs, layout)
    layout["xaxis"]["rangemode"] = "tozero"
    if max((len(r.epochs) for r in runs), default=0) <= 20:
        layout["xaxis"]["dtick"] = 1
    return _figure(traces, layout, "None of these runs has finished an epoch yet.")


def _note_unlabelled(runs: list[Series], layout: dict[str, Any]) -> None:
    """Runs with an unlabelled target (epochs with the entropy score, no target accuracy): say so on the chart."""
    names = [r.label for r in runs if not r.epochs.empty and "target_entropy" in r.epochs
             and "target_test_acc" not in r.epochs]
    if names:
        who = "" if len(runs) == 1 else f" for {', '.join(names[:2])}{', …' if len(names) > 2 else ''}"
        layout["annotations"].append({"text": f"target accuracy: not available (no labels){who}", "xref": "paper",
                                      "x": 0.5, "yref": "paper", "y": 0.5, "showarrow": False,
                                      "font": {"size": 15, "color": theme.NEUTRAL}})


def compare_loss_figure(runs: list[Series], x: str = "step", revision: str = "compare_loss") -> go.Figure:
    """Task loss per step (smoothed) or per epoch (mean), one colour per run."""
    traces = []
    for r in runs:
        s = r.steps
        if s.empty or "loss_task" not in s:
            continue
        if x == "epoch":
            d = s.groupby("epoch", as_index=False)["loss_task"].mean()
            traces.append(_line(d["epoch"], d["loss_task"], r.label, r.color, markers=True))
        else:
            traces += _step_lines(s, "loss_task", r.label, r.color, "solid")
    title = ("Training task loss per epoch (cross-entropy, mean)" if x == "epoch"
             else "Training task loss per step (cross-entropy, smoothed)")
    layout = _layout(title, revision=revision, x_title=x, y_title="loss")
    return _figure(traces, layout, "None of these runs has logged a step yet.")


# ------------------------------------------------------------ feature space
CLASS_SYMBOLS = ("circle", "square", "diamond", "cross", "x", "triangle-up", "triangle-down", "star",
                 "pentagon", "hexagon", "triangle-left", "triangle-right", "hourglass", "bowtie")
CLASS_COLORS = ("#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
                "#9c755f", "#bab0ac", "#17becf", "#bcbd22")
DOMAIN_NAMES = ("source", "target")


def _class_names(labels: np.ndarray, classes: list[str] | None) -> list[str]:
    """Class name per label; -1 (an unlabelled target image) is 'unknown'."""
    return [classes[int(i)] if classes and 0 <= int(i) < len(classes) else "unknown" if int(i) < 0 else str(int(i))
            for i in labels]


def coords_range(all_coords: list[np.ndarray], pad: float = 0.05) -> tuple[list[float], list[float]]:
    """x and y ranges that hold every point of every snapshot (fixed axes across snapshots)."""
    stacked = np.concatenate([np.asarray(c, dtype=float).reshape(-1, 2) for c in all_coords]) if all_coords \
        else np.zeros((1, 2))
    stacked = stacked[np.isfinite(stacked).all(axis=1)]
    if not len(stacked):
        stacked = np.zeros((1, 2))
    lo, hi = stacked.min(axis=0), stacked.max(axis=0)
    span = np.maximum(hi - lo, 1e-6)
    return [float(lo[0] - pad * span[0]), float(hi[0] + pad * span[0])], \
        [float(lo[1] - pad * span[1]), float(hi[1] + pad * span[1])]


def feature_traces(coords: np.ndarray, domains: np.ndarray, labels: np.ndarray, classes: list[str] | None,
                   color_by: str = "domain", index: np.ndarray | None = None,
                   size: int = theme.FEATURE_POINT_SIZE, gl: bool = False) -> list[dict[str, Any]]:
    """Scatter traces of one snapshot. The set of traces depends only on the sample (not on the
    coordinates), so the traces of successive snapshots line up as animation frames.

    ``color_by="domain"``: one trace per domain (blue/orange), marker symbol by class.
    ``color_by="class"``: one trace per class, marker symbol by domain (circle source, x target).
    Label -1 (an unlabelled target: no class known) gets no class mark: a plain circle, or with
    ``color_by="class"`` one grey trace "target, no label".
    """
    coords = np.asarray(coords, dtype=float)
    domains = np.asarray(domains).astype(int)
    labels = np.asarray(labels).astype(int)
    index = np.arange(len(labels)) if index is None else np.asarray(index)
    names = np.asarray(_class_names(labels, classes), dtype=object)
    dom_names = np.asarray([DOMAIN_NAMES[d] if d in (0, 1) else str(d) for d in domains], dtype=object)
    groups: list[tuple[np.ndarray, str, dict[str, Any]]] = []
    if color_by == "class":
        for c in np.unique(labels):
            m = labels == c
            sym = np.where(domains[m] == 1, "x", "circle").tolist()
            if c < 0:
                groups.append((m, "target, no label", {"color": theme.NEUTRAL, "symbol": sym}))
                continue
            groups.append((m, f"class {names[m][0]}", {"color": CLASS_COLORS[int(c) % len(CLASS_COLORS)],
                                                        "symbol": sym}))
    else:
        # Each domain in `layers` interleaved slices drawn source, target, source, target, …: the
        # orange target is not painted wholly over the blue source, so mixing shows as mixing.
        counts = [int((domains == v).sum()) for v in (0, 1)]
        layers = theme.FEATURE_LAYERS if min(counts) >= 10 * theme.FEATURE_LAYERS else 1
        rank = np.zeros(len(domains), dtype=int)
        for value in (0, 1):
            rank[domains == value] = np.arange(int((domains == value).sum())) % layers
        for layer in range(layers):
            for value, color in ((0, theme.SOURCE), (1, theme.TARGET)):
                m = (domains == value) & (rank == layer)
                if m.any():
                    sym = [CLASS_SYMBOLS[int(c) % len(CLASS_SYMBOLS)] if c >= 0 else "circle-open"
                           for c in labels[m]]
                    groups.append((m, DOMAIN_NAMES[value], {"color": color, "symbol": sym}))
    traces = []
    shown: set[str] = set()
    for m, name, marker in groups:
        idx = np.flatnonzero(m)
        if color_by == "class":  # source and target points of a class alternate in drawing order
            within = np.zeros(len(idx))
            for value in np.unique(domains[idx]):
                same = domains[idx] == value
                within[same] = (np.arange(int(same.sum())) + 0.5) / int(same.sum())
            idx = idx[np.argsort(within, kind="stable")]
        custom = np.stack([names[idx], dom_names[idx], index[idx].astype(object)], axis=1)
        if isinstance(marker.get("symbol"), list) and len(marker["symbol"]) == len(idx) and color_by == "class":
            marker = {**marker, "symbol": np.where(domains[idx] == 1, "x", "circle").tolist()}
        traces.append({"type": "scattergl" if gl else "scatter", "x": coords[idx, 0], "y": coords[idx, 1],
                       "mode": "markers", "name": name, "customdata": custom, "legendgroup": name,
                       "showlegend": name not in shown,
                       "marker": {"size": size, "opacity": theme.FEATURE_OPACITY, "line": {"width": 0}, **marker},
                       "hovertemplate": "class %{customdata[0]} · %{customdata[1]} · image #%{customdata[2]}"
                                        "<extra></extra>"})
        shown.add(name)
    return traces


def _scatter_layout(title: str, revision: str, xr: list[float] | None, yr: list[float] | None,
                    height: int, title_chars: int = TITLE_CHARS,
                    title_size: int = theme.CHART_TITLE_SIZE) -> dict[str, Any]:
    layout = _layout(title, revision=revision, x_title="", y_title="", height=height, hovermode="closest",
                     title_chars=title_chars, title_size=title_size)
    # No tick labels and no axis titles, so nothing for plotly's automatic axis margins to make room for; with
    # them on, each draw of a scatter lays out twice (about 200 against 100 ms for the 1,000-point animation in
    # a CPU-only Chromium: docs/ARCHITECTURE.md, "Monitor refresh")
    layout["xaxis"].update(showticklabels=False, automargin=False, **({"range": xr, "autorange": False} if xr else {}))
    layout["yaxis"].update(showticklabels=False, automargin=False, **({"range": yr, "autorange": False} if yr else {}))
    return layout


def feature_scatter(coords: np.ndarray, domains: np.ndarray, labels: np.ndarray, classes: list[str] | None,
                    title: str, revision: str, *, color_by: str = "domain", index: np.ndarray | None = None,
                    xrange: list[float] | None = None, yrange: list[float] | None = None,
                    height: int = 420, size: int = 6, showlegend: bool = True, title_chars: int = TITLE_CHARS,
                    title_size: int = theme.CHART_TITLE_SIZE) -> go.Figure:
    """2-D projected features of one snapshot (see :func:`feature_traces`); fixed axes when given."""
    # SVG, not WebGL: a browser keeps only a few WebGL contexts alive, and the Monitor has up to six scatters
    traces = feature_traces(coords, domains, labels, classes, color_by, index, size=size)
    layout = _scatter_layout(title, revision, xrange, yrange, height, title_chars, title_size)
    if xrange is None:
        layout["yaxis"].update(scaleanchor="x", scaleratio=1)
    layout["showlegend"] = showlegend
    return _figure(traces, layout)


def feature_animation(frames: list[tuple[str, np.ndarray]], domains: np.ndarray, labels: np.ndarray,
                      classes: list[str] | None, title: str, revision: str, *, color_by: str = "domain",
                      index: np.ndarray | None = None, height: int = 560,
                      title_chars: int = TITLE_CHARS) -> go.Figure:
    """All projected snapshots of a run as one animated scatter: plotly's own play button and
    slider replay the convergence in the browser, with fixed axes. Shows the last frame first.

    ``title`` may hold ``{frame}``: each frame's own label goes there, and every frame carries its
    own layout title, so the title names the snapshot shown while ▶ plays or the slider moves."""
    xr, yr = coords_range([c for _, c in frames])
    last = frames[-1][0] if frames else ""
    layout = _scatter_layout(title.replace("{frame}", last), revision, xr, yr, height, title_chars)
    title_font = layout["title"]["font"]
    # A frame carries only what moves: each trace's x and y (float32), merged by plotly.js into the
    # shown traces, whose hover texts and marker symbols depend only on the sample. A full trace per
    # frame would send those 25 times over, on every redraw (about 5x the bytes).
    plotly_frames = [{"name": label, "data": [{"x": t["x"].astype(np.float32), "y": t["y"].astype(np.float32)}
                                              for t in feature_traces(c, domains, labels, classes, color_by, index)],
                      "layout": {"title": {"text": wrap_title(title.replace("{frame}", label), title_chars),
                                           "font": title_font, "x": 0.0, "xanchor": "left"}}}
                     for label, c in frames]
    traces = feature_traces(frames[-1][1], domains, labels, classes, color_by, index) if frames else []
    layout["margin"]["b"] = 90
    layout["legend"].update(orientation="v", yref="paper", y=1.0, yanchor="top", x=1.02, xanchor="left")
    # redraw: plotly.js draws a frame's own layout (its title) only on a redraw after the transition
    anim = {"frame": {"duration": 900, "redraw": True}, "transition": {"duration": 600, "easing": "cubic-in-out"},
            "mode": "immediate", "fromcurrent": True}
    if len(plotly_frames) > 1:
        layout["updatemenus"] = [{
            "type": "buttons", "direction": "left", "showactive": False, "x": 0.0, "xanchor": "left",
            "y": -0.02, "yanchor": "top", "pad": {"t": 8, "r": 8},
            "buttons": [{"label": "▶", "method": "animate", "args": [None, anim]},
                        {"label": "❚❚", "method": "animate",
                         "args": [[None], {"frame": {"duration": 0, "redraw": False}, "mode": "immediate",
                                           "transition": {"duration": 0}}]}]}]
        layout["sliders"] = [{
            # the rail starts right of the ▶/❚❚ buttons, and "Snapshot: …" sits at its right end, clear of them
            "active": len(plotly_frames) - 1, "x": 0.36, "len": 0.64, "y": -0.02, "yanchor": "top",
            "pad": {"t": 8}, "currentvalue": {"prefix": "Snapshot: ", "font": {"size": 15}, "xanchor": "right"},
            "transition": {"duration": 400},
            "steps": [{"label": f["name"], "method": "animate",
                       "args": [[f["name"]], {"frame": {"duration": 0, "redraw": True}, "mode": "immediate",
                                              "transition": {"duration": 400}}]} for f in plotly_frames]}]
    return SpecFigure(traces, layout, plotly_frames)


def _copy_containers(obj: Any) -> Any:
    """Copy dicts and lists, not the arrays in them (``deepcopy`` would copy every string of an
    object array one by one); enough for plotly's in-place base64 conversion to leave ``obj`` alone."""
    if isinstance(obj, dict):
        return {k: _copy_containers(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_copy_containers(v) for v in obj]
    return obj


class SpecFigure(go.Figure):
    """A plotly figure built from plain dicts and read-only once built.

    ``st.plotly_chart`` turns a figure into its dict (``to_dict``) and then JSON. For a
    ``go.Figure`` that dict is a ``deepcopy`` of every trace (each string of a hover array
    copied one by one), and frames passed to ``go.Figure`` are validated property by property
    even with ``_validate=False`` (each point's marker symbol checked against plotly's list):
    together ~0.5 s of CPU per Monitor refresh with two animated runs, in the process that
    trains. Here ``to_dict`` copies only the containers, converts numbers to typed arrays as
    plotly does, and keeps the result: a cached figure costs only its JSON encoding.
    """

    def __init__(self, data: list[dict[str, Any]], layout: dict[str, Any],
                 frames: list[dict[str, Any]] | None = None) -> None:
        super().__init__(_validate=False)  # empty: only plotly's default template, for to_dict
        self._raw = {"data": data, "layout": layout, **({"frames": frames} if frames else {})}
        self._spec: dict[str, Any] | None = None

    @property
    def frame_names(self) -> list[str]:
        return [f["name"] for f in self._raw.get("frames", [])]

    def to_dict(self) -> dict[str, Any]:
        if self._spec is None:
            from _plotly_utils.utils import convert_to_base64

            spec = _copy_containers(self._raw)
            template = self._layout.get("template")  # plotly's default look, as go.Figure sends it
            if template is not None and "template" not in spec["layout"]:
                spec["layout"]["template"] = _copy_containers(template)
            convert_to_base64(spec)
            self._spec = spec
        return self._spec


def snapshot_metric_figure(runs: list[tuple[str, pd.DataFrame, str, str]], metric: str, title: str,
                           y_title: str, *, scale: float = 1.0, y_range: list[float] | None = None,
                           revision: str = "snapshot_metric", height: int = 320) -> go.Figure:
    """One per-snapshot metric (A-distance, MMD, target accuracy) against epoch, one line per run.

    ``runs``: (label, list_snapshots frame, colour, dash).
    """
    traces = []
    for label, snaps, color, dash in runs:
        if snaps is None or snaps.empty or metric not in snaps:
            continue
        d = snaps[["epoch", metric]].dropna()
        if d.empty:
            continue
        traces.append(_line(d["epoch"], d[metric] * scale, label, color, dash, markers=True,
                            hover="%{y:.3g}", showlegend=len(runs) > 1))
    layout = _layout(title, revision=revision, x_title="epoch (0 = before training)", y_title=y_title,
                     height=height, title_chars=30)  # three to a row
    layout["xaxis"].update(rangemode="tozero", dtick=1 if max((len(r[1]) for r in runs), default=0) <= 20 else None)
    if y_range:
        layout["yaxis"]["range"] = y_range
    return _figure(traces, layout, "No snapshot metrics yet.")


def confusion_figure(confusion: list[list[int]], classes: list[str], title: str, revision: str,
                     height: int = 420) -> go.Figure:
    """Target confusion matrix (rows: true class, columns: predicted), counts on hover."""
    z = np.asarray(confusion, dtype=float)
    names = [str(c) for c in classes] or [str(i) for i in range(len(z))]
    trace = {"type": "heatmap", "z": z, "x": names, "y": names, "colorscale": "Blues", "reversescale": True, "showscale": False,
             "text": z.astype(int), "texttemplate": "%{text}", "textfont": {"size": 12},
             "hovertemplate": "true %{y} → predicted %{x}: %{z:.0f}<extra></extra>"}
    layout = _layout(title, revision=revision, x_title="predicted class", y_title="true class", height=height,
                     hovermode="closest")
    layout["xaxis"].update(showgrid=False, type="category", tickfont={"size": 12}, dtick=1)
    layout["yaxis"].update(showgrid=False, type="category", autorange="reversed", tickfont={"size": 12}, dtick=1)
    return _figure([trace], layout)


def per_class_figure(per_class: list[float | None], classes: list[str], title: str, revision: str,
                     height: int = 420) -> go.Figure:
    """Per-class target accuracy (%) as bars."""
    names = [str(c) for c in classes] or [str(i) for i in range(len(per_class))]
    y = [None if v is None else 100 * float(v) for v in per_class]
    trace = {"type": "bar", "x": names, "y": y, "marker": {"color": theme.TARGET},
             "hovertemplate": "class %{x}: %{y:.1f} %<extra></extra>", "name": "target"}
    layout = _layout(title, revision=revision, x_title="class", y_title="accuracy (%)", height=height,
                     hovermode="closest")
    layout["yaxis"]["range"] = [0, 101]
    layout["xaxis"].update(type="category", dtick=1)
    return _figure([trace], layout)
