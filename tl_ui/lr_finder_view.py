"""The Setup page's learning-rate finder: a button, the sweep's progress, the loss curve, "Use lr = …".

The learning-rate range test (:mod:`tl_core.lr_find`, Smith, WACV 2017) runs as its own process,
``python -m tl_core lr-find --config <file> --json-out <file>`` (:func:`tl_core.lr_find.launch`): the
page never loads torch and starts no thread. While it runs, a fragment re-reads the result file
every second (steps done of total, time left, the curve so far); once it is done the whole page
reruns and draws the curve with the suggestion (:data:`tl_core.lr_find.SUGGESTION`) and a button
that puts it into the learning-rate widget. The test makes no run and stores nothing.
"""

from __future__ import annotations

import math
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

import plotly.graph_objects as go
import streamlit as st

from tl_core import lr_find
from tl_ui import access, runinfo, theme, validation, widgets

JOB = "setup.lr_find.job"          # {"out": result file, "proc": the process or None, "label": the settings' label}
FIND = "setup.lr_find.start"
CANCEL = "setup.lr_find.cancel"
STEPS = "setup.lr_find.steps"
USE = "setup.lr_find.use"
CHART = "setup.lr_find.chart"
MESSAGE = "setup.lr_find.message"  # a (kind, text) message from the last click, shown once
POLL_S = 1.0
ABOUT = (f"A short test run on the settings above that raises the learning rate step by step from "
         f"{lr_find.DEFAULT_START:g} to {lr_find.DEFAULT_END:g} and records the loss (Smith, WACV 2017). "
         f"It suggests {lr_find.SUGGESTION}. Nothing is stored as a run.")


def render(build_config: Callable[[], Any], lr_key: str) -> None:
    """The finder, under the learning-rate widget whose session-state key is ``lr_key``;
    ``build_config()`` gives the RunConfig the form describes now."""
    ss = st.session_state
    state = current_state(ss.get(JOB))
    running = state is not None and state.get("status") not in lr_find.FINAL
    allowed = access.may_act()
    c1, c2 = st.columns([3, 2], vertical_alignment="bottom")
    steps = c2.number_input("Steps of the test", min_value=20, max_value=2000, value=lr_find.DEFAULT_STEPS, step=50,
                            key=STEPS, disabled=running, help="More steps draw a finer curve and take longer "
                            "(each is one training step of this run).")
    if c1.button("Find a learning rate", key=FIND, icon=":material/troubleshoot:", disabled=running or not allowed,
                 help=ABOUT if allowed else access.why_read_only()) and allowed and not running:
        _start(build_config, int(steps))
        if ss.get(JOB):
            st.rerun()  # redraw the page with this button disabled while the test runs
    widgets.show_once(MESSAGE)
    if running:
        _progress()
    elif state is not None and state.get("status") == "done":
        _result(state, lr_key, ss[JOB].get("label", ""))
    elif state is not None:
        st.error(widgets.plain(f"The learning-rate test failed: {state.get('error') or 'no reason given'}"
                               + (f" {state['hint']}" if state.get("hint") else "")), icon=":material/error:")


def current_state(job: dict[str, Any] | None) -> dict[str, Any] | None:
    """The test's state from its result file; a process that ended without a final state is 'failed'."""
    if not job:
        return None
    state = lr_find.read_state(job["out"])
    proc = job.get("proc")
    if (state is None or state.get("status") not in lr_find.FINAL) and proc is not None and proc.poll() is not None:
        state = lr_find.read_state(job["out"])  # it may have written its result just before it ended
        if state is None or state.get("status") not in lr_find.FINAL:
            tail = lr_find.output_tail(job["out"]).strip().splitlines()
            state = {"status": "failed", "error": f"the test process ended without a result (exit code "
                     f"{proc.returncode}).", "hint": tail[-1] if tail else ""}
    return state


def _start(build_config: Callable[[], Any], steps: int) -> None:
    """Launch the test on the form's settings, unless they cannot make a run."""
    ss = st.session_state
    try:
        cfg = build_config()
    except (TypeError, ValueError) as exc:
        ss[MESSAGE] = ("error", f"These settings do not make a run configuration: {exc}")
        return
    problems = validation.problems(cfg)
    if problems:
        ss[MESSAGE] = ("warning", "Fix the settings first: " + " ".join(problems))
        return
    _discard(ss.pop(JOB, None))
    try:
        proc, out = lr_find.launch(cfg, steps=steps)
    except OSError as exc:
        ss[MESSAGE] = ("error", f"Could not start the learning-rate test ({exc}).")
        return
    ss[JOB] = {"out": str(out), "proc": proc, "label": cfg.label()}


def _discard(job: dict[str, Any] | None) -> None:
    """Stop a previous test's process and remove its temporary folder."""
    if not job:
        return
    proc = job.get("proc")
    if proc is not None and proc.poll() is None:
        proc.terminate()
    folder = Path(job["out"]).parent
    if folder.name.startswith("tl-lr-find-") and folder.parent == Path(tempfile.gettempdir()):
        shutil.rmtree(folder, ignore_errors=True)


@st.fragment(run_every=POLL_S)
def _progress() -> None:
    """Steps done of total with the time left and the curve so far; the whole page reruns when it ends."""
    ss = st.session_state
    state = current_state(ss.get(JOB))
    if state is None or state.get("status") in lr_find.FINAL:
        st.rerun()  # the result (or the failure) is drawn by the page, beside the lr widget
    total = int(state.get("total") or lr_find.DEFAULT_STEPS)
    done = int(state.get("done") or 0)
    if state.get("status") == "preparing":
        text = f"Preparing: {state.get('phase') or 'starting'}…"
    else:
        text = f"{done} of {total} steps · about {runinfo.fmt_duration(state.get('eta_s'))} left"
    st.progress(min(1.0, done / max(1, total)), text=widgets.plain(text))
    if state.get("lrs"):
        st.plotly_chart(curve_figure(state), key=CHART + ".live", config={"displayModeBar": False})
    if st.button("Cancel", key=CANCEL, icon=":material/stop:"):
        _discard(ss.pop(JOB, None))
        st.rerun()


def _result(state: dict[str, Any], lr_key: str, label: str) -> None:
    st.plotly_chart(curve_figure(state), key=CHART, config={"displayModeBar": False})
    value = rounded(state["suggested_lr"])
    st.button(f"Use lr = {value:g}", key=USE, type="primary", icon=":material/check:", on_click=_use,
              args=(lr_key, value), help="Puts the suggested rate into the learning-rate field above.")
    steps = f"{len(state.get('lrs', []))} of {state.get('total')} steps"
    stopped = f"; stopped early: {state['stopped']}" if state.get("stopped") else ""
    st.caption(widgets.plain(f"Suggested: {lr_find.SUGGESTION} (lowest at {state['min_loss_lr']:.2g}). "
                             f"{steps} on {state.get('device', '?')}{stopped}. Tested with: {label}."))
    for w in state.get("warnings") or []:
        st.caption(widgets.plain(f"warning: {w}"))


def _use(lr_key: str, value: float) -> None:
    st.session_state[lr_key] = float(value)


def rounded(lr: float) -> float:
    """The suggestion to two significant digits (0.006136 -> 0.0061): what the widget shows."""
    return float(f"{lr:.2g}")


def curve_figure(state: dict[str, Any]) -> go.Figure:
    """Smoothed loss against the learning rate (log x), the suggestion marked when there is one."""
    lrs, losses = state.get("lrs") or [], state.get("losses") or []
    fig = go.Figure(go.Scatter(x=lrs, y=losses, mode="lines", name="loss (smoothed)",
                               line={"color": theme.SOURCE, "width": 3},
                               hovertemplate="lr %{x:.3g}<br>loss %{y:.4f}<extra></extra>"))
    suggested = state.get("suggested_lr")
    if suggested is not None and state.get("status") == "done":
        y = _loss_at(lrs, losses, suggested)
        fig.add_vline(x=suggested, line={"color": theme.TARGET, "dash": "dash", "width": 2})
        fig.add_trace(go.Scatter(x=[suggested], y=[y], mode="markers", name=f"suggested lr {rounded(suggested):g}",
                                 marker={"color": theme.TARGET, "size": 14, "symbol": "diamond"},
                                 hovertemplate="suggested lr %{x:.3g}<extra></extra>"))
    finite = [v for v in losses if math.isfinite(v)]
    y_range = None
    if finite:  # the blow-up at the end would flatten the interesting part: show up to 1.5 × the first loss
        lo, hi = min(finite), max(min(max(finite), finite[0] + 0.5 * abs(finite[0])), min(finite))
        pad = 0.05 * (hi - lo) or 0.05
        y_range = [lo - pad, hi + pad]
    fig.update_layout(
        title={"text": "Loss against learning rate", "font": {"size": theme.CHART_TITLE_SIZE}, "x": 0.0},
        height=340, margin={"l": 10, "r": 10, "t": 50, "b": 10}, paper_bgcolor="white", plot_bgcolor="white",
        font={"size": 14}, showlegend=True,
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.0, "x": 1.0, "xanchor": "right"},
        xaxis={"type": "log", "title": "learning rate (log scale)", "gridcolor": "#e5e7eb", "exponentformat": "power",
               "range": [math.log10(state.get("start") or lr_find.DEFAULT_START),
                         math.log10(state.get("end") or lr_find.DEFAULT_END)]},
        yaxis={"title": "training loss (smoothed)", "gridcolor": "#e5e7eb",
               **({"range": y_range} if y_range else {})},
        uirevision="lr-find")
    return fig


def _loss_at(lrs: list[float], losses: list[float], lr: float) -> float | None:
    """The smoothed loss at the swept rate closest to ``lr`` (on the log scale)."""
    if not lrs:
        return None
    i = min(range(len(lrs)), key=lambda j: abs(math.log(lrs[j] / lr)))
    return losses[i]
