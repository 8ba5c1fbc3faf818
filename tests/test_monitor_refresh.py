"""What the Monitor redraws when (tl_ui/monitor_refresh.py): the fast refresh redraws the run cards
only; the charts have their own, slower refresh; the feature space is drawn by a rerun of the page.
And the benchmark's check that a new epoch or snapshot appears within one refresh."""

from __future__ import annotations

import numpy as np
import pytest
import streamlit as st

from bench.dashboard import GOAL_FRESH_S, _freshness
from test_pages import add_run_with_snapshots, live_charts, manager, open_app  # noqa: F401 (manager: a fixture)
from tl_ui import keys, live_chart
from tl_ui.monitor_refresh import (REFRESH_S, SIDEBAR_REFRESH_ON_MONITOR_S, STEP_CHARTS_REFRESH_S, epochs_pace,
                                   step_charts_overdue)


@pytest.fixture
def drawn_by(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str | None, str | None, object]]:
    """(fragment body's name or None, chart key, the fragment's run_every) of every chart drawn, by
    st.plotly_chart or tl_ui.live_chart."""
    out: list[tuple[str | None, str | None, object]] = []
    current: list[tuple[str, object]] = []
    real_fragment, real_chart = st.fragment, st.plotly_chart

    def fragment(func=None, *, run_every=None, **kw):
        if func is None:
            return lambda f: fragment(f, run_every=run_every, **kw)

        def body(*a, **k):
            current.append((func.__name__, run_every))
            try:
                return func(*a, **k)
            finally:
                current.pop()
        body.__name__ = body.__qualname__ = func.__name__
        return real_fragment(body, run_every=run_every, **kw)

    def chart(fig, *a, key=None, **k):
        name, every = current[-1] if current else (None, None)
        out.append((name, key, every))
        return real_chart(fig, *a, key=key, **k)

    def live(fig, key, config=None):
        name, every = current[-1] if current else (None, None)
        out.append((name, key, every))
        return real_live(fig, key, config)

    real_live = live_chart.live_chart
    monkeypatch.setattr(st, "fragment", fragment)
    monkeypatch.setattr(st, "plotly_chart", chart)
    monkeypatch.setattr(live_chart, "live_chart", live)  # the Monitor's training charts (drawn in place)
    return out


def _epochs_at(store, run_id: str, times: list[float]) -> None:
    """Give the run's epoch rows (epoch 1, 2, ...) these times, as if they had been logged then."""
    for epoch, t in enumerate(times, start=1):
        store._write("UPDATE epoch_metrics SET t=? WHERE run_id=? AND epoch=?", (t, run_id, epoch))


def test_the_fast_refresh_draws_cards_only_and_the_charts_refresh_on_their_own(manager, drawn_by):
    import time

    run_id = add_run_with_snapshots(manager.store, "dann", n_snaps=3)
    manager.store.set_status(run_id, "running")  # a run that trains: the refresh timers are on
    manager.active.add(run_id)
    _epochs_at(manager.store, run_id, [time.time() - 60, time.time() - 30])  # slow epochs: the charts' own timer
    manager.store.log_steps(run_id, [{"step": s, "epoch": 1, "loss_task": 1.0 / s, "lr": 0.01}
                                     for s in range(1, 50)])
    at = open_app()
    at.session_state[keys.MONITOR_REQUEST] = [run_id]
    at.switch_page(keys.PAGE_MONITOR).run()
    assert not at.exception, [e.value for e in at.exception]
    monitor = [(f, k, e) for f, k, e in drawn_by if k and str(k).startswith("monitor.")]
    by_key = {k: (f, e) for f, k, e in monitor}
    assert not [k for f, k, _ in monitor if f == "live_view"], "the 2-s refresh must not redraw a chart"
    assert by_key["monitor.chart.loss"] == ("step_view", STEP_CHARTS_REFRESH_S)
    assert by_key["monitor.chart.accuracy"] == ("step_view", STEP_CHARTS_REFRESH_S)
    features = [k for k in by_key if k.startswith("monitor.features.")]
    assert features and all(by_key[k][0] is None for k in features)  # drawn by a rerun of the page only
    assert STEP_CHARTS_REFRESH_S > REFRESH_S
    # the cards' fragment refreshes fast while the run trains
    assert at.get("progress"), "the run card's progress bar is drawn"


def test_epochs_faster_than_the_charts_refresh_redraw_them_and_their_timer_is_off(manager, drawn_by):
    """Epochs logged faster than the step charts' pace rerun the page often enough: the charts have no timer of
    their own then (each rerun costs the browser a redraw of the page's frame); slow epochs switch it on."""
    import time

    store = manager.store
    run_id = add_run_with_snapshots(store, "dann", n_snaps=3)  # epochs 1 and 2, logged just now
    store.set_status(run_id, "running")
    manager.active.add(run_id)
    now = time.time()
    _epochs_at(store, run_id, [now - 4, now - 1])
    at = open_app()
    at.session_state[keys.MONITOR_REQUEST] = [run_id]
    at.switch_page(keys.PAGE_MONITOR).run()
    assert not at.exception, [e.value for e in at.exception]
    by_key = {k: (f, e) for f, k, e in drawn_by if k and str(k).startswith("monitor.chart.")}
    assert by_key["monitor.chart.loss"] == ("step_view", None)  # drawn by the page's run, no timer
    assert at.session_state[keys.MONITOR_STEPS_BY_EPOCH] is True
    drawn_by.clear()
    _epochs_at(store, run_id, [now - 4, now - 1 - STEP_CHARTS_REFRESH_S])  # the epochs slowed down
    at.run()
    by_key = {k: (f, e) for f, k, e in drawn_by if k and str(k).startswith("monitor.chart.")}
    assert by_key["monitor.chart.loss"] == ("step_view", STEP_CHARTS_REFRESH_S)
    assert at.session_state[keys.MONITOR_STEPS_BY_EPOCH] is False


def test_epochs_pace_the_step_charts_only_while_every_run_logs_them_fast() -> None:
    pace = STEP_CHARTS_REFRESH_S
    assert epochs_pace([[100.0, 104.0]], 105.0)
    assert epochs_pace([[100.0, 104.0], [90.0, 97.0, 101.0]], 105.0)  # the last two count
    assert not epochs_pace([[100.0, 104.0], [90.0, 101.0]], 105.0), "one run with slow epochs keeps the timer"
    assert not epochs_pace([[100.0, 100.0 + pace]], 100.0 + pace), "epochs a refresh apart or more"
    assert not epochs_pace([[100.0, 104.0]], 104.0 + pace), "no epoch for a refresh: the epochs stalled"
    assert not epochs_pace([[104.0]], 105.0) and not epochs_pace([[]], 105.0) and not epochs_pace([], 105.0)


def test_step_charts_paced_by_epochs_are_overdue_after_their_refresh_and_a_card_refresh() -> None:
    due = STEP_CHARTS_REFRESH_S + REFRESH_S
    assert not step_charts_overdue(True, 1000.0, 1000.0 + due)
    assert step_charts_overdue(True, 1000.0, 1000.0 + due + 0.1)
    assert step_charts_overdue(True, None, 1000.0)  # never built while paced: rerun
    assert not step_charts_overdue(False, 1000.0, 1000.0 + 10 * due), "with their own timer, never overdue"


def test_freshness_is_the_delay_to_the_first_view_showing_that_epoch_or_a_later_one() -> None:
    shown = [(100.0, "epoch", 1.0), (103.0, "epoch", 2.0), (109.0, "epoch", 4.0), (104.0, "snapshot", 2.0)]
    events = [(101.5, "epoch", 2.0), (105.0, "epoch", 3.0), (108.5, "epoch", 4.0), (102.0, "snapshot", 2.0),
              (106.0, "snapshot", 3.0)]
    got = _freshness(shown, events, a=100.0, b=120.0, allowance_s=GOAL_FRESH_S)
    assert got == [pytest.approx(1.5), pytest.approx(4.0), pytest.approx(0.5), pytest.approx(2.0), None]


def test_freshness_leaves_out_events_outside_the_window_or_too_late_to_show() -> None:
    shown = [(100.0, "epoch", 5.0)]
    events = [(90.0, "epoch", 1.0), (117.0, "epoch", 6.0), (150.0, "epoch", 7.0)]
    assert _freshness(shown, events, a=95.0, b=120.0, allowance_s=4.0) == []
    assert np.isclose(GOAL_FRESH_S, REFRESH_S + 2.0)


def test_data_version_counts_epochs_and_projected_snapshots_and_sees_a_rewritten_epoch(manager) -> None:
    store = manager.store
    run_id = add_run_with_snapshots(store, "dann", n_snaps=3)  # epochs 1 and 2, three projected snapshots
    n, t, projected = store.data_version(run_id)
    assert (n, projected) == (2, 3) and t > 0
    store.save_snapshot(run_id, 3, step=30, epoch=3, features=np.zeros((40, 8)))  # saved, not yet projected
    assert store.data_version(run_id)[2] == 3
    store.save_coords(run_id, 3, np.zeros((40, 2)))
    assert store.data_version(run_id)[2] == 4
    time_before = store.data_version(run_id)[1]
    store.log_epoch(run_id, 2, 20, {"target_test_acc": 0.7}, {})  # a resumed run writes epoch 2 again
    n2, t2, _ = store.data_version(run_id)
    assert n2 == 2 and t2 > time_before
    assert store.data_version("no-such-run") == (0, 0.0, 0)


def test_epoch_rows_are_read_again_only_when_they_change(manager) -> None:
    from tl_ui import live_cache

    store = manager.store
    run_id = add_run_with_snapshots(store, "dann", n_snaps=3)
    first = live_cache.epoch_metrics(run_id)
    assert live_cache.epoch_metrics(run_id) is first  # unchanged: the same frame, no read
    store.log_epoch(run_id, 3, 30, {"source_val_acc": 0.95, "target_test_acc": 0.6}, {})
    after = live_cache.epoch_metrics(run_id)
    assert after is not first and list(after["epoch"]) == [1, 2, 3]
    assert after.equals(store.epoch_metrics(run_id))
    assert live_cache.version([run_id]) == ((run_id, *store.data_version(run_id)),)


def test_a_rerun_within_a_chart_refresh_draws_the_step_charts_it_drew_then(manager, monkeypatch):
    """A new epoch reruns the page; the step curves are rebuilt only once a chart refresh is due (while
    every run shown trains), and always for a run that has ended."""
    import json
    import time as time_mod

    run_id = add_run_with_snapshots(manager.store, "dann", n_snaps=3)
    manager.store.set_status(run_id, "running")
    manager.active.add(run_id)
    manager.store.log_steps(run_id, [{"step": s, "epoch": 1, "loss_task": 1.0 / s, "lr": 0.01} for s in range(1, 50)])
    clock = [1000.0]
    monkeypatch.setattr(time_mod, "monotonic", lambda: clock[0])
    at = open_app()
    at.session_state[keys.MONITOR_REQUEST] = [run_id]
    at.switch_page(keys.PAGE_MONITOR).run()
    assert not at.exception, [e.value for e in at.exception]

    def loss_steps() -> int:
        # the loss chart ("Training loss per step"); its longest line's data grows with the steps drawn
        spec = next(spec for spec in live_charts(at) if "Training loss per step" in
                    spec["layout"].get("title", {}).get("text", ""))
        return max(len(t.get("x", {}).get("bdata", "")) if isinstance(t.get("x"), dict) else len(t.get("x") or [])
                   for t in spec["data"])

    before = loss_steps()
    manager.store.log_steps(run_id, [{"step": s, "epoch": 2, "loss_task": 1.0 / s, "lr": 0.01} for s in range(50, 200)])
    clock[0] += STEP_CHARTS_REFRESH_S - 2  # a rerun soon after: the curves drawn then
    at.run()
    assert loss_steps() == before
    clock[0] += 2  # the chart refresh is due: new curves
    at.run()
    grown = loss_steps()
    assert grown > before
    manager.store.log_steps(run_id, [{"step": s, "epoch": 2, "loss_task": 1.0 / s, "lr": 0.01} for s in range(200, 400)])
    manager.store.set_status(run_id, "completed")
    manager.active.discard(run_id)
    clock[0] += 1  # the run ended: its final curves at once
    at.run()
    assert loss_steps() > grown


def test_the_sidebar_refreshes_every_30_s_on_the_monitor_and_every_2_s_elsewhere(manager, monkeypatch):
    from tl_ui import widgets

    every: list[object] = []
    real_fragment = st.fragment

    def fragment(func=None, *, run_every=None, **kw):
        if func is not None and func.__name__ == "_active_runs":
            every.append(run_every)
        return real_fragment(func, run_every=run_every, **kw) if func is not None else \
            (lambda f: fragment(f, run_every=run_every, **kw))

    monkeypatch.setattr(st, "fragment", fragment)
    add_run_with_snapshots(manager.store, "dann", n_snaps=2)
    at = open_app()
    assert every[-1] == widgets.SIDEBAR_REFRESH_S == REFRESH_S  # Home
    at.switch_page(keys.PAGE_MONITOR).run()
    assert not at.exception, [e.value for e in at.exception]
    assert every[-1] == SIDEBAR_REFRESH_ON_MONITOR_S == 30.0  # the Monitor's page reruns at each epoch refresh it too


def test_live_charts_send_the_spec_st_plotly_chart_would_and_keep_one_element_per_key(manager) -> None:
    """Same JSON as st.plotly_chart; the element's id follows its key, not its data, so the browser
    updates the chart already there (tl_ui/live_chart.py)."""
    import pandas as pd
    import plotly.io as pio

    from tl_core import charts

    series = [charts.Series(label="r", steps=pd.DataFrame({"step": [1, 2, 3], "loss_task": [1.0, 0.5, 0.25]}),
                            epochs=pd.DataFrame(), color="#1f6feb")]
    fig = charts.loss_figure(series)
    assert live_chart.chart_spec(fig) == pio.to_json(fig, validate=False)
    run_id = add_run_with_snapshots(manager.store, "dann", n_snaps=2)
    manager.store.log_steps(run_id, [{"step": s, "epoch": 1, "loss_task": 1.0 / s, "lr": 0.01} for s in range(1, 20)])
    at = open_app()
    at.session_state[keys.MONITOR_REQUEST] = [run_id]
    at.switch_page(keys.PAGE_MONITOR).run()
    ids, specs = {c.proto.id for c in at.get("bidi_component")}, live_charts(at)
    manager.store.log_steps(run_id, [{"step": s, "epoch": 2, "loss_task": 1.0 / s, "lr": 0.01} for s in range(20, 60)])
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert live_charts(at) != specs  # the loss curve grew
    assert {c.proto.id for c in at.get("bidi_component")} == ids and len(ids) == 4 + 1  # the same elements
    # (4 training charts and the animation)


def test_plotly_js_is_served_from_the_installed_package(tmp_path, monkeypatch) -> None:
    """Offline: plotly.js is copied from the plotly package into static/ (served at app/static/), once,
    and again when the package's copy changes."""
    import plotly.io as pio
    import tomllib
    from pathlib import Path

    monkeypatch.setattr(live_chart, "STATIC_DIR", tmp_path / "static")
    live_chart.ensure_plotly_js.clear()
    target = live_chart.ensure_plotly_js()
    source = Path(pio.__file__).resolve().parents[1] / "package_data" / "plotly.min.js"
    assert target == tmp_path / "static" / "plotly.min.js" and target.read_bytes() == source.read_bytes()
    target.write_text("stale")
    live_chart.ensure_plotly_js.clear()
    assert live_chart.ensure_plotly_js().read_bytes() == source.read_bytes()
    live_chart.ensure_plotly_js.clear()

    def read_only(*_a, **_k):
        raise PermissionError("read-only file system")

    target.unlink()
    monkeypatch.setattr(live_chart.shutil, "copyfile", read_only)  # a read-only checkout: no crash
    assert live_chart.ensure_plotly_js() is None  # (each live chart then says plotly.js did not load)
    live_chart.ensure_plotly_js.clear()
    config = tomllib.loads((Path(__file__).resolve().parents[1] / ".streamlit" / "config.toml").read_text())
    assert config["server"]["enableStaticServing"] is True
    assert f'"app/static/{live_chart.PLOTLY_JS}"' in live_chart._JS  # where the component loads it from


@pytest.mark.parametrize("every_draw", [False, True])
def test_an_epoch_that_arrives_while_the_page_draws_is_shown_by_one_more_rerun_at_most(manager, monkeypatch, every_draw):
    """A new epoch or snapshot reruns the page; one that reaches the store while that rerun draws is shown by one
    more rerun at once (not a refresh later), and never by a chain of them when runs log faster than the page draws."""
    from tl_ui import feature_space

    store = manager.store
    run_id = add_run_with_snapshots(store, "dann", n_snaps=3)  # epochs 1 and 2
    store.set_status(run_id, "running")
    manager.active.add(run_id)
    real = feature_space.render_feature_section
    drawn: list[int] = []

    def drawing(recs):
        drawn.append(store.data_version(run_id)[0])  # the epochs in the store as the feature space is drawn
        if every_draw or len(drawn) == 1:
            n = drawn[-1] + 1
            store.log_epoch(run_id, n, 10 * n, {"source_val_acc": 0.9, "target_test_acc": 0.5})  # lands meanwhile
        return real(recs)

    monkeypatch.setattr(feature_space, "render_feature_section", drawing)
    at = open_app()
    at.session_state[keys.MONITOR_REQUEST] = [run_id]
    at.switch_page(keys.PAGE_MONITOR).run()
    assert not at.exception, [e.value for e in at.exception]
    assert drawn == [2, 3], "the epoch logged during the first draw is drawn by the rerun right after it, once"
    assert keys.MONITOR_FS_CHAINED not in at.session_state  # the rerun it caused took the mark: the next may chain
    drawn.clear()
    store.set_status(run_id, "completed")  # nothing trains any more: nothing to chain
    manager.active.discard(run_id)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert len(drawn) == 1
