"""Every page runs inside app.py's ``st.navigation``.

Streamlit keeps honouring the old multipage convention of a ``pages/`` folder until the
first call of ``st.navigation`` in the process. On a freshly started server, a first
visitor who opens /monitor directly (a bookmark, or a tab reconnecting after a server
restart) would get ``pages/monitor.py`` run on its own: no page config, no sidebar, no
owner id. So app.py marks its runs, and each page starts with :func:`require_app`: run
outside app.py, it sends the session through app.py, which then opens the requested page.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import streamlit as st

from tl_ui import keys

APP_SCRIPT = "app.py"
_state = threading.local()  # a script run happens on one thread; sessions run on different threads


@contextmanager
def app_run() -> Iterator[None]:
    """Wrap the body of app.py: pages run inside it know they are in the app."""
    _state.active = True
    try:
        yield
    finally:
        _state.active = False


def require_app(page: str) -> None:
    """First line of every page: when app.py is not around this run, go through it to ``page``."""
    if getattr(_state, "active", False):
        return
    st.session_state[keys.APP_PENDING_PAGE] = page
    st.switch_page(APP_SCRIPT, query_params=st.query_params.to_dict())


def open_pending_page() -> None:
    """In app.py, after st.navigation: open the page a direct visit asked for."""
    page = st.session_state.pop(keys.APP_PENDING_PAGE, None)
    if page:
        st.switch_page(page, query_params=st.query_params.to_dict())
