"""The child process that trains one run for an isolated :class:`tl_core.jobs.JobManager`.

    python -m tl_core.runner --home DIR --run-id ID [--resume CHECKPOINT]

The run must exist in the store under ``DIR`` and be marked running. Everything it learns
goes to the store, as in-process training would write it. The pipe protocol with the parent
(snapshots out, ``stop`` in, stdin closing = parent gone) is :mod:`tl_core.protocol`; SIGTERM
stops it after the current step, as ``stop`` does.
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path
from typing import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tl_core.runner")
    p.add_argument("--home", required=True)
    p.add_argument("--run-id", required=True)
    p.add_argument("--resume", default=None)
    a = p.parse_args(argv)

    from tl_core.protocol import ChildEnd

    end = ChildEnd()
    from tl_core.execute import execute_run
    from tl_core.store import RunStore

    store = RunStore(a.home)
    signal.signal(signal.SIGTERM, lambda *_: end.stop.set())
    execute_run(store, a.run_id, store.config(a.run_id), end.stop, Path(a.resume) if a.resume else None,
                end.snapshot_saved, end.orphaned)
    return 0


if __name__ == "__main__":
    sys.exit(main())
