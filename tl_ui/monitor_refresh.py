"""How often each part of the Monitor is redrawn while runs train (one owner for these numbers:
the page, the benchmark and the docs read them here).

A laptop that trains often also runs the browser that watches: every redraw costs the server's
encoding and the browser's drawing, on the cores that train. So each part is redrawn only as often
as its data changes (see docs/ARCHITECTURE.md, "Monitor refresh"):

- the run cards (status, progress, ETA, Stop): every ``REFRESH_S``;
- the charts (accuracy, loss, the method's step charts, learning rate) and the stages that train
  now: every ``STEP_CHARTS_REFRESH_S``;
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
#: Monitor, whose run cards already refresh every ``REFRESH_S``, at the charts' pace.
SIDEBAR_REFRESH_ON_MONITOR_S = STEP_CHARTS_REFRESH_S
