"""How well each label-free criterion chooses a checkpoint: the gap to the oracle (Musgrave et al. 2021).

    .venv/bin/python -m bench.selection --pair mnist-mnist-m syn-digits-mnist --methods finetune dann coral \
        --seeds 0 1 --epochs 8 --max-train 2000 --out bench/out/selection.json

trains every (pair, method, seed) run in this process (``trainer.run`` with a ``MemoryRecorder``: no store,
no snapshots) and keeps each epoch's label-free scores and target test accuracy. For each criterion of
``tl_core.selection.CRITERIA`` the table gives, over all runs, the mean and the worst gap in points between
the target accuracy of the epoch the criterion chooses (``selection.choose``) and the best epoch's (the oracle,
which uses target labels), and how often the choice is within 2 points of the oracle: the evaluation of Musgrave,
Belongie & Lim, "Unsupervised Domain Adaptation: A Reality Check" (2021). "last epoch" is the rule without any
criterion, for reference.

    .venv/bin/python -m bench.selection --from-json bench/out/selection.json
    .venv/bin/python -m bench.selection --update-md docs/RESULTS.md

print the table of saved rows, or rebuild every table between ``<!-- bench.selection --from-json FILE... -->``
and ``<!-- end bench.selection -->`` (the same marker rules as ``bench.accuracy --update-md``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import statistics
import sys
import time
from pathlib import Path
from typing import Any

WITHIN = 2.0  # points: "picks within 2 points of the oracle"
BEGIN = re.compile(r"^<!-- bench\.selection (?P<args>.*) -->$")
END = "<!-- end bench.selection -->"


def one_run(pair: str, method: str, seed: int, epochs: int, max_train: int | None, backbone: str = "lenet",
            ) -> dict[str, Any]:
    """One run's settings and, per epoch, every criterion's score and the target test accuracy."""
    from tl_core import trainer
    from tl_core.config import demo_config
    from tl_core.recorder import MemoryRecorder
    from tl_core.selection import CRITERIA

    cfg = demo_config(pair, method, seed=seed)
    cfg.model.backbone = backbone
    cfg.optim.epochs = epochs
    cfg.data.max_train = max_train
    cfg.snapshot.enabled = False
    rec = MemoryRecorder()
    t0 = time.perf_counter()
    res = trainer.run(cfg, rec)
    keep = ["epoch", "phase", "target_test_acc", *CRITERIA]  # phase: a multi-phase method's (ADDA)
    return {"pair": pair, "method": method, "seed": seed, "backbone": backbone, "epochs": epochs,
            "max_train": max_train, "device": res["device"], "seconds": time.perf_counter() - t0,
            "per_epoch": [{k: e.get(k) for k in keep} for e in rec.epochs]}


def gaps(rows: list[dict[str, Any]]) -> dict[str, list[float]]:
    """Criterion (and 'last epoch') -> the gap in points to the oracle, one per run."""
    from tl_core.selection import CRITERIA, choose, oracle

    out: dict[str, list[float]] = {name: [] for name in CRITERIA}
    out["last epoch"] = []
    for r in rows:
        best = oracle(r["per_epoch"])["target_test_acc"]
        for name in CRITERIA:
            acc = choose(r["per_epoch"], name)["target_test_acc"]
            out[name].append(100 * (best - acc) if acc is not None else float("nan"))
        out["last epoch"].append(100 * (best - r["per_epoch"][-1]["target_test_acc"]))
    return out


def _finite_and_within(values: list[float]) -> tuple[list[float], int]:
    """The gaps that are numbers (a NaN: no epoch had a score), and how many are within WITHIN points."""
    ok = [v for v in values if v == v]
    return ok, sum(v <= WITHIN + 1e-9 for v in ok)


def table(rows: list[dict[str, Any]]) -> str:
    """The Markdown table: one line per criterion over all runs."""
    from tl_core.selection import CRITERIA

    g = gaps(rows)
    oracle_acc = [100 * max(e["target_test_acc"] for e in r["per_epoch"]) for r in rows]
    lines = [f"{len(rows)} runs; oracle (uses target labels) mean target accuracy {statistics.mean(oracle_acc):.2f} %.",
             "",
             "| criterion | better | mean gap (points) | worst gap (points) | within 2 points |",
             "|---|---|---:|---:|---:|"]
    for name, values in g.items():
        ok, within = _finite_and_within(values)
        label = CRITERIA[name].label + f" (`{name}`)" if name in CRITERIA else name
        better = ("higher" if CRITERIA[name].higher_is_better else "lower") if name in CRITERIA else "–"
        lines.append(f"| {label} | {better} | {statistics.mean(ok):.2f} | {max(ok):.2f} | "
                     f"{within}/{len(values)} ({100 * within / len(values):.0f} %) |")
    return "\n".join(lines)


def by_group_table(rows: list[dict[str, Any]], key: str) -> str:
    """Mean gap in points (and runs within 2 points) of each criterion, one column per pair or per method."""
    from tl_core.config import method_label
    from tl_core.selection import CRITERIA

    def name(r: dict[str, Any]) -> str:
        return r["pair"] if key == "pair" else method_label({"method": {"name": r["method"], "train_on": "source"}})

    groups: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(name(r), []).append(r)
    per = {g: gaps(rs) for g, rs in groups.items()}
    lines = ["| criterion | " + " | ".join(groups) + " |", "|---|" + "---:|" * len(groups)]
    for crit in per[next(iter(per))]:
        cells = []
        for g in groups:
            ok, within = _finite_and_within(per[g][crit])
            cells.append(f"{statistics.mean(ok):.1f} ({within}/{len(per[g][crit])})" if ok else "–")
        label = f"`{crit}`" if crit in CRITERIA else crit
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def per_run_table(rows: list[dict[str, Any]]) -> str:
    """Each run: the oracle epoch and accuracy, and each criterion's chosen epoch."""
    from tl_core.config import method_label
    from tl_core.selection import CRITERIA, choose, oracle

    head = "| pair | method | seed | oracle epoch (acc %) | " + " | ".join(f"`{n}`" for n in CRITERIA) + " |"
    lines = [head, "|" + "---|" * (4 + len(CRITERIA))]
    for r in rows:
        o = oracle(r["per_epoch"])
        cells = []
        for n in CRITERIA:
            c = choose(r["per_epoch"], n)
            cells.append(f"{c['epoch']} ({100 * c['target_test_acc']:.1f})" if c["epoch"] else "–")
        label = method_label({"method": {"name": r["method"], "train_on": "source"}})
        lines.append(f"| {r['pair']} | {label} | {r['seed']} | {o['epoch']} ({100 * o['target_test_acc']:.1f}) | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines)


def rows_from_json(paths: list[str]) -> list[dict[str, Any]]:
    """The rows of these files in order; a run repeated in a later file (same pair, method, seed, backbone,
    epochs and max_train) replaces the earlier one."""
    runs: dict[tuple[Any, ...], dict[str, Any]] = {}
    for path in paths:
        for r in json.loads(Path(path).read_text())["rows"]:
            runs[(r["pair"], r["method"], r["seed"], r["backbone"], r["epochs"], r["max_train"])] = r
    return sorted(runs.values(), key=lambda r: (r["pair"], r["method"], r["seed"]))


def render_block(args: str) -> str:
    """The tables a marker's arguments (``--from-json FILE... [--per-run]``) stand for."""
    ap = argparse.ArgumentParser(prog="<!-- bench.selection", add_help=False, exit_on_error=False)
    ap.add_argument("--from-json", nargs="+", required=True)
    ap.add_argument("--per-run", action="store_true")
    ap.add_argument("--by", choices=["pair", "method"])
    try:
        a = ap.parse_args(shlex.split(args))
    except (argparse.ArgumentError, SystemExit) as e:
        raise ValueError(f"marker arguments {args!r}: {e}") from None
    rows = rows_from_json(a.from_json)
    if a.by:
        return by_group_table(rows, a.by)
    return per_run_table(rows) if a.per_run else table(rows)


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.selection", description=__doc__.split("\n")[0])
    ap.add_argument("--pair", nargs="+", default=["mnist-mnist-m", "syn-digits-mnist"])
    ap.add_argument("--methods", nargs="+", default=["finetune", "dann", "coral"],
                    help="method names (registry), or 'all': every method that trains on source labels (the "
                         "methods of docs/RESULTS.md's method matrix)")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--max-train", type=int, default=2000,
                    help="training images per domain; 0: no cap (the demo settings of the results tables)")
    ap.add_argument("--backbone", default="lenet")
    ap.add_argument("--out", default="bench/out/selection.json")
    ap.add_argument("--from-json", nargs="+", metavar="FILE", help="run nothing: print the table of these rows")
    ap.add_argument("--per-run", action="store_true", help="with --from-json: each run's chosen epochs")
    ap.add_argument("--by", choices=["pair", "method"], help="with --from-json: each criterion's mean gap per pair "
                    "or per method (runs within 2 points in brackets)")
    ap.add_argument("--update-md", nargs="+", metavar="MD", help="run nothing: rebuild every "
                    "'<!-- bench.selection ARGS -->' ... '<!-- end bench.selection -->' block in these files")
    a = ap.parse_args()
    if a.update_md:
        from bench.accuracy import update_md

        for md in a.update_md:
            path = Path(md)
            old = path.read_text(encoding="utf-8")
            new = update_md(old, md, begin=BEGIN, end=END, render_block=render_block)
            if new != old:
                path.write_text(new, encoding="utf-8")
                print(f"updated {md}", file=sys.stderr)
        return
    if a.from_json:
        rows = rows_from_json(a.from_json)
        print(by_group_table(rows, a.by) if a.by else per_run_table(rows) if a.per_run else table(rows))
        return
    if a.methods == ["all"]:
        from tl_core.methods import all_methods

        a.methods = [name for name, cls in all_methods().items() if "source" in cls.trains_on]
    max_train = a.max_train or None
    rows: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    for pair in a.pair:
        for method in a.methods:
            for seed in a.seeds:
                rows.append(one_run(pair, method, seed, a.epochs, max_train, a.backbone))
                print(f"[{time.perf_counter() - t0:6.0f} s] {pair} {method} seed {seed}: "
                      f"{rows[-1]['seconds']:.0f} s", file=sys.stderr, flush=True)
                Path(a.out).write_text(json.dumps({  # after each run: an interrupted bench keeps what it did
                    "command": "python -m bench.selection " + " ".join(shlex.quote(x) for x in sys.argv[1:]),
                    "machine": f"{platform.node()} ({platform.machine()}, {os.cpu_count()} CPUs)",
                    "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                    "seconds": time.perf_counter() - t0, "rows": rows}, indent=1))
    print(table(rows))


if __name__ == "__main__":
    main()
