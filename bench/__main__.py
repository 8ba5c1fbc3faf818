"""`make bench`: run the benchmarks, write BENCHMARKS.md and bench/out/bench.json.

    .venv/bin/python -m bench            # quick: under 15 minutes on 2 CPU cores
    .venv/bin/python -m bench --full     # the long version (`make bench FULL=1`)
    .venv/bin/python -m bench --only overhead frozen   # some sections; the report shows only those

Every number is measured when this runs; nothing is copied in by hand. Speed sections
run one after the other, each in its own process (see ``bench/_section.py``); their raw
numbers go to ``bench/out/<section>.json`` and, together, to ``bench/out/bench.json``.
Runs go to a scratch ``TL_HOME``: the user's run store is never touched.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import report
from bench.common import ProcessTreeCPU, cpu_counters, load_average, machine_facts, other_work

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out"
SPEED_SECTIONS = ["overhead", "frozen", "projection", "snapshots", "render", "browser", "cuda", "own_data"]
ALL = SPEED_SECTIONS + ["accuracy", "selection"]
FULL_ONLY: list[str] = ["own_data"]  # too heavy for the quick run (about 7 min on 2 cores): --only own_data, or --full
# Safety nets only: the sections keep to their own time budgets in the quick version.
QUICK_TIMEOUT_S = {"overhead": 600, "frozen": 600, "projection": 300, "snapshots": 600, "render": 300,
                   "browser": 900, "cuda": 1200, "accuracy": 600, "own_data": 1500,
                  "selection": 900}

# Accuracy plan: (pairs, backbones, seeds, epochs per backbone)
QUICK_ACCURACY = (["mnist-mnist-m"], ["lenet"], [0], {"lenet": 10})  # the one-click demo's 10 epochs
FULL_ACCURACY = (["mnist-mnist-m", "mnist-uci-digits", "syn-digits-mnist"], ["lenet", "efficientnet_lite0"],
                 [0, 1, 2], {"lenet": 30, "efficientnet_lite0": 10})
# Checkpoint-choice plan (bench/selection.py, LeNet): the flags after `python -m bench.selection`
QUICK_SELECTION = ["--pair", "mnist-mnist-m", "--methods", "finetune", "dann", "--seeds", "0", "--epochs", "6",
                   "--max-train", "1000"]
# full: the runs of docs/RESULTS.md's method matrix (every method that trains on source labels, the four LeNet pairs,
# seeds 0-2, the demo's 10 epochs and data); about 80 min on 2 cores
FULL_SELECTION = ["--pair", "mnist-mnist-m", "mnist-uci-digits", "syn-digits-mnist", "mnist-mix-mnist-m",
                  "--methods", "all", "--seeds", "0", "1", "2", "--epochs", "10", "--max-train", "0"]


def _log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _run(cmd: list[str], timeout: float | None, env: dict[str, str]) -> tuple[int, str, str]:
    try:
        p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
        return p.returncode, p.stdout, p.stderr
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        return 124, out, f"timed out after {timeout:.0f} s"


def _failure(rc: int, err: str) -> dict[str, Any]:
    tail = [ln for ln in err.strip().splitlines() if ln.strip()][-3:]
    return {"error": f"exit {rc}: " + " / ".join(tail)[-600:]}


def run_section(name: str, full: bool, env: dict[str, str]) -> dict[str, Any]:
    out = OUT / f"{name}.json"
    out.unlink(missing_ok=True)
    timeout = None if full else QUICK_TIMEOUT_S[name]
    cmd = [sys.executable, "-m", "bench._section", name, "--out", str(out)] + (["--full"] if full else [])
    rc, _, err = _run(cmd, timeout, env)
    if rc != 0 or not out.exists():
        return _failure(rc, err)
    return json.loads(out.read_text())


def run_projection(full: bool, env: dict[str, str]) -> dict[str, Any]:
    cmd = [sys.executable, "bench/bench_projection.py", "--repeats", "5" if full else "3"]
    rc, stdout, err = _run(cmd, None if full else QUICK_TIMEOUT_S["projection"], env)
    if rc != 0:
        return _failure(rc, err)
    result = json.loads(stdout.strip().splitlines()[-1])
    (OUT / "projection.json").write_text(json.dumps(result, indent=1))
    return result


def run_accuracy(full: bool, env: dict[str, str]) -> dict[str, Any]:
    pairs, backbones, seeds, epochs = FULL_ACCURACY if full else QUICK_ACCURACY
    rows: list[dict[str, Any]] = []
    errors = []
    t0 = time.perf_counter()
    for backbone in backbones:
        out = OUT / f"accuracy-{backbone}.json"
        out.unlink(missing_ok=True)
        cmd = [sys.executable, "-m", "bench.accuracy", "--pair", *pairs, "--backbone", backbone,
               "--seeds", *map(str, seeds), "--methods", "source only", "DANN", "target supervised",
               "--epochs", str(epochs[backbone]), "--out", str(out)]
        rc, _, err = _run(cmd, None if full else QUICK_TIMEOUT_S["accuracy"], env)
        if rc != 0 or not out.exists():
            errors.append(f"{backbone}: {_failure(rc, err)['error']}")
            continue
        rows += json.loads(out.read_text())["rows"]
    res: dict[str, Any] = {"rows": rows, "quick": not full, "pairs": pairs, "backbones": backbones, "seeds": seeds,
                           "epochs": epochs, "section_s": round(time.perf_counter() - t0, 1)}
    if errors:
        res["error"] = "; ".join(errors)
    return res


def run_selection(full: bool, env: dict[str, str]) -> dict[str, Any]:
    out = OUT / "selection-bench.json"
    out.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "bench.selection", *(FULL_SELECTION if full else QUICK_SELECTION), "--out", str(out)]
    rc, _, err = _run(cmd, None if full else QUICK_TIMEOUT_S["selection"], env)
    if rc != 0 or not out.exists():
        return _failure(rc, err)
    return json.loads(out.read_text())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench", description="Speed and accuracy benchmarks.")
    ap.add_argument("--full", action="store_true", help="the long version (3 seeds, all pairs, more repeats)")
    ap.add_argument("--only", nargs="+", choices=ALL, help="run only these sections")
    ap.add_argument("--skip", nargs="+", choices=ALL, default=[], help="leave these sections out")
    ap.add_argument("--report", default=str(ROOT / "BENCHMARKS.md"), help="where to write the Markdown report")
    ap.add_argument("--render-only", action="store_true",
                    help="measure nothing: rewrite the report from bench/out/bench.json")
    a = ap.parse_args(argv)
    if a.render_only:
        Path(a.report).write_text(report.render(json.loads((OUT / "bench.json").read_text())))
        _log(f"wrote {a.report} from {OUT / 'bench.json'}")
        return 0
    OUT.mkdir(parents=True, exist_ok=True)
    default = ALL if a.full else [s for s in ALL if s not in FULL_ONLY]
    sections = [s for s in (a.only or default) if s not in a.skip]
    scratch = Path(tempfile.mkdtemp(prefix="tl-bench-"))  # run stores, servers' files; removed at the end
    (scratch / "home").mkdir()
    env = {**os.environ, "TL_HOME": str(scratch / "home"), "TMPDIR": str(scratch), "PYTHONUNBUFFERED": "1"}
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")

    started = time.time()
    meta = {"date": time.strftime("%Y-%m-%d %H:%M %Z"), "mode": "full" if a.full else "quick",
            "machine": machine_facts(), "loadavg_1min_start": load_average(), "sections": sections,
            "own_cpu": "every process the bench started, sampled from /proc (bench.common.ProcessTreeCPU)"}
    results: dict[str, Any] = {}
    tree = ProcessTreeCPU().start()  # the sections' processes, reaped or not, are ours, not other work
    cpu_start = cpu_counters(tree)
    for name in sections:
        _log(f"{name} …")
        t0 = time.perf_counter()
        cpu0 = cpu_counters(tree)
        if name == "projection":
            results[name] = run_projection(a.full, env)
        elif name == "accuracy":
            results[name] = run_accuracy(a.full, env)
        elif name == "selection":
            results[name] = run_selection(a.full, env)
        else:
            results[name] = run_section(name, a.full, env)
        results[name]["other_work"] = other_work(cpu0, cpu_counters(tree))
        _log(f"{name} done in {time.perf_counter() - t0:.0f} s"
             + (f" — FAILED: {results[name]['error']}" if "error" in results[name] else ""))
    shutil.rmtree(scratch, ignore_errors=True)
    meta["total_s"] = round(time.time() - started, 1)
    meta["other_work"] = other_work(cpu_start, cpu_counters(tree))
    tree.stop()
    meta["loadavg_1min_end"] = load_average()
    bench = {"meta": meta, **results}
    (OUT / "bench.json").write_text(json.dumps(bench, indent=1))
    text = report.render(bench)
    Path(a.report).write_text(text)
    _log(f"wrote {a.report} and {OUT / 'bench.json'} in {meta['total_s'] / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
