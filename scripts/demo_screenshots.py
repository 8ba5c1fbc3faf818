"""Screenshots of the finished one-click demo, as a user sees it (for the README).

    .venv/bin/python scripts/demo_screenshots.py [--out docs/screenshots]

Starts `streamlit run app.py` on a fresh run store, opens Home in headless Chromium
(Debian's /usr/bin/chromium, or TL_CHROMIUM), clicks the MNIST → MNIST-M demo card (source
only + DANN, 10 epochs each), waits until both runs are finished and every feature snapshot
is projected, and saves the Monitor (whole page, and the feature-space section) with both
runs selected. Takes about three minutes on 2 CPU cores. Nothing here is a test.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CHROMIUM = os.environ.get("TL_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-dev-shm-usage"]
VIEWPORT = {"width": 1500, "height": 1000}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _all_done(home: Path) -> bool:
    from tl_core.store import RunStore

    store = RunStore(home)
    try:
        runs = store.list_runs()
        if len(runs) < 2 or any(r.active for r in runs):
            return False
        return all(bool(store.list_snapshots(r.id)["projected"].all()) for r in runs)
    finally:
        store.close()


def main() -> int:
    from playwright.sync_api import sync_playwright

    from tl_ui import keys

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(ROOT / "docs" / "screenshots"))
    ap.add_argument("--timeout", type=float, default=900, help="seconds to wait for the demo to finish")
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    home = Path(tempfile.mkdtemp(prefix="tl-shots-"))
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = open(home / "server.log", "w")
    server = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
                               "--server.headless", "true", "--server.address", "127.0.0.1",
                               "--browser.gatherUsageStats", "false"],
                              cwd=ROOT, env={**os.environ, "TL_HOME": str(home)}, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if urllib.request.urlopen(url + "/_stcore/health", timeout=2).status == 200:
                    break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"streamlit did not start; see {home / 'server.log'}")
            time.sleep(0.3)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            page = browser.new_page(viewport=VIEWPORT)
            page.goto(url + "/")
            page.wait_for_selector("[data-testid='stApp']", timeout=60_000)
            css = ".st-key-" + re.sub(r"[^a-zA-Z0-9_-]", "-", keys.HOME_RUN_PREFIX + "mnist-mnist-m")
            page.locator(css + " button").first.click()
            page.wait_for_url(re.compile(r".*/monitor.*"))
            t0 = time.monotonic()
            n = 0
            while not _all_done(home):
                if time.monotonic() - t0 > a.timeout:
                    raise SystemExit("the demo did not finish in time")
                time.sleep(2)
                if os.environ.get("TL_SHOTS_DEBUG"):
                    n += 1
                    page.screenshot(path=f"{os.environ['TL_SHOTS_DEBUG']}/{n:03d}.png")
            print(f"demo finished and projected in {time.monotonic() - t0:.0f} s", flush=True)
            page.wait_for_timeout(5000)  # the Monitor's last refresh: every snapshot drawn, timer off
            try:
                page.get_by_role("heading", name="Feature space").wait_for(timeout=60_000)
            except Exception:
                page.screenshot(path=str(home / "failure.png"), full_page=True)
                raise SystemExit(f"the Monitor shows no feature space; see {home / 'failure.png'}")
            page.wait_for_selector("[data-testid='stStatusWidget']", state="detached", timeout=60_000)
            page.wait_for_timeout(2500)  # plotly finishes drawing
            page.mouse.move(5, VIEWPORT["height"] - 5)
            page.screenshot(path=str(out / "monitor.png"))
            page.set_viewport_size({"width": VIEWPORT["width"], "height": 4000})  # the whole Monitor at once
            page.wait_for_timeout(3000)
            if os.environ.get("TL_SHOTS_FULL_PAGE"):  # for a look at everything (not for the README)
                page.screenshot(path=os.environ["TL_SHOTS_FULL_PAGE"], full_page=True)
            for name, heading, height in (("feature_space", "Feature space", 1420),
                                          ("domain_distance", "Domain distance over training", 520)):
                box = page.get_by_role("heading", name=heading).bounding_box()
                page.screenshot(path=str(out / f"{name}.png"),
                                clip={"x": 300, "y": box["y"] - 10, "width": VIEWPORT["width"] - 300, "height": height})
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()
    print(f"wrote {out / 'monitor.png'}, {out / 'feature_space.png'}, {out / 'domain_distance.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
