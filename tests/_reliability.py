"""Helpers shared by the engine's reliability tests, ``tests/test_rel_*.py`` (one file per section
of docs/WHAT_HAPPENS_WHEN.md): the ``home`` and ``manager`` fixtures, a tiny run, the command line in
this process, and waiting for a run. A test file imports the fixtures by name to use them.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tl_core.__main__ import main as cli_main
from tl_core.config import RunConfig
from tl_core.jobs import JobManager
from tl_core.store import RunStore

from _tiny import tiny_config

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def home(tl_home: Path) -> Path:
    """TL_HOME for this test (the command line's store) and the store the managers use."""
    return tl_home


@pytest.fixture
def manager(home: Path):
    m = JobManager(RunStore(home), project=False)
    yield m
    m.shutdown()


def small(method: str = "finetune", **optim) -> RunConfig:
    cfg = tiny_config(method, **optim)
    cfg.snapshot.enabled = False
    return cfg


CLI_TINY = ["--source", "mnist", "--target", "mnist-m", "--backbone", "lenet", "--max-train", "256",
            "--batch-size", "32", "--epochs", "1", "--seed", "1", "--device", "cpu", "--no-snapshots", "--quiet"]


def cli(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str, str]:
    """``python -m tl_core run ARGS`` in this process: (exit status, stdout, stderr)."""
    capsys.readouterr()
    code = cli_main(["run", *args])
    out, err = capsys.readouterr()
    return code, out, err


def wait_status(store: RunStore, run_id: str, statuses: tuple[str, ...], timeout: float = 120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rec = store.get_run(run_id)
        if rec is not None and rec.status in statuses:
            return rec
        time.sleep(0.05)
    raise AssertionError(f"run {run_id} is {store.get_run(run_id).status}, expected one of {statuses}")


def wait_progress(store: RunStore, run_id: str, step: int, timeout: float = 120) -> int:
    """Wait until the run has recorded at least ``step`` steps; returns its step then."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rec = store.get_run(run_id)
        if rec.step >= step:
            return rec.step
        time.sleep(0.05)
    raise AssertionError(f"run {run_id} is at step {store.get_run(run_id).step}, expected {step}")


class _Marker:
    """Unpickling this creates ``path``: proof that a loader executed code from a file."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))
