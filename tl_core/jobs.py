"""Process-wide job manager: a queue, worker threads, cancel, live status.

One manager per process (``get_manager()``), shared by every browser session. Pages call
``submit`` and get a run id back at once; a worker thread runs the trainer and writes
everything through the run store. A run that raises is marked failed with its message;
the manager keeps serving. Workers never call Streamlit.

Isolated mode (``isolate=True``, what the dashboard uses): the worker thread starts the
trainer as a child process (``python -m tl_core.runner``) and waits for it. Training then
has an interpreter of its own: page renders in the server never hold its GIL, and a run
that crashes the interpreter or is killed for memory fails alone, with a message, while
the server goes on. The child writes everything through the same run store; on its stdout
it names each snapshot it saved, which the manager hands to its projector, and a line
``stop`` on its stdin (or the manager going away) stops it after the current step.
A child serves runs one after another (``runner --wait``): when its run ends and another run
waits in the queue, the same process takes it, so a queue of short runs (a sweep, the pretraining
demo) pays torch's import (seconds) once; a run still has a process of its own apart from the
server, and a child that dies takes only its current run with it (the next run starts a new one).
"""

from __future__ import annotations

import logging
import queue
import threading
from dataclasses import dataclass, field
from pathlib import Path

from tl_core.config import RunConfig
from tl_core.execute import execute_run, record_failure
from tl_core.projector import SnapshotProjector
from tl_core.protocol import TrainingProcess
from tl_core.store import RunStore

log = logging.getLogger(__name__)


class ConfigError(ValueError):
    """The config cannot run; ``problems`` lists every reason."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass
class _Job:
    run_id: str
    config: RunConfig
    stop: threading.Event = field(default_factory=threading.Event)
    resume: Path | None = None
    started: bool = False         # a worker has taken it (under the manager's lock)
    cancelled_early: bool = False  # cancelled while still queued: already recorded as stopped
    pid: int | None = None        # the training process, in isolated mode, while it runs


#: The interpreter's GIL switch interval while an in-process manager exists (Python's default: 5 ms).
#: Training releases the GIL around every torch op and must get it back to go on; a page
#: render in another thread of the server holds it for up to the whole interval each time.
#: With 5 ms, two browser tabs on the Monitor cut training to a quarter of its speed on two
#: cores; see BENCHMARKS.md section 4.
SWITCH_INTERVAL_S = 0.0005


class JobManager:
    """Queue of runs served by ``workers`` threads (one by default).

    ``isolate``: train each run in a child process (see the module docstring) instead of in
    the worker thread itself.
    """

    def __init__(self, store: RunStore | None = None, workers: int = 1, project: bool = True,
                 isolate: bool = False, confine_to: Path | None = None) -> None:
        import sys

        self.isolate = isolate
        self.confine_to = confine_to  # the dashboard's data folder: runs it resumes must read only inside it
        if not isolate:
            sys.setswitchinterval(min(sys.getswitchinterval(), SWITCH_INTERVAL_S))
        self.store = store or RunStore()
        self.store.mark_interrupted()  # runs a dead process left behind
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._jobs: dict[str, _Job] = {}
        self._lock = threading.Lock()
        self._projector = SnapshotProjector(self.store) if project else None
        self._spare: TrainingProcess | None = None  # a training process kept for the next queued run
        self._closing = False
        self._threads = [threading.Thread(target=self._work, name=f"tl-worker-{i}", daemon=True)
                         for i in range(max(1, workers))]
        for t in self._threads:
            t.start()

    # -------------------------------------------------------------- public
    def submit(self, config: RunConfig, owner: str | None = None) -> str:
        """Check (``preflight.check``), record as queued, enqueue; returns the run id at once.

        Raises:
            ConfigError: the config cannot run here; ``problems`` has one message per reason.
        """
        from tl_core.preflight import check

        problems = check(config)
        if problems:
            raise ConfigError(problems)
        run_id = self.store.create_run(config, owner=owner)
        self._enqueue(_Job(run_id, config))
        return run_id

    def resume(self, run_id: str, owner: str | None = None) -> str:
        """Continue an interrupted/stopped/failed run from its last checkpoint, in place.

        Raises:
            KeyError: no such run.
            ValueError: the run is active or completed, or its checkpoint is missing, corrupt,
                not a Transfer Lab checkpoint, or one of another configuration (the message says which).
        """
        from tl_core.checkpoint import prepare_resume

        self._check_confined(run_id)
        config, ckpt = prepare_resume(self.store, run_id)
        self.store.set_status(run_id, "queued")
        self._enqueue(_Job(run_id, config, resume=ckpt))
        return run_id

    def _check_confined(self, run_id: str) -> None:
        """A run made elsewhere (the command line) may read folders outside the dashboard's data folder:
        refuse to resume it here (ValueError naming the folder)."""
        rec = self.store.get_run(run_id)
        if self.confine_to is None or rec is None:
            return
        from tl_core.data import DataError
        from tl_core.data.folder import resolve_folder

        data = RunConfig.from_dict(rec.config).data
        for role in ("source", "target"):
            if getattr(data, role) == "folder":
                try:
                    resolve_folder(getattr(data, f"{role}_path"), self.confine_to)
                except DataError as e:
                    raise ValueError(f"cannot resume {run_id} here: its {role} folder is not readable from the "
                                     f"dashboard ({e})") from e

    def cancel(self, run_id: str) -> bool:
        """Stop a queued or running run; True if it was active here.

        A running run stops after its current step. A queued one is stopped at once (it does
        not wait in the queue behind the runs before it); the worker skips it later.
        """
        with self._lock:
            job = self._jobs.get(run_id)
            if job is None:
                return False
            job.stop.set()
            if not job.started:
                job.cancelled_early = True
                self._jobs.pop(run_id, None)
        if job.cancelled_early:
            self.store.set_status(run_id, "stopped", error="Stopped before it started.")
            self.store.release(run_id)
        return True

    def projecting(self) -> bool:
        """True while snapshots of this process's runs wait for (or are in) projection."""
        return self._projector is not None and self._projector.pending() > 0

    def child_pid(self, run_id: str) -> int | None:
        """The process training ``run_id`` in isolated mode, while it runs; else None."""
        with self._lock:
            job = self._jobs.get(run_id)
            return job.pid if job is not None else None

    def stopping(self, run_id: str) -> bool:
        """True while a stop was asked for and the run still finishes its current step."""
        with self._lock:
            job = self._jobs.get(run_id)
            return job is not None and job.started and job.stop.is_set()

    def is_active(self, run_id: str) -> bool:
        with self._lock:
            return run_id in self._jobs

    def active_ids(self) -> list[str]:
        with self._lock:
            return list(self._jobs)

    def wait(self, run_id: str, timeout: float | None = None) -> bool:
        """Block until the run leaves the manager (tests, CLI). True if it finished in time."""
        import time

        deadline = None if timeout is None else time.monotonic() + timeout
        while self.is_active(run_id):
            if deadline is not None and time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        if self._projector is not None:
            self._projector.wait_idle(timeout=30)
        return True

    def shutdown(self) -> None:
        self._closing = True
        for job in list(self._jobs.values()):
            job.stop.set()
        for _ in self._threads:
            self._queue.put(None)
        for t in self._threads:
            t.join(timeout=30)
        self._drop_spare()
        if self._projector is not None:
            self._projector.close()

    def _drop_spare(self) -> None:
        with self._lock:
            spare, self._spare = self._spare, None
        if spare is not None:
            spare.discard()

    # ------------------------------------------------------------- workers
    def _enqueue(self, job: _Job) -> None:
        self.store.claim(job.run_id)  # another process starting up leaves it alone while this one lives
        with self._lock:
            self._jobs[job.run_id] = job
        self._queue.put(job)

    def _work(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            try:
                self._run_one(job)
            except Exception:  # the store itself failed (disk full, database locked): keep serving
                log.exception("run %s could not be recorded", job.run_id)
            finally:
                with self._lock:
                    mine = self._jobs.get(job.run_id) is job  # not a resumed job queued meanwhile
                    if mine:
                        self._jobs.pop(job.run_id)
                if mine:
                    self.store.release(job.run_id)
                if self._queue.empty():
                    self._drop_spare()  # nothing waits: no process kept for nothing
                _release_gpu_memory()

    def _run_one(self, job: _Job) -> None:
        with self._lock:
            if not job.stop.is_set():
                job.started = True
        if not job.started:
            if not job.cancelled_early:  # stopped by shutdown() while queued
                self.store.set_status(job.run_id, "stopped", error="Stopped before it started.")
            return
        self.store.set_status(job.run_id, "running")
        self.store.set_phase(job.run_id, "starting the training process" if self.isolate else "starting")
        if self.isolate:
            self._run_in_child(job)
            return
        on_snap = self._projector.submit if self._projector is not None else None
        execute_run(self.store, job.run_id, job.config, job.stop, job.resume, on_snap)

    def _run_in_child(self, job: _Job) -> None:
        """Train in ``python -m tl_core.runner``; relay stop to it and its snapshots to the projector."""
        try:
            with self._lock:  # the process of the run before, kept because this one was waiting
                child, self._spare = self._spare, None
            if child is None or not child.assign(job.run_id, job.resume):
                if child is not None:
                    child.discard()
                child = TrainingProcess(self.store.home)
                if not child.assign(job.run_id, job.resume):
                    raise OSError(f"the training process ended as it started (exit code {child.proc.poll()})")
        except OSError as exc:
            record_failure(self.store, job.run_id, exc)
            return
        job.pid = child.pid
        projector = self._projector
        rc = child.run(job.stop, lambda idx: projector.submit(job.run_id, idx) if projector is not None else None)
        job.pid = None
        keep = child.reusable and not self._closing and not self._queue.empty()
        with self._lock:
            if keep and self._spare is None:
                self._spare, child = child, None
        if child is not None and child.reusable:
            child.discard()  # nothing waits for it (or another is kept): it ends now
        rec = self.store.get_run(job.run_id)
        if rec is not None and rec.status in ("queued", "running"):  # it died before saying how it ended
            killed = rc == -9
            self.store.set_status(
                job.run_id, "failed",
                error=(f"The training process was killed (signal {-rc})." if rc < 0 else
                       f"The training process ended unexpectedly (exit code {rc})."),
                hint=("Most often the machine ran out of memory: try a smaller batch size or image size. "
                      if killed else "The server's console shows its last messages. ")
                + "Its metrics up to the last completed step are kept; resume it from its last checkpoint.")


def _release_gpu_memory() -> None:
    """Give cached GPU memory back after a run (an out-of-memory run must not starve the next)."""
    import sys

    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.empty_cache()


_MANAGER: JobManager | None = None
_MANAGER_LOCK = threading.Lock()


def get_manager(home: str | Path | None = None) -> JobManager:
    """The process-wide manager (created on first use): isolated, unless TL_TRAIN_IN_PROCESS=1."""
    import os

    global _MANAGER
    with _MANAGER_LOCK:
        if _MANAGER is None:
            from tl_core.data.folder import dashboard_data_root

            _MANAGER = JobManager(RunStore(home), isolate=os.environ.get("TL_TRAIN_IN_PROCESS", "") != "1",
                                  confine_to=dashboard_data_root())
        return _MANAGER
