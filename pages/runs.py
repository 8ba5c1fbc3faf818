"""Runs: every run in the store as a table; select runs to compare their curves, rename,
delete, or download their config, metrics and checkpoint."""

from __future__ import annotations

import json
from functools import partial

import pandas as pd
import streamlit as st

from tl_core.checkpoint import CHECKPOINT_NAME, WHEN_WRITTEN, checkpoint_path
from tl_core.store import RunRecord, RunStore
from tl_ui import (access, charts, entry, gain_view, keys, predict_view, resources, runinfo, selection_view, theme,
                   widgets)
from tl_ui.report_view import report_controls

CHART_CONFIG = {"displaylogo": False}


def table(runs: list[RunRecord], store: RunStore) -> pd.DataFrame:
    """One row per run, in the order of ``runs``."""
    rows = []
    gains = gain_view.matcher(store.list_runs())
    for rec in runs:
        c = rec.config
        epochs = None if rec.summary.get("final_target_test_acc") is not None else store.epoch_metrics(rec.id)
        final, best = runinfo.accuracies(rec, epochs)
        rows.append({  # the columns a reader compares first come first: they fit a 1280-px window
            "Name": runinfo.run_title(rec),
            "Final target acc": None if final is None else 100 * final,
            "Best target acc": None if best is None else 100 * best,
            **selection_view.table_columns(rec),
            "Gain": gain_view.cell(gains.gain(rec)),
            "Status": theme.STATUS_STYLE.get(rec.status, (rec.status,))[0],
            "Method": runinfo.method_label(c),
            "Data": runinfo.data_pair(c),
            "Duration": runinfo.fmt_duration(rec.duration_s),
            "Created": runinfo.fmt_when(rec.created),
            **selection_view.detail_columns(rec),
            "Backbone": c.get("model", {}).get("backbone", "?"),
            "Frozen stages": c.get("model", {}).get("freeze", 0),
            "Target entropy": rec.summary.get("final_target_entropy"),
        })
    return pd.DataFrame(rows)


def select_runs(runs: list[RunRecord], store: RunStore) -> list[str]:
    """The table; returns the ids of the selected rows."""
    ss = st.session_state
    ids = tuple(r.id for r in runs)
    if ss.get(keys.RUNS_TABLE_IDS) != ids:  # runs came or went: row numbers changed, start afresh
        ss[keys.RUNS_TABLE_IDS] = ids
        ss[keys.RUNS_TABLE_GEN] = ss.get(keys.RUNS_TABLE_GEN, 0) + 1
    event = st.dataframe(
        table(runs, store), key=f"{keys.RUNS_TABLE_PREFIX}{ss[keys.RUNS_TABLE_GEN]}", on_select="rerun",
        selection_mode="multi-row", hide_index=True, width="stretch", placeholder="–",
        column_config={  # pixel widths: Name to Created fit a 1280-px window beside the sidebar
            "Name": st.column_config.TextColumn(width=160),
            "Final target acc": st.column_config.NumberColumn("Target %", format="%.1f", width=66,
                                                              help="Final target test accuracy (after the last "
                                                                   "epoch)"),
            "Best target acc": st.column_config.NumberColumn("Best %", format="%.1f", width=58,
                                                             help=selection_view.BEST_HELP),
            **selection_view.column_config(),
            **gain_view.column_config(),
            "Status": st.column_config.TextColumn(width=84),
            "Method": st.column_config.TextColumn(width=84),
            "Data": st.column_config.TextColumn("Source → target", width=112),
            "Duration": st.column_config.TextColumn("Took", width=64, help="Duration of the run"),
            "Created": st.column_config.TextColumn(width=92),
            "Backbone": st.column_config.TextColumn(width=90),
            "Frozen stages": st.column_config.NumberColumn("Frozen", width=60, help="Backbone stages kept frozen"),
            "Target entropy": st.column_config.NumberColumn(
                "Entropy", format="%.3f", width=70,
                help="Label-free score: mean entropy of the predictions on the target test images (lower: more "
                     "confident). The only target score when the target folder has no labels."),
        })
    unlabelled = [runinfo.run_title(r) for r in runs if runinfo.target_unlabelled(r)]
    if unlabelled:
        shown = ", ".join(unlabelled[:3]) + (", …" if len(unlabelled) > 3 else "")
        st.caption(widgets.plain(f"{runinfo.NO_TARGET_LABELS.capitalize()} for runs whose target folder has no "
                                 f"class folders ({shown}): compare their target entropy and source accuracy."))
    rows = event.selection.rows if event is not None else []
    return [ids[i] for i in rows if 0 <= i < len(ids)]


def render_compare(recs: list[RunRecord], store: RunStore) -> None:
    st.subheader("Compare")
    styles = theme.run_styles(recs)
    series = [charts.Series(label=runinfo.run_title(r), steps=store.step_metrics(r.id),
                            epochs=store.epoch_metrics(r.id), color=styles[r.id][0]) for r in recs]
    x = st.segmented_control("Loss against", ["step", "epoch"], key=keys.RUNS_X_AXIS, default="step",
                             required=True)
    left, right = st.columns(2)
    with left:
        st.plotly_chart(charts.compare_accuracy_figure(series), key="runs.chart.accuracy", config=CHART_CONFIG)
    with right:
        st.plotly_chart(charts.compare_loss_figure(series, x=x or "step"), key="runs.chart.loss",
                        config=CHART_CONFIG)


def _rename(run_id: str, key: str) -> None:
    if not access.may_act():
        return
    try:
        resources.get_store().rename(run_id, st.session_state.get(key, ""))
        st.session_state[keys.RUNS_MESSAGE] = ("success", "Renamed.")
    except ValueError as exc:
        st.session_state[keys.RUNS_MESSAGE] = ("error", f"Could not rename: {exc}.")


def _delete(run_ids: list[str]) -> None:
    if not access.may_act():
        return
    store = resources.get_store()
    deleted, kept = 0, []
    for run_id in run_ids:
        try:
            store.delete(run_id)
            deleted += 1
        except ValueError:
            kept.append(run_id)
    st.session_state.pop(keys.RUNS_CONFIRM_DELETE, None)
    if kept:
        st.session_state[keys.RUNS_MESSAGE] = (
            "warning", f"Deleted {deleted} run(s); {len(kept)} still active — stop them on the Monitor first.")
    else:
        st.session_state[keys.RUNS_MESSAGE] = ("success", f"Deleted {deleted} run{'s' if deleted != 1 else ''}.")


def _read_bytes(path) -> bytes:
    return path.read_bytes()


def render_actions(recs: list[RunRecord], store: RunStore) -> None:
    st.subheader("Rename, download, delete")
    by_id = {r.id: r for r in recs}
    if len(recs) > 1:
        run_id = st.selectbox("Run to rename or download", list(by_id), key=keys.RUNS_ACT_ON,
                              format_func=lambda i: runinfo.option_label(by_id[i]))
    else:
        run_id = recs[0].id
    rec = by_id[run_id]
    left, right = st.columns(2, gap="large")
    with left:
        name_key = f"{keys.RUNS_RENAME}.{run_id}"
        st.text_input("Name", value=runinfo.run_title(rec), key=name_key)
        st.button("Rename", key=keys.RUNS_RENAME_BUTTON, icon=":material/edit:", on_click=_rename,
                  args=(run_id, name_key), disabled=not access.may_act(),
                  help=None if access.may_act() else access.why_read_only())
    with right:
        st.markdown("**Download**")
        row = st.container(horizontal=True)  # buttons as wide as their labels, wrapping when the column is narrow
        c1 = c2 = c3 = row
        c1.download_button("Config (JSON)", json.dumps(rec.config, indent=2), file_name=f"{run_id}-config.json",
                           mime="application/json", icon=":material/download:", on_click="ignore",
                           key=f"runs.dl.config.{run_id}")
        c2.download_button("Metrics (CSV)", partial(store.export_metrics_csv, run_id),
                           file_name=f"{run_id}-metrics.csv", mime="text/csv", icon=":material/download:",
                           on_click="ignore", key=f"runs.dl.metrics.{run_id}")
        ckpt = checkpoint_path(store.run_dir(run_id))
        has_ckpt = ckpt.exists()
        c3.download_button("Checkpoint", partial(_read_bytes, ckpt) if has_ckpt else b"",
                           file_name=f"{run_id}-{CHECKPOINT_NAME}", mime="application/octet-stream",
                           icon=":material/download:", on_click="ignore", disabled=not has_ckpt,
                           key=f"runs.dl.ckpt.{run_id}",
                           help=None if has_ckpt else f"No checkpoint yet: one is written {WHEN_WRITTEN}.")
        predict_view.export_controls(rec, has_ckpt)
    st.markdown("")
    n = len(recs)
    what = f"these {n} runs" if n > 1 else f"'{widgets.plain(runinfo.run_title(rec))}'"  # a label is Markdown
    sure = st.checkbox(f"Yes, delete {what} with their metrics and files", key=keys.RUNS_CONFIRM_DELETE)
    st.button(f"Delete {n} run{'s' if n != 1 else ''}", key=keys.RUNS_DELETE_BUTTON, icon=":material/delete:",
              disabled=not sure or not access.may_act(), on_click=_delete, args=([r.id for r in recs],),
              help=access.why_read_only() if not access.may_act() else None if sure else
              "Tick the box above to confirm.")


def main() -> None:
    st.title("Runs")
    store = resources.get_store()
    widgets.show_once(keys.RUNS_MESSAGE)
    runs = store.list_runs()
    if not runs:
        st.info("No runs yet. Start a one-click demo on Home, or set up a run on Setup.")
        return
    st.caption("Select runs with the boxes at the left of the table to compare their curves, rename, "
               "download or delete them. The table shows the store as of this page load.")
    c1, _ = st.columns([1, 5])
    c1.button("Refresh", icon=":material/refresh:", key="runs.refresh")  # a click reruns the page
    selected = select_runs(runs, store)
    if not selected:
        return
    recs = [r for r in runs if r.id in selected]
    render_compare(recs, store)
    row = st.container(horizontal=True)
    if row.button("Open in Monitor", key="runs.open_monitor", icon=":material/monitoring:"):
        widgets.open_in_monitor([r.id for r in recs])
    if row.button("Present", key=keys.RUNS_PRESENT, icon=":material/co_present:",
                  help="These runs on one projector screen (1280×720): target accuracy and features before/now."):
        widgets.open_in_present([r.id for r in recs])
    report_controls(recs, "runs")  # one HTML report of the selected runs (tl_ui/report_view.py)
    render_actions(recs, store)


entry.require_app()
main()
