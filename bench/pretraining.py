"""The "What is pretraining worth?" demo end to end, as Home runs it: wall time and the numbers.

    python -m bench.pretraining [--home DIR] [--in-process]

Queues the demo (``tl_core.pretraining``) on a job manager like the dashboard's (each run in its own
training process unless ``--in-process``), waits for it, and prints the wall time, the MNIST test accuracy
per strategy and labels per class (mean ± std over the seeds) as a Markdown table, and one JSON line;
``bench/out/pretraining.json`` keeps the rows.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path


def _cpu_s() -> float:
    """CPU seconds (user + system) of this process and of its finished children (the training processes)."""
    import resource

    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def table(summary: list[dict]) -> str:
    from tl_core import pretraining as pt

    by = {(r["strategy"], r["labels_per_class"]): r for r in summary}
    lines = ["| strategy | " + " | ".join(f"{k} labels/class" for k in pt.LABELS_PER_CLASS) + " |",
             "|---|" + "---:|" * len(pt.LABELS_PER_CLASS)]
    for s in pt.STRATEGIES:
        cells = [f"{by[(s.key, k)]['mean']:.1f} ± {by[(s.key, k)]['std']:.1f}" if (s.key, k) in by else "–"
                 for k in pt.LABELS_PER_CLASS]
        lines.append(f"| {s.title} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.pretraining", description=__doc__.splitlines()[0])
    ap.add_argument("--home", help="TL_HOME for the demo's runs (default: a new temporary folder)")
    ap.add_argument("--in-process", action="store_true", help="train in the manager's thread (no child processes)")
    ap.add_argument("--report", action="store_true", help="train nothing: the table of the demo already in --home")
    a = ap.parse_args(argv)
    home = Path(a.home or tempfile.mkdtemp(prefix="tl-pretraining-"))
    os.environ["TL_HOME"] = str(home)
    from tl_core import pretraining as pt
    from tl_core.jobs import JobManager
    from tl_core.store import RunStore

    if a.report:
        store, record = RunStore(home), pt.load(home)
        if record is None:
            print(f"no pretraining demo recorded in {home}", file=sys.stderr)
            return 2
        st = pt.status(store, record)
        summary = pt.aggregate(pt.results(store, record))
        print(f"{st.done}/{st.total} runs finished, {st.failed} did not complete; elapsed {st.elapsed_s:.0f} s")
        print(table(summary))
        print(pt.verdict(summary))
        print(json.dumps({"done": st.done, "total": st.total, "summary": summary}))
        return 0

    manager = JobManager(RunStore(home), project=False, isolate=not a.in_process)
    t0 = time.monotonic()
    cpu0 = _cpu_s()
    ids = pt.start(manager, owner="bench")
    record = pt.load(home)
    last = -1
    while True:
        st = pt.status(manager.store, record)
        if st.done != last:
            last = st.done
            eta = f", ETA {st.eta_s:.0f} s" if st.eta_s else ""
            print(f"{st.done}/{st.total} runs done ({time.monotonic() - t0:.0f} s{eta})", file=sys.stderr)
        if not st.active:
            break
        time.sleep(1.0)
    wall = time.monotonic() - t0
    manager.shutdown()  # its training process serves run after run: it ends (and its CPU time counts) here
    cpu = _cpu_s() - cpu0
    load = os.getloadavg()[0]
    rows = pt.results(manager.store, record)
    summary = pt.aggregate(rows)
    print(f"wall time {wall:.0f} s for {len(ids)} runs; CPU time {cpu:.0f} s (this process and its training "
          f"processes); {st.failed} did not complete; {os.cpu_count()} cores, load average {load:.1f} at the end")
    print(table(summary))
    print(pt.verdict(summary))
    out = Path(__file__).resolve().parent / "out" / "pretraining.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"wall_s": wall, "cpu_s": cpu, "load": load, "runs": len(ids), "failed": st.failed, "rows": rows,
                               "summary": summary}, indent=1))
    print(json.dumps({"wall_s": round(wall, 1), "cpu_s": round(cpu, 1), "runs": len(ids), "failed": st.failed, "summary": summary}))
    return 0 if st.failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
