"""Run store: SQLite (WAL) for runs and metrics, one folder per run for artifacts.

Layout under ``TL_HOME`` (default ``~/.transfer-lab``)::

    runs.db                 runs, step_metrics, epoch_metrics, snapshots
    runs/<run_id>/          config.json, checkpoint.pt, backbone.safetensors, snapshots/

Every thread gets its own SQLite connection; WAL mode lets pages read while a worker
writes, so a reader never blocks the writer.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd

from tl_core.config import RunConfig

ACTIVE = ("queued", "running")
FINISHED = ("completed", "stopped", "failed", "diverged", "interrupted")
STATUSES = ACTIVE + FINISHED

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, status TEXT NOT NULL, config TEXT NOT NULL,
    created REAL NOT NULL, started REAL, finished REAL, error TEXT, hint TEXT,
    epoch INTEGER DEFAULT 0, step INTEGER DEFAULT 0, total_steps INTEGER DEFAULT 0,
    eta_s REAL, images_per_s REAL, owner TEXT, summary TEXT, resumed_from TEXT, worker TEXT,
    phase TEXT, phase_since REAL
);
CREATE TABLE IF NOT EXISTS step_metrics (
    run_id TEXT NOT NULL, step INTEGER NOT NULL, epoch INTEGER NOT NULL, t REAL NOT NULL,
    metrics TEXT NOT NULL, PRIMARY KEY (run_id, step)
);
CREATE TABLE IF NOT EXISTS epoch_metrics (
    run_id TEXT NOT NULL, epoch INTEGER NOT NULL, step INTEGER NOT NULL, t REAL NOT NULL,
    metrics TEXT NOT NULL, extra TEXT NOT NULL, PRIMARY KEY (run_id, epoch)
);
CREATE TABLE IF NOT EXISTS snapshots (
    run_id TEXT NOT NULL, idx INTEGER NOT NULL, step INTEGER NOT NULL, epoch INTEGER NOT NULL,
    t REAL NOT NULL, metrics TEXT NOT NULL DEFAULT '{}', projected INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (run_id, idx)
);
"""


#: Runs this process is working on (queued here or running here); see :meth:`RunStore.claim`.
_CLAIMED: set[tuple[str, str]] = set()
_CLAIMED_LOCK = threading.Lock()


def _proc_start(pid: int) -> str:
    """Start time of a process (clock ticks since boot, Linux); '' where unknown."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        return fields[19].decode()  # field 22 of stat, counting from 1, after "pid (comm)"
    except (OSError, IndexError):
        return ""


def process_token(pid: int | None = None) -> str:
    """``host:pid:start`` naming one process, so a later process can tell whether it still lives."""
    pid = os.getpid() if pid is None else pid
    return f"{socket.gethostname()}:{pid}:{_proc_start(pid)}"


def _process_alive(token: str | None) -> bool:
    """Whether the process named by ``token`` still runs (a zombie or a reused pid counts as dead).

    A token from another host cannot be checked and counts as dead, as every active run did before
    tokens were recorded (a server restarted in a new container gets a new host name).
    """
    try:
        host, pid_s, start = (token or "").rsplit(":", 2)
        pid = int(pid_s)
    except ValueError:
        return False
    if host != socket.gethostname() or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, owned by someone else
    except OSError:
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            if f.read().rsplit(b")", 1)[1].split()[0] == b"Z":
                return False
    except (OSError, IndexError):
        pass
    return not start or _proc_start(pid) in ("", start)


#: What an interrupted run says (a server that stopped while it was queued or training).
INTERRUPTED_ERROR = "The server stopped while this run was active."
INTERRUPTED_HINT = "Its metrics up to the last completed step are kept; resume it from its last checkpoint."


RESERVE_FILE = ".space-reserve"
RESERVE_BYTES = 1 << 20


#: A run's per-image training weights (re-weighting methods), in its folder.
WEIGHTS_FILE = "weights.npy"


class StoreError(RuntimeError):
    """The run store cannot be opened: TL_HOME is not writable, or runs.db is damaged. The message names
    the file and says what to do."""


def default_home() -> Path:
    """``TL_HOME`` if set, else ``~/.transfer-lab``."""
    return Path(os.environ.get("TL_HOME") or Path.home() / ".transfer-lab").expanduser()


@dataclass
class RunRecord:
    """One row of the runs table, decoded."""

    id: str
    name: str
    status: str
    config: dict[str, Any]
    created: float
    started: float | None = None
    finished: float | None = None
    error: str | None = None
    hint: str | None = None
    epoch: int = 0
    step: int = 0
    total_steps: int = 0
    eta_s: float | None = None
    images_per_s: float | None = None
    owner: str | None = None
    summary: dict[str, Any] = field(default_factory=dict)
    resumed_from: str | None = None
    worker: str | None = None  # process token of the process that queued or runs it
    phase: str | None = None   # what a running run does besides its steps ("loading and decoding the data")
    phase_since: float | None = None

    @property
    def active(self) -> bool:
        return self.status in ACTIVE

    @property
    def duration_s(self) -> float | None:
        if self.started is None:
            return None
        return (self.finished or time.time()) - self.started

    @property
    def progress(self) -> float:
        return min(1.0, self.step / self.total_steps) if self.total_steps else 0.0


class RunStore:
    """Thread-safe access to runs, metrics and artifacts under one home folder."""

    def __init__(self, home: str | Path | None = None) -> None:
        self.home = Path(home).expanduser() if home else default_home()
        self.db_path = self.home / "runs.db"
        self._local = threading.local()
        self._write_lock = threading.Lock()
        try:
            self.home.mkdir(parents=True, exist_ok=True)
            (self.home / "runs").mkdir(exist_ok=True)
            if not os.access(self.home, os.W_OK):
                raise PermissionError(f"no permission to write in {self.home}")
        except OSError as e:
            raise StoreError(f"TL_HOME ({self.home}) cannot be used for the run store: {e}. Point TL_HOME at a "
                             "folder you can write to (TL_HOME=/path/to/folder).") from e
        try:
            with self._write_lock:
                conn = self._conn()
                conn.executescript(_SCHEMA)
                cols = {r["name"] for r in conn.execute("PRAGMA table_info(runs)").fetchall()}
                if "worker" not in cols:  # a store written before runs recorded their process
                    conn.execute("ALTER TABLE runs ADD COLUMN worker TEXT")
                for col, kind in (("phase", "TEXT"), ("phase_since", "REAL")):  # before runs said their phase
                    if col not in cols:
                        conn.execute(f"ALTER TABLE runs ADD COLUMN {col} {kind}")
                conn.execute("SELECT id, config FROM runs LIMIT 1").fetchall()
            self.keep_reserve()
        except sqlite3.DatabaseError as e:
            self.close()
            if "full" in str(e).lower() or self.free_mb() < 1:  # SQLite says "disk I/O error" for a full disk too
                raise StoreError(f"The disk under TL_HOME ({self.home}) is full: {e} ({self.free_mb():.0f} MB "
                                 f"free). Free some space there, or point TL_HOME elsewhere.") from e
            raise StoreError(f"The run store {self.db_path} cannot be read ({e}). Restore it from a backup, or "
                             f"move it aside (mv {self.db_path} {self.db_path}.damaged) to start with an empty "
                             "store (the runs' folders stay under runs/), or point TL_HOME elsewhere.") from e

    # ------------------------------------------------------------ plumbing
    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.db_path, timeout=30, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=30000")
            conn.row_factory = sqlite3.Row
            self._local.conn = conn
        return conn

    def _write(self, sql: str, params: Iterable[Any] = ()) -> None:
        with self._write_lock:
            self._conn().execute(sql, tuple(params))

    def _write_many(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        with self._write_lock:
            conn = self._conn()
            conn.execute("BEGIN")
            try:
                conn.executemany(sql, rows)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:  # SQLite has already rolled back after SQLITE_FULL and some I/O errors
                    conn.execute("ROLLBACK")
                raise

    # ------------------------------------------------------- full disks
    def keep_reserve(self) -> None:
        """Hold RESERVE_BYTES of disk in TL_HOME/.space-reserve (best effort), so that when the disk fills
        up the end of a run can still be recorded: :meth:`release_reserve` frees it just for that."""
        path = self.home / RESERVE_FILE
        try:
            if not path.exists() or path.stat().st_size < RESERVE_BYTES:
                with open(path, "wb") as f:
                    f.write(b"\0" * RESERVE_BYTES)
        except OSError:
            try:
                path.unlink()  # a half-written reserve is no reserve
            except OSError:
                pass

    def release_reserve(self) -> bool:
        """Free the reserve (the disk is full); True if there was one."""
        try:
            (self.home / RESERVE_FILE).unlink()
            return True
        except OSError:
            return False

    def free_mb(self) -> float:
        """Free space on TL_HOME's filesystem, in MB."""
        return shutil.disk_usage(self.home).free / 2**20

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    # ---------------------------------------------------------------- runs
    def create_run(self, config: RunConfig, owner: str | None = None, resumed_from: str | None = None) -> str:
        run_id = time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
        self.run_dir(run_id).mkdir(parents=True, exist_ok=True)
        (self.run_dir(run_id) / "config.json").write_text(json.dumps(config.to_dict(), indent=2))
        self._write(
            "INSERT INTO runs (id, name, status, config, created, owner, resumed_from, worker) "
            "VALUES (?,?,?,?,?,?,?,?)",
            (run_id, config.label(), "queued", config.to_json(), time.time(), owner, resumed_from, process_token()),
        )
        return run_id

    def run_dir(self, run_id: str) -> Path:
        if not run_id or "/" in run_id or "\\" in run_id or run_id.startswith("."):
            raise ValueError(f"not a run id: {run_id!r}")
        return self.home / "runs" / run_id

    def get_run(self, run_id: str) -> RunRecord | None:
        row = self._conn().execute("SELECT * FROM runs WHERE id=?", (run_id,)).fetchone()
        return _record(row) if row else None

    def list_runs(self) -> list[RunRecord]:
        rows = self._conn().execute("SELECT * FROM runs ORDER BY created DESC").fetchall()
        return [_record(r) for r in rows]

    def config(self, run_id: str) -> RunConfig:
        rec = self.get_run(run_id)
        if rec is None:
            raise KeyError(f"no run with id {run_id}")
        return RunConfig.from_dict(rec.config)

    def set_status(self, run_id: str, status: str, error: str | None = None, hint: str | None = None) -> None:
        if status not in STATUSES:
            raise ValueError(f"unknown status {status!r}")
        now = time.time()
        if status == "running":
            self._write("UPDATE runs SET status=?, started=COALESCE(started, ?) WHERE id=?", (status, now, run_id))
        elif status in FINISHED:
            self._write("UPDATE runs SET status=?, finished=?, error=?, hint=?, eta_s=NULL, phase=NULL WHERE id=?",
                        (status, now, error, hint, run_id))
        else:
            self._write("UPDATE runs SET status=? WHERE id=?", (status, run_id))

    def set_progress(self, run_id: str, *, epoch: int, step: int, total_steps: int,
                     eta_s: float | None = None, images_per_s: float | None = None) -> None:
        self._write("UPDATE runs SET epoch=?, step=?, total_steps=?, eta_s=?, images_per_s=? WHERE id=?",
                    (epoch, step, total_steps, eta_s, images_per_s, run_id))

    def set_phase(self, run_id: str, phase: str | None) -> None:
        """What the run is doing now besides taking steps; None once it takes steps."""
        self._write("UPDATE runs SET phase=?, phase_since=? WHERE id=?", (phase, time.time() if phase else None,
                                                                        run_id))

    def set_summary(self, run_id: str, summary: dict[str, Any]) -> None:
        self._write("UPDATE runs SET summary=? WHERE id=?", (json.dumps(_plain(summary)), run_id))

    def add_warning(self, run_id: str, message: str) -> None:
        """Append a warning (e.g. unreadable images skipped) to the run's summary['warnings']."""
        with self._write_lock:
            conn = self._conn()
            row = conn.execute("SELECT summary FROM runs WHERE id=?", (run_id,)).fetchone()
            summary = json.loads(row["summary"]) if row and row["summary"] else {}
            warnings = summary.setdefault("warnings", [])
            if message not in warnings:
                warnings.append(message)
            conn.execute("UPDATE runs SET summary=? WHERE id=?", (json.dumps(_plain(summary)), run_id))

    def rename(self, run_id: str, name: str) -> None:
        name = name.strip()
        if not name:
            raise ValueError("a run name cannot be empty")
        self._write("UPDATE runs SET name=? WHERE id=?", (name[:200], run_id))

    def delete(self, run_id: str) -> None:
        rec = self.get_run(run_id)
        if rec is not None and rec.active:
            raise ValueError("stop the run before deleting it")
        with self._write_lock:
            conn = self._conn()
            for table, col in (("step_metrics", "run_id"), ("epoch_metrics", "run_id"),
                               ("snapshots", "run_id"), ("runs", "id")):
                conn.execute(f"DELETE FROM {table} WHERE {col}=?", (run_id,))
        shutil.rmtree(self.run_dir(run_id), ignore_errors=True)

    def claim(self, run_id: str) -> None:
        """Record that this process queues or runs ``run_id`` (call before it becomes active here).

        :meth:`mark_interrupted` in any process leaves a claimed run alone while this process lives.
        """
        with _CLAIMED_LOCK:
            _CLAIMED.add((str(self.db_path.resolve()), run_id))
        self._write("UPDATE runs SET worker=? WHERE id=?", (process_token(), run_id))

    def release(self, run_id: str) -> None:
        """This process no longer works on ``run_id`` (after its final status is written)."""
        with _CLAIMED_LOCK:
            _CLAIMED.discard((str(self.db_path.resolve()), run_id))

    def mark_interrupted(self) -> list[str]:
        """Runs left queued or running by a process that is gone become interrupted.

        A run whose process still lives (the dashboard while the command line starts, or the
        other way round) is left alone; so is a run this process has claimed.
        """
        me, db = process_token(), str(self.db_path.resolve())
        ids = []
        for r in self._conn().execute("SELECT id, worker FROM runs WHERE status IN ('queued','running')").fetchall():
            if r["worker"] == me:
                with _CLAIMED_LOCK:
                    live = (db, r["id"]) in _CLAIMED
            else:
                live = _process_alive(r["worker"])
            if not live:
                ids.append(r["id"])
        for run_id in ids:  # only if still active: it may have finished since the query
            self._write("UPDATE runs SET status='interrupted', finished=?, error=?, hint=?, eta_s=NULL "
                        "WHERE id=? AND status IN ('queued','running')",
                        (time.time(), INTERRUPTED_ERROR, INTERRUPTED_HINT, run_id))
        return ids

    # ------------------------------------------------------------- metrics
    def log_steps(self, run_id: str, rows: list[dict[str, Any]]) -> None:
        """Append step rows; each has 'step', 'epoch' and metric values."""
        if not rows:
            return
        now = time.time()
        data = []
        for r in rows:
            metrics = {k: v for k, v in r.items() if k not in ("step", "epoch")}
            data.append((run_id, int(r["step"]), int(r["epoch"]), r.get("t", now), json.dumps(_plain(metrics))))
        self._write_many("INSERT OR REPLACE INTO step_metrics VALUES (?,?,?,?,?)", data)

    def log_epoch(self, run_id: str, epoch: int, step: int, metrics: dict[str, Any],
                  extra: dict[str, Any] | None = None) -> None:
        self._write("INSERT OR REPLACE INTO epoch_metrics VALUES (?,?,?,?,?,?)",
                    (run_id, epoch, step, time.time(), json.dumps(_plain(metrics)), json.dumps(_plain(extra or {}))))

    def step_metrics(self, run_id: str, since_step: int = -1) -> pd.DataFrame:
        rows = self._conn().execute(
            "SELECT step, epoch, t, metrics FROM step_metrics WHERE run_id=? AND step>? ORDER BY step",
            (run_id, since_step)).fetchall()
        return pd.DataFrame([{"step": r["step"], "epoch": r["epoch"], "t": r["t"], **json.loads(r["metrics"])}
                             for r in rows], columns=None if rows else ["step", "epoch", "t"])

    def data_version(self, run_id: str) -> tuple[int, float, int]:
        """(evaluated epochs, time of the latest epoch row, projected snapshots) of a run, by two small
        queries: what the Monitor compares every refresh to know whether a new epoch or snapshot arrived,
        without reading the rows (an epoch row's extras hold a confusion matrix and misclassified images)."""
        conn = self._conn()
        n, t = conn.execute("SELECT COUNT(*), COALESCE(MAX(t), 0) FROM epoch_metrics WHERE run_id=?",
                            (run_id,)).fetchone()
        projected = conn.execute("SELECT COUNT(*) FROM snapshots WHERE run_id=? AND projected=1",
                                 (run_id,)).fetchone()[0]
        return int(n), float(t), int(projected)

    def epoch_metrics(self, run_id: str) -> pd.DataFrame:
        rows = self._conn().execute(
            "SELECT epoch, step, t, metrics, extra FROM epoch_metrics WHERE run_id=? ORDER BY epoch",
            (run_id,)).fetchall()
        return pd.DataFrame([{"epoch": r["epoch"], "step": r["step"], "t": r["t"], **json.loads(r["metrics"]),
                              "extra": json.loads(r["extra"])} for r in rows],
                            columns=None if rows else ["epoch", "step", "t", "extra"])

    def truncate_after(self, run_id: str, step: int, epoch: int) -> None:
        """Drop metrics written after a checkpoint (used when resuming)."""
        with self._write_lock:
            conn = self._conn()
            conn.execute("DELETE FROM step_metrics WHERE run_id=? AND step>?", (run_id, step))
            conn.execute("DELETE FROM epoch_metrics WHERE run_id=? AND epoch>?", (run_id, epoch))
            conn.execute("DELETE FROM snapshots WHERE run_id=? AND step>?", (run_id, step))  # mid-epoch ones too

    # ----------------------------------------------------------- snapshots
    def _snap_dir(self, run_id: str) -> Path:
        d = self.run_dir(run_id) / "snapshots"
        d.mkdir(parents=True, exist_ok=True)
        return d

    def save_snapshot_sample(self, run_id: str, **arrays: np.ndarray) -> None:
        """The fixed sample: labels, domains (0 source, 1 target), indices into each split."""
        np.savez_compressed(self._snap_dir(run_id) / "sample.npz", **arrays)

    def snapshot_sample(self, run_id: str) -> dict[str, np.ndarray] | None:
        path = self.run_dir(run_id) / "snapshots" / "sample.npz"
        if not path.exists():
            return None
        with np.load(path) as z:
            return {k: z[k] for k in z.files}

    def save_snapshot(self, run_id: str, idx: int, step: int, epoch: int, features: np.ndarray,
                      metrics: dict[str, Any] | None = None) -> None:
        np.save(self._snap_dir(run_id) / f"feat_{idx:04d}.npy", features.astype(np.float16))
        self._write("INSERT OR REPLACE INTO snapshots (run_id, idx, step, epoch, t, metrics) VALUES (?,?,?,?,?,?)",
                    (run_id, idx, step, epoch, time.time(), json.dumps(_plain(metrics or {}))))

    def update_snapshot_metrics(self, run_id: str, idx: int, metrics: dict[str, Any]) -> None:
        row = self._conn().execute("SELECT metrics FROM snapshots WHERE run_id=? AND idx=?", (run_id, idx)).fetchone()
        merged = {**(json.loads(row["metrics"]) if row else {}), **_plain(metrics)}
        self._write("UPDATE snapshots SET metrics=? WHERE run_id=? AND idx=?", (json.dumps(merged), run_id, idx))

    def save_coords(self, run_id: str, idx: int, coords: np.ndarray) -> None:
        np.save(self._snap_dir(run_id) / f"coords_{idx:04d}.npy", coords.astype(np.float32))
        self._write("UPDATE snapshots SET projected=1 WHERE run_id=? AND idx=?", (run_id, idx))

    def list_snapshots(self, run_id: str) -> pd.DataFrame:
        rows = self._conn().execute(
            "SELECT idx, step, epoch, t, metrics, projected FROM snapshots WHERE run_id=? ORDER BY idx",
            (run_id,)).fetchall()
        return pd.DataFrame([{"idx": r["idx"], "step": r["step"], "epoch": r["epoch"], "t": r["t"],
                              "projected": bool(r["projected"]), **json.loads(r["metrics"])} for r in rows],
                            columns=None if rows else ["idx", "step", "epoch", "t", "projected"])

    def load_snapshot(self, run_id: str, idx: int) -> np.ndarray:
        return np.load(self.run_dir(run_id) / "snapshots" / f"feat_{idx:04d}.npy").astype(np.float32)

    def load_coords(self, run_id: str, idx: int) -> np.ndarray | None:
        path = self.run_dir(run_id) / "snapshots" / f"coords_{idx:04d}.npy"
        return np.load(path) if path.exists() else None

    # ----------------------------------------------------------- sample weights
    def save_weights(self, run_id: str, weights: np.ndarray) -> None:
        """Per-image weights of the labelled training set (re-weighting methods), ``runs/<id>/weights.npy``."""
        path = self.run_dir(run_id) / WEIGHTS_FILE
        tmp = path.with_suffix(".tmp.npy")
        np.save(tmp, np.asarray(weights, dtype=np.float32).ravel())
        os.replace(tmp, path)

    def load_weights(self, run_id: str) -> np.ndarray | None:
        """The run's per-image training weights, or None when it has none (or they are unreadable)."""
        path = self.run_dir(run_id) / WEIGHTS_FILE
        try:
            return np.load(path, allow_pickle=False) if path.is_file() else None
        except (OSError, ValueError):
            return None

    # ----------------------------------------------------------- exporting
    def export_metrics_csv(self, run_id: str) -> str:
        """Step and epoch metrics as one CSV text (epoch rows carry the evaluation columns)."""
        steps = self.step_metrics(run_id)
        epochs = self.epoch_metrics(run_id).drop(columns=["extra"], errors="ignore")
        if not epochs.empty:
            epochs = epochs.rename(columns={"t": "t_eval"})
            merged = steps.merge(epochs.drop(columns=["epoch"]), on="step", how="outer") if not steps.empty else epochs
        else:
            merged = steps
        return merged.sort_values("step").to_csv(index=False) if not merged.empty else "step,epoch\n"


def _record(row: sqlite3.Row) -> RunRecord:
    d = dict(row)
    d["config"] = json.loads(d["config"])
    d["summary"] = json.loads(d["summary"]) if d.get("summary") else {}
    return RunRecord(**d)


def _plain(obj: Any) -> Any:
    """Make numpy/torch scalars and arrays JSON-serialisable; NaN/inf become None."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _plain(obj.tolist())
    if isinstance(obj, (np.floating, float)):
        f = float(obj)
        return f if np.isfinite(f) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if hasattr(obj, "item") and callable(obj.item):
        return _plain(obj.item())
    return obj
