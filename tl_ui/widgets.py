"""Small Streamlit building blocks shared by the pages: page style, status badge, the
sidebar's list of active runs, one-shot messages, and ``plain()`` for user text.

Streamlit renders Markdown in st.markdown, captions, alerts, expander and widget labels,
radio options, help tooltips and image captions, and has no plain-text switch for them.
Every string a user or the engine chose (run names, folder and class names, error messages
that quote them) goes through ``plain()`` before it reaches one of those, so a run named
``![x](http://host/x.png)`` shows those characters instead of making every browser fetch
the URL. Selectbox and multiselect options and dataframe cells are plain text already.
"""

from __future__ import annotations

import re

from pathlib import Path

import streamlit as st

from tl_core.store import RunRecord
from tl_ui import keys, resources, runinfo, theme

SIDEBAR_REFRESH_S = 2.0

_CSS = """
<style>
/* Readable at projector distance: a larger base size everywhere. */
html { font-size: 17px; }
[data-testid="stSidebarNav"] a span { font-size: 1.05rem; }
/* Less empty frame around the page: at 1280x720 (a projector) the content gets the room. */
[data-testid="stMainBlockContainer"] { padding-top: 2.2rem; padding-left: 2rem; padding-right: 2rem; }
.tl-stages { display: flex; flex-wrap: wrap; align-items: stretch; gap: 6px; margin: 0.4rem 0 0.6rem 0; }
.tl-stage { border-radius: 8px; padding: 0.55rem 0.9rem; min-width: 8rem; text-align: center;
            font-size: 1.05rem; line-height: 1.3; }
.tl-stage small { display: block; font-size: 0.85rem; opacity: 0.9; }
.tl-arrow { align-self: center; color: #9ca3af; font-size: 1.2rem; }
</style>
"""


#: Characters that mean something anywhere in a line of Streamlit's Markdown (CommonMark and GFM
#: inline syntax, raw HTML and entities, ``$math$``, ``:directives[…]``, autolinks such as
#: ``http://`` and e-mail addresses): each gets a backslash, which CommonMark allows before any
#: ASCII punctuation character and removes when it renders.
_INLINE_SPECIALS = re.compile(r"([\\`*_{}\[\]()<>!|~$:&#@])")
#: GFM turns "http://", "https://", "www." and "name@host" into links after parsing, so escapes do
#: not stop it; an invisible word joiner after "http"/"www" and before "@" does.
_AUTOLINK = re.compile(r"(?i)(\bhttps?(?=\\:)|\bwww(?=\.)|(?=\\@))")
_WORD_JOINER = "\u2060"
#: What means something only at the start of a line (lists, headings, rules, setext underlines).
_LINE_START = re.compile(r"^([-+=]|\d+(?=[.)]))")


def plain(text: object) -> str:
    """``text`` escaped so that Streamlit's Markdown shows it literally, on one or more lines.

    Streamlit has no plain-text switch on st.markdown, st.caption, alerts, labels or help
    tooltips. Markdown characters get a backslash (rendered invisible); each line is stripped
    (no indented code block) and lines are joined by hard breaks (none becomes a heading, a
    list or a table); a web address or an e-mail address gets an invisible word joiner (U+2060)
    so that it is not made a link. Ordinary punctuation such as ``.``, ``-`` inside a line and
    ``'`` is left alone, so messages stay readable in the page's source and in tests.
    """
    lines = []
    for line in str(text).splitlines():
        line = _INLINE_SPECIALS.sub(r"\\\1", line.strip())
        line = _LINE_START.sub(lambda m: m.group(1) + "\\" if m.group(1)[0].isdigit() else "\\" + m.group(1),
                               line)
        line = _AUTOLINK.sub("\\1" + _WORD_JOINER, line)  # GFM would make these links, escaped or not
        if line:
            lines.append(line)
    return "  \n".join(lines)


#: For pages that refresh while runs train (the Monitor): Streamlit dims each element a rerun is
#: about to replace and fades it back (CSS opacity transitions). Every fade repaints the page in
#: the browser, every two seconds, on the cores that train; without a GPU that cost a watching
#: Chromium about 0.1 of a core (issue 18, docs/BENCHMARK_HISTORY.md section 4). Here elements stay
#: as drawn until their replacement arrives.
_LIVE_CSS = """
<style>
[data-testid="stElementContainer"], [data-testid="stVerticalBlock"], [data-testid="stHorizontalBlock"],
[data-testid="stColumn"] { opacity: 1 !important; transition: none !important; }
</style>
"""


def live_page_style() -> None:
    """No fading of the elements a refresh replaces (see ``_LIVE_CSS``)."""
    st.html(_LIVE_CSS)


def page_style() -> None:
    """Inject the dashboard's CSS (larger type for projectors, the stage diagram)."""
    st.html(_CSS)


def status_badge(status: str) -> None:
    label, color, icon = theme.STATUS_STYLE.get(status, (status, "gray", None))
    st.badge(label, icon=icon, color=color)


def show_once(key: str) -> None:
    """Show and forget a (kind, text) message left in session state by a callback (as plain text: they
    quote run names and error messages)."""
    msg = st.session_state.pop(key, None)
    if msg:
        kind, text = msg
        {"error": st.error, "warning": st.warning, "success": st.success}.get(kind, st.info)(plain(text))


def switch_to(page: str) -> None:
    """st.switch_page that keeps the owner id in the URL (so a reload keeps "your runs")."""
    owner = st.session_state.get(keys.OWNER)
    st.switch_page(page, query_params={keys.OWNER_QUERY_PARAM: owner} if owner else None)


def open_in_monitor(run_ids: list[str]) -> None:
    """Go to the Monitor showing these runs."""
    st.session_state[keys.MONITOR_REQUEST] = list(run_ids)
    switch_to(keys.PAGE_MONITOR)


def open_in_present(run_ids: list[str]) -> None:
    """Go to the Present page showing these runs (tl_ui/present_view.py)."""
    st.session_state[keys.PRESENT_REQUEST] = list(run_ids)
    switch_to(keys.PAGE_PRESENT)


def render_sidebar(page_path: str) -> None:
    """The shared sidebar below the page list: who you are, and the runs training now. On the Monitor
    (``page_path``: the page's URL path) the list refreshes every ``SIDEBAR_REFRESH_ON_MONITOR_S`` (30 s):
    its run cards already refresh every 2 s, its page reruns at each new epoch (the sidebar with it), and
    each refresh is a rerun the browser draws on the cores that train (issue 18)."""
    from tl_ui import access
    from tl_ui.monitor_refresh import SIDEBAR_REFRESH_ON_MONITOR_S

    refresh_s = SIDEBAR_REFRESH_ON_MONITOR_S if page_path == Path(keys.PAGE_MONITOR).stem else SIDEBAR_REFRESH_S
    with st.sidebar:
        access.render_sign_in()
        if not access.may_act():
            st.caption(":material/lock: " + access.why_read_only())
        st.fragment(_active_runs, run_every=refresh_s)()


def _active_runs() -> None:
    store = resources.get_store()
    active: list[RunRecord] = [r for r in store.list_runs() if r.active]
    st.markdown("#### Active runs")
    if not active:
        st.caption("No run is training now.")
    owner = st.session_state.get(keys.OWNER)
    for rec in reversed(active):  # oldest first: the order the queue serves them
        mine = rec.owner == owner
        with st.container(border=True):
            st.markdown(f"**{plain(runinfo.run_title(rec))}**" + ("" if mine else "  \n:gray[someone else's run]"))
            if rec.status == "queued":
                st.caption("Waiting in the queue…")
            else:
                st.progress(rec.progress, text=f"{100 * rec.progress:.0f} % · ETA {runinfo.fmt_duration(rec.eta_s)}")
                if rec.phase:
                    st.caption(f"{rec.phase.capitalize()}…")
            if st.button("Open in Monitor", key=f"sidebar.open.{rec.id}", icon=":material/monitoring:",
                         width="stretch"):
                open_in_monitor([rec.id])
    st.caption(f"Your session: `{owner or '?'}`")

