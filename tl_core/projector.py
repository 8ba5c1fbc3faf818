"""Snapshot projection in a separate, low-priority process.

The trainer stores each feature snapshot and hands its index to
:class:`SnapshotProjector`. The projector turns it into aligned 2-D coordinates (UMAP or
PCA) and domain metrics (proxy A-distance, MMD), written back to the run store.

Why a process and not a thread: UMAP is numba and numpy work that holds the GIL for long
stretches, and on a 2-core machine any extra busy thread takes cycles from training. A
worker process runs single-threaded (numba, BLAS), by default at ``SCHED_IDLE``, the
lowest CPU priority there is: training is never slowed, and the pictures use cycles
training leaves idle (``snapshot.priority = "background"``). A run can ask for pictures that
keep up instead (``"live"``: normal priority, training shares the CPU). It imports no torch, warms
UMAP's JIT once when it starts (numba's on-disk cache makes that ~2 s after the first time
on a machine) and then serves snapshots in order, so each picture can start from the
previous one. Protocol: one JSON line per snapshot on its stdin, one JSON line back.

When the process cannot be started or dies, the projector falls back to projecting in its
own thread; a snapshot that fails is logged and skipped, never fatal to the run.

Run as ``python -m tl_core.projector --home DIR`` (only the projector does that).
"""

from __future__ import annotations

import argparse
import logging
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path

from tl_core import protocol
from tl_core.store import RunStore

log = logging.getLogger(__name__)

#: Nice value of the background worker (19: lowest), on top of SCHED_IDLE where Linux has it.
NICE = 19
#: Environment of the worker: one thread for numba and every BLAS, no GPU.
WORKER_ENV = {"NUMBA_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
              "MKL_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}


def project_snapshot(store: RunStore, run_id: str, idx: int) -> bool:
    """Project snapshot ``idx`` of a run and store its coordinates and domain metrics.

    Returns False when the run or its sample is gone (deleted meanwhile), True when done.
    """
    from tl_core import embedding

    rec = store.get_run(run_id)
    sample = store.snapshot_sample(run_id)
    if rec is None or sample is None:
        return False
    method = rec.config.get("snapshot", {}).get("projection", "umap")
    feats = store.load_snapshot(run_id, idx)
    previous = store.load_coords(run_id, idx - 1) if idx > 0 else None
    coords = embedding.project(feats, method=method, previous=previous, seed=0)
    store.save_coords(run_id, idx, coords)
    store.update_snapshot_metrics(run_id, idx, embedding.domain_metrics(feats, sample["domains"]))
    return True


class _Worker:
    """One queue, one thread, one worker process of a given priority; snapshots in order."""

    def __init__(self, store: RunStore, *, use_process: bool, nice: int, idle: bool) -> None:
        self.store = store
        self.use_process = use_process
        self.nice = nice
        self.idle = idle
        self._queue: queue.Queue[tuple[str, int] | None] = queue.Queue()
        self._pending = 0
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[str] | None = None
        self._thread = threading.Thread(target=self._work, name=f"tl-projector{'-idle' if idle else ''}",
                                        daemon=True)
        self._thread.start()

    # -------------------------------------------------------------- public
    def submit(self, run_id: str, idx: int) -> None:
        """Queue snapshot ``idx`` of ``run_id``; returns at once."""
        with self._lock:
            self._pending += 1
        self._queue.put((run_id, idx))

    def pending(self) -> int:
        """Snapshots submitted and not yet projected."""
        with self._lock:
            return self._pending

    def close(self) -> None:
        """Finish the queued snapshots, then stop the thread and the worker process."""
        self._queue.put(None)

    @property
    def worker_pid(self) -> int | None:
        proc = self._proc
        return proc.pid if proc is not None and proc.poll() is None else None

    # ------------------------------------------------------------- internal
    def _work(self) -> None:
        if self.use_process:
            self._start_process()
        while True:
            item = self._queue.get()
            if item is None:
                self._stop_process()
                return
            try:
                self._project(*item)
            except Exception:
                log.exception("projection of snapshot %s of run %s failed", item[1], item[0])
            finally:
                with self._lock:
                    self._pending -= 1

    def _project(self, run_id: str, idx: int) -> None:
        if self.use_process and (self._proc is None or self._proc.poll() is not None):
            self._start_process()  # died (killed, out of memory): one new try per snapshot
        proc = self._proc
        if proc is None or proc.stdin is None or proc.stdout is None:
            project_snapshot(self.store, run_id, idx)
            return
        reply = protocol.read_one(proc.stdout) if protocol.send(proc.stdin, {"run_id": run_id, "idx": idx}) else None
        if reply is None:  # the pipe broke: the process is gone
            log.warning("projector process exited (status %s); projecting in this process",
                        proc.poll())
            self._proc = None
            project_snapshot(self.store, run_id, idx)
            return
        if not reply.get("ok"):
            log.warning("projection of snapshot %s of run %s failed: %s", idx, run_id, reply.get("error"))

    def _start_process(self) -> None:
        env = {**os.environ, **WORKER_ENV}
        root = str(Path(__file__).resolve().parent.parent)
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        nice, idle = self.nice, self.idle

        def lower_priority() -> None:  # runs in the child before exec
            try:
                os.nice(nice)
            except OSError:
                pass
            if idle:
                try:  # Linux: run only when a core would otherwise idle
                    os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
                except (AttributeError, OSError):
                    pass

        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "tl_core.projector", "--home", str(self.store.home)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1, env=env,
                preexec_fn=lower_priority if os.name == "posix" else None)
        except OSError as exc:
            log.warning("cannot start the projector process (%s); projecting in a thread", exc)
            self._proc = None
            self.use_process = False

    def _stop_process(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            if proc.stdin is not None:
                proc.stdin.close()  # EOF: the worker leaves its loop
            proc.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            proc.kill()


class SnapshotProjector:
    """Projects snapshots off the training thread and process, in order within each run.

    Two priorities, chosen per run by ``snapshot.priority``:

    - ``"background"`` (default): a worker process at ``SCHED_IDLE`` (Linux; nice 19
      elsewhere), which runs only on cycles nothing else wants. Training is not slowed; on a
      machine whose cores training keeps busy (2 CPU cores, a small model) the pictures wait
      until training leaves the CPU idle, at the latest when it ends. With a GPU, or cores to
      spare, they follow training.
    - ``"live"``: a worker process at normal priority. It shares the CPU with training, so
      the pictures keep up, and training slows by the projection's share of the CPU while
      one runs (measured by ``make bench``). Nice 19 is no middle way: on a busy 2-core
      machine it neither kept up (no snapshot projected during a 6-second run) nor left
      training alone (~8 % slower), because each of its short time slices stalls training's
      threads.

    Args:
        store: where snapshots are read and coordinates written.
        use_process: project in worker processes (default); False projects in this object's
            threads (the fallback, also used when a process cannot start).
    """

    PRIORITIES = ("live", "background")

    def __init__(self, store: RunStore, *, use_process: bool = True) -> None:
        self.store = store
        self.use_process = use_process
        self._workers: dict[str, _Worker] = {}
        self._lock = threading.Lock()
        self._worker("background")  # started now: its UMAP warm-up happens while the first run prepares

    def _worker(self, priority: str) -> _Worker:
        with self._lock:
            w = self._workers.get(priority)
            if w is None:
                idle = priority == "background"
                w = _Worker(self.store, use_process=self.use_process, nice=NICE if idle else 0, idle=idle)
                self._workers[priority] = w
            return w

    def priority_of(self, run_id: str) -> str:
        rec = self.store.get_run(run_id)
        value = (rec.config.get("snapshot", {}) if rec is not None else {}).get("priority", "background")
        return value if value in self.PRIORITIES else "background"

    def submit(self, run_id: str, idx: int) -> None:
        """Queue snapshot ``idx`` of ``run_id``; returns at once."""
        self._worker(self.priority_of(run_id)).submit(run_id, idx)

    def pending(self) -> int:
        """Snapshots submitted and not yet projected."""
        with self._lock:
            workers = list(self._workers.values())
        return sum(w.pending() for w in workers)

    def wait_idle(self, timeout: float = 30) -> bool:
        """Wait until every submitted snapshot is projected; True if that happened in time."""
        deadline = time.monotonic() + timeout
        while self.pending() and time.monotonic() < deadline:
            time.sleep(0.05)
        return not self.pending()

    def close(self) -> None:
        """Finish the queued snapshots, then stop the threads and worker processes."""
        with self._lock:
            workers = list(self._workers.values())
        for w in workers:
            w.close()

    def worker_pid(self, priority: str = "background") -> int | None:
        """The process id of the worker of ``priority`` (None if it is not running)."""
        with self._lock:
            w = self._workers.get(priority)
        return w.worker_pid if w is not None else None


# ------------------------------------------------------------------ worker process
def _serve(home: str) -> int:
    """The worker's loop: read ``{"run_id", "idx"}`` lines, answer ``{"ok": bool}`` lines."""
    import warnings

    warnings.filterwarnings("ignore")
    from tl_core import embedding

    store = RunStore(home)
    try:
        embedding.warm_up()
    except Exception as exc:  # a broken umap shows up where a projection fails
        log.warning("UMAP warm-up failed: %s", exc)
    for item in protocol.receive(sys.stdin):
        try:
            project_snapshot(store, str(item["run_id"]), int(item["idx"]))
            reply = {"ok": True}
        except Exception as exc:  # report and keep serving
            reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        if not protocol.send(sys.stdout, reply):  # the server went away mid-snapshot: leave quietly
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no error at exit either
            break
    store.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tl_core.projector",
                                 description="Snapshot projection worker (started by the job manager).")
    ap.add_argument("--home", required=True, help="the run store's home directory")
    home = ap.parse_args(argv).home
    try:
        return _serve(home)
    except KeyboardInterrupt:  # Ctrl-C in the terminal reaches the whole process group
        return 0


if __name__ == "__main__":
    sys.exit(main())
