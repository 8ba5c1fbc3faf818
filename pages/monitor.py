"""Monitor: live status, progress and charts of one or several runs, read from the run store.

Nothing here holds training state: a fragment re-reads the store every couple of seconds,
so a reload, a second tab or a restarted server show the same picture.
"""

from __future__ import annotations

import time
from typing import Any

import pandas as pd
import streamlit as st

from tl_core.checkpoint import WHEN_WRITTEN, last_saved
from tl_core.store import RunRecord
from tl_ui import (access, charts, entry, gain_view, keys, live_cache, live_chart, monitor_refresh, resources, runinfo,
                   theme, widgets)
from tl_ui.feature_space import render_feature_section
from tl_ui.freezing_view import render_freezing_view
from tl_ui.monitor_refresh import REFRESH_S, STEP_CHARTS_REFRESH_S
from tl_ui.report_view import report_controls
from tl_ui.selection_view import render_run as render_selection
from tl_ui.weights_view import render_weights_section
from tl_ui.widgets import plain

CHART_CONFIG = {"displaylogo": False}
#: Runs that ended before their last epoch: Resume is offered for them (failed and diverged ones only
#: when a checkpoint exists, e.g. a training process killed for memory after its first epochs).
RESUMABLE = ("interrupted", "stopped", "failed", "diverged")


# -------------------------------------------------------------- selection
def choose_runs(runs: list[RunRecord]) -> list[str]:
    """The multiselect of runs; default: what this session just started, else the latest run."""
    ss = st.session_state
    ids = [r.id for r in runs]
    by_id = {r.id: r for r in runs}
    requested = ss.pop(keys.MONITOR_REQUEST, None)
    if requested is not None:
        ss[keys.MONITOR_PICK] = [i for i in requested if i in by_id]
    elif keys.MONITOR_PICK not in ss:
        started = [i for i in ss.get(keys.STARTED, []) if i in by_id]
        ss[keys.MONITOR_PICK] = started[-2:] if started else ids[:1]
    else:
        ss[keys.MONITOR_PICK] = [i for i in ss[keys.MONITOR_PICK] if i in by_id]
    return st.multiselect("Runs to show", ids, key=keys.MONITOR_PICK,
                          format_func=lambda i: runinfo.option_label(by_id[i]),
                          placeholder="Choose one or more runs", persist_state="session")


# ------------------------------------------------------------- run cards
def _stop(run_id: str) -> None:
    if not access.may_act():  # read-only means read-only, whatever reached this callback
        return
    if resources.get_manager().cancel(run_id):
        st.session_state[keys.MONITOR_MESSAGE] = ("info", "Stop requested: the run ends after its current step.")


def _resume(run_id: str) -> None:
    if not access.may_act():
        return
    try:
        resources.get_manager().resume(run_id, owner=resources.owner_id())
    except (ValueError, KeyError) as exc:
        st.session_state[keys.MONITOR_MESSAGE] = ("error", f"Could not resume: {exc}")
    st.rerun()  # the whole page: its live refresh switches on again


def render_controls(rec: RunRecord, mine: bool) -> None:
    """Stop (with a confirmation for a run another tab or person started) or Resume; nothing when this
    session reads only (see tl_ui.access)."""
    manager = resources.get_manager()
    if not access.may_act():
        if rec.active or rec.status in RESUMABLE:
            st.caption("Read-only")
        return
    if rec.active:
        if not manager.is_active(rec.id):
            st.caption("Running in another process (the command line?); stop it there.")
            return
        if mine:
            st.button("Stop", key=keys.MONITOR_STOP_PREFIX + rec.id, icon=":material/stop:",
                      on_click=_stop, args=(rec.id,), width="stretch")
        else:
            # short labels: this column is about 130 px wide at 1280 px; the card says whose run it is
            sure = st.checkbox("Confirm", key=keys.MONITOR_CONFIRM_PREFIX + rec.id,
                               help="Someone else started this run: tick to allow stopping it.")
            st.button("Stop", key=keys.MONITOR_STOP_PREFIX + rec.id, icon=":material/stop:",
                      disabled=not sure, on_click=_stop, args=(rec.id,), width="stretch",
                      help="Stops someone else's run." if sure else "Tick Confirm first: someone else started "
                                                                     "this run.")
    elif rec.status in RESUMABLE:  # whoever may act may resume: after a restart "yours" is not known
        saved = last_saved(resources.get_store().run_dir(rec.id))
        if saved is None and rec.status in ("failed", "diverged"):
            return  # nothing to resume from: the card says why it ended
        if st.button("Resume", key=keys.MONITOR_RESUME_PREFIX + rec.id, icon=":material/play_arrow:",
                     type="primary" if rec.status == "interrupted" else "secondary", disabled=saved is None,
                     width="stretch", help=resume_help(saved)):
            _resume(rec.id)
        if saved:
            st.caption(f"from step {saved['step']} · {runinfo.fmt_when(saved['t'])}")


def resume_help(saved: dict[str, Any] | None) -> str:
    """What Resume can go on from, in words that match the checkpoint there is."""
    if saved is None:
        return f"No checkpoint yet: one is written {WHEN_WRITTEN}."
    if not saved:
        return "Goes on from the last checkpoint."
    where = (f"step {saved['step']}, inside epoch {saved['epoch'] + 1}" if saved.get("in_epoch")
             else f"step {saved['step']}, the end of epoch {saved['epoch']}")
    return f"Goes on from the last checkpoint ({where}); the steps after it are trained again."


def render_run_card(rec: RunRecord) -> None:
    owner = st.session_state.get(keys.OWNER)
    mine = rec.owner is None or rec.owner == owner
    with st.container(border=True):
        c1, c2, c3 = st.columns([3, 5, 1.4], vertical_alignment="center")
        with c1:
            st.markdown(f"**{plain(runinfo.run_title(rec))}**")
            widgets.status_badge(rec.status)
            who = "" if mine else " · someone else's run" + ("" if access.may_act() else " (read-only)")
            st.caption(plain(f"{runinfo.method_label(rec.config)} · {rec.config.get('model', {}).get('backbone', '?')}"
                             f" · {runinfo.data_pair(rec.config)}{who}"))
        with c2:
            st.progress(rec.progress, text=runinfo.progress_text(rec))
            if rec.active and rec.phase:
                st.caption(f":material/hourglass_top: {rec.phase.capitalize()}… "
                           f"({runinfo.fmt_duration(time.time() - (rec.phase_since or time.time()))})")
            phase = method_phase(rec)
            if phase:
                st.caption(f":material/layers: {phase}")
            if rec.active and resources.get_manager().stopping(rec.id):
                step_s = runinfo.step_seconds(rec)
                st.caption(":material/stop_circle: Stopping: the current step finishes first"
                           + (f" (a step takes about {runinfo.fmt_duration(step_s)})." if step_s and step_s >= 1
                              else "."))
            bits = []
            if rec.active and rec.eta_s is not None:
                bits.append(f"ETA {runinfo.fmt_duration(rec.eta_s)}")
            if rec.images_per_s:
                bits.append(f"{rec.images_per_s:,.0f} images/s")
            if rec.duration_s is not None:
                bits.append(f"{'running for' if rec.active else 'took'} {runinfo.fmt_duration(rec.duration_s)}")
            final, best = runinfo.accuracies(rec)
            if final is not None:
                bits.append(f"target accuracy {runinfo.fmt_pct(final)} (best {runinfo.fmt_pct(best)})")
            elif rec.config.get("data", {}).get("target") == "folder" and rec.epoch:  # maybe an unlabelled target
                epochs = live_cache.epoch_metrics(rec.id)
                if runinfo.target_unlabelled(rec, epochs):
                    bits.append(runinfo.label_free_text(rec, epochs))
            st.caption(" · ".join(bits) if bits else ("Waiting in the queue…" if rec.status == "queued" else ""))
        with c3:
            render_controls(rec, mine)
        render_outcome(rec, mine)


def method_phase(rec: RunRecord) -> str | None:
    """'Phase 2 of 2: target encoder vs discriminator' for a run that has taken steps and whose method
    declares phases (``Method.phases``), from the step metric ``phase`` of its last step rows; else None."""
    phases = resources.methods().get(rec.config.get("method", {}).get("name"), {}).get("phases")
    if not phases or not rec.step:
        return None
    rows = resources.get_store().step_metrics(rec.id, since_step=rec.step - 1)  # the last row (or the few after)
    if "phase" not in rows or rows["phase"].dropna().empty:
        return None
    i = int(rows["phase"].dropna().iloc[-1])
    return f"Phase {i} of {len(phases)}: {phases[i - 1]}" if 1 <= i <= len(phases) else None


def render_outcome(rec: RunRecord, mine: bool) -> None:
    """Failed, diverged, interrupted and stopped runs say what happened and what to do.

    Errors, hints and warnings quote folder, class and run names: they are shown as plain text.
    """
    if rec.status == "failed":
        st.error(f"**The run failed.** {plain(rec.error or 'No reason was recorded.')}", icon=":material/error:")
        if rec.hint:
            st.warning(plain(rec.hint), icon=":material/lightbulb:")
    elif rec.status == "diverged":
        st.warning(f"**The run diverged.** {plain(rec.error or '')}", icon=":material/trending_up:")
        if rec.hint:
            st.info(plain(rec.hint), icon=":material/lightbulb:")
    elif rec.status == "interrupted":
        text = rec.error or "The server stopped while this run was active."
        st.warning(f"**Interrupted.** {plain(text)} {plain(rec.hint or '')}"
                   + ("" if access.may_act() else " " + access.why_read_only()), icon=":material/power_off:")
    elif rec.status == "stopped" and rec.error:
        st.info(plain(f"{rec.error} {rec.hint or ''}".strip()), icon=":material/stop_circle:")
    for warning in (rec.summary or {}).get("warnings", []):
        st.warning(plain(warning), icon=":material/warning:")
    render_selection(rec, live_cache.epoch_metrics(rec.id) if rec.active and rec.epoch else None)
    if rec.status == "completed":  # transfer gain against its baseline; negative transfer as a warning
        gain_view.render_card_line(rec, gain_view.matcher(resources.get_store().list_runs()))


# ---------------------------------------------------------------- charts
def _series(recs: list[RunRecord], with_steps: bool = True) -> list[charts.Series]:
    """Each run's data for the overlay charts; without ``with_steps``, no step rows (empty frames)."""
    store = resources.get_store()
    styles = theme.run_styles(recs)
    return [charts.Series(label=runinfo.run_title(rec), steps=store.step_metrics(rec.id) if with_steps else
                          pd.DataFrame(), epochs=live_cache.epoch_metrics(rec.id), color=styles[rec.id][0],
                          dash=styles[rec.id][1])
            for rec in recs]


def render_charts(recs: list[RunRecord]) -> None:
    kept = kept_step_figures(recs)
    series = _series(recs, with_steps=kept is None)  # step rows are read only to build new step charts
    figures = kept if kept is not None else step_figures(recs, series)
    (loss_key, loss), *figures = figures
    # drawn in place (tl_ui/live_chart.py): a new epoch or step-chart refresh updates the chart already on
    # the page rather than mounting a new one
    left, right = st.columns(2)
    with left:
        live_chart.live_chart(charts.accuracy_figure(series), "monitor.chart.accuracy", CHART_CONFIG)
    with right:
        live_chart.live_chart(loss, loss_key, CHART_CONFIG)
    for i in range(0, len(figures), 2):
        for col, (key, fig) in zip(st.columns(2), figures[i:i + 2]):
            with col:
                live_chart.live_chart(fig, key, CHART_CONFIG)


def kept_step_figures(recs: list[RunRecord]) -> list[tuple[str, Any]] | None:
    """The per-step charts built less than ``STEP_CHARTS_REFRESH_S`` ago for these runs while every one
    of them trains, else None (build new ones with :func:`step_figures`).

    A new epoch reruns the page (the accuracy chart and the feature space show it at once); the step
    curves drawn then are the ones built less than a refresh ago, so the browser, which redraws only
    a chart whose spec changed, does not redraw them twice within a few seconds (issue 18)."""
    kept = st.session_state.get(keys.MONITOR_STEP_FIGURES)
    # 0.5 s of slack: the charts' own refresh comes every STEP_CHARTS_REFRESH_S and must find them due
    if kept and kept[0] == tuple(r.id for r in recs) and time.monotonic() - kept[1] < STEP_CHARTS_REFRESH_S - 0.5 \
            and all(r.active for r in recs):
        return kept[2]
    return None


def step_figures(recs: list[RunRecord], series: list[charts.Series]) -> list[tuple[str, Any]]:
    """The per-step charts (loss, the methods' step charts, learning rate), kept for
    :func:`kept_step_figures`."""
    figures = [("monitor.chart.loss", charts.loss_figure(series)), *method_figures(recs, series)]
    st.session_state[keys.MONITOR_STEP_FIGURES] = (tuple(r.id for r in recs), time.monotonic(), figures)
    return figures


def method_figures(recs: list[RunRecord], series: list[charts.Series]) -> list[tuple[str, Any]]:
    """The per-step charts the runs' methods declare (``Method.step_charts``), then the learning rate
    (with the first declared schedule value, e.g. DANN's λ, on its left axis)."""
    methods = resources.methods()
    declared: dict[str, tuple[str, str, str]] = {}
    for rec in recs:
        for metric, kind, title in methods.get(rec.config.get("method", {}).get("name"), {}).get("step_charts", []):
            declared.setdefault(metric, (metric, kind, title))
    out: list[tuple[str, Any]] = []
    schedule = next((c for c in declared.values() if c[1] == "schedule"), None)
    for metric, kind, title in declared.values():
        if kind == "domain_accuracy":
            out.append((f"monitor.chart.{metric}", charts.domain_accuracy_figure(series, metric, metric, title)))
        elif kind != "schedule":
            out.append((f"monitor.chart.{metric}", charts.schedule_figure(series, metric, metric, title)))
    out.append(("monitor.chart.schedule",
                charts.schedule_figure(series, "schedule", schedule[0], schedule[2]) if schedule else
                charts.schedule_figure(series, "schedule", None, "Learning rate per step")))
    return out


def epochs_pace_the_charts(recs: list[RunRecord]) -> bool:
    """Whether each epoch's rerun of the page redraws the step charts, with no timer of their own
    (tl_ui/monitor_refresh.py, ``epochs_pace``): every chosen run trains and logs epochs fast."""
    if not recs or not all(r.active for r in recs):
        return False
    return monitor_refresh.epochs_pace([live_cache.epoch_metrics(r.id).get("t", pd.Series(dtype=float)).tolist()
                                        for r in recs], time.time())


def step_charts_overdue() -> bool:
    """Step charts that no epoch's rerun redrew in time (tl_ui/monitor_refresh.py, ``step_charts_overdue``)."""
    kept = st.session_state.get(keys.MONITOR_STEP_FIGURES)
    return monitor_refresh.step_charts_overdue(bool(st.session_state.get(keys.MONITOR_STEPS_BY_EPOCH)),
                                               kept[1] if kept else None, time.monotonic())


def render_live(run_ids: list[str]) -> None:
    """The run cards (status, progress, ETA, controls): the fast refresh redraws only these."""
    store = resources.get_store()
    recs = [r for r in (store.get_run(i) for i in run_ids) if r is not None]
    if len(recs) < len(run_ids):
        st.caption("Some of the chosen runs were deleted.")
    widgets.show_once(keys.MONITOR_MESSAGE)
    for rec in recs:
        render_run_card(rec)


def render_step_view(run_ids: list[str]) -> None:
    """The charts (accuracy, loss, the methods' step charts) and the stages each run trains now."""
    store = resources.get_store()
    recs = [r for r in (store.get_run(i) for i in run_ids) if r is not None]
    if recs:
        render_charts(recs)
        render_freezing_view(recs)  # which backbone stages each run trains now


def feature_version(run_ids: list[str]) -> tuple[tuple[str, int, float, int], ...]:
    """What the feature section shows changes only when this does: per run, the evaluated epochs (and
    the latest one's time) and the projected snapshots (about once an epoch, not every step). Counted,
    not read: the cards' refresh asks every two seconds (tl_ui/live_cache.py)."""
    return live_cache.version(run_ids)


def main() -> None:
    st.title("Monitor")
    widgets.live_page_style()
    store = resources.get_store()
    runs = store.list_runs()
    if not runs:
        st.info("No runs yet. Start a one-click demo on Home, or set up a run on Setup.")
        st.page_link(keys.PAGE_HOME, label="Go to Home", icon=":material/home:")
        return
    selected = choose_runs(runs)
    if not selected:
        st.info("Choose one or more runs above.")
        return
    manager = resources.get_manager()
    # live: a selected run trains, or snapshots still wait for the projector (with the default
    # priority they are projected when training leaves the CPU idle, often after the run ends)
    live = any(r.active or manager.is_active(r.id) for r in runs if r.id in selected) or manager.projecting()
    ss = st.session_state
    ss[keys.MONITOR_FS_VERSION] = feature_version(selected)  # read before drawing: newer data → one more rerun
    # epochs faster than the step charts' pace: each epoch's rerun redraws those charts, no timer of their own
    ss[keys.MONITOR_STEPS_BY_EPOCH] = live and epochs_pace_the_charts([r for r in runs if r.id in selected])

    page_run = [True]  # False once this page run has drawn the cards: the fragment's own reruns see that

    @st.fragment(run_every=REFRESH_S if live else None)
    def live_view() -> None:
        if live and not page_run[0]:  # (a run of the whole page draws everything anyway)
            now_active = [i for i in selected if (rec := store.get_run(i)) is not None and rec.active]
            busy = bool(now_active) or manager.projecting()
            if not busy or feature_version(selected) != ss.get(keys.MONITOR_FS_VERSION) or step_charts_overdue():
                # everything finished (one full rerun turns the timers off), or a new snapshot or
                # epoch: what shows it (accuracy, feature space, per-class results) is redrawn now,
                # by one rerun of the page, not on every refresh (which also redraws step charts
                # that no epoch's rerun redrew in time). Asked before the cards are drawn:
                # the rerun draws them too, and the browser would draw them twice (issue 18)
                st.rerun()
        render_live(selected)

    @st.fragment(run_every=STEP_CHARTS_REFRESH_S if live and not ss[keys.MONITOR_STEPS_BY_EPOCH] else None)
    def step_view() -> None:
        render_step_view(selected)

    live_view()
    page_run[0] = False
    step_view()
    recs = [r for r in (store.get_run(i) for i in selected) if r is not None]
    if recs:
        render_weights_section(recs)  # runs whose method weighted its training images (KMM, KLIEP)
        render_feature_section(recs)
        st.subheader("Report")
        report_controls(recs, "monitor")  # one HTML file of the runs shown (tl_ui/report_view.py)
    # An epoch or snapshot that reached the store while this page was drawn is shown by one more rerun now,
    # not a refresh later (a snapshot often lands half a second after its epoch's rerun started). At most
    # one such rerun in a row: runs that log faster than the page draws wait for the next refresh.
    chained = ss.pop(keys.MONITOR_FS_CHAINED, False)
    if live and not chained and feature_version(selected) != ss.get(keys.MONITOR_FS_VERSION):
        ss[keys.MONITOR_FS_CHAINED] = True
        st.rerun()


entry.require_app()
main()
