"""Who may start, stop, resume, rename and delete runs (tl_ui.access; issue 19 point 3).

On localhost with no password every tab may act, a run's Resume included, whoever started it; on a
network address the dashboard is read-only unless the session signed in with TL_PASSWORD, and
read-only means read-only: no button that changes a run is offered enabled (and the callbacks
check again).
"""

from __future__ import annotations

import pytest
from streamlit import config as st_config
from streamlit.testing.v1 import AppTest

from test_pages import ROOT, TIMEOUT, _select_rows, add_run, manager, texts  # noqa: F401  (manager: a fixture)
from tl_ui import keys


@pytest.fixture
def network(monkeypatch):
    """The server listens on every interface (make run ADDRESS=0.0.0.0)."""
    before = st_config.get_option("server.address")
    st_config.set_option("server.address", "0.0.0.0")
    yield
    st_config.set_option("server.address", before)


def app(page: str) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT)
    at.run()
    at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_on_localhost_any_tab_may_resume_a_run_another_session_started(manager):
    run_id = add_run(manager.store, "interrupted", owner="0123456789ab", name="from before the restart")
    (manager.store.run_dir(run_id) / "checkpoint.pt").write_bytes(b"x")
    at = app(keys.PAGE_MONITOR)
    at.button(key=keys.MONITOR_RESUME_PREFIX + run_id).click().run()
    assert manager.resumed == [run_id]


def test_on_a_network_without_a_password_everything_is_read_only(manager, network):
    running = add_run(manager.store, "running", owner="0123456789ab", name="running")
    manager.active.add(running)
    done = add_run(manager.store, "stopped", name="done")
    (manager.store.run_dir(done) / "checkpoint.pt").write_bytes(b"x")
    setup = app(keys.PAGE_SETUP)
    assert setup.button(key=keys.SETUP_START).disabled and "TL_PASSWORD" in texts(setup)
    home = app(keys.PAGE_HOME)
    assert all(b.disabled for b in home.button if b.key.startswith(keys.HOME_RUN_PREFIX))
    monitor = app(keys.PAGE_MONITOR)
    monitor.session_state[keys.MONITOR_REQUEST] = [running, done]
    monitor.run()
    for key in (keys.MONITOR_STOP_PREFIX + running, keys.MONITOR_RESUME_PREFIX + done):
        with pytest.raises(KeyError):
            monitor.button(key=key)
    runs = app(keys.PAGE_RUNS)
    _select_rows(runs, [0])
    runs.checkbox(key=keys.RUNS_CONFIRM_DELETE).check().run()
    delete = runs.button(key=keys.RUNS_DELETE_BUTTON)
    assert delete.disabled and runs.button(key=keys.RUNS_RENAME_BUTTON).disabled
    assert manager.store.get_run(done) is not None
    assert manager.cancelled == [] and manager.resumed == [] and manager.submitted == []


def test_with_a_password_a_session_acts_only_once_signed_in(manager, network, monkeypatch):
    monkeypatch.setenv("TL_PASSWORD", "s3cret")
    at = app(keys.PAGE_SETUP)
    assert at.button(key=keys.SETUP_START).disabled
    at.text_input(key=keys.SIGN_IN_PASSWORD).set_value("wrong")
    [b for b in at.button if b.label == "Sign in"][0].click().run()
    assert "Wrong password." in [e.value for e in at.error]
    assert at.button(key=keys.SETUP_START).disabled
    at.text_input(key=keys.SIGN_IN_PASSWORD).set_value("s3cret")
    [b for b in at.button if b.label == "Sign in"][0].click().run()
    assert not at.button(key=keys.SETUP_START).disabled, texts(at)
    at.button(key=keys.SETUP_START).click().run()
    assert len(manager.submitted) == 1
