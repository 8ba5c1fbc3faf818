"""How often each part of the Monitor is redrawn while runs train (one owner for these numbers:
the page, the benchmark and the docs read them here).

A laptop that trains often also runs the browser that watches: every redraw costs the server's
encoding and the browser's drawing, on the cores that train. So each part is redrawn only as often
as its data changes (see docs/ARCHITECTURE.md, "Monitor refresh"):

- the run cards (status, progress, ETA, Stop): every ``REFRESH_S`` (a refresh that finds new data
  reruns the page before it draws them: the rerun draws them too);
- the charts (accuracy, loss, the method's step charts, learning rate) and the stages that train
  now: every ``STEP_CHARTS_REFRESH_S``; while every chosen run logs epochs faster than that, by the
  page's rerun at each new epoch instead (when they are due), with no timer of their own: each rerun,
  however little it draws, costs the browser a redraw of the page's frame (:func:`epochs_pace`; if
  the epochs then slow down, the next card refresh reruns the page: :func:`step_charts_overdue`);
- what changes per epoch or per projected snapshot (the feature space, domain distance, per-class
  results, and the accuracy chart again): by one rerun of the page on the first card refresh that
  finds a new epoch or snapshot in the store, so it appears within one refresh (one that arrives while
  that rerun draws: by one more rerun at its end, at most one in a row). That rerun draws the
  step curves built less than ``STEP_CHARTS_REFRESH_S`` before (pages/monitor.py, ``step_figures``);
- the before/now pair, the domain distance and the per-class results: only while the user has their
  section open (closed by default; tl_ui/feature_space.py, ``lazy_expander``).

A chart whose data did not change is sent with the same spec, and Streamlit's browser side does not
redraw it (checked in Chromium: no ``plotly_afterplot`` event).
"""

REFRESH_S = 2.0
STEP_CHARTS_REFRESH_S = 6.0
#: The sidebar's list of active runs (tl_ui/widgets.py): every ``REFRESH_S`` on other pages; on the
#: Monitor, whose run cards already refresh every ``REFRESH_S`` and whose page reruns at each new epoch
#: (the sidebar with it), every ``SIDEBAR_REFRESH_ON_MONITOR_S``: a run started elsewhere shows there
#: within that time.
SIDEBAR_REFRESH_ON_MONITOR_S = 30.0


def epochs_pace(epoch_times: list[list[float]], now: float) -> bool:
    """True when each run's last two epochs (``epoch_times``: per run, its epoch rows' times) came less
    than ``STEP_CHARTS_REFRESH_S`` apart and the latest less than that before ``now``. The Monitor then
    reruns at each new epoch anyway, and that rerun redraws the step charts when they are due; a timer
    of their own would add a rerun every ``STEP_CHARTS_REFRESH_S``, and each rerun, however little it
    draws, costs the browser a redraw of the page's frame, on the cores that train (issue 18)."""
    if not epoch_times:
        return False
    for times in epoch_times:
        if len(times) < 2:
            return False
        last, before = times[-1], times[-2]
        if last - before >= STEP_CHARTS_REFRESH_S or now - last >= STEP_CHARTS_REFRESH_S:
            return False
    return True


def step_charts_overdue(by_epoch: bool, built_at: float | None, now: float) -> bool:
    """With the step charts paced by the epochs (``by_epoch``, see :func:`epochs_pace`): True once they
    were built (``built_at``, a monotonic time; None: not yet) longer ago than their own pace and a card
    refresh: the epochs slowed down (a long evaluation, a new phase), and the card refresh reruns the
    page, which redraws them and, the epochs being slow now, switches their own timer on again."""
    return by_epoch and (built_at is None or now - built_at > STEP_CHARTS_REFRESH_S + REFRESH_S)
