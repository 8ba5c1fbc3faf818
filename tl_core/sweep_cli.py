"""``python -m tl_core sweep`` and ``sweep-worker``: the command line of tl_core/sweep.py.

    python -m tl_core sweep --preset mnist-mnist-m --backbone lenet --epochs 3 \\
        --set optim.lr=0.01,0.03 --set method.name=finetune,dann --seeds 0 1 [--sampler grid] \\
        [--trials N] [--timeout SECONDS] [--objective source_val_acc] [--storage URL] [--study NAME]
    python -m tl_core sweep-worker --storage URL --study NAME

``--set PATH=V1,V2,...`` sweeps a RunConfig field over values (grid; a choice for random/TPE);
``--set PATH=LOW:HIGH`` or ``LOW:HIGH:log`` over a range (random, tpe). The other flags are those of
``run`` and make the base config every trial starts from. Trials run in this process, one run at a time;
the grouped table goes to stdout, then one JSON line. Ctrl-C stops after the current step; the stopped
setting runs again (its finished seeds kept) when the sweep is resumed with ``sweep-worker``.

Exit status: 0 when the sweep ran (or was stopped), 2 when it could not start (its message on stderr).
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from typing import Any, Callable


def add_flags(p: argparse.ArgumentParser, config_flags: Callable[[argparse.ArgumentParser], None]) -> None:
    from tl_core import sweep

    p.add_argument("--set", action="append", dest="sweep_set", metavar="PATH=VALUES",
                   help="a RunConfig field and its values, e.g. optim.lr=0.01,0.03 or method.name=finetune,dann "
                   "(grid), or a range optim.lr=1e-4:1e-1:log, model.freeze=0:3 (random, tpe); "
                   "method settings as method.params.NAME; repeat for each field")
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="every setting runs once per seed (default 0)")
    p.add_argument("--sampler", choices=list(sweep.SAMPLERS), default="grid",
                   help="; ".join(f"{k}: {v}" for k, v in sweep.SAMPLERS.items()) + " (default grid)")
    p.add_argument("--trials", type=int, help="budget: settings to try (grid: at most every combination)")
    p.add_argument("--timeout", type=float, metavar="SECONDS", help="budget: stop starting trials after this long")
    p.add_argument("--objective", choices=list(sweep.criteria()),
                   help=f"the label-free criterion trials are compared by (default {sweep.default_criterion()}); "
                   "target accuracy is never one: it needs target labels")
    _storage_flags(p, required=False)
    config_flags(p)


def add_worker_flags(p: argparse.ArgumentParser) -> None:
    _storage_flags(p, required=True)


def _storage_flags(p: argparse.ArgumentParser, required: bool) -> None:
    p.add_argument("--storage", metavar="URL", help="where the study lives: an SQLAlchemy URL, e.g. "
                   "postgresql+psycopg2://user:pw@host/db, so that several machines share one sweep (default "
                   "sqlite:///$TL_HOME/sweeps.db)")
    p.add_argument("--study", required=required, metavar="NAME",
                   help="the sweep's name" + ("" if required else " (default sweep-DATE-TIME; an existing "
                                              "sweep of this name with the same settings is resumed)"))
    p.add_argument("--quiet", action="store_true", help="no line per finished trial")


def cli(a: argparse.Namespace, build_config: Callable[[argparse.Namespace], Any], input_error: type) -> int:
    from tl_core import sweep

    storage = a.storage or sweep.default_storage()
    try:
        if a.cmd == "sweep":
            cfg = build_config(a)
            params = [sweep.parse_set(t) for t in a.sweep_set or []]
            spec = sweep.SweepSpec(params=params, base=cfg.to_dict(), seeds=list(a.seeds), sampler=a.sampler,
                                   trials=a.trials, timeout_s=a.timeout, objective=a.objective or "")
            problems = spec.problems() or _preflight(spec)
            if problems:
                raise sweep.SweepError("the sweep cannot start:\n  " + "\n  ".join(problems))
            name = a.study or sweep.new_study_name()
            study = sweep.create_study(spec, storage, name)
        else:
            study, spec = sweep.load_study(storage, a.study)
            study.set_user_attr("stopped", False)
    except (input_error, sweep.SweepError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return _work(study, spec, storage, a.quiet)


def _preflight(spec: Any) -> list[str]:
    """Data sets, backbone, device and weights of the base config with the first value of each field."""
    from tl_core import sweep
    from tl_core.preflight import check

    first = {p.path: (p.values[0] if p.values is not None else p.low) for p in spec.params}
    return check(sweep.apply(spec.base, first, spec.seeds[0]))


def _work(study: Any, spec: Any, storage: str, quiet: bool) -> int:
    from tl_core import sweep
    from tl_core.jobs import JobManager
    from tl_core.store import RunStore

    logging.getLogger("tl_core.execute").setLevel(logging.ERROR)  # a failed run is a row of the table
    manager = JobManager(RunStore(), isolate=False, project=False)
    stop = threading.Event()
    previous = signal.signal(signal.SIGINT, lambda *_: stop.set())  # Ctrl-C: stop after this step

    def line(t: Any) -> None:
        if quiet:
            return
        value = "failed: " + str(t.user_attrs.get("failed", "")) if t.value is None else f"{t.value:.4f}"
        print(f"trial {t.number}: {sweep.setting_label(sweep._setting_of(t, spec))}  {spec.objective} {value}",
              file=sys.stderr, flush=True)

    if not quiet:
        print(f"sweep '{study.study_name}' in {sweep._safe_url(storage)}: "
              f"{' '.join(p.describe() for p in spec.params)}; seeds {spec.seeds}; sampler {spec.sampler}",
              file=sys.stderr, flush=True)
    try:
        sweep.run_worker(study, spec, sweep.ManagerExecutor(manager, "cli"), stop, on_trial=line)
    finally:
        signal.signal(signal.SIGINT, previous)
        manager.shutdown()
    res = sweep.results(study, spec)
    print(sweep.format_table(res))
    if stop.is_set():
        print(f"stopped; resume with: python -m tl_core sweep-worker --study {study.study_name}"
              + (f" --storage {sweep._safe_url(storage)}" if storage != sweep.default_storage() else ""),
              file=sys.stderr)
    print(json.dumps({**res.to_json(), "storage": sweep._safe_url(storage), "stopped": stop.is_set()}))
    return 0
