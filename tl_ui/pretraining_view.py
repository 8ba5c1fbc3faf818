"""Home's "What is pretraining worth?" card: start the demo (``tl_core.pretraining``), its progress with an ETA
for the whole demo, Stop, and the figure of MNIST test accuracy against labels per class once runs finish."""

from __future__ import annotations

import logging

import streamlit as st

from tl_core import pretraining as pt
from tl_core.jobs import ConfigError
from tl_ui import access, keys, resources, runinfo, widgets

log = logging.getLogger(__name__)
DESCRIPTION = (
    "LeNet first learns the digits from all 5,000 labelled synthetic digits; then MNIST gets only "
    f"{', '.join(map(str, pt.LABELS_PER_CLASS[:-1]))} or {pt.LABELS_PER_CLASS[-1]} labelled images per class, "
    "and four strategies learn from them: from scratch, the pretrained backbone frozen with a new head "
    "(feature extraction), fine-tuning all layers, and fine-tuning with L2-SP — "
    f"{len(pt.SEEDS)} seeds each. The figure shows where pretraining helps most and whether it ever hurts."
)


def _start() -> None:
    try:
        ids = pt.start(resources.get_manager(), owner=resources.owner_id())
    except ConfigError as exc:
        st.session_state[keys.HOME_ERROR] = ("error", "Could not start the demo: " + " ".join(exc.problems))
        return
    except Exception as exc:  # say what went wrong, never a traceback
        log.exception("starting the pretraining demo failed")
        st.session_state[keys.HOME_ERROR] = ("error", f"Could not start the demo ({type(exc).__name__}: {exc}).")
        return
    resources.remember_started(ids)


def _stop(record: dict) -> None:
    manager = resources.get_manager()
    for e in record["runs"]:
        manager.cancel(e["id"])


def render() -> None:
    """The card: title, what it does, Run demo / Stop, then progress and the figure (live while it runs)."""
    store = resources.get_store()
    record = pt.load(store.home)
    status = pt.status(store, record) if record else None
    with st.container(border=True):
        text, act = st.columns([3, 1], vertical_alignment="center")
        with text:
            st.markdown(f"**{pt.TITLE}** {DESCRIPTION}")
        with act:
            running = status is not None and status.active
            may = access.may_act()
            if running:
                if st.button("Stop demo", key=keys.HOME_PRETRAINING_STOP, icon=":material/stop:", width="stretch", disabled=not may,
                             help="Stops every run of the demo still queued or running."):
                    _stop(record)
                    st.rerun()
            elif st.button("Run demo", key=keys.HOME_PRETRAINING, type="primary", icon=":material/play_arrow:", width="stretch",
                           disabled=not may, help=f"Queues {pt.N_RUNS} short runs (one pretraining, then "
                           f"{len(pt.STRATEGIES)} strategies × {len(pt.LABELS_PER_CLASS)} label counts × "
                           f"{len(pt.SEEDS)} seeds) and shows the figure here." if may else access.why_read_only()):
                _start()
                st.rerun()
            st.caption(f"{pt.N_RUNS} short runs: about 1 to 2 minutes on a 2-core laptop CPU.")
        if record is not None:
            _live(running)


def _live(running: bool) -> None:
    @st.fragment(run_every=2.0 if running else None)
    def body() -> None:
        store = resources.get_store()
        record = pt.load(store.home)
        if record is None:
            return
        status = pt.status(store, record)
        if status.active:
            left = f" · about {runinfo.fmt_duration(status.eta_s)} left" if status.eta_s else ""
            st.progress(min(1.0, status.fraction), text=f"{status.done} of {status.total} runs done{left}")
        elif running:  # it just finished: redraw the card (buttons) once
            st.rerun(scope="app")
        if status.failed:
            st.caption(f"{status.failed} run{'s' if status.failed != 1 else ''} of the demo did not complete "
                       "(stopped or failed; see Runs).")
        summary = pt.aggregate(pt.results(store, record))
        if summary:
            st.plotly_chart(pt.figure(summary), width="stretch", key="pretraining_figure",
                            config={"displayModeBar": False})
            sentence = pt.verdict(summary)
            if sentence:
                st.markdown(widgets.plain(sentence))
    body()
