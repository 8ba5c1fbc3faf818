"""`streamlit run app.py` with a long run already training in it, for the browser benchmark.

    TL_HOME=/tmp/x python -m bench._serve --port 8765 --log /tmp/x/serve.log [--config run.json]

Before the server starts, this submits a long lenet DANN run to the process-wide job
manager (``tl_core.jobs.get_manager()``, the one the pages use; ``--config``: a RunConfig JSON
file instead, as the browser test of the Monitor's live refresh uses), so the server trains it
exactly as after a click on Start (in its own training process, as the dashboard does).
It appends JSON lines to ``--log``: the run id, and the duration of every call of a page
fragment's body (the Monitor's live part). Then it runs Streamlit's own command line in
this process. Stop it with SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--config", help="a RunConfig JSON file to train instead of the long lenet DANN run")
    a = ap.parse_args()
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    lock = threading.Lock()
    log_file = open(a.log, "a", buffering=1)

    def log(**event) -> None:
        with lock:
            log_file.write(json.dumps({"t": time.time(), **event}) + "\n")

    from bench.dashboard import long_run_config, time_fragments
    from tl_core import jobs

    time_fragments(lambda name, s: log(kind="fragment", name=name, s=s))
    manager = jobs.get_manager()
    if a.config:
        from tl_core.config import RunConfig

        cfg = RunConfig.from_dict(json.loads(Path(a.config).read_text()))
    else:
        cfg = long_run_config()
    run_id = manager.submit(cfg)
    log(kind="start", run_id=run_id, batch_size=cfg.optim.batch_size)

    from streamlit.web import cli

    sys.argv = ["streamlit", "run", str(ROOT / "app.py"), "--server.port", str(a.port), "--server.headless", "true",
                "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false",
                "--server.fileWatcherType", "none"]
    try:
        cli.main(prog_name="streamlit")
    finally:  # the server stopped (SIGTERM): stop the run too, so the process exits cleanly
        manager.cancel(run_id)
        manager.wait(run_id, timeout=30)


if __name__ == "__main__":
    main()
