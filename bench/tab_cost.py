"""What one browser tab on the Monitor costs the machine, window by window (issue 18).

    .venv/bin/python -m bench.tab_cost [--windows 3] [--window-s 30] [--out FILE]

The training slowdown that ``bench.dashboard`` measures scatters by about ±10 points between
windows on a 2-core VM; a tab's own CPU time scatters much less, so this is the number to compare
when one part of the Monitor is changed. As ``bench.dashboard``: ``bench/_serve.py`` starts
``streamlit run app.py`` with a long lenet DANN run training, headless Chromium (Playwright)
opens one tab on the Monitor, waits until its charts are drawn, and then, for each window of
``--window-s`` seconds, reads:

- ``tab_busy``: the tab's main-thread busy time per second (the Chrome DevTools protocol's
  ``Performance.getMetrics`` ``TaskDuration``; ``tab_script``: its ``ScriptDuration``);
- cores busy (``/proc``) of Chromium (all its processes), the server, the training process and the
  projector;
- the training images/s and the epochs that arrived in the window (each new epoch and snapshot
  redraws charts).

Each window opens a fresh tab. A JSON summary goes to ``--out`` (and stdout).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench.common import summary
from bench.dashboard import (CHROMIUM, CHROMIUM_ARGS, ROOT, _comm, _cpu_s, _descendants, _free_port, _role,
                             _StepPoller, _wait_drawn, _wait_for, _window_rate)


def measure(windows: int, window_s: float) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    home = Path(tempfile.mkdtemp(prefix="tl-bench-tab-"))
    log_path, port = home / "serve.log", _free_port()
    env = {**os.environ, "TL_HOME": str(home), "PYTHONUNBUFFERED": "1"}
    out = open(home / "server.out", "w")
    proc = subprocess.Popen([sys.executable, "-m", "bench._serve", "--port", str(port), "--log", str(log_path)],
                            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    poller = _StepPoller(home, log_path)
    rows: list[dict[str, Any]] = []

    def healthy() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited: {(home / 'server.out').read_text()[-2000:]}")
        try:
            return urllib.request.urlopen(url + "/_stcore/health", timeout=2).status == 200
        except OSError:
            return False

    try:
        _wait_for(healthy, 120, "the Streamlit server")
        _wait_for(lambda: poller.epochs > 0, 300, "the first epoch")
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            context = browser.new_context(viewport={"width": 1400, "height": 1800})
            for _ in range(windows):
                page = context.new_page()
                page.goto(url + "/monitor", wait_until="domcontentloaded", timeout=120_000)
                _wait_drawn(page)
                cdp = context.new_cdp_session(page)
                cdp.send("Performance.enable")
                time.sleep(4)  # past the first drawing
                groups = {"browser": [p for p in _descendants(os.getpid()) if "chrom" in _comm(p)]}
                for pid in _descendants(proc.pid):
                    groups.setdefault(_role(pid), []).append(pid)
                m0 = {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}
                c0, e0, a = {k: _cpu_s(p) for k, p in groups.items()}, poller.epochs, time.time()
                time.sleep(window_s)
                b = time.time()
                c1 = {k: _cpu_s(p) for k, p in groups.items()}
                m1 = {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}
                rows.append({"start": a, "end": b, "epochs": poller.epochs - e0,
                             "tab_busy": (m1["TaskDuration"] - m0["TaskDuration"]) / (b - a),
                             "tab_script": (m1["ScriptDuration"] - m0["ScriptDuration"]) / (b - a),
                             **{f"{k}_cores": (c1[k] - c0[k]) / (b - a) for k in groups if k != "gone"}})
                page.close()
                time.sleep(1.0)
            browser.close()
    finally:
        poller.close()
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        out.close()
    batch = next((e.get("batch_size", 64) for e in map(json.loads, log_path.read_text().splitlines())
                  if e.get("kind") == "start"), 64)
    for r in rows:
        r["images_per_s"] = _window_rate(poller.progress, r["start"], r["end"], batch)
    keys = ["tab_busy", "tab_script", "browser_cores", "server_cores", "training_cores", "projector_cores",
            "images_per_s", "epochs"]
    return {"window_s": window_s, "windows": rows,
            **{k: summary([r[k] for r in rows if r.get(k) is not None]) for k in keys}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--windows", type=int, default=3)
    ap.add_argument("--window-s", type=float, default=30.0)
    ap.add_argument("--out", help="write the JSON summary here too")
    a = ap.parse_args()
    result = measure(a.windows, a.window_s)
    text = json.dumps(result, indent=1)
    if a.out:
        Path(a.out).write_text(text)
    for r in result["windows"]:
        print(f"tab busy {r['tab_busy']:.3f} (script {r['tab_script']:.3f}) · Chromium {r.get('browser_cores', 0):.2f}"
              f" · server {r.get('server_cores', 0):.2f} · training {r.get('training_cores', 0):.2f} cores · "
              f"{r['images_per_s'] or 0:.0f} images/s · {r['epochs']} epochs")
    print("medians: " + " · ".join(f"{k} {result[k]['median']:.3g}" for k in result
                                   if isinstance(result[k], dict) and result[k].get("median") is not None))


if __name__ == "__main__":
    main()
