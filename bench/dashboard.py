"""Dashboard benchmarks: server-side render time of the Monitor's live part while a run
trains, and the training slowdown while one or two browser tabs watch it.

Render time (:func:`render_time`) drives the real pages with Streamlit's AppTest, in
this process, beside a real :class:`tl_core.jobs.JobManager` training a run in its own
training process (as in the server). ``st.fragment`` is wrapped so that every call of the Monitor's
two live fragments is timed (the run cards, every 2 s; the charts, every 6 s): that is the code
the browser's refreshes run on the server (store reads, run cards, Plotly charts, Plotly's JSON
encoding). The time of a whole-page rerun (sidebar, navigation and the feature space too) is
reported beside it.

Browser slowdown (:func:`browser_slowdown`) starts ``streamlit run app.py`` through
``bench/_serve.py``, which first submits a long lenet run to the process-wide job
manager (so the server trains it, exactly as after a click on Start: in a training
process of its own). This process polls the run's step count in the store every 0.1 s.
Chromium (Playwright) then runs rounds of windows with no tab, one tab and two tabs on the
Monitor page; the training images/s in each window come from the polled step counts.
CPU use in each window is split between the server process, the training process, the
projector and Chromium. In the open tabs, the latest epoch on the accuracy chart and the
latest snapshot of the feature-space animation are read every 0.1 s, to check that each new
epoch and snapshot appears within one refresh.
"""

from __future__ import annotations

import functools
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from bench.common import descendants, summary

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("TL_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
GOAL_RENDER_S = 0.2


def time_fragments(log: Callable[[str, float], None]) -> Callable[[], None]:
    """Wrap ``streamlit.fragment`` so each call of a fragment body is timed; returns an undo."""
    import streamlit as st

    original = st.fragment

    def timed_fragment(func: Callable | None = None, **kw: Any) -> Any:
        if func is None:
            return lambda f: timed_fragment(f, **kw)

        @functools.wraps(func)
        def body(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return func(*args, **kwargs)
            finally:
                log(func.__qualname__, time.perf_counter() - t0)

        return original(body, **kw)

    st.fragment = timed_fragment

    def undo() -> None:
        st.fragment = original
    return undo


def long_run_config(epochs: int = 500):
    """The MNIST → MNIST-M DANN demo with lenet, long enough to watch (cancelled at the end).

    Its snapshots are projected with ``priority="live"``, so the pages have feature-space
    pictures to draw while it trains (with the default, on a busy 2-core machine, they would
    wait for the end of training and the Monitor would draw less than a user eventually sees).
    """
    from tl_core.config import demo_config

    cfg = demo_config("mnist-mnist-m", "dann")
    cfg.name = "bench: watched run"
    cfg.optim.epochs = epochs
    cfg.device = "cpu"
    cfg.snapshot.priority = "live"
    return cfg


def _wait_for(cond: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up waiting for {what} after {timeout:.0f} s")
        time.sleep(0.2)


# ------------------------------------------------------------ render time
def render_time(full: bool) -> dict[str, Any]:
    home = tempfile.mkdtemp(prefix="tl-bench-ui-")
    os.environ["TL_HOME"] = home
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from streamlit.testing.v1 import AppTest

    from tl_core import embedding, jobs
    from tl_core.store import RunStore
    from tl_ui import keys, resources

    frag_times: list[tuple[str, float]] = []
    undo = time_fragments(lambda name, s: frag_times.append((name, s)))
    embedding.warm_up()
    manager = jobs.JobManager(RunStore(home), isolate=True)  # as the dashboard's manager
    jobs._MANAGER = manager
    resources.get_manager.clear()
    store = manager.store
    run_id = manager.submit(long_run_config())
    try:
        # Wait until there is something to draw: an evaluated epoch and a projected snapshot.
        _wait_for(lambda: not store.epoch_metrics(run_id).empty, 300, "the first evaluated epoch")
        _wait_for(lambda: (s := store.list_snapshots(run_id)).shape[0] > 0 and bool(s["projected"].any()), 120,
                  "the first projected snapshot")
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
        at.run()
        at.switch_page(keys.PAGE_MONITOR).run()
        if at.exception:
            raise RuntimeError(f"the Monitor page raised: {[e.value for e in at.exception]}")
        charts_drawn = len(at.get("plotly_chart")) + len(at.get("bidi_component"))  # live charts too (tl_ui/live_chart.py)
        frag_times.clear()
        n = 20 if full else 10
        page_s = []
        for _ in range(n):
            time.sleep(0.5)  # let training run between renders, as the 2-second refresh does
            t0 = time.perf_counter()
            at.run()
            page_s.append(time.perf_counter() - t0)
        cards = [s for name, s in frag_times if name.endswith("live_view")]
        chart_s = [s for name, s in frag_times if name.endswith("step_view")]
        rec = store.get_run(run_id)
        steps_rows = len(store.step_metrics(run_id))
        still_running = rec is not None and rec.status == "running"
    finally:
        manager.cancel(run_id)
        manager.wait(run_id, 60)
        manager.shutdown()
        undo()
    return {"renders": n, "live_part_s": summary(cards + chart_s), "cards_s": summary(cards),
            "charts_s": summary(chart_s), "whole_page_rerun_s": summary(page_s),
            "plotly_charts_on_page": charts_drawn, "step_rows_at_end": steps_rows,
            "run_was_training": still_running, "goal_s": GOAL_RENDER_S}


# ------------------------------------------------------- browser slowdown
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _read_log(path: Path) -> list[dict[str, Any]]:
    out = []
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                pass  # a line being written
    return out


def _steps_at(progress: list[tuple[float, int]], t: float) -> float | None:
    """Steps done at time t, interpolated between the logged progress calls around it."""
    before = [(ti, si) for ti, si in progress if ti <= t]
    after = [(ti, si) for ti, si in progress if ti >= t]
    if not before or not after:
        return None
    (t0, s0), (t1, s1) = before[-1], after[0]
    return float(s0) if t1 == t0 else s0 + (s1 - s0) * (t - t0) / (t1 - t0)


def _window_rate(progress: list[tuple[float, int]], a: float, b: float, batch: int) -> float | None:
    """Training images/s in [a, b]: steps done in the window (interpolated at its ends) × batch ÷ length.

    Progress is logged at most every 0.5 s and only between steps, so a window's ends fall
    between two log lines; interpolating keeps slow steps from hiding.
    """
    sa, sb = _steps_at(progress, a), _steps_at(progress, b)
    if sa is None or sb is None or b <= a:
        return None
    return (sb - sa) * batch / (b - a)


def _wait_drawn(page: Any, timeout_ms: int = 120_000) -> None:
    """Wait for the Monitor's charts; if the page shows an error instead, say which."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.wait_for_selector(".js-plotly-plot", timeout=timeout_ms)
    except PlaywrightTimeout:
        shot = ROOT / "bench" / "out" / "browser-failure.png"
        shot.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(shot))
        errors = page.locator('[data-testid="stException"]').all_inner_texts()
        detail = (" The page shows an error: " + " | ".join(e.strip().splitlines()[0] for e in errors if e.strip())
                  if errors else "")
        raise RuntimeError(f"the Monitor drew no chart within {timeout_ms / 1000:.0f} s.{detail} "
                           f"Screenshot: {shot.relative_to(ROOT)}") from None


def _cpu_s(pids: list[int]) -> float:
    """User + system CPU seconds used so far by these processes (those gone count 0)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            pass
    return total / tick



def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _role(pid: int) -> str:
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="ignore")
    except OSError:
        return "gone"
    return "training" if "tl_core.runner" in cmd else "projector" if "tl_core.projector" in cmd else "server"


class _StepPoller:
    """(time, step) of a run, read from its store every ``every_s`` in a thread of this process."""

    def __init__(self, home: Path, log_path: Path, every_s: float = 0.1) -> None:
        import threading

        self.home, self.log_path, self.every_s = home, log_path, every_s
        self.progress: list[tuple[float, int]] = []
        self.epochs = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        from tl_core.store import RunStore

        store, run_id = None, None
        while not self._stop.wait(self.every_s):
            if run_id is None:
                run_id = next((e["run_id"] for e in _read_log(self.log_path) if e.get("kind") == "start"), None)
                if run_id is None or not (self.home / "runs.db").exists():
                    run_id = None
                    continue
                store = RunStore(self.home)
            rec = store.get_run(run_id)
            if rec is None:
                continue
            if not self.progress or rec.step != self.progress[-1][1]:
                self.progress.append((time.time(), int(rec.step)))
            if rec.step and rec.epoch:
                self.epochs = len(store.epoch_metrics(run_id))

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


#: What the page shows, read in the browser every 0.1 s and logged when it changes: the latest epoch
#: on the accuracy chart and the latest snapshot in the feature-space animation (its last frame).
_SHOWN_JS = """() => {
  if (window.__tlShown) return;
  window.__tlShown = [];
  const last = {};
  const epochOf = (name) => { const m = /epoch ([0-9.]+)/.exec(name || ''); return m ? +m[1] : (name ? 0 : null); };
  setInterval(() => {
    const now = Date.now() / 1000;
    for (const gd of document.querySelectorAll('.js-plotly-plot')) {
      const title = ((gd.layout || {}).title || {}).text || '';
      let kind = null, value = null;
      if (title.includes('Accuracy (%) per epoch')) {
        kind = 'epoch';
        for (const t of (gd._fullData || [])) { const x = t.x || []; if (x.length) value = Math.max(value ?? 0, +x[x.length - 1]); }
      } else if (title.includes('Source and target features')) {
        kind = 'snapshot';
        const frames = (gd._transitionData || {})._frames || [];
        value = frames.length ? epochOf(frames[frames.length - 1].name) : null;
      }
      if (kind && value !== null && last[kind] !== value) { last[kind] = value; window.__tlShown.push([now, kind, value]); }
    }
  }, 100);
}"""


def _freshness(shown: list[tuple[float, str, float]], events: list[tuple[float, str, float]], a: float, b: float,
               allowance_s: float) -> list[float | None]:
    """Seconds from each event (time it was in the store, kind, epoch) to the first time the page showed it
    or a later one; None when it never did. Events in the window's last ``allowance_s`` are left out (the
    tab closes before they could show)."""
    out: list[float | None] = []
    for t_event, kind, value in events:
        if not a <= t_event <= b - allowance_s:
            continue
        seen = [t for t, k, v in shown if k == kind and v >= value and t >= t_event]
        out.append(min(seen) - t_event if seen else None)
    return out


def _store_events(home: Path, run_id: str) -> list[tuple[float, str, float]]:
    """(time, 'epoch' | 'snapshot', epoch) of each evaluated epoch (its row's time) and each projected
    snapshot (when its coordinates were written) of the run."""
    from tl_core.store import RunStore

    store = RunStore(home)
    out = [(float(r["t"]), "epoch", float(r["epoch"])) for _, r in store.epoch_metrics(run_id).iterrows()]
    snaps = store.list_snapshots(run_id)
    for _, r in (snaps[snaps["projected"]] if not snaps.empty else snaps).iterrows():
        coords = store._snap_dir(run_id) / f"coords_{int(r['idx']):04d}.npy"
        if coords.exists():
            out.append((coords.stat().st_mtime, "snapshot", float(r["epoch"])))
    return sorted(out)


GOAL_SLOWDOWN_BY_TABS = {1: 0.15, 2: 0.25}  #: training slowdown at most, per number of tabs on the Monitor
GOAL_FRESH_S = 4.0  #: a new epoch or snapshot shows within one refresh (2 s) plus 2 s to draw it


def browser_slowdown(full: bool) -> dict[str, Any]:
    """Training images/s with no tab, one tab and two tabs on the Monitor, in the order 0 1 2, 2 1 0, ...

    With ``TL_BENCH_TRAIN_THREADS`` set, the training process uses that many torch threads (through
    ``OMP_NUM_THREADS`` in the server's environment, which the training process inherits); the full
    version also repeats the windows with one thread fewer than the default, to choose by the numbers.
    """
    threads = os.environ.get("TL_BENCH_TRAIN_THREADS")
    result = _browser_windows(full, int(threads) if threads else None)
    if full and not threads:
        fewer = max(1, (os.cpu_count() or 2) - 1)
        try:
            result["one_thread_fewer"] = _browser_windows(full, fewer)
        except Exception as exc:  # noqa: BLE001 - the main numbers stand without this comparison
            result["one_thread_fewer"] = {"error": f"{type(exc).__name__}: {exc}"}
    return result


@contextmanager
def serving(prefix: str, env: dict[str, str] | None = None) -> Iterator[tuple[str, "_StepPoller", subprocess.Popen, Path]]:
    """``bench/_serve.py`` (``streamlit run app.py`` with the long run training) under a scratch
    ``TL_HOME``, once the run has finished an epoch; yields (url, step poller, server process, its event
    log) and stops the server afterwards. ``env``: more variables for the server (and the training
    process it starts)."""
    home = Path(tempfile.mkdtemp(prefix=prefix))
    log_path = home / "serve.log"
    port = _free_port()
    server_out = open(home / "server.out", "w")
    proc = subprocess.Popen([sys.executable, "-m", "bench._serve", "--port", str(port), "--log", str(log_path)],
                            cwd=ROOT, env={**os.environ, "TL_HOME": str(home), "PYTHONUNBUFFERED": "1", **(env or {})},
                            stdout=server_out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    poller = _StepPoller(home, log_path)
    try:
        def healthy() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"the server exited: {(home / 'server.out').read_text()[-2000:]}")
            try:
                return urllib.request.urlopen(url + "/_stcore/health", timeout=2).status == 200
            except OSError:
                return False

        _wait_for(healthy, 120, "the Streamlit server")
        # Training has warmed up once it has finished an epoch (snapshot and projection too).
        _wait_for(lambda: poller.epochs > 0, 300, "the first epoch")
        yield url, poller, proc, log_path
    finally:
        poller.close()
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        server_out.close()


def _browser_windows(full: bool, train_threads: int | None) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        raise RuntimeError(f"Chromium not found at {CHROMIUM}: install Debian's chromium (make browser) "
                           "or set TL_CHROMIUM.")
    from tl_ui.monitor_refresh import REFRESH_S

    (ROOT / "bench" / "out" / "browser-failure.png").unlink(missing_ok=True)
    window_s = 15.0 if full else 12.0
    rounds = 5 if full else 3
    orders = [(0, 1, 2), (2, 1, 0), (1, 2, 0), (0, 2, 1), (2, 0, 1), (1, 0, 2)]
    windows: list[dict[str, Any]] = []
    env = {"OMP_NUM_THREADS": str(train_threads)} if train_threads else {}
    with serving("tl-bench-browser-", env) as (url, poller, proc, log_path):
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            context = browser.new_context(viewport={"width": 1400, "height": 1800})

            def chromium_pids() -> list[int]:
                # this process's own Chromium (under Playwright's driver), not other browsers on the machine
                return [pid for pid in descendants(os.getpid()) if "chrom" in _comm(pid)]

            def watch(tabs: int) -> dict[str, Any]:
                pages = []
                for _ in range(tabs):
                    page = context.new_page()
                    page.goto(url + "/monitor", wait_until="domcontentloaded", timeout=120_000)
                    pages.append(page)
                for page in pages:  # drawn: the charts are on screen
                    _wait_drawn(page)
                    page.evaluate(_SHOWN_JS)
                groups: dict[str, list[int]] = {"browser": chromium_pids()}
                for pid in descendants(proc.pid):
                    groups.setdefault(_role(pid), []).append(pid)
                cpu0 = {k: _cpu_s(v) for k, v in groups.items()}
                a = time.time()
                time.sleep(window_s)
                b = time.time()
                cpu1 = {k: _cpu_s(v) for k, v in groups.items()}
                shown = [[tuple(x) for x in page.evaluate("() => window.__tlShown || []")] for page in pages]
                for page in pages:
                    page.close()
                return {"tabs": tabs, "start": a, "end": b, "shown": shown,
                        **{f"{k}_cores": (cpu1[k] - cpu0[k]) / (b - a) for k in groups if k != "gone"}}

            # warm-up, not measured: one tab draws the Monitor once, so that no window pays the first load (the
            # server's first figures and caches, plotly.js fetched into the browser's cache); then a quiet window
            watch(1)
            time.sleep(1.0)
            watch(0)
            for i in range(rounds):
                for tabs in orders[i % len(orders)]:
                    windows.append(watch(tabs))
                    time.sleep(1.0)  # let closed sessions wind down
            context.close()
            browser.close()
    events_log = _read_log(log_path)
    start = next((e for e in events_log if e.get("kind") == "start"), {})
    batch = start.get("batch_size", 64)
    store_events = _store_events(log_path.parent, start["run_id"]) if start.get("run_id") else []
    progress = poller.progress
    frags = [(e["t"], e["s"], e["name"]) for e in events_log if e.get("kind") == "fragment"
             and e["name"].rsplit(".", 1)[-1] in ("live_view", "step_view")]
    for w in windows:
        w["images_per_s"] = _window_rate(progress, w["start"], w["end"], batch)
        w["live_part_s"] = [s for t, s, _ in frags if w["start"] <= t <= w["end"]]
        w["cards_s"] = [s for t, s, n in frags if w["start"] <= t <= w["end"] and n.endswith("live_view")]
        w["charts_s"] = [s for t, s, n in frags if w["start"] <= t <= w["end"] and n.endswith("step_view")]
        w["fresh_s"] = [f for shown in w.pop("shown") for f in
                        _freshness(shown, store_events, w["start"], w["end"], GOAL_FRESH_S)]
        cores = w.get("training_cores")
        w["images_per_training_core_s"] = w["images_per_s"] / cores if w["images_per_s"] and cores else None
    by_tabs = {n: [w for w in windows if w["tabs"] == n] for n in (0, 1, 2)}
    idle_rates = [w["images_per_s"] for w in by_tabs[0]]

    def slowdowns(tabs: int) -> list[float]:
        # each watched window against the no-tab window of the same round (rounds are consecutive triples)
        out = []
        for i in range(rounds):
            rnd = windows[3 * i:3 * i + 3]
            idle = next((w["images_per_s"] for w in rnd if w["tabs"] == 0), None)
            seen = next((w["images_per_s"] for w in rnd if w["tabs"] == tabs), None)
            if idle and seen:
                out.append(1 - seen / idle)
        return out

    fresh = [f for n in (1, 2) for w in by_tabs[n] for f in w["fresh_s"]]
    late = sum(1 for f in fresh if f is None or f > GOAL_FRESH_S)
    return {"window_s": window_s, "pairs": rounds, "rounds": rounds, "batch_size": batch,
            "train_threads": train_threads or "default",
            "images_per_s_no_tab": summary(idle_rates),
            "images_per_s_one_tab": summary([w["images_per_s"] for w in by_tabs[1]]),
            "images_per_s_two_tabs": summary([w["images_per_s"] for w in by_tabs[2]]),
            "slowdown_one_tab": summary(slowdowns(1)),
            "slowdown": summary(slowdowns(2)),
            "images_per_training_core_s_no_tab": summary([w["images_per_training_core_s"] for w in by_tabs[0]
                                                          if w["images_per_training_core_s"]]),
            "images_per_training_core_s_two_tabs": summary([w["images_per_training_core_s"] for w in by_tabs[2]
                                                            if w["images_per_training_core_s"]]),
            "server_live_part_s_two_tabs": summary([s for w in by_tabs[2] for s in w["live_part_s"]]),
            "server_cards_s_two_tabs": summary([s for w in by_tabs[2] for s in w["cards_s"]]),
            "server_charts_s_two_tabs": summary([s for w in by_tabs[2] for s in w["charts_s"]]),
            "fragment_runs_per_window_two_tabs": [len(w["live_part_s"]) for w in by_tabs[2]],
            "fresh_s": summary([f for f in fresh if f is not None]), "fresh_events": len(fresh),
            "fresh_late": late, "goal_fresh_s": GOAL_FRESH_S, "refresh_s": REFRESH_S,
            **{f"{role}_cores_{label}": summary([w.get(f"{role}_cores", 0.0) for w in ws])
               for role in ("server", "training", "projector", "browser")
               for label, ws in (("no_tab", by_tabs[0]), ("one_tab", by_tabs[1]), ("two_tabs", by_tabs[2]))},
            "goal": GOAL_SLOWDOWN_BY_TABS[2], "goal_one_tab": GOAL_SLOWDOWN_BY_TABS[1], "goal_render_s": GOAL_RENDER_S}
