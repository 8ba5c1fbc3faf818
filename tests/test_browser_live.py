"""In a real browser: the Monitor follows a run that trains in the server without a reload.

The server (``bench/_serve.py``) submits a tiny run to its own job manager before it starts, as
after a click on Start: MNIST → MNIST-M with a few hundred images, many short epochs, PCA snapshots
projected at normal priority. The test opens the Monitor once and then only watches: new epochs
reach the accuracy chart, new snapshots the feature-space animation, the step count on the card
grows, and every part of the page stays there (see tl_ui/monitor_refresh.py for what is redrawn
when).
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from _tiny import tiny_config
from test_browser import CHROMIUM_ARGS, chromium_path  # noqa: F401 (chromium_path: a fixture)

try:
    from playwright.sync_api import sync_playwright
except ImportError:  # reported by the chromium_path fixture
    sync_playwright = None

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]

#: What the page shows, read in the browser: the latest epoch on the accuracy chart, the latest
#: snapshot in the feature-space animation (its last frame's name), the epoch of the confusion matrix
#: (per-class results follow the latest epoch), the step on the first run card.
SHOWN = """() => {
  const out = {epoch: null, snapshot: null, confusion: null, step: null, titles: []};
  for (const gd of document.querySelectorAll('.js-plotly-plot')) {
    const title = ((gd.layout || {}).title || {}).text || '';
    out.titles.push(title.replace(/<br>/g, ' '));
    if (title.includes('Accuracy (%) per epoch')) {
      for (const t of (gd._fullData || [])) { const x = t.x || []; if (x.length) out.epoch = Math.max(out.epoch ?? 0, +x[x.length - 1]); }
    } else if (title.includes('Source and target features')) {
      const frames = (gd._transitionData || {})._frames || [];
      const m = frames.length ? /epoch ([0-9.]+)/.exec(frames[frames.length - 1].name) : null;
      out.snapshot = frames.length ? (m ? +m[1] : 0) : null;
    } else if (title.includes('Target confusion matrix, epoch')) {
      out.confusion = +/epoch ([0-9]+)/.exec(title)[1];
    }
  }
  const p = document.querySelector("[data-testid='stMain'] [data-testid='stProgress']");
  const m = p && /step (\\d+) of/.exec(p.innerText);
  out.step = m ? +m[1] : null;
  return out;
}"""


def _live_config(path: Path) -> None:
    cfg = tiny_config("dann")
    cfg.name = "live refresh test"
    cfg.optim.epochs = 40  # far more than the test watches: the server's end stops it
    cfg.snapshot.projection = "pca"  # projected in well under a second
    cfg.snapshot.priority = "live"
    path.write_text(json.dumps(cfg.to_dict()))


@pytest.fixture
def live_server(tmp_path: Path):
    home = tmp_path / "home"
    home.mkdir()
    config = tmp_path / "run.json"
    _live_config(config)
    port = random.randint(8600, 8999)
    out = open(tmp_path / "server.out", "w")
    proc = subprocess.Popen([sys.executable, "-m", "bench._serve", "--port", str(port), "--log",
                             str(tmp_path / "serve.log"), "--config", str(config)], cwd=ROOT,
                            env={**os.environ, "TL_HOME": str(home), "PYTHONUNBUFFERED": "1"},
                            stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(url + "/_stcore/health", timeout=2) as r:
                if r.read().strip() == b"ok":
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"the server did not start:\n{(tmp_path / 'server.out').read_text()[-3000:]}")
        time.sleep(0.5)
    yield url
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
    out.close()
    log = (tmp_path / "server.out").read_text()
    assert "Traceback" not in log, log[-3000:]


def _wait_for(page, cond, what: str, timeout_s: float, shown_before: dict) -> dict:
    """Poll what the page shows until ``cond(shown)``; fail after ``timeout_s`` without it."""
    deadline = time.monotonic() + timeout_s
    while True:
        shown = page.evaluate(SHOWN)
        if cond(shown):
            return shown
        if time.monotonic() > deadline:
            pytest.fail(f"{what} within {timeout_s:.0f} s without a reload: the page showed {shown_before} "
                        f"and then {shown}")
        page.wait_for_timeout(250)


@pytest.mark.timeout(900)
def test_monitor_shows_new_epochs_and_snapshots_without_a_reload(chromium_path, live_server) -> None:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1800})
        page.set_default_timeout(120_000)
        page.goto(live_server + "/monitor")
        page.get_by_role("heading", name="Monitor", exact=True).wait_for()
        # the sections drawn only while open (issue 18): a user opens them, and they follow training too
        for label in ("Domain distance over training", "Per-class results on the target test set"):
            page.locator("summary", has_text=label).first.click()
        # A busy machine takes a while for the first epoch; a reload is never needed after this goto.
        first = _wait_for(page, lambda s: s["epoch"] is not None and s["snapshot"] is not None,
                          "no epoch on the accuracy chart or no projected snapshot", 300, {})
        # the training charts and the animation are updated in place (tl_ui/live_chart.py): mark the elements
        marked = page.evaluate("() => [...document.querySelectorAll('.tl-live-chart .js-plotly-plot')]"
                               ".map((gd, i) => (gd.__tlMark = i, i)).length")
        assert marked == 5, marked  # accuracy, loss, two of DANN's step charts, the feature-space animation
        # Each part's refresh runs at most a few seconds apart; 120 s leaves room for a busy machine.
        later = _wait_for(page, lambda s: s["epoch"] >= first["epoch"] + 2 and (s["confusion"] or 0) >= first["epoch"] + 2,
                          "no new epoch appeared on the accuracy chart and the confusion matrix", 120, first)
        later = _wait_for(page, lambda s: s["snapshot"] > first["snapshot"], "no new snapshot appeared", 120, first)
        assert later["step"] is not None and first["step"] is not None and later["step"] > first["step"]
        # the newer epochs, steps and snapshots were drawn into the same chart elements, not new ones
        still = page.evaluate("() => [...document.querySelectorAll('.tl-live-chart .js-plotly-plot')]"
                              ".map(gd => gd.__tlMark)")
        assert sorted(still) == list(range(marked)), still
        # nothing the Monitor showed is gone after these refreshes
        titles = " | ".join(later["titles"])
        for part in ("Accuracy (%) per epoch", "Training loss per step", "Domain discriminator accuracy",
                     "λ (left) and learning rate", "Source and target features", "Proxy A-distance",
                     "Target confusion matrix", "Target accuracy per class"):
            assert part in titles, f"{part!r} missing from the Monitor's charts: {titles}"
        page.get_by_role("heading", name="Feature space").first.wait_for()
        assert page.locator("[class*='st-key-monitor-stop-'] button").count() == 1
        browser.close()
