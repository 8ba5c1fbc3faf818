"""The Present page: the comparison of the selected runs on one projector screen (1280x720, no scrolling).

Left, target accuracy per epoch, one line per run in the run colours of :mod:`tl_ui.theme` (the label-free
score, target prediction entropy, for a run whose target has no labels); right, each run's feature space
before training and now, as small multiples in one figure. Large type, little chrome. Which runs: a request
(a Home demo opened straight into this page), else the Monitor's or the Runs table's selection when it changed
since this page last looked, else this page's own compact picker. Live runs are followed by a fragment, as
on the Monitor. Reads only the store.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from tl_core.store import RunRecord
from tl_ui import charts, keys, resources, runinfo, theme
from tl_ui.feature_space import _classes, _projected, _sample_index
from tl_ui.widgets import plain

REFRESH_S = 2.0
#: More runs than this do not fit the feature small multiples at 720 px high.
MAX_RUNS = 4
CHART_CONFIG = {"displaylogo": False, "displayModeBar": False}
#: Characters of a title line: the charts here are about 400-500 px wide at 1280 px with the sidebar open.
TITLE_CHARS = 30


# ------------------------------------------------------------- selection
def _runs_table_selection() -> list[str]:
    """The ids the Runs table has selected (its dataframe state), if that state is still kept."""
    ss = st.session_state
    ids = ss.get(keys.RUNS_TABLE_IDS) or ()
    state = ss.get(f"{keys.RUNS_TABLE_PREFIX}{ss.get(keys.RUNS_TABLE_GEN, 0)}")
    try:
        rows = state["selection"]["rows"]
    except (TypeError, KeyError):
        return []
    return [ids[i] for i in rows if isinstance(i, int) and 0 <= i < len(ids)]


def default_runs(runs: list[RunRecord]) -> list[str]:
    """Which runs to present when nothing newer asks: the Monitor's or the Runs table's selection, this
    session's latest started runs, else the latest runs that ended (newest first in ``runs``)."""
    ss = st.session_state
    by_id = {r.id: r for r in runs}
    for picked in (ss.get(keys.MONITOR_PICK) or [], _runs_table_selection(),
                   list(ss.get(keys.STARTED, []))[-2:]):
        picked = [i for i in picked if i in by_id]
        if picked:
            return picked[:MAX_RUNS]
    ended = [r.id for r in runs if not r.active]
    return (ended or [r.id for r in runs])[:2]


def choose_runs(runs: list[RunRecord]) -> tuple[list[str], int]:
    """Settle which runs to show, then draw the compact picker (a popover). Precedence: a request (Home's
    demo), a selection on Monitor or Runs made since this page last looked, this page's pick, the default.
    Returns the runs to show (at most MAX_RUNS) and how many were asked for."""
    ss = st.session_state
    by_id = {r.id: r for r in runs}
    seen = {"monitor": tuple(ss.get(keys.MONITOR_PICK) or ()), "runs": tuple(_runs_table_selection())}
    before = ss.get(keys.PRESENT_SEEN, {})
    requested = ss.pop(keys.PRESENT_REQUEST, None)
    if requested is not None:
        pick = list(requested)
    elif before and seen["monitor"] and seen["monitor"] != before.get("monitor"):
        pick = list(seen["monitor"])
    elif before and seen["runs"] and seen["runs"] != before.get("runs"):
        pick = list(seen["runs"])
    elif keys.PRESENT_PICK in ss:  # the picker's own state (while this page is shown)
        pick = list(ss[keys.PRESENT_PICK])
    elif "pick" in before:  # Streamlit forgets a widget's state on other pages: this page's last pick
        pick = list(before["pick"])
    else:
        pick = default_runs(runs)
    wanted = [i for i in pick if i in by_id]
    ss[keys.PRESENT_PICK] = wanted[:MAX_RUNS]
    ss[keys.PRESENT_SEEN] = {**seen, "pick": list(ss[keys.PRESENT_PICK])}
    titles = [runinfo.run_title(r) for r in runs]

    def label(i: str) -> str:  # a title twice (two runs of one demo name): the date tells them apart
        rec = by_id[i]
        return runinfo.option_label(rec) if titles.count(runinfo.run_title(rec)) > 1 else runinfo.run_title(rec)

    n = len(ss[keys.PRESENT_PICK])
    with st.popover(f"Runs ({n})", icon=":material/checklist:", width="content"):
        st.multiselect("Runs to present", [r.id for r in runs], key=keys.PRESENT_PICK, format_func=label,
                       max_selections=MAX_RUNS, placeholder="Choose up to 4 runs",
                       help="Starts from the runs selected on the Monitor or the Runs page.")
    return list(ss[keys.PRESENT_PICK]), max(len(wanted), len(ss[keys.PRESENT_PICK]))


# --------------------------------------------------------------- figures
def _big_layout(title: str, height: int, revision: str) -> dict[str, Any]:
    """charts' shared look at projector size: larger title, axis and tick type."""
    layout = charts._layout(title, revision=revision, x_title="", y_title="", height=height,
                            title_chars=TITLE_CHARS, title_size=theme.PRESENT_TITLE_SIZE)
    layout["height"] = height  # a fixed height whatever the title's lines: the page must fit 720 px
    layout["title"].update(yref="container", y=1.0, yanchor="top", pad={"t": 12})  # level across charts
    layout["font"] = {"size": theme.PRESENT_FONT_SIZE}
    for axis in ("xaxis", "yaxis"):
        layout[axis]["tickfont"] = {"size": theme.PRESENT_FONT_SIZE}
        layout[axis]["title"]["font"] = {"size": theme.PRESENT_FONT_SIZE}
    return layout


def _final(values: pd.Series) -> float | None:
    v = values.dropna()
    return float(v.iloc[-1]) if not v.empty else None


def short_labels(recs: list[RunRecord]) -> dict[str, str]:
    """run id -> its name without the ' · MNIST → MNIST-M' every chosen run's name ends with (the headline
    says it once): 'Source only', 'DANN'."""
    titles = {r.id: runinfo.run_title(r) for r in recs}
    tails = {t.rsplit(" · ", 1)[1] if " · " in t else None for t in titles.values()}
    if len(titles) < 2 or len(tails) != 1 or None in tails:
        return titles
    return {i: t.rsplit(" · ", 1)[0] for i, t in titles.items()}


def target_curves(recs: list[RunRecord], epochs: dict[str, pd.DataFrame]) -> tuple[str, list[dict[str, Any]]]:
    """('accuracy' | 'entropy' | 'mixed', and per run: label, colour, unlabelled, x (epochs), y (accuracy in %,
    or the target prediction entropy for a run whose target has no labels))."""
    styles = theme.run_styles(recs)
    labels = short_labels(recs)
    out = []
    for rec in recs:
        e = epochs.get(rec.id, pd.DataFrame())
        unlabelled = runinfo.target_unlabelled(rec, e)
        col = "target_entropy" if unlabelled else "target_test_acc"
        d = e[["epoch", col]].dropna() if not e.empty and col in e and "epoch" in e else pd.DataFrame()
        scale = 1.0 if unlabelled else 100.0
        out.append({"label": labels[rec.id], "color": styles[rec.id][0], "unlabelled": unlabelled,
                    "x": d["epoch"].to_numpy() if not d.empty else np.array([]),
                    "y": d[col].to_numpy(dtype=float) * scale if not d.empty else np.array([])})
    kinds = {c["unlabelled"] for c in out}
    kind = "mixed" if len(kinds) > 1 else ("entropy" if kinds == {True} else "accuracy")
    return kind, out


def accuracy_figure(recs: list[RunRecord], epochs: dict[str, pd.DataFrame], height: int) -> Any:
    """Target test accuracy (%) per epoch, one line per run, its final value in the legend; runs whose target
    has no labels get their target prediction entropy (label-free; lower: more confident) on a right axis,
    dotted; with no labelled run at all, entropy alone."""
    kind, curves = target_curves(recs, epochs)
    title = {"accuracy": "Target accuracy (%)", "entropy": "Target prediction entropy (no labels)",
             "mixed": "Target accuracy (%); entropy dotted (no labels)"}[kind]
    layout = _big_layout(title, height, "present-accuracy")
    layout["xaxis"]["title"]["text"] = "epoch"
    layout["yaxis"]["title"]["text"] = "entropy" if kind == "entropy" else "accuracy (%)"
    if kind != "entropy":
        layout["yaxis"]["range"] = [0, 101]
    if kind == "mixed":
        layout["yaxis2"] = {**layout["yaxis"], "title": {"text": "entropy", "font": {"size": theme.PRESENT_FONT_SIZE}},
                            "overlaying": "y", "side": "right", "showgrid": False, "rangemode": "tozero"}
        layout["yaxis2"].pop("range", None)
    layout["xaxis"].update(rangemode="tozero")
    if max((len(c["x"]) for c in curves), default=0) <= 20:
        layout["xaxis"]["dtick"] = 1
    # one run per legend line, below the plot: long run names never squeeze the plot sideways
    layout["legend"].update(orientation="v", font={"size": theme.PRESENT_FONT_SIZE}, y=0.0, yanchor="bottom")
    layout["hovermode"] = "closest"
    traces = []
    for c in curves:
        final = _final(pd.Series(c["y"]))
        shown = "–" if final is None else f"{final:.3f}" if c["unlabelled"] else f"{final:.1f} %"
        trace = {"type": "scatter", "x": c["x"], "y": c["y"], "name": f"{c['label']}: {shown}",
                 "mode": "lines+markers",
                 "line": {"color": c["color"], "width": 5, "dash": "dot" if c["unlabelled"] and kind == "mixed"
                          else "solid"},
                 "marker": {"size": 12, "color": c["color"]}, "showlegend": True,
                 "hovertemplate": "%{y:.3f}" if c["unlabelled"] else "%{y:.1f} %"}
        if c["unlabelled"] and kind == "mixed":
            trace["yaxis"] = "y2"
        traces.append(trace)
    # the legend takes a line per run below the plot: keep the plot itself about as tall as the scatters
    layout["margin"].update(l=10, r=10, t=60, b=10 + 30 * len(curves))
    empty = all(len(c["x"]) == 0 for c in curves)
    return charts._figure([] if empty else traces, layout, "The first evaluation comes at the end of epoch 1…")


def _feature_rows(recs: list[RunRecord]) -> list[dict[str, Any]]:
    """Per run: its short title, colour, the first and latest projected snapshot with each one's axis ranges, or
    a note why there is none."""
    styles = theme.run_styles(recs)
    labels = short_labels(recs)
    rows = []
    for rec in recs:
        row: dict[str, Any] = {"label": labels[rec.id], "color": styles[rec.id][0], "frames": [],
                               "sample": None, "classes": None, "note": None}
        if not rec.config.get("snapshot", {}).get("enabled", True):
            row["note"] = "feature snapshots are off for this run"
        else:
            _, sample, frames = _projected(rec.id)
            if not frames or sample is None:
                row["note"] = "waiting for the first projected snapshot…" if rec.active or rec.status == "queued" \
                    else "no projected feature snapshot"
            else:
                shown = [frames[0], frames[-1]] if len(frames) > 1 else frames[:1]
                # each panel its own axes: the trained features often cluster far tighter than the first ones,
                # and what a room must see is whether the colours mix, not how far the cloud shrank
                row.update(frames=shown, sample=sample, classes=_classes(rec),
                           ranges=[charts.coords_range([c]) for _, c in shown])
        rows.append(row)
    return rows


def features_figure(rows: list[dict[str, Any]], height: int) -> Any:
    """Small multiples in one figure: a row per run (its name in its run colour), before training at the left,
    the latest snapshot at the right; blue source, orange target."""
    n = max(1, len(rows))
    top, label_px, gap_px = 84, 30, 14  # title + column heads; a run's name above its row; between rows
    plot_px = height - top - 10
    row_px = plot_px / n
    # the title is the legend: the domains' names in their colours
    layout = _big_layout("Features", height, "present-features")
    layout["title"]["text"] = (f"Features: <span style='color:{theme.SOURCE}'>source</span> · "
                               f"<span style='color:{theme.TARGET}'>target</span>")
    layout["margin"].update(l=10, r=10, t=top, b=10)
    layout["hovermode"] = "closest"
    layout["showlegend"] = False
    layout.pop("xaxis"), layout.pop("yaxis")
    traces: list[dict[str, Any]] = []
    notes = []
    for i, row in enumerate(rows):
        y_hi = 1 - (i * row_px + label_px) / plot_px
        y_lo = 1 - ((i + 1) * row_px - gap_px) / plot_px
        frames = row["frames"]
        now_text = f"now: {frames[-1][0]}" if len(frames) > 1 else ""
        notes.append({"text": f"<b>{plain_label(row['label'])}</b>" + (f"  ·  {now_text}" if now_text else ""),
                      "xref": "paper", "yref": "paper", "x": 0.0, "xanchor": "left",
                      "y": 1 - i * row_px / plot_px, "yanchor": "top", "showarrow": False,
                      "font": {"size": theme.PRESENT_FONT_SIZE, "color": row["color"]}})
        for j, (x_lo, x_hi) in enumerate(((0.0, 0.49), (0.51, 1.0))):
            k = 2 * i + j + 1
            suffix = "" if k == 1 else str(k)
            axis = {"showticklabels": False, "showgrid": False, "zeroline": False, "showline": True, "mirror": True,
                    "linecolor": "#d0d7de", "fixedrange": True}
            xr, yr = row["ranges"][j] if j < len(row.get("ranges", [])) else (None, None)
            layout[f"xaxis{suffix}"] = {**axis, "domain": [x_lo, x_hi], "anchor": f"y{suffix}",
                                        **({"range": xr} if xr else {})}
            layout[f"yaxis{suffix}"] = {**axis, "domain": [max(0.0, y_lo), min(1.0, y_hi)], "anchor": f"x{suffix}",
                                        **({"range": yr} if yr else {})}
            if j >= len(frames):
                if row["note"] or j == 0 or len(frames) == 1:
                    text = row["note"] if j == 0 else ("waiting for the next snapshot…" if frames else "")
                    if text:
                        notes.append({"text": text, "xref": f"x{suffix} domain", "yref": f"y{suffix} domain",
                                      "x": 0.5, "y": 0.5, "showarrow": False,
                                      "font": {"size": theme.PRESENT_FONT_SIZE - 2, "color": theme.NEUTRAL}})
                continue
            sample = row["sample"]
            for t in charts.feature_traces(frames[j][1], sample["domains"], sample["labels"], row["classes"],
                                           "domain", _sample_index(sample), size=theme.PRESENT_POINT_SIZE):
                t.update(xaxis=f"x{suffix}", yaxis=f"y{suffix}", showlegend=False)
                traces.append(t)
    # column heads, once, under the title
    for x, text in ((0.245, "before training"), (0.755, "now")):
        notes.append({"text": text, "xref": "paper", "yref": "paper", "x": x, "xanchor": "center",
                      "y": 1 + 8 / plot_px, "yanchor": "bottom", "showarrow": False,
                      "font": {"size": theme.PRESENT_FONT_SIZE, "color": theme.NEUTRAL}})
    layout["annotations"] = notes
    return charts.SpecFigure(traces, layout)


def plain_label(text: str) -> str:
    """A run name as plotly text: plotly reads a few HTML tags in text, so < and > are written as entities."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# ---------------------------------------------------------------- render
def headline(recs: list[RunRecord]) -> str:
    """'MNIST → MNIST-M' (the data sets' titles) when every run has the same pair, else 'N runs compared'."""
    pairs = {(r.config.get("data", {}).get("source"), r.config.get("data", {}).get("target")) for r in recs}
    if len(pairs) != 1:
        return f"{len(recs)} runs compared"
    pair = pairs.pop()
    for preset in resources.presets().values():  # a preset's own short title ("MNIST → MNIST-M")
        if (preset["source"], preset["target"]) == pair:
            return preset["title"]
    titles = {d["name"]: d["title"] for d in resources.datasets()}
    titles["folder"] = "own images"
    return " → ".join(titles.get(str(name), str(name)) for name in pair)


def status_line(recs: list[RunRecord]) -> str:
    """'2 finished · 1 training (epoch 3 of 10)'."""
    done = sum(r.status == "completed" for r in recs)
    bits = [f"{done} finished"] if done else []
    for r in recs:
        if r.active:
            bits.append(f"{runinfo.run_title(r)}: {'queued' if r.status == 'queued' else runinfo.progress_text(r)}")
    other = [r for r in recs if not r.active and r.status != "completed"]
    if other:
        bits.append(", ".join(f"{runinfo.run_title(r)}: {theme.STATUS_STYLE.get(r.status, (r.status,))[0].lower()}"
                              for r in other))
    return " · ".join(bits)


CHART_HEIGHT_PX = 560


def render(run_ids: list[str], wanted: int = 0) -> None:
    """Both charts for ``run_ids`` (read afresh from the store: called by the live fragment); ``wanted``: how
    many runs were asked for (more than fit: the status line says which are shown)."""
    store = resources.get_store()
    recs = sorted((r for r in (store.get_run(i) for i in run_ids) if r is not None), key=lambda r: (r.created, r.id))
    if not recs:
        st.info("The chosen runs were deleted. Choose others with the Runs button above.")
        return
    more = (f" · showing the first {len(recs)} of {wanted} runs (more do not fit one screen): choose with "
            f"Runs ({len(recs)})" if wanted > len(recs) else "")
    st.caption(plain(status_line(recs) + more))
    epochs = {r.id: store.epoch_metrics(r.id) for r in recs}
    left, right = st.columns([1, 1.35], gap="small")
    with left:
        st.plotly_chart(accuracy_figure(recs, epochs, CHART_HEIGHT_PX), key="present.accuracy",
                        config=CHART_CONFIG)
    with right:
        st.plotly_chart(features_figure(_feature_rows(recs), CHART_HEIGHT_PX), key="present.features",
                        config=CHART_CONFIG)


def main() -> None:
    """The whole page."""
    store = resources.get_store()
    runs = store.list_runs()
    if not runs:
        st.title("Present")
        st.info("No runs yet. Start a one-click demo on Home (with “Open in Present” on), or set up a run on "
                "Setup.")
        st.page_link(keys.PAGE_HOME, label="Go to Home", icon=":material/home:")
        return
    st.html(_CSS)
    head, pick = st.columns([5, 1], vertical_alignment="center")
    with pick:
        selected, wanted = choose_runs(runs)
    recs = sorted((r for r in runs if r.id in selected), key=lambda r: (r.created, r.id))
    with head:
        st.markdown(f"## {plain(headline(recs)) if recs else 'Present'}")
    if not selected:
        st.info("Choose up to four runs with the Runs button.")
        return
    manager = resources.get_manager()
    live = any(r.active or manager.is_active(r.id) for r in recs) or manager.projecting()

    @st.fragment(run_every=REFRESH_S if live else None)
    def live_view() -> None:
        render(selected, wanted)
        if live and not any((rec := store.get_run(i)) is not None and rec.active for i in selected) \
                and not manager.projecting():
            st.rerun()  # everything finished: one full rerun turns the timer off

    live_view()


#: Minimal chrome: less padding above and below the content.
_CSS = """
<style>
[data-testid="stMainBlockContainer"] { padding-top: 1.0rem; padding-bottom: 0.5rem; }
[data-testid="stMainBlockContainer"] h2 { padding: 0; }
</style>
"""
