"""Both ends of the parent/child pipes: the training process and the projector worker.

Every message is one JSON object on one line. The training process (``python -m
tl_core.runner``) says ``{"snapshot": idx}`` on its stdout for each feature snapshot it
saved; its parent writes the line ``stop`` on its stdin to stop it after the current step,
and closing that stdin means the parent is gone. The projector worker reads
``{"run_id", "idx"}`` lines and answers one line each.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Callable, Iterator, TextIO

STOP = "stop"


def send(stream: TextIO, message: dict[str, Any]) -> bool:
    """Write one message; False when the other end is gone."""
    try:
        stream.write(json.dumps(message) + "\n")
        stream.flush()
        return True
    except (OSError, ValueError):
        return False


def receive(stream: TextIO) -> Iterator[dict[str, Any]]:
    """The messages on a stream until it closes; lines that are not a JSON object are skipped."""
    for line in stream:
        try:
            msg = json.loads(line)
        except ValueError:
            continue
        if isinstance(msg, dict):
            yield msg


def read_one(stream: TextIO) -> dict[str, Any] | None:
    """The next message, or None when the stream closed or the line is not one."""
    line = stream.readline()
    if not line:
        return None
    try:
        msg = json.loads(line)
    except ValueError:
        return None
    return msg if isinstance(msg, dict) else None


# ------------------------------------------------------- training process: child end
class ChildEnd:
    """The training process's end: protocol on the real stdout, stop requests (and, for a process that
    serves several runs, its runs) from stdin."""

    def __init__(self) -> None:
        self.out = os.fdopen(os.dup(1), "w", buffering=1)
        os.dup2(2, 1)  # stray prints (libraries, warnings) must not mix with the protocol
        self.stop, self.orphaned = threading.Event(), threading.Event()
        self.run_id: str | None = None
        self._jobs: queue.Queue[dict[str, Any] | None] = queue.Queue()
        threading.Thread(target=self._watch, args=(sys.stdin,), daemon=True).start()

    def _watch(self, stream: TextIO) -> None:
        for line in stream:
            text = line.strip()
            if text == STOP or (text.startswith(STOP + " ") and text[len(STOP) + 1:] == self.run_id):
                self.stop.set()  # a stop meant for a run that has already ended is ignored
            elif text.startswith("{"):
                try:
                    job = json.loads(text)
                except ValueError:
                    continue
                # the next run's own stop, set here: a stop line for it can follow at once on this stream
                self.stop, self.run_id = threading.Event(), str(job.get("run_id"))
                self._jobs.put(job)
        if not self.stop.is_set():  # stdin closed without "stop": the parent is gone
            self.orphaned.set()
            self.stop.set()
        self._jobs.put(None)

    def next_job(self) -> dict[str, Any] | None:
        """Wait for the next run (``{"run_id", "resume"}``, now ``run_id`` with a ``stop`` of its own); None
        when the parent closed the pipe."""
        job = self._jobs.get()
        return None if job is None or self.orphaned.is_set() else job

    def run_done(self, run_id: str) -> bool:
        """Tell the parent the run has ended (everything is in the store); False when it is gone."""
        return send(self.out, {"done": run_id})

    def snapshot_saved(self, _run_id: str, idx: int) -> None:
        if not send(self.out, {"snapshot": idx}):  # the parent is gone; the snapshot stays in the store
            self.orphaned.set()
            self.stop.set()


# ------------------------------------------------------ training process: parent end
class TrainingProcess:
    """The parent's end: starts ``python -m tl_core.runner``, relays a stop, hands on snapshots.

    The process *waits* for its runs on stdin (``runner --wait``): :meth:`assign` gives it one, :meth:`run`
    returns when the child says ``{"done": run_id}``, and the same process can take the next run
    (``reusable``): a queue of short runs (a sweep, the pretraining demo) pays torch's import, a few
    seconds, once instead of once per run.
    """

    def __init__(self, home: str | os.PathLike) -> None:
        cmd = [sys.executable, "-m", "tl_core.runner", "--home", str(home), "--wait"]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1,
                                     cwd=str(Path(__file__).resolve().parent.parent))
        self.pid = self.proc.pid
        self.run_id: str | None = None
        self.reusable = False  # True once the process has said its run is done and lives on

    def assign(self, run_id: str, resume: Path | None) -> bool:
        """Give a waiting process its next run; False when it has ended meanwhile (start a new one)."""
        if self.proc.poll() is not None:
            return False
        self.run_id, self.reusable = run_id, False
        return send(self.proc.stdin, {"run_id": run_id, "resume": str(resume) if resume is not None else None})

    def discard(self) -> None:
        """End a waiting process (closing its stdin ends it; killed if it does not end at once)."""
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def run(self, stop: threading.Event, on_snapshot: Callable[[int], None]) -> int:
        """Until the child ends: a set ``stop`` is written to it, each snapshot goes to ``on_snapshot``.
        Returns the exit code (negative: killed by that signal)."""
        finished = threading.Event()

        def relay_stop() -> None:
            while not (stop.wait(0.2) or finished.is_set()):
                pass
            if stop.is_set() and not finished.is_set():
                try:
                    self.proc.stdin.write(f"{STOP} {self.run_id}\n")
                    self.proc.stdin.flush()
                except (OSError, ValueError):  # it has just ended
                    pass

        relay = threading.Thread(target=relay_stop, daemon=True)
        relay.start()
        rc = None
        for msg in receive(self.proc.stdout):  # until the run is done, or the child closes its end (died)
            if "snapshot" in msg:
                on_snapshot(int(msg["snapshot"]))
            elif "done" in msg and msg["done"] == self.run_id:
                rc, self.reusable = 0, True
                break
        if rc is None:
            rc = self.proc.wait()
            try:
                self.proc.stdin.close()
            except OSError:
                pass
        finished.set()
        relay.join()
        return rc
