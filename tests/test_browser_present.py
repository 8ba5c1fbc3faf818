"""The Present page in Chromium at 1280x720 (a projector): with two finished tiny runs in the store it fits one
screen with no scrolling, both charts draw, and no chart title (nor a run's name over its scatters) is wider
than its chart. Every page with charts (Monitor with both runs, Runs with both selected, Present) is held to the
same title rule. Home's "Open in Present" toggle makes a demo button land on Present showing the demo's runs."""

from __future__ import annotations

import random
import socket
import sys
import threading
from pathlib import Path

import pytest
from test_browser import CHROMIUM_ARGS, Server, browser, chromium_path, key_css, wait_app  # noqa: F401 (fixtures)

from tl_core.store import RunStore
from tl_ui import keys

pytestmark = pytest.mark.browser
PROJECTOR = {"width": 1280, "height": 720}
ROOT = Path(__file__).resolve().parents[1]
TIMEOUT_MS = 120_000  # generous: on a busy 2-core machine a page with 15 charts takes long to settle

#: Per chart on the page: its title, the right end of the title's text and of each annotation, the chart's
#: width (the SVG's), and how many traces drew.
_CHARTS_JS = """() => [...document.querySelectorAll('.js-plotly-plot')].map(c => {
  const svg = c.querySelector('svg.main-svg');
  const t = c.querySelector('text.gtitle');
  const box = t ? t.getBBox() : null;
  const notes = [...c.querySelectorAll('g.annotation text')].map(a => { const b = a.getBBox();
    return {text: a.textContent, left: b.x, right: b.x + b.width}; });
  return {title: t ? t.textContent : '', left: box ? box.x : 0, right: box ? box.x + box.width : 0,
          width: svg ? svg.width.baseVal.value : 0, notes,
          traces: c.querySelectorAll('g.scatterlayer .trace, g.barlayer .trace, g.heatmaplayer .hm').length,
          points: c.querySelectorAll('g.scatterlayer path.point').length};
})"""


def _projector_port() -> int:
    """A free port in 8600-8999 (the range this project's browser tests of the Present page use)."""
    for port in random.sample(range(8600, 9000), 400):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in 8600-8999")


def _tiny_finished_runs(home: Path) -> list[str]:
    """Two finished 1-epoch runs on tiny real data (source only, DANN) with projected (PCA) snapshots."""
    sys.path.insert(0, str(Path(__file__).parent))
    from _tiny import tiny_config

    from tl_core.execute import execute_run
    from tl_core.projector import project_snapshot

    store = RunStore(home)
    ids = []
    for name, method in (("Source only · MNIST → MNIST-M", "finetune"), ("DANN · MNIST → MNIST-M", "dann")):
        cfg = tiny_config(method)
        cfg.name, cfg.snapshot.projection = name, "pca"
        run_id = store.create_run(cfg, owner="cli")
        store.claim(run_id)
        store.set_status(run_id, "running")
        outcome = execute_run(store, run_id, cfg, threading.Event(),
                              on_snapshot=lambda r, i: project_snapshot(store, r, i))
        store.release(run_id)
        assert outcome.status == "completed", outcome.message
        ids.append(run_id)
    store.close()
    return ids


@pytest.fixture(scope="module")
def present_server(tmp_path_factory: pytest.TempPathFactory):
    home = tmp_path_factory.mktemp("tl_home")
    ids = _tiny_finished_runs(home)
    srv = Server(home, tmp_path_factory.mktemp("server"))
    srv.port = _projector_port()
    srv.url = f"http://127.0.0.1:{srv.port}"
    srv.start()
    srv.run_ids = ids
    yield srv
    srv.stop()
    assert "Traceback" not in srv.log_text(), srv.log_text()[-3000:]


def _charts(page, n: int) -> list[dict]:
    page.wait_for_function(f"() => document.querySelectorAll('.js-plotly-plot svg.main-svg').length >= {n}",
                           timeout=TIMEOUT_MS)
    wait_app(page)
    page.wait_for_timeout(500)  # plotly lays titles out after the SVG exists
    return page.evaluate(_CHARTS_JS)


def _assert_titles_fit(charts: list[dict], where: str) -> None:
    for c in charts:
        assert c["width"] > 0, (where, c)
        assert c["left"] >= 0 and c["right"] <= c["width"] + 1, f"{where}: title cut: {c['title']!r} ({c})"
        for note in c["notes"]:
            assert note["left"] >= -1 and note["right"] <= c["width"] + 1, f"{where}: {note} wider than {c}"


def test_present_fits_one_projector_screen_and_its_titles_fit(browser, present_server) -> None:  # noqa: F811
    page = browser.new_page(viewport=PROJECTOR)
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(present_server.url + "/present")
    wait_app(page)
    charts = _charts(page, 2)
    assert [c["title"] for c in charts] == ["Target accuracy (%)", "Features: source · target"]
    accuracy, features = charts
    assert accuracy["traces"] == 2 and accuracy["points"] == 2  # one line (a point: one epoch) per run
    assert features["points"] >= 4 * 2 * 40  # 2 runs x before/now x (40 source + 40 target points)
    _assert_titles_fit(charts, "present")
    assert any("Source only" in n["text"] for n in features["notes"]) and \
        any("DANN" in n["text"] for n in features["notes"])
    sizes = page.evaluate("() => ({scroll: document.scrollingElement.scrollHeight, inner: innerHeight,"
                          " main: document.querySelector('[data-testid=stMain]').scrollHeight,"
                          " mainView: document.querySelector('[data-testid=stMain]').clientHeight})")
    assert sizes["scroll"] <= sizes["inner"] + 2, sizes
    assert sizes["main"] <= sizes["mainView"] + 2, sizes  # Streamlit scrolls inside its main element
    text = page.locator("[data-testid='stMain']").inner_text()
    assert "MNIST → MNIST-M" in text and "2 finished" in text
    page.close()


def test_no_chart_title_is_cut_at_1280_px_on_monitor_and_runs(browser, present_server) -> None:  # noqa: F811
    page = browser.new_page(viewport=PROJECTOR)
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(present_server.url + "/monitor")
    wait_app(page)
    combo = page.locator(key_css(keys.MONITOR_PICK) + " input[role='combobox']").first
    combo.click()
    page.get_by_role("option").first.click()  # the other run: both runs shown
    page.keyboard.press("Escape")
    charts = _charts(page, 10)
    _assert_titles_fit(charts, "monitor")
    drawn = [c for c in charts if not c["title"].startswith(("Target confusion", "Target accuracy per"))]
    assert all(c["traces"] > 0 for c in drawn), [(c["title"], c["traces"]) for c in charts]
    page.goto(present_server.url + "/runs")
    wait_app(page)
    grid = page.locator("[data-testid='stDataFrame']").first
    grid.wait_for()
    page.wait_for_timeout(800)
    box = grid.bounding_box()
    for row in range(2):
        page.mouse.click(box["x"] + 18, box["y"] + 35 + 35 * row + 17)
        wait_app(page)
        page.wait_for_timeout(300)
    charts = _charts(page, 2)
    _assert_titles_fit(charts, "runs")
    page.close()


def test_a_home_demo_with_open_in_present_lands_on_present_with_its_runs(browser, present_server) -> None:  # noqa: F811
    page = browser.new_page(viewport=PROJECTOR)
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(present_server.url + "/")
    wait_app(page)
    toggle = page.locator(key_css(keys.HOME_PRESENT) + " input[type='checkbox']").first
    page.locator(key_css(keys.HOME_PRESENT) + " label").first.click()
    page.wait_for_function("e => e.checked", arg=toggle.element_handle())
    wait_app(page)
    page.locator(key_css(keys.HOME_RUN_PREFIX + "mnist-mnist-m") + " button").first.click()
    page.get_by_role("button", name="Runs (2)").wait_for()  # the Present page's picker
    assert page.url.split("?")[0].endswith("/present"), page.url
    wait_app(page)
    store = RunStore(present_server.home)
    new = [r for r in store.list_runs() if r.id not in present_server.run_ids]
    store.close()
    assert len(new) == 2
    page.get_by_role("button", name="Runs (2)").click()
    picker = page.locator("[data-testid='stPopoverBody']").first  # the picker, drawn where the popover opens
    picker.get_by_text("Runs to present").wait_for()
    chips = picker.inner_text()
    assert "Source only" in chips and "DANN" in chips
    titles = [c["title"] for c in _charts(page, 2)]
    assert titles[0] == "Target accuracy (%)"
    text = page.locator("[data-testid='stMain']").inner_text()
    assert "2 finished" not in text and "Source only · MNIST → MNIST-M: " in text  # the demo's runs, active
    page.close()
