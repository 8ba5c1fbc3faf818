"""Plotly figure builders for the dashboard (pure functions: data in, figure out).

Every figure has a title that says what is plotted and its unit, large fonts, and a
constant ``uirevision`` so that a live update keeps the user's zoom. Domains are always
blue (source) and orange (target); runs get their own colours (see :mod:`tl_ui.theme`).

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

from tl_ui import theme

MAX_POINTS = 1500  # points per line sent to the browser; longer series are thinned
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


def _layout(title: str, *, revision: str, x_title: str, y_title: str, height: int = theme.CHART_HEIGHT,
            **extra: Any) -> dict[str, Any]:
    """Shared look: white background, big fonts, legend below, zoom kept across updates."""
    return {
        "title": {"text": title, "font": {"size": theme.CHART_TITLE_SIZE}, "x": 0.0, "xanchor": "left"},
        "font": {"size": theme.CHART_FONT_SIZE},
        "height": height,
        "margin": {"l": 10, "r": 10, "t": 56, "b": 10, "autoexpand": True},
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
    return go.Figure(data=traces, layout=layout, _validate=False)


def smooth(values: pd.Series, n: int) -> pd.Series:
    """Exponential moving average whose span grows with the number of points."""
    span = max(1, min(50, n // 30))
    return values.ewm(span=span, adjust=False).mean() if span > 1 else values


def thin(df: pd.DataFrame, max_points: int = MAX_POINTS) -> pd.DataFrame:
    """Every k-th row (always keeping the last) so a line has at most ``max_points`` points."""
    n = len(df)
    if n <= max_points:
        return df
    idx = np.unique(np.r_[np.arange(0, n, int(np.ceil(n / max_points))), n - 1])
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
    d = thin(d.assign(y=y, sm=smooth(y, len(d))))
    out = []
    if raw and len(d) > FEW_POINTS:
        out.append({"type": "scatter", "x": d["step"].to_numpy(), "y": d["y"].to_numpy(dtype=float),
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
    layout["xaxis"]["rangemode"] = "tozero"
    if max((len(r.epochs) for r in runs), default=0) <= 20:
        layout["xaxis"]["dtick"] = 1
    return _figure(traces, layout, "The first evaluation comes at the end of epoch 1…")


def domain_accuracy_figure(runs: list[Series], revision: str = "domain_acc") -> go.Figure:
    """How often the domain discriminator tells source from target, per step (DANN only)."""
    traces = []
    for r in runs:
        traces += _step_lines(r.steps, "domain_acc", r.label if len(runs) > 1 else "discriminator accuracy",
                              r.color, "solid", scale=100.0)
    layout = _layout("Domain discriminator accuracy (%) per step", revision=revision, x_title="step",
                     y_title="accuracy (%)")
    layout["yaxis"]["range"] = [0, 101]
    layout["shapes"].append({"type": "line", "xref": "paper", "x0": 0, "x1": 1, "yref": "y", "y0": 50, "y1": 50,
                             "line": {"dash": "dash", "color": theme.NEUTRAL, "width": 2}})
    layout["annotations"].append({"text": "50 %: domains indistinguishable", "xref": "paper", "x": 1,
                                  "xanchor": "right", "yref": "y", "y": 50, "yanchor": "top", "showarrow": False,
                                  "font": {"size": 14, "color": theme.NEUTRAL}})
    return _figure(traces, layout, "No discriminator accuracy yet (DANN runs only).")


def schedule_figure(runs: list[Series], revision: str = "schedule") -> go.Figure:
    """DANN's λ (left axis, solid) and the learning rate (right axis, dotted) per step."""
    traces = []
    for r in runs:
        traces += _step_lines(r.steps, "lambda", f"{_prefix(runs, r)}λ", r.color, "solid", raw=False)
        traces += _step_lines(r.steps, "lr", f"{_prefix(runs, r)}learning rate", r.color, "dot", raw=False,
                              yaxis="y2")
    layout = _layout("DANN λ (left) and learning rate (right) per step", revision=revision, x_title="step",
                     y_title="λ")
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
    layout["xaxis"]["rangemode"] = "tozero"
    if max((len(r.epochs) for r in runs), default=0) <= 20:
        layout["xaxis"]["dtick"] = 1
    return _figure(traces, layout, "None of these runs has finished an epoch yet.")


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
def feature_scatter(coords: np.ndarray, domains: np.ndarray, labels: np.ndarray, classes: list[str] | None,
                    title: str, revision: str) -> go.Figure:
    """2-D projected features, coloured by domain (source blue, target orange), class on hover."""
    traces = []
    for value, name, color in ((0, "source", theme.SOURCE), (1, "target", theme.TARGET)):
        m = np.asarray(domains) == value
        if not m.any():
            continue
        lab = np.asarray(labels)[m]
        text = [classes[int(i)] if classes and 0 <= int(i) < len(classes) else str(int(i)) for i in lab]
        traces.append({"type": "scattergl", "x": coords[m, 0], "y": coords[m, 1], "mode": "markers", "name": name,
                       "text": text, "marker": {"color": color, "size": 6, "opacity": 0.7},
                       "hovertemplate": f"{name}, class %{{text}}<extra></extra>"})
    layout = _layout(title, revision=revision, x_title="", y_title="", height=420, hovermode="closest")
    layout["xaxis"].update(showticklabels=False)
    layout["yaxis"].update(showticklabels=False, scaleanchor="x", scaleratio=1)
    return _figure(traces, layout)
