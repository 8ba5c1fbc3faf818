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
    """The training process's end: protocol on the real stdout, stop requests from stdin."""

    def __init__(self) -> None:
        self.out = os.fdopen(os.dup(1), "w", buffering=1)
        os.dup2(2, 1)  # stray prints (libraries, warnings) must not mix with the protocol
        self.stop, self.orphaned = threading.Event(), threading.Event()
        threading.Thread(target=self._watch, args=(sys.stdin,), daemon=True).start()

    def _watch(self, stream: TextIO) -> None:
        for line in stream:
            if line.strip() == STOP:
                self.stop.set()
        if not self.stop.is_set():  # stdin closed without "stop": the parent is gone
            self.orphaned.set()
            self.stop.set()

    def snapshot_saved(self, _run_id: str, idx: int) -> None:
        if not send(self.out, {"snapshot": idx}):  # the parent is gone; the snapshot stays in the store
            self.orphaned.set()
            self.stop.set()


# ------------------------------------------------------ training process: parent end
class TrainingProcess:
    """The parent's end: starts ``python -m tl_core.runner``, relays a stop, hands on snapshots."""

    def __init__(self, home: str | os.PathLike, run_id: str, resume: Path | None) -> None:
        cmd = [sys.executable, "-m", "tl_core.runner", "--home", str(home), "--run-id", run_id]
        if resume is not None:
            cmd += ["--resume", str(resume)]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1,
                                     cwd=str(Path(__file__).resolve().parent.parent))
        self.pid = self.proc.pid

    def run(self, stop: threading.Event, on_snapshot: Callable[[int], None]) -> int:
        """Until the child ends: a set ``stop`` is written to it, each snapshot goes to ``on_snapshot``.
        Returns the exit code (negative: killed by that signal)."""
        finished = threading.Event()

        def relay_stop() -> None:
            while not (stop.wait(0.2) or finished.is_set()):
                pass
            if stop.is_set() and not finished.is_set():
                try:
                    self.proc.stdin.write(STOP + "\n")
                    self.proc.stdin.flush()
                except (OSError, ValueError):  # it has just ended
                    pass

        relay = threading.Thread(target=relay_stop, daemon=True)
        relay.start()
        for msg in receive(self.proc.stdout):  # until the child closes its end: finished or died
            if "snapshot" in msg:
                on_snapshot(int(msg["snapshot"]))
        rc = self.proc.wait()
        finished.set()
        relay.join()
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        return rc
