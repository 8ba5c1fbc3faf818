"""Home's "What is pretraining worth?" card in Chromium: Run demo queues the demo, its progress shows, Stop stops it."""

from __future__ import annotations

import time

import pytest

from test_browser import browser, chromium_path, key_css, server, wait_app  # noqa: F401  (fixtures)
from tl_core import pretraining as pt
from tl_core.store import RunStore
from tl_ui import keys

pytestmark = pytest.mark.browser


def test_home_card_starts_the_demo_and_stop_stops_it(server, browser):
    page = browser.new_page(viewport={"width": 1280, "height": 720})
    page.goto(server.url, timeout=120_000)
    wait_app(page)
    button = page.locator(key_css(keys.HOME_PRETRAINING)).get_by_role("button")
    button.scroll_into_view_if_needed()
    button.click()
    stop = page.locator(key_css(keys.HOME_PRETRAINING_STOP)).get_by_role("button")
    stop.wait_for(timeout=120_000)
    page.get_by_text(f"of {pt.N_RUNS} runs done").wait_for(timeout=60_000)
    record = pt.load(server.home)
    assert record is not None and len(record["runs"]) == pt.N_RUNS
    stop.click()
    store = RunStore(server.home)
    deadline = time.monotonic() + 120
    while any(store.get_run(e["id"]).active for e in record["runs"]):
        assert time.monotonic() < deadline, "the demo's runs did not stop"
        time.sleep(0.5)
    assert {store.get_run(e["id"]).status for e in record["runs"]} <= {"stopped", "completed"}
    page.locator(key_css(keys.HOME_PRETRAINING)).get_by_role("button").wait_for(timeout=60_000)  # Run demo again
    page.close()
