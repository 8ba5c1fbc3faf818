"""The Sweep page in Chromium against a real server: a small grid starts from the form, its progress shows,
the server restarts mid-sweep and the sweep goes on without repeating a finished setting, and the results
table, the parallel-coordinates plot, a plot per field and the oracle's labelled choice appear."""

from __future__ import annotations

import re
import time

import pytest

from tests.test_browser import CHROMIUM_ARGS, Server, browser, chromium_path, key_css, shot, wait_app  # noqa: F401
from tl_core.store import RunStore
from tl_ui import keys

pytestmark = pytest.mark.browser

LRS = (0.01, 0.03, 0.1)


@pytest.fixture
def server(tmp_path):
    srv = Server(tmp_path / "tl_home", tmp_path)
    srv.home.mkdir()
    srv.start()
    yield srv
    srv.stop()
    assert "Traceback" not in srv.log_text(), srv.log_text()[-3000:]


def progress_text(page) -> str:
    bar = page.locator("[data-testid='stMain'] [data-testid='stProgress']").first
    return bar.inner_text() if bar.count() else ""


def done_runs(page) -> int:
    m = re.search(r"(\d+) of \d+ runs|Finished: (\d+) runs", progress_text(page))
    return int(m.group(1) or m.group(2)) if m else -1


def wait_until(page, cond, what: str, timeout_s: float = 600) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}; progress: {progress_text(page)!r}")
        page.wait_for_timeout(500)


@pytest.mark.timeout(1500)
def test_a_small_grid_runs_survives_a_restart_and_shows_its_results(browser, server: Server) -> None:
    page = browser.new_page(viewport={"width": 1280, "height": 1600})
    page.set_default_timeout(60_000)
    page.goto(server.url + "/sweep")
    wait_app(page)
    page.get_by_text("No sweep yet").wait_for(timeout=180_000)  # the first page view starts the job manager
    # any RunConfig field as PATH=VALUES; tiny runs: 1 epoch on 128 images, one seed
    page.locator(key_css(keys.SWEEP_MORE) + " textarea").fill("optim.lr=" + ",".join(map(str, LRS)))
    for key, value in ((keys.SWEEP_EPOCHS, "1"), (keys.SWEEP_MAX_TRAIN, "128"), (keys.SWEEP_SEEDS, "0")):
        box = page.locator(key_css(key) + " input").first
        box.fill(value)
        box.press("Enter")
        wait_app(page)
    page.locator(key_css(keys.SWEEP_START) + " button").click()
    wait_app(page)
    wait_until(page, lambda: done_runs(page) >= 1, "the first finished run")
    assert re.search(r"of 3 runs · running", progress_text(page)), progress_text(page)

    store = RunStore(server.home)
    before = {r.config["optim"]["lr"] for r in store.list_runs() if r.status == "completed"}
    assert before
    server.stop()  # the server goes away mid-sweep
    server.start()
    page.goto(server.url + "/sweep")
    wait_app(page)
    wait_until(page, lambda: progress_text(page).startswith("Finished: 3 runs"), "the sweep to finish")

    completed = [r.config["optim"]["lr"] for r in store.list_runs() if r.status == "completed"]
    assert sorted(completed) == sorted(LRS)  # each setting finished once: nothing finished ran again
    table = page.locator("[data-testid='stMain'] [data-testid='stDataFrame']").first
    table.wait_for()
    plots = page.locator("[data-testid='stMain'] .js-plotly-plot")  # parallel coordinates + per field
    wait_until(page, lambda: plots.count() >= 2, "both result charts to draw (plotly draws after the table)", 60)
    page.get_by_text("oracle: uses target labels").first.wait_for()
    page.get_by_text("Label-free choice").first.wait_for()
    shot(page, "sweep-browser")
