"""Every page runs inside app.py's ``st.navigation``.

Streamlit keeps honouring the old multipage convention of a ``pages/`` folder until the
first call of ``st.navigation`` in the process. On a freshly started server, a first
visitor who opens /monitor directly (a bookmark, or a tab reconnecting after a server
restart) would get ``pages/monitor.py`` run on its own: no page config, no sidebar, no
owner id. (Streamlit's AppTest starts every run that way.) So app.py marks its runs, and
each page starts with :func:`require_app`: run outside app.py, it runs app.py in its
place, in the same script run so that no click is lost; app.py's navigation then runs
the page itself.
"""

from __future__ import annotations

import runpy
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import streamlit as st

APP_SCRIPT = Path(__file__).resolve().parents[1] / "app.py"
_state = threading.local()  # a script run happens on one thread; sessions run on different threads


@contextmanager
def app_run() -> Iterator[None]:
    """Wrap the body of app.py: pages run inside it know they are in the app."""
    _state.active = True
    try:
        yield
    finally:
        _state.active = False


def require_app() -> None:
    """First call of every page: when app.py is not around this run, run app.py instead."""
    if getattr(_state, "active", False):
        return
    runpy.run_path(str(APP_SCRIPT), run_name="__main__")
    st.stop()
