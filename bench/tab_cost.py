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

    .venv/bin/python -m bench.tab_cost --synthetic 0 0.05 0.1 0.15 0.25 [--rounds 3] [--window-s 20]

With ``--synthetic``, no browser: a process burns the given share of a core in one burst every
2 s (as a tab's refreshes come in bursts), the loads taking turns window by window, and each
window's training images/s is reported against the no-load windows of its round: how much
training a given load on the same machine costs, whatever causes it.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

from bench.common import descendants, summary
from bench.dashboard import (CHROMIUM, CHROMIUM_ARGS, _comm, _cpu_s, _read_log, _role, _wait_drawn,
                             _window_rate, serving)


def _batch(log_path: Path) -> int:
    return next((e.get("batch_size", 64) for e in _read_log(log_path) if e.get("kind") == "start"), 64)


def measure(windows: int, window_s: float) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    rows: list[dict[str, Any]] = []
    with serving("tl-bench-tab-") as (url, poller, proc, log_path):
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
                groups = {"browser": [p for p in descendants(os.getpid()) if "chrom" in _comm(p)]}
                for pid in descendants(proc.pid):
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
        batch = _batch(log_path)
    for r in rows:
        r["images_per_s"] = _window_rate(poller.progress, r["start"], r["end"], batch)
    keys = ["tab_busy", "tab_script", "browser_cores", "server_cores", "training_cores", "projector_cores",
            "images_per_s", "epochs"]
    return {"window_s": window_s, "windows": rows,
            **{k: summary([r[k] for r in rows if r.get(k) is not None]) for k in keys}}


BURST_PERIOD_S = 2.0  #: one burst per refresh of the run cards


def _burn(load: float, stop: Any) -> None:
    """Busy for ``load`` of every ``BURST_PERIOD_S``, in one burst, until ``stop`` is set."""
    while not stop.is_set():
        t0 = time.monotonic()
        while time.monotonic() < t0 + load * BURST_PERIOD_S:
            pass
        time.sleep(max(0.0, t0 + BURST_PERIOD_S - time.monotonic()))


def synthetic(loads: list[float], rounds: int, window_s: float) -> dict[str, Any]:
    """Training images/s under each bursty load, the loads taking turns; slowdown against the round's
    no-load window."""
    import multiprocessing as mp

    loads = sorted(set(loads) | {0.0})
    windows: list[dict[str, Any]] = []
    with serving("tl-bench-tab-") as (_url, poller, _proc, log_path):
        for i in range(rounds):
            for load in loads if i % 2 == 0 else loads[::-1]:
                stop = mp.Event()
                burner = mp.Process(target=_burn, args=(load, stop)) if load > 0 else None
                if burner:
                    burner.start()
                time.sleep(2.0)
                a = time.time()
                time.sleep(window_s)
                b = time.time()
                stop.set()
                if burner:
                    burner.join()
                windows.append({"round": i, "load": load, "start": a, "end": b})
                time.sleep(1.0)
        batch = _batch(log_path)
    for w in windows:
        w["images_per_s"] = _window_rate(poller.progress, w["start"], w["end"], batch)
    out: dict[str, Any] = {"window_s": window_s, "rounds": rounds, "burst_period_s": BURST_PERIOD_S,
                           "windows": windows}
    for load in loads:
        slow = []
        for i in range(rounds):
            base = next(w["images_per_s"] for w in windows if w["round"] == i and w["load"] == 0.0)
            seen = next(w["images_per_s"] for w in windows if w["round"] == i and w["load"] == load)
            if base and seen:
                slow.append(1 - seen / base)
        out[f"load {load:g}"] = {"images_per_s": summary([w["images_per_s"] for w in windows if w["load"] == load]),
                                 "slowdown": summary(slow)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--windows", type=int, default=3)
    ap.add_argument("--window-s", type=float, default=30.0)
    ap.add_argument("--out", help="write the JSON summary here too")
    ap.add_argument("--synthetic", type=float, nargs="+", metavar="CORES",
                    help="no browser: training under these bursty loads (shares of a core) instead")
    ap.add_argument("--rounds", type=int, default=3, help="with --synthetic: rounds of one window per load")
    a = ap.parse_args()
    if a.synthetic:
        result = synthetic(a.synthetic, a.rounds, a.window_s)
        if a.out:
            Path(a.out).write_text(json.dumps(result, indent=1))
        for key in (k for k in result if k.startswith("load ")):
            r = result[key]
            print(f"{key} cores: {r['images_per_s']['median']:.0f} images/s, slowdown "
                  f"{100 * (r['slowdown']['median'] or 0):.1f} % ({100 * (r['slowdown']['min'] or 0):.1f}–"
                  f"{100 * (r['slowdown']['max'] or 0):.1f}, n={r['slowdown']['n']})")
        return
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
