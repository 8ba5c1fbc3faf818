"""The Sweep page's pieces: which fields the form offers, the spec it builds, the figures of a sweep's
results (pure: data in, figure out), and resuming the dashboard's sweeps a server restart interrupted.

The sweep itself is tl_core/sweep.py; its trials go through the dashboard's job manager (the same queue
as every run), driven by a thread that tl_core starts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import plotly.graph_objects as go
import streamlit as st

from tl_core import sweep
from tl_core.config import HEADS, LR_SCHEDULES, OPTIMIZERS
from tl_ui import resources, theme


@dataclass(frozen=True)
class FieldChoice:
    """A field the form offers: its RunConfig path, a label, and its options (None: typed values)."""

    path: str
    label: str
    options: tuple[str, ...] | None = None
    example: str = ""


def field_choices() -> list[FieldChoice]:
    """The fields the form offers first (options from the registries); any other RunConfig field can be
    typed as PATH=VALUES."""
    methods = tuple(resources.methods())
    backbones = tuple(b["name"] for b in resources.backbones() if not str(b["name"]).startswith("run:"))
    return [
        FieldChoice("optim.lr", "Learning rate", None, "0.003, 0.01, 0.03  or a range 1e-4:1e-1:log"),
        FieldChoice("method.name", "Method", methods),
        FieldChoice("model.backbone", "Backbone", backbones),
        FieldChoice("model.freeze", "Frozen stages", None, "0, 1, 2  or a range 0:3"),
        FieldChoice("optim.batch_size", "Batch size", None, "32, 64"),
        FieldChoice("optim.optimizer", "Optimiser", OPTIMIZERS),
        FieldChoice("optim.weight_decay", "Weight decay", None, "0, 5e-4  or a range 1e-6:1e-2:log"),
        FieldChoice("optim.momentum", "Momentum", None, "0.8, 0.9"),
        FieldChoice("optim.epochs", "Epochs", None, "2, 5"),
        FieldChoice("optim.lr_schedule", "LR schedule", LR_SCHEDULES),
        FieldChoice("model.head", "Head", HEADS),
        FieldChoice("optim.backbone_lr_mult", "Backbone lr multiplier", None, "0.1, 1"),
    ]


def parse_seeds(text: str) -> list[int]:
    """'0, 1, 2' -> [0, 1, 2].

    Raises:
        ValueError: not whole numbers of 0 or more.
    """
    try:
        seeds = [int(s) for s in text.replace(",", " ").split()]
    except ValueError:
        raise ValueError("Seeds: whole numbers separated by commas, e.g. 0, 1, 2.") from None
    if not seeds or any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
        raise ValueError("Seeds: one or more different whole numbers of 0 or more, e.g. 0, 1.")
    return seeds


def build_params(texts: dict[str, str]) -> tuple[list[sweep.Param], list[str]]:
    """Each field's text ('0.01, 0.03' or '1e-4:1e-1:log') into a Param; (params, one message per bad field)."""
    params, errs = [], []
    for path, text in texts.items():
        try:
            params.append(sweep.parse_set(f"{path}={text}"))
        except sweep.SweepError as e:
            errs.append(str(e).replace(f"--set '{path}={text}'", path))
    return params, errs


# ------------------------------------------------------------------ figures
def _axis_values(values: list[Any]) -> tuple[list[float], dict[str, Any]]:
    """Numbers for a parallel-coordinates axis; categories get integer ticks with their names."""
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return [float(v) for v in values], {}
    cats = sorted({str(v) for v in values})
    return [float(cats.index(str(v))) for v in values], {"tickvals": list(range(len(cats))), "ticktext": cats}


def parallel_figure(res: sweep.Results) -> go.Figure | None:
    """One line per finished setting across its swept fields, the objective (mean over seeds) and, last,
    the target accuracy labelled as the oracle's."""
    groups = [g for g in res.groups if g.score_mean is not None]
    if not groups:
        return None
    dims = []
    for p in res.spec.params:
        vals, extra = _axis_values([g.setting.get(p.path) for g in groups])
        log = p.log and all(v > 0 for v in vals)
        dims.append(dict(label=p.path + (" (log10)" if log else ""),
                         values=[math.log10(v) for v in vals] if log else vals, **extra))
    scores = [g.score_mean for g in groups]
    dims.append(dict(label=f"{res.spec.objective} (objective)", values=scores))
    targets = [100 * g.target_mean if g.target_mean is not None else float("nan") for g in groups]
    dims.append(dict(label="target acc % (oracle)", values=targets))
    fig = go.Figure(go.Parcoords(
        line=dict(color=scores, colorscale="Viridis", showscale=True, reversescale=not res.spec.higher_is_better,
                  colorbar=dict(title=dict(text=res.spec.objective, side="right"), thickness=12)),
        dimensions=dims, labelangle=0, labelside="bottom"))
    fig.update_layout(height=330, margin=dict(l=60, r=40, t=40, b=60),
                      title=dict(text="Settings: swept fields → objective → target accuracy", font=dict(size=15)))
    return fig


def param_figure(res: sweep.Results, param: sweep.Param) -> go.Figure | None:
    """The objective of every run against one field's value (each seed a dot, the setting's mean a bar)."""
    xs, ys, means_x, means_y = [], [], [], []
    for g in res.groups:
        runs = [r for r in g.runs.values() if r.get("status") == "completed" and r.get("score") is not None]
        if not runs or param.path not in g.setting:
            continue
        v = g.setting[param.path]
        x = v if isinstance(v, (int, float)) and not isinstance(v, bool) else str(v)
        xs += [x] * len(runs)
        ys += [r["score"] for r in runs]
        means_x.append(x)
        means_y.append(g.score_mean)
    if not xs:
        return None
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=xs, y=ys, mode="markers", name="one run (seed)",
                             marker=dict(size=8, color=theme.SOURCE, opacity=0.55)))
    fig.add_trace(go.Scatter(x=means_x, y=means_y, mode="markers", name="mean over seeds",
                             marker=dict(size=14, symbol="line-ew-open", color="#111827", line=dict(width=3))))
    fig.update_layout(height=260, margin=dict(l=50, r=10, t=40, b=40), showlegend=False,
                      title=dict(text=f"{res.spec.objective} by {param.path}", font=dict(size=14)),
                      xaxis_title=param.path, yaxis_title=res.spec.objective)
    if param.log:
        fig.update_xaxes(type="log")
    elif all(isinstance(x, str) for x in means_x):
        fig.update_xaxes(type="category")
    return fig


def table_rows(res: sweep.Results) -> list[dict[str, Any]]:
    """The results table: one row per setting, mean ± std over its seeds."""
    rows = []
    for g in res.groups:
        ok = [r for r in g.runs.values() if r.get("status") == "completed"]
        mark = " ★" if g is res.chosen else ""
        rows.append({
            "Setting": g.label + mark,
            "Seeds": f"{len(ok)}/{len(res.spec.seeds)}",
            res.spec.objective: "–" if g.score_mean is None else f"{g.score_mean:.4f} ± {g.score_std:.4f}",
            "Target acc % (oracle)": "–" if g.target_mean is None else
            f"{100 * g.target_mean:.1f} ± {100 * g.target_std:.1f}",
            "State": g.state,
        })
    return rows


# ------------------------------------------------------------------ process-wide
def storage() -> str:
    """The dashboard's sweep storage: $TL_HOME/sweeps.db (the run store's home)."""
    return sweep.default_storage(resources.get_store().home)


@st.cache_resource(show_spinner=False)
def resume_after_restart() -> list[str]:
    """Once per server: restart the dashboard's sweeps that a restart interrupted (their finished trials are
    kept; the trial that was running runs again with the seeds it had finished)."""
    return sweep.resume_interrupted(resources.get_manager(), storage())
