"""The child process that trains one run for an isolated :class:`tl_core.jobs.JobManager`.

    python -m tl_core.runner --home DIR --run-id ID [--resume CHECKPOINT]

The run must exist in the store under ``DIR`` and be marked running. Everything it learns
goes to the store, as in-process training would write it. On stdout it writes one JSON line
``{"snapshot": idx}`` per feature snapshot saved (anything else the process prints goes to
stderr). A line ``stop`` on stdin, or SIGTERM, stops it after the current step ("stopped");
stdin closing without ``stop`` means the manager is gone: the run stops the same way and is
recorded as interrupted, ready to resume.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Sequence, TextIO


def _watch(stream: TextIO, stop: threading.Event, orphaned: threading.Event) -> None:
    for line in stream:
        if line.strip() == "stop":
            stop.set()
    if not stop.is_set():
        orphaned.set()
        stop.set()


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tl_core.runner")
    p.add_argument("--home", required=True)
    p.add_argument("--run-id", required=True)
    p.add_argument("--resume", default=None)
    a = p.parse_args(argv)

    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # stray prints (libraries, warnings) must not mix with the protocol

    from tl_core.jobs import execute_run
    from tl_core.store import RunStore

    store = RunStore(a.home)
    stop, orphaned = threading.Event(), threading.Event()
    threading.Thread(target=_watch, args=(sys.stdin, stop, orphaned), daemon=True).start()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())

    def on_snapshot(_run_id: str, idx: int) -> None:
        try:
            proto.write(json.dumps({"snapshot": idx}) + "\n")
        except (OSError, ValueError):  # the manager is gone; the snapshot stays in the store
            orphaned.set()
            stop.set()

    execute_run(store, a.run_id, store.config(a.run_id), stop, Path(a.resume) if a.resume else None,
                on_snapshot, orphaned)
    return 0


if __name__ == "__main__":
    sys.exit(main())
