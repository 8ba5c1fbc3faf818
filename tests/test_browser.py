"""End to end in a real browser: a `streamlit run app.py` server and Chromium via Playwright.

One story, in the order a teacher would live it: look at Setup, start the MNIST → MNIST-M
demo from Home, watch progress and the loss chart update on the Monitor, stop a run, replay the
feature-space scatter with its snapshot slider,
reload and find it all still there, compare the two runs on the Runs page, then restart
the server and find the run that was training marked as interrupted, ready to resume.
Screenshots of every page land in artifacts/screenshots/.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tl_core.store import RunStore
from tl_ui import keys

try:
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright
except ImportError:  # reported by the chromium_path fixture: a failure under CI, a skip elsewhere
    sync_playwright = None
    PlaywrightTimeout = TimeoutError

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
SHOTS = ROOT / "artifacts" / "screenshots"
CHROMIUM = os.environ.get("TL_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
VIEWPORT = {"width": 1600, "height": 2400}  # tall: Streamlit scrolls inside the page, screenshots show the viewport


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def key_css(key: str) -> str:
    """CSS selector of the element Streamlit wraps a keyed widget in."""
    return ".st-key-" + re.sub(r"[^a-zA-Z0-9_-]", "-", key.strip())


@pytest.fixture(scope="module")
def chromium_path() -> str:
    msg = None
    if sync_playwright is None:
        msg = "Playwright for Python is not installed: pip install -r requirements-dev.txt."
    elif not Path(CHROMIUM).exists():
        msg = f"Chromium not found at {CHROMIUM}: install Debian's chromium (make browser) or set TL_CHROMIUM."
    if msg:
        if os.environ.get("CI") == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    return CHROMIUM


class Server:
    """A `streamlit run app.py` subprocess on a free port, with its own TL_HOME; can be restarted."""

    def __init__(self, home: Path, log_dir: Path) -> None:
        self.home, self.log_dir = home, log_dir
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.logs: list[Path] = []

    def start(self) -> None:
        log_path = self.log_dir / f"streamlit-{len(self.logs)}.log"
        self.logs.append(log_path)
        env = {**os.environ, "TL_HOME": str(self.home), "PYTHONUNBUFFERED": "1"}
        with open(log_path, "w") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(self.port),
                 "--server.headless", "true", "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"],
                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(self.url + "/_stcore/health", timeout=2) as r:
                    if r.read().strip() == b"ok":
                        return
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"streamlit did not start:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.3)

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)
        self.proc = None

    def log_text(self) -> str:
        return "\n".join(p.read_text() for p in self.logs if p.exists())


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    srv = Server(tmp_path_factory.mktemp("tl_home"), tmp_path_factory.mktemp("server"))
    srv.start()
    yield srv
    srv.stop()
    log_text = srv.log_text()
    assert "Traceback" not in log_text, log_text[-3000:]


@pytest.fixture(scope="module")
def browser(chromium_path: str):
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS)
        yield b
        b.close()


def wait_app(page) -> None:
    page.wait_for_selector("[data-testid='stApp']", timeout=60_000)
    # the script has finished its run when the "running" man in the corner is gone
    page.wait_for_selector("[data-testid='stStatusWidget']", state="detached", timeout=60_000)


def shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.mouse.move(5, VIEWPORT["height"] - 5)  # no tooltip from wherever the last click was
    page.wait_for_timeout(800)  # let charts finish drawing
    page.screenshot(path=str(SHOTS / f"{name}.png"))


def open_page(page, link: str, heading: str, phase=print) -> None:
    """Click the sidebar link ``link`` and wait for the page's heading. A click that lands while the Monitor's
    live parts rerun can be lost (seen once in CI in about ten runs): after 20 s without the heading it is
    clicked again, at most three times in all, and each lost click is printed with where the page was."""
    for attempt in range(3):
        page.get_by_role("link", name=link).first.click()
        try:
            page.get_by_role("heading", name=heading, exact=True).first.wait_for(timeout=20_000)
            return
        except Exception:
            main = page.locator("[data-testid='stMain']").inner_text()[:300].replace("\n", " | ")
            phase(f"click {attempt + 1} on {link!r} showed no {heading!r} heading; url {page.url}; page: {main}")
    pytest.fail(f"three clicks on the {link!r} link did not open the {heading!r} page")


def line_path(page, title: str) -> str:
    """The SVG path of the first line of the plotly chart whose title starts with ``title``."""
    chart = page.locator(".js-plotly-plot").filter(has_text=title).first
    paths = chart.locator("g.scatterlayer path.js-line")
    return " ".join(paths.nth(i).get_attribute("d") or "" for i in range(paths.count()))


def step_of(text: str) -> int:
    m = re.search(r"step (\d+) of", text)
    return int(m.group(1)) if m else -1


# Real training sets the pace: on a slow or busy machine this takes far longer than the suite's
# 600 s per test. Its own waits fail when training stops making progress, so the cap here is generous.
@pytest.mark.timeout(1800)
def test_demo_monitor_stop_reload_compare_and_restart(browser, server: Server) -> None:
    t0 = time.monotonic()

    def phase(name: str) -> None:  # printed with the failure report: where the time went
        print(f"{time.monotonic() - t0:7.1f} s  {name}", flush=True)

    page = browser.new_page(viewport=VIEWPORT)
    page.set_default_timeout(60_000)

    # Setup first, while nothing trains: every setting is there, Start is enabled.
    page.goto(server.url + "/setup")
    wait_app(page)
    page.get_by_role("heading", name="Set up a run", exact=True).wait_for()
    page.get_by_text("Freeze the first k stages").wait_for()
    page.locator(".tl-stages").wait_for()
    assert page.locator(key_css(keys.SETUP_START) + " button").first.is_enabled()
    # A pretrained backbone, then freeze stages: the diagram greys them and the counts follow.
    combo = page.locator(key_css(keys.setup_key("model.backbone")) + " input[role='combobox']").first
    combo.click()
    combo.fill("EfficientNet-Lite0")
    page.get_by_role("option", name=re.compile("EfficientNet-Lite0")).first.click()
    page.get_by_text("9. head conv").wait_for()
    frozen = page.locator("[data-testid='stMetric']").filter(has_text="Frozen backbone parameters")
    assert frozen.inner_text().strip().endswith("0")
    page.locator(key_css(keys.setup_key("model.freeze")) + " input[type='range']").first.focus()
    for _ in range(5):
        page.keyboard.press("ArrowRight")
    page.get_by_text("5 of 9").wait_for()
    page.wait_for_function("() => document.querySelectorAll('.tl-stage').length === 10 &&"
                           " [...document.querySelectorAll('.tl-stage')].filter(e => e.innerText.includes('frozen'))"
                           ".length === 5")
    assert "253,984" in frozen.inner_text()  # stem + stages 1-4 of EfficientNet-Lite0
    shot(page, "setup")

    phase("setup checked")
    # Home: one click starts the MNIST → MNIST-M pair and opens the Monitor.
    page.goto(server.url + "/")
    wait_app(page)
    page.get_by_role("heading", name="Transfer Lab", exact=True).first.wait_for()
    demo = page.locator(key_css(keys.HOME_RUN_PREFIX + "mnist-mnist-m") + " button").first
    demo.wait_for()
    page.locator(key_css(keys.HOME_RUN_PREFIX + "syn-digits-mnist") + " button").first.wait_for()  # the last card
    shot(page, "home")
    demo.click()
    page.wait_for_url(re.compile(r".*/monitor.*"))
    page.get_by_role("heading", name="Monitor", exact=True).wait_for()

    phase("demo clicked, Monitor open")
    # Progress and the loss chart appear, and update.
    progress = page.locator("[data-testid='stMain'] [data-testid='stProgress']").first
    page.wait_for_function(
        "() => [...document.querySelectorAll(\"[data-testid='stMain'] [data-testid='stProgress']\")]"
        ".some(e => /step [1-9]\\d* of/.test(e.innerText))", timeout=90_000)
    first_step = step_of(progress.inner_text())
    page.wait_for_function(
        "() => [...document.querySelectorAll('.js-plotly-plot')].some(c => c.innerText.includes('Training loss')"
        " && c.querySelector('g.scatterlayer path.js-line'))", timeout=60_000)
    loss_before = line_path(page, "Training loss")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        page.wait_for_timeout(1000)
        if step_of(progress.inner_text()) > first_step and line_path(page, "Training loss") != loss_before:
            break
    else:
        pytest.fail("the monitor did not update: progress and the loss chart stayed the same for 30 s")

    phase("monitor updates")
    # Stop the first run (source only); the DANN run starts after it.
    page.locator("[class*='st-key-monitor-stop-']").first.locator("button").click()
    page.get_by_text("Stopped by the user.").wait_for(timeout=30_000)
    assert "Stopped" in page.locator("[data-testid='stMain']").inner_text()
    page.wait_for_function(
        "() => [...document.querySelectorAll('.js-plotly-plot')].some(c => c.innerText.includes('Domain discriminator')"
        " && c.querySelector('g.scatterlayer .trace'))", timeout=90_000)
    try:  # a picture worth looking at: some DANN steps (the second card) when the machine allows
        page.wait_for_function(
            "() => { const p = document.querySelectorAll(\"[data-testid='stMain'] [data-testid='stProgress']\")[1];"
            " const m = p && /step (\\d+) of/.exec(p.innerText); return m && +m[1] >= 40; }", timeout=40_000)
    except PlaywrightTimeout:
        pass
    shot(page, "monitor")

    phase("DANN discriminator chart shown")
    # Feature space: once the DANN run's first epoch snapshot is projected, its animated scatter has a
    # slider over snapshots; dragging it back to "before training" shows the pretrained picture.
    # A slow machine takes minutes to reach the first epoch: the wait goes on while the DANN run's
    # step or projected snapshots advance, and fails after 120 s without progress (900 s cap).
    store = RunStore(server.home)
    slider = ("() => [...document.querySelectorAll('.js-plotly-plot')].some(c => c.querySelector('g.slider-container')"
              " && c.querySelectorAll('g.scatterlayer .trace').length >= 2)")
    seen, deadline, give_up = None, time.monotonic() + 120, time.monotonic() + 900
    while not page.evaluate(slider):
        dann = [r for r in store.list_runs() if r.config["method"]["name"] == "dann"]
        now = (dann[0].status, dann[0].step, int(store.list_snapshots(dann[0].id)["projected"].sum())) \
            if dann else None
        if now != seen:
            seen, deadline = now, time.monotonic() + 120
        if time.monotonic() > min(deadline, give_up):
            pytest.fail(f"no feature-space scatter with a snapshot slider appeared (DANN run: {seen}):\n"
                        + page.locator("[data-testid='stMain']").inner_text()[-1500:])
        page.wait_for_timeout(500)
    scatter = page.locator(".js-plotly-plot").filter(has=page.locator("g.slider-container")).first
    scatter.scroll_into_view_if_needed()
    current = "() => [...document.querySelectorAll('g.slider-container text.slider-label')].map(t => t.textContent)"
    assert any(t.startswith("Snapshot: epoch") for t in page.evaluate(current))
    rail = scatter.locator("rect.slider-rail-touch-rect").first
    box = rail.bounding_box()
    assert box is not None
    page.mouse.click(box["x"] + 4, box["y"] + box["height"] / 2)
    page.wait_for_function(
        "() => [...document.querySelectorAll('g.slider-container text.slider-label')].some(t => t.textContent"
        ".startsWith('Snapshot: before training'))", timeout=10_000)
    # the domain-distance curves are drawn once their section is opened (closed by default: issue 18)
    assert not page.get_by_text("Proxy A-distance: how well").count()
    page.locator("summary", has_text="Domain distance over training").first.click()
    page.get_by_text("Proxy A-distance: how well").first.wait_for(timeout=30_000)
    assert page.get_by_text("Proxy A-distance: how well").first.is_visible()
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.get_by_role("heading", name="Feature space").first.evaluate("e => e.scrollIntoView({block: 'start'})")
    page.mouse.move(5, VIEWPORT["height"] - 5)
    page.wait_for_timeout(700)
    page.screenshot(path=str(SHOTS / "feature_space.png"))

    phase("feature space slider checked")
    # Reload: a new session; the runs, their status and ownership come back from the store.
    page.reload()
    wait_app(page)
    page.get_by_role("heading", name="Monitor", exact=True).wait_for()
    page.locator("[data-testid='stMain'] [data-testid='stProgress']").first.wait_for()
    assert "someone else's run" not in page.locator("[data-testid='stMain']").inner_text()

    phase("reloaded")
    # Runs: both runs in the table; select them and their curves are overlaid.
    open_page(page, "Runs", "Runs", phase)
    grid = page.locator("[data-testid='stDataFrame']").first
    grid.wait_for()
    page.wait_for_timeout(800)
    box = grid.bounding_box()
    assert box is not None
    # The selection checkboxes sit in the first column, rows are 35 px. A click that lands while the page
    # reruns can be lost (seen in CI): each click waits for its sign (one run selected: Compare; two: the
    # rename picker) and is repeated, at most twice, when the sign does not come.
    signs = (page.get_by_role("heading", name="Compare", exact=True), page.get_by_text("Run to rename or download"))
    for row, sign in enumerate(signs):
        for _ in range(3):
            page.mouse.click(box["x"] + 18, box["y"] + 35 + 35 * row + 17)
            try:
                sign.first.wait_for(timeout=15_000)
                break
            except PlaywrightTimeout:
                continue
        else:
            pytest.fail(f"clicking row {row} of the runs table did not select it:\n"
                        + page.locator("[data-testid='stMain']").inner_text()[-1500:])
    page.wait_for_function(
        "() => [...document.querySelectorAll('.js-plotly-plot')].some(c => c.innerText.includes('Training task loss')"
        " && c.querySelectorAll('g.scatterlayer .trace').length >= 2)", timeout=30_000)
    text = page.locator("[data-testid='stMain']").inner_text()
    assert "Source only · MNIST → MNIST-M" in text and "DANN · MNIST → MNIST-M" in text  # the legend
    shot(page, "runs")

    phase("runs compared")
    # Restart the server while a run trains: it comes back as interrupted, still this session's
    # (the owner id rides in the URL), on a Monitor opened directly on a fresh server. The DANN run
    # may have finished by now on a fast machine, so start another demo pair and wait for its steps.
    page.get_by_role("link", name="Home").first.click()
    page.get_by_role("heading", name="Transfer Lab", exact=True).first.wait_for()
    page.locator(key_css(keys.HOME_RUN_PREFIX + "mnist-uci-digits") + " button").first.click()
    page.wait_for_url(re.compile(r".*/monitor.*"))
    # Runs train one at a time: on a slow machine the UCI runs wait behind the MNIST-M DANN run, which
    # ends by itself; the 90 s count for the UCI run to start only once nothing else is active.
    deadline, give_up = time.monotonic() + 90, time.monotonic() + 600
    while True:
        runs = store.list_runs()
        if any(r.status == "running" and r.step > 0 and r.config["data"]["target"] == "uci-digits" for r in runs):
            break
        if any(r.status in ("queued", "running") and r.config["data"]["target"] != "uci-digits" for r in runs):
            deadline = time.monotonic() + 90
        assert time.monotonic() < min(deadline, give_up), "the MNIST → UCI digits demo did not start training"
        page.wait_for_timeout(300)
    phase("UCI demo training")
    monitor_url = page.url
    server.stop()
    server.start()
    page.goto(monitor_url)
    wait_app(page)
    page.get_by_role("heading", name="Monitor", exact=True).wait_for()
    phase("server restarted")
    page.get_by_text("Interrupted.").first.wait_for(timeout=30_000)
    resume = page.locator("[class*='st-key-monitor-resume-'] button").first
    try:
        resume.wait_for(timeout=15_000)
    except PlaywrightTimeout:
        pytest.fail("no Resume button for this session's interrupted run:\n"
                    + page.locator("[data-testid='stMain']").inner_text()[:1500])
    assert "Active runs" in page.locator("[data-testid='stSidebar']").inner_text()
    page.close()
