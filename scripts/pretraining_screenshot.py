"""Screenshot of Home's "What is pretraining worth?" figure at 1280×720, from a run store where the demo ran.

    .venv/bin/python -m bench.pretraining --home /tmp/pt          # runs the demo (minutes)
    .venv/bin/python scripts/pretraining_screenshot.py --home /tmp/pt [--out docs/screenshots/pretraining.png]

Starts `streamlit run app.py` on that TL_HOME, opens Home in headless Chromium (Debian's /usr/bin/chromium or
TL_CHROMIUM) at 1280×720, scrolls the demo's card into view and saves the window. Nothing here is a test.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("TL_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--home", required=True, help="TL_HOME where bench.pretraining (or Home) ran the demo")
    ap.add_argument("--out", default=str(ROOT / "docs" / "screenshots" / "pretraining.png"))
    ap.add_argument("--port", type=int, default=random.randint(8600, 8999))
    a = ap.parse_args()
    from playwright.sync_api import sync_playwright

    url = f"http://127.0.0.1:{a.port}"
    env = {**os.environ, "TL_HOME": a.home, "PYTHONUNBUFFERED": "1"}
    log = open(Path(a.home) / "screenshot-server.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
                             "--server.port", str(a.port), "--server.address", "127.0.0.1",
                             "--browser.gatherUsageStats", "false"], cwd=ROOT, env=env, stdout=log,
                            stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(url + "/_stcore/health", timeout=2) as r:
                    if r.read().strip() == b"ok":
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("streamlit did not start; see " + log.name)
            time.sleep(0.5)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 720})
            page.goto(url, timeout=120_000)
            page.wait_for_selector("[data-testid='stApp']", timeout=120_000)
            page.wait_for_selector(".st-key-pretraining_figure .main-svg", timeout=180_000)  # Plotly has drawn
            page.wait_for_timeout(1500)
            page.evaluate("document.querySelector('.st-key-pretraining_figure').scrollIntoView({block: 'end'})")
            page.wait_for_timeout(1500)
            Path(a.out).parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=a.out)
            browser.close()
        print(a.out)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
