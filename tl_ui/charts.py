"""Plotly figure builders for the dashboard (pure functions: data in, figure out).

Every figure has a title that says what is plotted and its unit, large fonts, and a
constant ``uirevision`` so that a live update keeps the user's zoom. Domains are always
blue (source) and orange (target); runs get their own colours (see :mod:`tl_ui.theme`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from tl_ui import theme

MAX_POINTS = 1500  # points per line sent to the browser; longer series are thinned


@dataclass
class Series:
    """One run's data for an overlay chart."""

    label: str
    steps: pd.DataFrame
    epochs: pd.DataFrame
    color: str
    dash: str = "solid"


def base_layout(fig: go.Figure, title: str, *, revision: str, x_title: str, y_title: str,
                height: int = theme.CHART_HEIGHT) -> go.Figure:
    """Shared look: white background, big fonts, legend below, zoom kept across updates."""
    fig.update_layout(
        title={"text": title, "font": {"size": theme.CHART_TITLE_SIZE}, "x": 0.0, "xanchor": "left"},
        template="plotly_white",
        font={"size": theme.CHART_FONT_SIZE},
        height=height,
        margin={"l": 10, "r": 10, "t": 56, "b": 10},
        legend={"orientation": "h", "yanchor": "top", "y": -0.3, "x": 0.0, "font": {"size": 14}},
        hovermode="x unified",
        uirevision=revision,
    )
    fig.update_xaxes(title_text=x_title, showgrid=True, zeroline=False)
    fig.update_yaxes(title_text=y_title, showgrid=True, zeroline=False)
    return fig


def _empty_note(fig: go.Figure, text: str) -> None:
    fig.add_annotation(text=text, xref="paper", yref="paper", x=0.5, y=0.8, showarrow=False,
                       font={"size": 16, "color": theme.NEUTRAL})


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


def _step_line(fig: go.Figure, df: pd.DataFrame, col: str, name: str, color: str, dash: str,
               scale: float = 1.0, raw: bool = True, **kw) -> bool:
    """Add a smoothed line (and a faint raw one) for df[col] vs step; False if no data."""
    if df.empty or col not in df:
        return False
    d = df[["step", col]].dropna()
    if d.empty:
        return False
    y = d[col] * scale
    sm = smooth(y, len(d))
    d = d.assign(y=y, sm=sm)
    d = thin(d)
    if raw and len(d) > 30:
        fig.add_trace(go.Scatter(x=d["step"], y=d["y"], mode="lines", line={"color": color, "width": 1},
                                 opacity=0.22, showlegend=False, hoverinfo="skip", name=name), **kw)
    fig.add_trace(go.Scatter(x=d["step"], y=d["sm"], mode="lines", name=name,
                             line={"color": color, "width": 3, "dash": dash},
                             hovertemplate="%{y:.3g}"), **kw)
    return True


# ------------------------------------------------------------------ monitor
def loss_figure(runs: list[Series], revision: str = "loss") -> go.Figure:
    """Task loss (solid) and domain loss (dotted) per step, one colour per run."""
    fig = go.Figure()
    any_data = False
    for r in runs:
        prefix = f"{r.label} · " if len(runs) > 1 else ""
        any_data |= _step_line(fig, r.steps, "loss_task", f"{prefix}task loss", r.color, "solid")
        any_data |= _step_line(fig, r.steps, "loss_domain", f"{prefix}domain loss", r.color, "dot")
    if not any_data:
        _empty_note(fig, "Waiting for the first training steps…")
    return base_layout(fig, "Training loss per step (cross-entropy, smoothed)", revision=revision,
                       x_title="step", y_title="loss")


def accuracy_figure(runs: list[Series], revision: str = "accuracy") -> go.Figure:
    """Source validation (blue) and target test (orange) accuracy per epoch; line style per run."""
    fig = go.Figure()
    any_data = False
    for r in runs:
        e = r.epochs
        prefix = f"{r.label} · " if len(runs) > 1 else ""
        for col, domain, color in (("source_val_acc", "source (validation)", theme.SOURCE),
                                   ("target_test_acc", "target (test)", theme.TARGET)):
            if e.empty or col not in e:
                continue
            d = e[["epoch", col]].dropna()
            if d.empty:
                continue
            any_data = True
            fig.add_trace(go.Scatter(x=d["epoch"], y=d[col] * 100, mode="lines+markers", name=prefix + domain,
                                     line={"color": color, "width": 3, "dash": r.dash}, marker={"size": 8},
                                     hovertemplate="%{y:.1f} %"))
    if not any_data:
        _empty_note(fig, "The first evaluation comes at the end of epoch 1…")
    fig = base_layout(fig, "Accuracy (%) per epoch: source validation vs target test", revision=revision,
                      x_title="epoch", y_title="accuracy (%)")
    fig.update_yaxes(range=[0, 101])
    fig.update_xaxes(dtick=1 if not any_data or max((len(r.epochs) for r in runs), default=0) <= 20 else None,
                     rangemode="tozero")
    return fig


def domain_accuracy_figure(runs: list[Series], revision: str = "domain_acc") -> go.Figure:
    """How often the domain discriminator tells source from target, per step (DANN only)."""
    fig = go.Figure()
    any_data = False
    for r in runs:
        any_data |= _step_line(fig, r.steps, "domain_acc", r.label if len(runs) > 1 else "discriminator accuracy",
                               r.color, "solid", scale=100.0)
    fig.add_hline(y=50, line={"dash": "dash", "color": theme.NEUTRAL, "width": 2},
                  annotation_text="50 %: domains indistinguishable", annotation_position="bottom right",
                  annotation_font={"size": 14, "color": theme.NEUTRAL})
    if not any_data:
        _empty_note(fig, "No discriminator accuracy yet (DANN runs only).")
    fig = base_layout(fig, "Domain discriminator accuracy (%) per step", revision=revision,
                      x_title="step", y_title="accuracy (%)")
    fig.update_yaxes(range=[0, 101])
    return fig


def schedule_figure(runs: list[Series], revision: str = "schedule") -> go.Figure:
    """DANN's λ (left axis, solid) and the learning rate (right axis, dotted) per step."""
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    any_data = False
    for r in runs:
        prefix = f"{r.label} · " if len(runs) > 1 else ""
        any_data |= _step_line(fig, r.steps, "lambda", f"{prefix}λ", r.color, "solid", raw=False, secondary_y=False)
        any_data |= _step_line(fig, r.steps, "lr", f"{prefix}learning rate", r.color, "dot", raw=False,
                               secondary_y=True)
    if not any_data:
        _empty_note(fig, "Waiting for the first training steps…")
    fig = base_layout(fig, "DANN λ (left) and learning rate (right) per step", revision=revision,
                      x_title="step", y_title="λ")
    fig.update_yaxes(title_text="learning rate", secondary_y=True, showgrid=False, tickformat=".2~g")
    return fig


# --------------------------------------------------------------------- runs
def compare_accuracy_figure(runs: list[Series], revision: str = "compare_acc") -> go.Figure:
    """Target test accuracy per epoch, one colour per run."""
    fig = go.Figure()
    for r in runs:
        e = r.epochs
        if e.empty or "target_test_acc" not in e:
            continue
        d = e[["epoch", "target_test_acc"]].dropna()
        fig.add_trace(go.Scatter(x=d["epoch"], y=d["target_test_acc"] * 100, mode="lines+markers", name=r.label,
                                 line={"color": r.color, "width": 3}, marker={"size": 8},
                                 hovertemplate="%{y:.1f} %"))
    if not fig.data:
        _empty_note(fig, "None of these runs has finished an epoch yet.")
    fig = base_layout(fig, "Target test accuracy (%) per epoch", revision=revision,
                      x_title="epoch", y_title="accuracy (%)")
    fig.update_yaxes(range=[0, 101])
    fig.update_xaxes(rangemode="tozero")
    return fig


def compare_loss_figure(runs: list[Series], x: str = "step", revision: str = "compare_loss") -> go.Figure:
    """Task loss per step (or per epoch, averaged), one colour per run."""
    fig = go.Figure()
    for r in runs:
        s = r.steps
        if s.empty or "loss_task" not in s:
            continue
        if x == "epoch":
            d = s.groupby("epoch", as_index=False)["loss_task"].mean()
            fig.add_trace(go.Scatter(x=d["epoch"], y=d["loss_task"], mode="lines+markers", name=r.label,
                                     line={"color": r.color, "width": 3}, marker={"size": 8},
                                     hovertemplate="%{y:.3g}"))
        else:
            _step_line(fig, s, "loss_task", r.label, r.color, "solid")
    if not fig.data:
        _empty_note(fig, "None of these runs has logged a step yet.")
    title = "Training task loss per epoch (cross-entropy, mean)" if x == "epoch" else \
        "Training task loss per step (cross-entropy, smoothed)"
    return base_layout(fig, title, revision=revision, x_title=x, y_title="loss")


# ------------------------------------------------------------ feature space
def feature_scatter(coords: np.ndarray, domains: np.ndarray, labels: np.ndarray, classes: list[str] | None,
                    title: str, revision: str) -> go.Figure:
    """2-D projected features, coloured by domain (source blue, target orange), class on hover."""
    fig = go.Figure()
    for value, name, color in ((0, "source", theme.SOURCE), (1, "target", theme.TARGET)):
        m = np.asarray(domains) == value
        if not m.any():
            continue
        lab = np.asarray(labels)[m]
        text = [classes[int(i)] if classes and 0 <= int(i) < len(classes) else str(int(i)) for i in lab]
        fig.add_trace(go.Scattergl(x=coords[m, 0], y=coords[m, 1], mode="markers", name=name, text=text,
                                   marker={"color": color, "size": 6, "opacity": 0.7},
                                   hovertemplate=f"{name}, class %{{text}}<extra></extra>"))
    fig = base_layout(fig, title, revision=revision, x_title="", y_title="", height=420)
    fig.update_layout(hovermode="closest")
    fig.update_xaxes(showticklabels=False)
    fig.update_yaxes(showticklabels=False, scaleanchor="x", scaleratio=1)
    return fig
