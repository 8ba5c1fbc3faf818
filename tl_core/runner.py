"""The child process that trains one run for an isolated :class:`tl_core.jobs.JobManager`.

    python -m tl_core.runner --home DIR --run-id ID [--resume CHECKPOINT]
    python -m tl_core.runner --home DIR --wait      # runs {"run_id", "resume"} lines from stdin, one by one

The run must exist in the store under ``DIR`` and be marked running. Everything it learns
goes to the store, as in-process training would write it. The pipe protocol with the parent
(snapshots out, ``stop`` in, stdin closing = parent gone) is :mod:`tl_core.protocol`; SIGTERM
stops it after the current step, as ``stop`` does.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path
from typing import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tl_core.runner")
    p.add_argument("--home", required=True)
    p.add_argument("--run-id")
    p.add_argument("--resume", default=None)
    p.add_argument("--wait", action="store_true",
                   help="import torch and the trainer, then train the runs given on stdin (one JSON line "
                        "each), one after another, saying {\"done\": run_id} after each")
    a = p.parse_args(argv)
    if not a.wait and not a.run_id:
        p.error("--run-id is required (or --wait)")

    from tl_core.protocol import ChildEnd

    end = ChildEnd()
    signal.signal(signal.SIGTERM, lambda *_: end.stop.set())
    from tl_core.execute import execute_run
    from tl_core.store import RunStore

    def train(run_id: str, resume: str | None) -> None:
        store = RunStore(a.home)
        execute_run(store, run_id, store.config(run_id), end.stop, Path(resume) if resume else None,
                    end.snapshot_saved, end.orphaned)

    if not a.wait:
        end.run_id = a.run_id  # a "stop RUN_ID" line names it
        train(a.run_id, a.resume)
        return 0
    import torch._dynamo  # noqa: F401  what torch.optim imports on a run's first optimizer (about 2 s)

    import tl_core.trainer  # noqa: F401

    while (job := end.next_job()) is not None:  # one run after another, until the parent closes the pipe
        train(str(job["run_id"]), job.get("resume"))
        if end.orphaned.is_set() or not end.run_done(str(job["run_id"])):
            return 0
    return 0

if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # everything is in the store: skip the interpreter's teardown (torch's takes about a second, which the
    # next queued run would wait for)
    os._exit(code)
