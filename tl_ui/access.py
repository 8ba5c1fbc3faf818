"""Who may start, stop, resume, rename and delete runs: one honest model.

- **One person on this machine** (the server listens on localhost, 127.0.0.1 or ::1 — the default —
  and no password is set): every tab is that person's. Any tab may stop or resume any run; "started
  in this tab" only asks for a confirmation before stopping a run another tab started.
- **A shared server**: whoever starts it sets ``TL_PASSWORD`` (``make run ADDRESS=0.0.0.0
  PASSWORD=…``). A browser session that signs in with it in the sidebar may act; every other viewer
  reads only: no button that changes a run is enabled for them, and the callbacks check again.
- **Listening on a network without a password**: read-only for everyone; the pages say how to allow.

The password never comes from a page or a URL; it is compared in constant time.
"""

from __future__ import annotations

import hmac
import os

import streamlit as st

from tl_ui import keys

PASSWORD_ENV = "TL_PASSWORD"
LOCAL_ADDRESSES = ("localhost", "127.0.0.1", "::1")


def _password() -> str:
    return os.environ.get(PASSWORD_ENV, "")


def local_only() -> bool:
    """The server listens on this machine only."""
    return str(st.get_option("server.address") or "") in LOCAL_ADDRESSES


def may_act() -> bool:
    """Whether this browser session may start, stop, resume, rename and delete runs."""
    if _password():
        return bool(st.session_state.get(keys.SIGNED_IN))
    return local_only()


def why_read_only() -> str:
    """Why this session reads only, in a sentence that says what to do."""
    if _password():
        return "Sign in (sidebar) with the password of this server to start, stop or change runs."
    return ("This server listens on a network and has no password, so it is read-only. Whoever starts it can "
            f"set one ({PASSWORD_ENV}, e.g. make run ADDRESS=0.0.0.0 PASSWORD=...).")


def render_sign_in() -> None:
    """The sidebar's sign-in form, when the server has a password."""
    if not _password():
        return
    if st.session_state.get(keys.SIGNED_IN):
        st.caption("Signed in: you may start, stop and change runs.")
        if st.button("Sign out", key=keys.SIGN_OUT):
            st.session_state[keys.SIGNED_IN] = False
            st.rerun()
        return
    with st.form(keys.SIGN_IN_FORM, border=False):
        typed = st.text_input("Password", type="password", key=keys.SIGN_IN_PASSWORD,
                              help="Set by whoever started this server; without it the dashboard is read-only.")
        if st.form_submit_button("Sign in"):
            if hmac.compare_digest(typed.encode(), _password().encode()):
                st.session_state[keys.SIGNED_IN] = True
                st.rerun()
            st.error("Wrong password.")
