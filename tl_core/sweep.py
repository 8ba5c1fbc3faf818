"""Sweeps: grid, random and Bayesian (TPE) search over any RunConfig field(s) and over seeds, on Optuna.

A sweep is an Optuna study. One trial is one *setting* (a value for each swept field); it trains one run
per seed through a :class:`tl_core.jobs.JobManager` (the dashboard's queue, or the command line's own
in-process manager), so its runs are ordinary runs in the run store. The trial's value is the mean over
the seeds of a label-free criterion (``tl_core.selection``; never target accuracy); target accuracy is
read only to report the oracle, labelled as such.

Where the study lives: ``$TL_HOME/sweeps.db`` (SQLite) by default. It is a file of its own, not a table in
``runs.db``: Optuna owns that schema and migrates it with alembic, and the run store's schema, WAL and
damage checks stay the run store's own. ``--storage URL`` (any SQLAlchemy URL: PostgreSQL, MySQL) lets
several machines work on one sweep (``python -m tl_core sweep-worker --storage URL --study NAME``);
docs/SWEEPS.md has a worked example.

Resuming and sharing, what is guaranteed:

* The spec (swept fields, seeds, sampler, budget, objective, base config) is stored in the study, so
  a worker needs only the storage URL and the study name.
* A finished trial is never run again: a resumed sweep asks Optuna for the next trial, and Optuna's
  storage hands each trial to one worker (grid points are trial numbers; enqueued trials are claimed
  with a compare-and-set on their state).
* A trial that was running when its process died is failed and enqueued again with the same setting,
  keeping the seeds it had finished (``runs`` user attribute), so only its unfinished seeds run again.
  Each seed's run id is recorded when it is submitted: a run that finished after its sweep process went
  away (a server stopped during the run's last step) counts as finished on resume, not run again.
  A dead process on this host is seen at once (``store.process_token``); one on another machine when its
  heartbeat (every :data:`HEARTBEAT_S` s) is older than :data:`GRACE_S` s.

This module imports no torch and no streamlit; optuna is imported lazily.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import socket
import threading
import time
import typing
from dataclasses import MISSING, asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, Callable

from tl_core.config import RunConfig

log = logging.getLogger(__name__)

SAMPLERS = {"grid": "every combination of the listed values", "random": "independent random draws",
            "tpe": "Bayesian optimisation (Tree-structured Parzen Estimator)"}
STUDY_FILE = "sweeps.db"
HEARTBEAT_S = 30
GRACE_S = 120
ORACLE_LABEL = "oracle: uses target labels"
#: Criteria and their direction when tl_core.selection is not there (its registry is the owner).
_FALLBACK_CRITERIA = {"source_val_acc": True}


class SweepError(ValueError):
    """A sweep spec or a study that cannot be used; the message says what and how to fix it."""


# ------------------------------------------------------------------ criteria (asked of tl_core.selection)
def criteria() -> dict[str, bool]:
    """Label-free criteria a sweep may optimise: name -> higher is better."""
    try:
        from tl_core import selection
    except ImportError:
        return dict(_FALLBACK_CRITERIA)
    return {name: c.higher_is_better for name, c in selection.CRITERIA.items()}


def default_criterion() -> str:
    try:
        from tl_core.selection import DEFAULT_CRITERION
    except ImportError:
        return "source_val_acc"
    return DEFAULT_CRITERION


def criterion_label(name: str) -> str:
    try:
        from tl_core import selection

        return selection.get(name).label
    except (ImportError, KeyError):
        return name


# ------------------------------------------------------------------ fields
def _field_type(path: str) -> type:
    """The type of the RunConfig field at a dotted path (RunConfig is the one owner of what exists).

    ``method.params.NAME`` is a setting of a registered method or extra (its declared type).

    Raises:
        SweepError: no such field, naming the known ones.
    """
    parts = path.split(".")
    if len(parts) == 3 and parts[:2] == ["method", "params"]:
        from tl_core.methods import all_extras, all_methods, param_specs

        for cls in [*all_methods().values(), *all_extras().values()]:
            for spec in param_specs(cls.Params):
                if spec.name == parts[2]:
                    return spec.type if spec.type in (int, float, bool, str) else str
        raise SweepError(f"{path}: no registered method or extra has a setting '{parts[2]}'.")
    obj: Any = RunConfig
    for i, name in enumerate(parts):
        hints = typing.get_type_hints(obj)
        known = [f.name for f in fields(obj)]
        if name not in known:
            where = ".".join(parts[:i]) or "RunConfig"
            raise SweepError(f"{path}: {where} has no field '{name}'; known: {', '.join(known)}.")
        t = hints[name]
        if i < len(parts) - 1:
            if not (isinstance(t, type) and is_dataclass(t)):
                raise SweepError(f"{path}: '{'.'.join(parts[:i + 1])}' is a single setting, not a section.")
            obj = t
            continue
        if isinstance(t, type) and is_dataclass(t):
            sub = ", ".join(f"{path}.{f.name}" for f in fields(t))
            raise SweepError(f"{path}: is a section; sweep one of its settings: {sub}.")
        args = [a for a in typing.get_args(t) if a is not type(None)]
        t = args[0] if args else t
        if t not in (int, float, bool, str):
            raise SweepError(f"{path}: a {getattr(t, '__name__', t)} cannot be swept; sweep single values.")
        return t
    raise SweepError(f"{path}: not a field")  # pragma: no cover (the loop returns)


def _convert(path: str, t: type, text: str) -> Any:
    text = text.strip()
    try:
        if t is bool:
            if text.lower() not in ("true", "false", "1", "0", "yes", "no", "on", "off"):
                raise ValueError(text)
            return text.lower() in ("true", "1", "yes", "on")
        if t is int:
            return int(text)
        if t is float:
            v = float(text)
            if not math.isfinite(v):
                raise ValueError(text)
            return v
        return text
    except ValueError:
        raise SweepError(f"{path}: '{text}' is not a {t.__name__}.") from None


@dataclass
class Param:
    """One swept field: a list of values (grid, or a choice for random/TPE) or a range (random/TPE)."""

    path: str
    values: list[Any] | None = None
    low: float | None = None
    high: float | None = None
    log: bool = False

    @property
    def is_range(self) -> bool:
        return self.values is None

    def describe(self) -> str:
        if self.values is not None:
            return f"{self.path} ∈ {{{', '.join(map(str, self.values))}}}"
        return f"{self.path} ∈ [{self.low}, {self.high}]" + (" (log)" if self.log else "")


def parse_set(text: str) -> Param:
    """``PATH=V1,V2,...`` (values) or ``PATH=LOW:HIGH[:log]`` (a range) into a Param, typed by RunConfig.

    Raises:
        SweepError: no '=', an unknown field, a value of the wrong type, an empty or reversed range.
    """
    path, eq, rhs = text.partition("=")
    path = path.strip()
    if not eq or not path or not rhs.strip():
        raise SweepError(f"--set {text!r}: write PATH=V1,V2 (values) or PATH=LOW:HIGH[:log] (a range), "
                         "e.g. optim.lr=0.01,0.03 or optim.lr=1e-4:1e-1:log.")
    t = _field_type(path)
    if ":" in rhs and t in (int, float) and "," not in rhs:
        bits = rhs.split(":")
        log_scale = len(bits) == 3 and bits[2].strip().lower() == "log"
        if len(bits) not in (2, 3) or (len(bits) == 3 and not log_scale):
            raise SweepError(f"--set {text!r}: a range is LOW:HIGH or LOW:HIGH:log.")
        low, high = _convert(path, t, bits[0]), _convert(path, t, bits[1])
        if not low < high:
            raise SweepError(f"--set {text!r}: LOW must be below HIGH.")
        if log_scale and low <= 0:
            raise SweepError(f"--set {text!r}: a log range needs LOW above 0.")
        return Param(path, low=low, high=high, log=log_scale)
    values = [_convert(path, t, v) for v in rhs.split(",") if v.strip()]
    if len(set(map(repr, values))) != len(values):
        raise SweepError(f"--set {text!r}: a value is listed twice.")
    return Param(path, values=values)


def apply(base: RunConfig | dict[str, Any], setting: dict[str, Any], seed: int | None = None) -> RunConfig:
    """A copy of ``base`` with each dotted path of ``setting`` set (``method.name`` first: a new method starts
    from its own defaults; a swept backbone gets its own image size unless that is swept too), and ``seed``."""
    cfg = RunConfig.from_dict(base.to_dict() if isinstance(base, RunConfig) else json.loads(json.dumps(base)))
    items = sorted(setting.items(), key=lambda kv: kv[0] != "method.name")
    for path, value in items:
        parts = path.split(".")
        if parts[:2] == ["method", "params"]:
            cfg.method.params = {**cfg.method.params, parts[2]: value}
            continue
        if path == "method.name" and value != cfg.method.name:
            cfg.method.name, cfg.method.params = value, {}
            continue
        obj: Any = cfg
        for name in parts[:-1]:
            obj = getattr(obj, name)
        setattr(obj, parts[-1], value)
    if "model.backbone" in setting and "data.image_size" not in setting:
        from tl_core.backbones import default_image_size  # the size its weights were trained at (one owner)

        try:
            cfg.data.image_size = default_image_size(cfg.model.backbone)
        except KeyError:
            pass  # an unknown backbone: validate() says so
    if seed is not None:
        cfg.seed = int(seed)
    return cfg


def setting_label(setting: dict[str, Any]) -> str:
    """'optim.lr=0.01 method.name=dann' in the order of the keys."""
    return " ".join(f"{k}={_fmt(v)}" for k, v in setting.items())


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


# ------------------------------------------------------------------ the spec
@dataclass
class SweepSpec:
    """Everything a sweep needs; stored in its study so any worker can run it."""

    params: list[Param]
    base: dict[str, Any] = field(default_factory=lambda: RunConfig().to_dict())
    seeds: list[int] = field(default_factory=lambda: [0])
    sampler: str = "grid"
    trials: int | None = None       # budget in trials (settings); grid: at most every combination
    timeout_s: float | None = None  # budget in seconds, for each worker's loop
    objective: str = ""             # a label-free criterion (tl_core.selection); "" = the default one
    sampler_seed: int = 0

    def __post_init__(self) -> None:
        self.objective = self.objective or default_criterion()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "SweepSpec":
        d = dict(d)
        d["params"] = [Param(**p) for p in d.get("params", [])]
        return cls(**d)

    @property
    def higher_is_better(self) -> bool:
        return criteria().get(self.objective, True)

    def grid(self) -> dict[str, list[Any]]:
        return {p.path: list(p.values or []) for p in self.params}

    def n_grid(self) -> int:
        return math.prod(len(p.values or []) for p in self.params)

    def budget_trials(self) -> int | None:
        """Settings this sweep tries in all: the grid's combinations (or fewer), or the trial budget."""
        if self.sampler == "grid":
            return min(self.n_grid(), self.trials) if self.trials else self.n_grid()
        return self.trials

    def problems(self) -> list[str]:
        """Every reason the spec cannot run (each names its field), checking each grid combination's config
        with RunConfig.validate()."""
        errs: list[str] = []
        if not self.params:
            errs.append("sweep: give at least one field to sweep (--set PATH=V1,V2).")
        paths = [p.path for p in self.params]
        if len(set(paths)) != len(paths):
            errs.append("sweep: a field is swept twice; give each --set once.")
        if self.sampler not in SAMPLERS:
            errs.append(f"sampler: '{self.sampler}' is not one of {', '.join(SAMPLERS)}.")
        if self.sampler == "grid" and any(p.is_range for p in self.params):
            errs.append("sampler: grid needs a list of values for every field (PATH=V1,V2); ranges are for random "
                        "and tpe.")
        if self.sampler != "grid" and not self.trials and not self.timeout_s:
            errs.append("budget: random and tpe need a budget: --trials N and/or --timeout SECONDS.")
        if self.trials is not None and self.trials < 1:
            errs.append("budget: --trials must be at least 1.")
        if self.timeout_s is not None and self.timeout_s <= 0:
            errs.append("budget: --timeout must be above 0 seconds.")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds) or any(s < 0 for s in self.seeds):
            errs.append("seeds: give one or more different seeds of 0 or more.")
        known = criteria()
        if self.objective not in known:
            errs.append(f"objective: '{self.objective}' is not a label-free criterion; known: {', '.join(known)} "
                        "(target accuracy is never an objective: it needs target labels).")
        if errs:
            return errs
        try:
            RunConfig.from_dict(self.base)
        except (ValueError, TypeError) as e:
            return [f"base config: {e}"]
        points: list[dict[str, Any]] = []
        if self.sampler == "grid":
            points = [dict(zip(paths, combo)) for combo in itertools.product(*self.grid().values())]
        else:  # each value alone, and the ends of each range
            for p in self.params:
                points += [{p.path: v} for v in (p.values if p.values is not None else [p.low, p.high])]
        seen: set[str] = set()
        for point in points[:256]:
            for msg in apply(self.base, point, self.seeds[0]).validate():
                if msg not in seen:
                    seen.add(msg)
                    errs.append(f"{setting_label(point)}: {msg}")
        return errs


# ------------------------------------------------------------------ storage and study
def default_storage(home: str | Path | None = None) -> str:
    """``sqlite:///$TL_HOME/sweeps.db``."""
    from tl_core.store import default_home

    path = Path(home) if home is not None else default_home()
    path.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{(path / STUDY_FILE).resolve()}"


def _storage(url: str) -> Any:
    import optuna

    import warnings

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # run_worker records heartbeats and fails stale trials itself (ask/tell, not Study.optimize)
    warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        kwargs["connect_args"] = {"timeout": 60}  # two workers on one file wait for each other's writes
    try:
        return optuna.storages.RDBStorage(url, engine_kwargs=kwargs, heartbeat_interval=HEARTBEAT_S,
                                          grace_period=GRACE_S, heartbeat_stale_trial_callback=_retry_stale)
    except ImportError as e:  # the URL's database driver is not installed (none is in requirements.txt)
        raise SweepError(f"cannot open the sweep storage {_safe_url(url)}: its database driver is not installed "
                         f"({e.__cause__ or e}); install it in this environment and name it in the URL, e.g. "
                         "pip install psycopg2-binary for postgresql+psycopg2://..., pip install pymysql for "
                         "mysql+pymysql://... (docs/SWEEPS.md)") from e
    except Exception as e:  # a bad URL, a server that does not answer, no right to create tables
        raise SweepError(f"cannot open the sweep storage {_safe_url(url)}: {e}") from e


def _safe_url(url: str) -> str:
    """The URL with any password hidden (it is printed and stored in messages)."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<storage URL>"


def _sampler(spec: SweepSpec) -> Any:
    import optuna

    if spec.sampler == "grid":
        class _Grid(optuna.samplers.GridSampler):
            def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
                pass  # Optuna's stops study.optimize here; run_worker counts the budget itself

        return _Grid(spec.grid(), seed=spec.sampler_seed)
    if spec.sampler == "random":
        return optuna.samplers.RandomSampler(seed=spec.sampler_seed)
    return optuna.samplers.TPESampler(seed=spec.sampler_seed, n_startup_trials=min(5, spec.trials or 5))


def create_study(spec: SweepSpec, storage: str, name: str, origin: str = "cli") -> Any:
    """Create the study ``name`` holding ``spec`` (or open it when it holds the same spec: a resume).

    Raises:
        SweepError: the spec has problems, or a study of that name holds a different spec.
    """
    import optuna

    problems = spec.problems()
    if problems:
        raise SweepError("the sweep cannot start:\n  " + "\n  ".join(problems))
    st = _storage(storage)
    direction = "maximize" if spec.higher_is_better else "minimize"
    study = optuna.create_study(storage=st, study_name=name, direction=direction, sampler=_sampler(spec),
                                load_if_exists=True)
    held = study.user_attrs.get("spec")
    if held is None:
        study.set_user_attr("spec", spec.to_dict())
        study.set_user_attr("origin", origin)
        study.set_user_attr("created", time.time())
    elif held != json.loads(json.dumps(spec.to_dict())):
        raise SweepError(f"a sweep named '{name}' already exists with other settings; resume it with "
                         f"`python -m tl_core sweep-worker --study {name}` or choose another --study name.")
    study.set_user_attr("stopped", False)
    return study


def load_study(storage: str, name: str) -> tuple[Any, SweepSpec]:
    """The study ``name`` and its spec.

    Raises:
        SweepError: no such study (naming the ones there), or one that is not a Transfer Lab sweep.
    """
    import optuna

    st = _storage(storage)
    names = [s.study_name for s in optuna.get_all_study_summaries(st, include_best_trial=False)]
    if name not in names:
        raise SweepError(f"no sweep named '{name}' in {_safe_url(storage)}; there: {', '.join(names) or 'none'}.")
    probe = optuna.load_study(study_name=name, storage=st)
    if "spec" not in probe.user_attrs:
        raise SweepError(f"study '{name}' is not a Transfer Lab sweep (it holds no sweep spec).")
    spec = SweepSpec.from_dict(probe.user_attrs["spec"])
    return optuna.load_study(study_name=name, storage=st, sampler=_sampler(spec)), spec


def list_studies(storage: str) -> list[str]:
    """Names of the sweeps in ``storage``, oldest first (none when the file does not exist yet)."""
    import optuna

    if storage.startswith("sqlite:///") and not Path(storage[len("sqlite:///"):]).exists():
        return []
    out = []
    for s in optuna.get_all_study_summaries(_storage(storage), include_best_trial=False):
        if "spec" in s.user_attrs:
            out.append((s.user_attrs.get("created", 0), s.study_name))
    return [n for _, n in sorted(out)]


def new_study_name() -> str:
    return time.strftime("sweep-%Y%m%d-%H%M%S")


# ------------------------------------------------------------------ running trials
@dataclass
class RunResult:
    """One seed's run of a setting, as the sweep records it (JSON in the trial's ``runs`` attribute)."""

    run_id: str
    status: str
    score: float | None = None            # the objective's label-free score of the chosen checkpoint
    target_test_acc: float | None = None  # reporting only: the chosen checkpoint's target accuracy
    duration_s: float | None = None
    error: str | None = None


def read_result(store: Any, run_id: str, objective: str) -> RunResult:
    """A finished run's score on ``objective`` and its target accuracy, from the store.

    The run's own choice (``summary['chosen']``, tl_core.selection) when it chose by this criterion; else
    the last epoch's value of the criterion (every evaluation writes each criterion into the epoch metrics).
    """
    rec = store.get_run(run_id)
    if rec is None:
        return RunResult(run_id, "deleted", error="the run was deleted")
    chosen = rec.summary.get("chosen") or {}
    score = target = None
    if chosen.get("criterion") == objective:
        score, target = chosen.get("score"), chosen.get("target_test_acc")
    else:
        epochs = store.epoch_metrics(run_id)
        if len(epochs) and objective in epochs:
            score = float(epochs[objective].iloc[-1])
        if len(epochs) and "target_test_acc" in epochs:
            target = float(epochs["target_test_acc"].iloc[-1])
        target = chosen.get("target_test_acc", target)
    score = float(score) if score is not None and math.isfinite(float(score)) else None
    target = float(target) if target is not None and math.isfinite(float(target)) else None
    return RunResult(run_id, rec.status, score, target, rec.duration_s, rec.error)


class ManagerExecutor:
    """Runs a trial's configs through a JobManager (the dashboard's queue, or the command line's own)."""

    def __init__(self, manager: Any, owner: str | None = None) -> None:
        self.manager, self.owner = manager, owner
        self.active: list[str] = []

    def submit(self, cfg: RunConfig) -> str:
        run_id = self.manager.submit(cfg, owner=self.owner)
        self.active.append(run_id)
        return run_id

    def wait(self, run_id: str, stop: threading.Event, beat: Callable[[], None]) -> None:
        last = 0.0
        while self.manager.is_active(run_id):
            if stop.is_set():
                self.manager.cancel(run_id)
            if time.monotonic() - last > HEARTBEAT_S:
                beat()
                last = time.monotonic()
            time.sleep(0.1)
        self.active = [r for r in self.active if r != run_id]

    def cancel_all(self) -> None:
        for run_id in list(self.active):
            self.manager.cancel(run_id)


def _token() -> str:
    from tl_core.store import process_token

    return process_token()


def _owner_dead(token: str | None) -> bool:
    """A trial's worker token names a process of this host that is gone (other hosts: the heartbeat decides)."""
    from tl_core.store import _process_alive

    if not token or token.rsplit(":", 2)[0] != socket.gethostname():
        return False
    return not _process_alive(token)


def _setting_of(trial: Any, spec: SweepSpec | None = None) -> dict[str, Any]:
    """The setting a trial tries: its parameters, its enqueued ones, or (grid) its grid point."""
    setting = dict(trial.params) or dict(trial.system_attrs.get("fixed_params", {}))
    if not setting and spec is not None and spec.sampler == "grid" and "grid_id" in trial.system_attrs:
        grid = dict(sorted(spec.grid().items()))  # Optuna's GridSampler orders the fields by name
        combo = list(itertools.product(*grid.values()))[int(trial.system_attrs["grid_id"])]
        setting = dict(zip(grid, combo))
    return setting


def _retry(study: Any, trial: Any, why: str) -> None:
    """Enqueue ``trial``'s setting again with the seeds it finished (a trial that was running when stopped
    or killed)."""
    spec = SweepSpec.from_dict(study.user_attrs["spec"]) if "spec" in study.user_attrs else None
    setting = _setting_of(trial, spec)
    if setting:
        study.enqueue_trial(setting, user_attrs={"runs": trial.user_attrs.get("runs", {}), "retry_of": trial.number,
                                                 "retry_reason": why})


def _retry_stale(study: Any, trial: Any) -> None:
    """Optuna's heartbeat callback: a trial of a machine that stopped beating runs again."""
    _retry(study, trial, "heartbeat stopped")


def recover_stale(study: Any) -> int:
    """Fail the running trials whose process is gone and enqueue their settings again; returns how many.

    On this host a dead process is seen at once; on other machines, when the trial's heartbeat is older than
    GRACE_S (Optuna's ``fail_stale_trials``, which calls :func:`_retry_stale`).
    """
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.storages import fail_stale_trials
    from optuna.trial import TrialState

    n = 0
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if not _owner_dead(t.user_attrs.get("worker")):
            continue
        try:
            if study._storage.set_trial_state_values(t._trial_id, TrialState.FAIL):
                _retry(study, t, "process gone")
                n += 1
        except UpdateFinishedTrialError:
            pass  # another worker failed it first, and enqueued it
    fail_stale_trials(study)
    return n


def _retried(trials: list[Any]) -> set[int]:
    """Numbers of the trials that were enqueued again (their setting runs in a later trial)."""
    return {int(t.user_attrs["retry_of"]) for t in trials if "retry_of" in t.user_attrs}


def _counts(t: Any, retried: set[int]) -> bool:
    """Whether a trial counts toward the budget: complete, running, or failed for a reason of its setting
    (not one stopped and enqueued again, not one left unrun because the grid was taken)."""
    from optuna.trial import TrialState

    if t.state in (TrialState.COMPLETE, TrialState.RUNNING):
        return True
    return t.state == TrialState.FAIL and t.number not in retried and not t.user_attrs.get("not_run")


def _settle(study: Any, spec: SweepSpec) -> tuple[int, int]:
    """(settings finished or taken, settings waiting in the queue) — the budget's count."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    retried = _retried(trials)
    done = sum(1 for t in trials if _counts(t, retried))
    return done, sum(1 for t in trials if t.state == TrialState.WAITING)


def _taken(study: Any, trial: Any, setting: dict[str, Any]) -> bool:
    """Whether another trial already has this setting: finished (and not enqueued again), waiting in the
    queue, or running with a lower number (of two workers that drew one setting at once, the first keeps it).

    A grid trial numbered below the grid's size has a point of its own (Optuna's GridSampler gives point
    *n* to trial *n*), so only trials after a retry or past the grid can meet one here.
    """
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    retried = _retried(trials)
    for t in trials:
        if t.number == trial.number or t.user_attrs.get("not_run") or _setting_of(t) != setting:
            continue
        if t.state in (TrialState.COMPLETE, TrialState.WAITING) or (
                t.state == TrialState.FAIL and t.number not in retried) or (
                t.state == TrialState.RUNNING and t.number < trial.number):
            return True
    return False


def _suggest(trial: Any, spec: SweepSpec) -> dict[str, Any]:
    out = {}
    for p in spec.params:
        if p.values is not None:
            out[p.path] = trial.suggest_categorical(p.path, p.values)
        elif isinstance(p.low, int) and isinstance(p.high, int):
            out[p.path] = trial.suggest_int(p.path, p.low, p.high, log=p.log)
        else:
            out[p.path] = trial.suggest_float(p.path, float(p.low), float(p.high), log=p.log)
    return out


def run_worker(study: Any, spec: SweepSpec, executor: Any, stop: threading.Event | None = None,
               on_trial: Callable[[Any], None] | None = None, name_prefix: str = "") -> int:
    """Run trials of ``study`` until its budget is spent, ``stop`` is set, or the time budget passes.

    Returns the number of trials this worker finished. ``on_trial(frozen_trial)`` is called after each
    finished trial (the command line's lines; tests use it as a stop hook). A stop leaves the running
    trial failed and enqueued again with the seeds it finished.
    """
    from optuna.trial import TrialState

    stop = stop or threading.Event()
    t0, finished, me = time.monotonic(), 0, _token()
    budget = spec.budget_trials()
    label = name_prefix or study.study_name
    while not stop.is_set():
        if spec.timeout_s and time.monotonic() - t0 > spec.timeout_s:
            break
        recover_stale(study)
        done, waiting = _settle(study, spec)
        if budget is not None and done >= budget and not waiting:
            break
        trial = study.ask()
        trial.set_user_attr("worker", me)
        study._storage.record_heartbeat(trial._trial_id)
        setting = _suggest(trial, spec)
        if _taken(study, trial, setting):
            # Optuna's grid sampler re-offers a point once every point is taken (another worker runs it, or it
            # was enqueued again): a setting is never run twice
            trial.set_user_attr("not_run", "this setting is taken by another trial")
            study.tell(trial, state=TrialState.FAIL)
            continue
        runs: dict[str, dict[str, Any]] = dict(trial.user_attrs.get("runs", {}))
        interrupted = False
        for seed in spec.seeds:
            prev = runs.get(str(seed)) or {}
            if prev.get("status") != "completed" and prev.get("run_id"):
                # submitted by a process that stopped while waiting for it: the run may have finished anyway
                # (its last step was under way when the server went away): then it is this seed's result
                res = read_result(executor.manager.store, prev["run_id"], spec.objective)
                if res.status == "completed":
                    prev = runs[str(seed)] = asdict(res)
                    trial.set_user_attr("runs", runs)
            if prev.get("status") == "completed":
                continue  # finished before the process that ran this setting stopped
            cfg = apply(spec.base, setting, seed)
            cfg.snapshot.enabled = False  # a sweep compares scores; feature pictures would cost most of a run
            if hasattr(cfg, "selection"):
                cfg.selection.criterion = spec.objective  # each run chooses its checkpoint by the objective
            cfg.name = f"{label} #{trial.number} · {setting_label(setting)} · seed {seed}"
            try:
                run_id = executor.submit(cfg)
            except ValueError as e:  # tl_core.jobs.ConfigError: this setting cannot run here
                runs[str(seed)] = asdict(RunResult("", "failed", error=str(e)))
                trial.set_user_attr("runs", runs)
                continue
            # recorded at once: if this process goes away before the run ends, a resume finds the run by its id
            runs[str(seed)] = asdict(RunResult(run_id, "running"))
            trial.set_user_attr("runs", runs)
            executor.wait(run_id, stop, lambda: study._storage.record_heartbeat(trial._trial_id))
            res = read_result(executor.manager.store, run_id, spec.objective)
            if res.status in ("stopped", "interrupted") and stop.is_set():
                interrupted = True
                break
            runs[str(seed)] = asdict(res)
            trial.set_user_attr("runs", runs)
        if interrupted:
            study.tell(trial, state=TrialState.FAIL)
            _retry(study, study._storage.get_trial(trial._trial_id), "stopped")
            break
        scores = [r["score"] for r in runs.values() if r["status"] == "completed" and r["score"] is not None]
        if len(scores) == len(spec.seeds):
            study.tell(trial, sum(scores) / len(scores))
        else:
            bad = [f"seed {s}: {r['status']}" + (f" ({r['error']})" if r.get("error") else "")
                   for s, r in runs.items() if r["status"] != "completed" or r["score"] is None]
            trial.set_user_attr("failed", "; ".join(bad)[:500])
            study.tell(trial, state=TrialState.FAIL)
        finished += 1
        if on_trial is not None:
            on_trial(study._storage.get_trial(trial._trial_id))
    return finished


def request_stop(study: Any) -> None:
    """Mark the sweep stopped by its user (the dashboard does not resume it after a restart)."""
    study.set_user_attr("stopped", True)


# ------------------------------------------------------------------ results
@dataclass
class Group:
    """One setting: its runs over the seeds, the mean ± std of the objective and of target accuracy."""

    setting: dict[str, Any]
    trials: list[int]
    runs: dict[str, dict[str, Any]]
    score_mean: float | None
    score_std: float | None
    target_mean: float | None
    target_std: float | None
    state: str  # complete, running, failed

    @property
    def label(self) -> str:
        return setting_label(self.setting)


def _mean_std(xs: list[float]) -> tuple[float | None, float | None]:
    if not xs:
        return None, None
    m = sum(xs) / len(xs)
    sd = math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1)) if len(xs) > 1 else 0.0
    return m, sd


@dataclass
class Results:
    name: str
    spec: SweepSpec
    groups: list[Group]
    chosen: Group | None     # best mean objective (label-free)
    oracle: Group | None     # best mean target accuracy: uses target labels
    n_complete: int
    n_running: int
    n_failed: int
    stopped: bool

    def to_json(self) -> dict[str, Any]:
        def g(x: Group | None) -> dict[str, Any] | None:
            return None if x is None else {
                "setting": x.setting, "score_mean": x.score_mean, "score_std": x.score_std,
                "target_test_acc_mean": x.target_mean, "target_test_acc_std": x.target_std,
                "run_ids": [r["run_id"] for r in x.runs.values()]}
        return {"study": self.name, "sampler": self.spec.sampler, "objective": self.spec.objective,
                "seeds": self.spec.seeds, "trials_complete": self.n_complete, "trials_failed": self.n_failed,
                "runs": sum(len(x.runs) for x in self.groups),
                "groups": [{**g(x), "state": x.state} for x in self.groups],
                "chosen": g(self.chosen), "oracle": {**(g(self.oracle) or {}), "note": ORACLE_LABEL}}


def results(study: Any, spec: SweepSpec) -> Results:
    """The sweep's runs grouped by setting (several trials of one setting merge), the label-free choice and
    the oracle."""
    from optuna.trial import TrialState

    by_key: dict[str, Group] = {}
    n_complete = n_running = n_failed = 0
    trials = study.get_trials(deepcopy=False)
    retried = _retried(trials)
    for t in trials:
        if t.state == TrialState.WAITING or t.user_attrs.get("not_run"):
            continue
        setting = _setting_of(t, spec)
        if not setting:
            continue
        setting = {p.path: setting[p.path] for p in spec.params if p.path in setting}
        key = json.dumps(setting, sort_keys=True)
        grp = by_key.setdefault(key, Group(setting, [], {}, None, None, None, None, "failed"))
        grp.trials.append(t.number)
        for seed, r in (t.user_attrs.get("runs") or {}).items():
            if r.get("status") == "completed" or seed not in grp.runs:
                grp.runs[seed] = r
        if t.state == TrialState.COMPLETE:
            n_complete += 1
            grp.state = "complete"
        elif t.state == TrialState.RUNNING:
            n_running += 1
            if grp.state != "complete":
                grp.state = "running"
        elif _counts(t, retried):
            n_failed += 1
    groups = [g for g in by_key.values() if g.runs or g.state != "failed"]
    for g in groups:
        ok = [r for r in g.runs.values() if r.get("status") == "completed"]
        g.score_mean, g.score_std = _mean_std([r["score"] for r in ok if r.get("score") is not None])
        g.target_mean, g.target_std = _mean_std([r["target_test_acc"] for r in ok
                                                 if r.get("target_test_acc") is not None])
    done = [g for g in groups if g.state == "complete" and g.score_mean is not None]
    sign = 1 if spec.higher_is_better else -1
    chosen = max(done, key=lambda g: sign * g.score_mean, default=None)
    oracle = max((g for g in done if g.target_mean is not None), key=lambda g: g.target_mean, default=None)
    groups.sort(key=lambda g: (g.state != "complete", -(sign * g.score_mean) if g.score_mean is not None else 0))
    return Results(study.study_name, spec, groups, chosen, oracle, n_complete, n_running, n_failed,
                   bool(study.user_attrs.get("stopped")))


def progress(study: Any, spec: SweepSpec, store: Any | None = None) -> dict[str, Any]:
    """Runs done of the sweep's total, and an ETA from the mean duration of its finished runs.

    ``total`` is None when only a time budget bounds the sweep (then ``eta_s`` is the time left).
    """
    from optuna.trial import TrialState

    res = results(study, spec)
    durations = [r["duration_s"] for g in res.groups for r in g.runs.values()
                 if r.get("status") == "completed" and r.get("duration_s")]
    done_runs = sum(1 for g in res.groups for r in g.runs.values() if r.get("status") == "completed")
    budget = spec.budget_trials()
    total = budget * len(spec.seeds) if budget else None
    running = [t for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))]
    eta = None
    if total is not None and durations:
        eta = max(0.0, (total - done_runs) * sum(durations) / len(durations))
    if spec.timeout_s:
        created = study.user_attrs.get("created") or time.time()
        left = max(0.0, spec.timeout_s - (time.time() - created))
        eta = left if eta is None else min(eta, left)
    finished = (budget is not None and res.n_complete + res.n_failed >= budget and not running)
    return {"done": done_runs if total is None else min(done_runs, total), "total": total, "eta_s": eta,
            "running": len(running), "finished": finished, "stopped": res.stopped}


def format_table(res: Results) -> str:
    """The grouped table the command line prints: one line per setting, mean ± std over the seeds."""
    crit = criterion_label(res.spec.objective)
    head = ["setting", "seeds", f"{res.spec.objective} (mean ± std)", "target acc % (mean ± std)", "state"]
    rows = []
    for g in res.groups:
        n_ok = sum(1 for r in g.runs.values() if r.get("status") == "completed")
        score = "–" if g.score_mean is None else f"{g.score_mean:.4f} ± {g.score_std:.4f}"
        target = "–" if g.target_mean is None else f"{100 * g.target_mean:.1f} ± {100 * g.target_std:.1f}"
        rows.append([g.label, f"{n_ok}/{len(res.spec.seeds)}", score, target, g.state])
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)) for r in [head, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    if res.chosen is not None:
        lines.append(f"label-free choice ({crit}, {'higher' if res.spec.higher_is_better else 'lower'} is better): "
                     f"{res.chosen.label}  target acc {fmt_pct(res.chosen.target_mean)}")
    if res.oracle is not None:
        lines.append(f"best target accuracy ({ORACLE_LABEL}): {res.oracle.label}  "
                     f"target acc {fmt_pct(res.oracle.target_mean)}")
    return "\n".join(lines)


def fmt_pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f} %"


# ------------------------------------------------------------------ dashboard driver
class SweepDriver:
    """A sweep run for the dashboard: a thread (started here in tl_core, never calling Streamlit) that runs
    :func:`run_worker` with the dashboard's job manager. One per study per process (:func:`drive`)."""

    def __init__(self, manager: Any, storage: str, name: str, owner: str | None) -> None:
        self.manager, self.storage, self.name, self.owner = manager, storage, name, owner
        self.stop = threading.Event()
        self.error: str | None = None
        self.executor = ManagerExecutor(manager, owner)
        self.thread = threading.Thread(target=self._run, name=f"tl-sweep-{name}", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            study, spec = load_study(self.storage, self.name)
            run_worker(study, spec, self.executor, self.stop)
        except Exception as e:  # a storage error: shown on the page, the server goes on
            log.exception("sweep %s stopped on an error", self.name)
            self.error = f"{type(e).__name__}: {e}"

    def alive(self) -> bool:
        return self.thread.is_alive()

    def request_stop(self) -> None:
        self.stop.set()
        self.executor.cancel_all()


_DRIVERS: dict[tuple[str, str], SweepDriver] = {}
_DRIVERS_LOCK = threading.Lock()


def drive(manager: Any, storage: str, name: str, owner: str | None = None) -> SweepDriver:
    """Start (or return the live) driver of sweep ``name`` in this process."""
    with _DRIVERS_LOCK:
        d = _DRIVERS.get((storage, name))
        if d is None or not d.alive():
            d = _DRIVERS[(storage, name)] = SweepDriver(manager, storage, name, owner)
        return d


def driver(storage: str, name: str) -> SweepDriver | None:
    """The live driver of sweep ``name`` in this process, if any."""
    with _DRIVERS_LOCK:
        d = _DRIVERS.get((storage, name))
        return d if d is not None and d.alive() else None


def driver_error(storage: str, name: str) -> str | None:
    """Why the last driver of sweep ``name`` in this process stopped, when an error stopped it."""
    with _DRIVERS_LOCK:
        d = _DRIVERS.get((storage, name))
        return d.error if d is not None else None


def stop(storage: str, name: str) -> None:
    """Stop a sweep: no new trial starts, queued runs are cancelled, the running one stops after its step."""
    study, _ = load_study(storage, name)
    request_stop(study)
    d = driver(storage, name)
    if d is not None:
        d.request_stop()


def resume_interrupted(manager: Any, storage: str) -> list[str]:
    """Restart the drivers of the dashboard's sweeps that a server restart interrupted (not finished, not
    stopped by their user, no driver here); returns their names."""
    out = []
    for name in list_studies(storage):
        study, spec = load_study(storage, name)
        if study.user_attrs.get("origin") != "dashboard" or study.user_attrs.get("stopped"):
            continue
        if driver(storage, name) is None and not progress(study, spec)["finished"]:
            drive(manager, storage, name, study.user_attrs.get("owner"))
            out.append(name)
    return out
