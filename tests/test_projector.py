"""Snapshot projector: a low-priority worker process turns stored snapshots into coordinates."""

from __future__ import annotations

import os
import signal

import numpy as np
import pytest

from tl_core.config import RunConfig
from tl_core.projector import SnapshotProjector, project_snapshot
from tl_core.store import RunStore


def _clusters(n: int, shift: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=4.0, size=(4, 16))
    labels = np.arange(n) % 4
    return (centres[labels] + rng.normal(size=(n, 16)) + shift).astype(np.float32)


def _run_with_snapshots(store: RunStore, n_snapshots: int, projection: str = "umap",
                        priority: str = "background") -> str:
    """A run whose source and target features drift together snapshot by snapshot."""
    cfg = RunConfig()
    cfg.snapshot.projection = projection
    cfg.snapshot.priority = priority
    run_id = store.create_run(cfg)
    n = 120
    domains = np.r_[np.zeros(n // 2, int), np.ones(n // 2, int)]
    store.save_snapshot_sample(run_id, labels=np.arange(n) % 4, domains=domains, index=np.arange(n))
    for idx in range(n_snapshots):
        shift = 6.0 * (1 - idx / max(1, n_snapshots - 1))  # target moves onto the source
        feats = _clusters(n, 0.0, seed=idx)
        feats[domains == 1] += shift
        store.save_snapshot(run_id, idx, step=10 * idx, epoch=idx, features=feats)
    return run_id


@pytest.fixture
def store(tl_home) -> RunStore:
    s = RunStore(tl_home)
    yield s
    s.close()


def test_worker_process_projects_every_snapshot_with_metrics(store):
    run_id = _run_with_snapshots(store, 3)
    proj = SnapshotProjector(store)
    try:
        for idx in range(3):
            proj.submit(run_id, idx)
        assert proj.wait_idle(timeout=120)
        pid = proj.worker_pid("background")
        assert pid is not None and pid != os.getpid()
        assert os.getpriority(os.PRIO_PROCESS, pid) >= os.getpriority(os.PRIO_PROCESS, 0) + 10  # low priority
        assert os.sched_getscheduler(pid) == os.SCHED_IDLE  # runs only when a core would idle
        assert proj.worker_pid("live") is None  # started only when a run asks for it
    finally:
        proj.close()
    snaps = store.list_snapshots(run_id)
    assert snaps["projected"].all() and len(snaps) == 3
    for idx in range(3):
        coords = store.load_coords(run_id, idx)
        assert coords.shape == (120, 2) and np.isfinite(coords).all()
    # the target drifted onto the source: domain distances fall from first to last snapshot
    assert snaps["a_distance"].iloc[0] > 1.5 and snaps["a_distance"].iloc[-1] < 0.5
    assert snaps["mmd"].iloc[-1] < snaps["mmd"].iloc[0]


def test_a_killed_worker_is_replaced_and_later_snapshots_still_project(store):
    run_id = _run_with_snapshots(store, 2, projection="pca")
    proj = SnapshotProjector(store)
    try:
        proj.submit(run_id, 0)
        assert proj.wait_idle(timeout=120)
        first = proj.worker_pid()
        os.kill(first, signal.SIGKILL)
        proj.submit(run_id, 1)
        assert proj.wait_idle(timeout=120)
    finally:
        proj.close()
    assert store.list_snapshots(run_id)["projected"].tolist() == [True, True]


def test_thread_fallback_and_a_deleted_run_is_skipped(store):
    run_id = _run_with_snapshots(store, 2, projection="pca")
    gone = _run_with_snapshots(store, 1, projection="pca")
    store.set_status(gone, "completed")
    store.delete(gone)
    proj = SnapshotProjector(store, use_process=False)
    try:
        proj.submit(gone, 0)  # deleted meanwhile: skipped, not fatal
        proj.submit(run_id, 0)
        proj.submit(run_id, 1)
        assert proj.wait_idle(timeout=60)
        assert proj.worker_pid() is None
    finally:
        proj.close()
    assert store.list_snapshots(run_id)["projected"].all()
    assert project_snapshot(store, gone, 0) is False


def test_a_failing_snapshot_is_reported_and_the_worker_keeps_serving(store, caplog):
    run_id = _run_with_snapshots(store, 2, projection="pca")
    bad = store.run_dir(run_id) / "snapshots" / "feat_0000.npy"
    bad.write_bytes(b"not an array")
    proj = SnapshotProjector(store)
    try:
        with caplog.at_level("WARNING"):
            proj.submit(run_id, 0)
            proj.submit(run_id, 1)
            assert proj.wait_idle(timeout=120)
        assert proj.worker_pid() is not None  # still the same live worker
    finally:
        proj.close()
    assert store.list_snapshots(run_id)["projected"].tolist() == [False, True]
    assert "snapshot 0" in caplog.text


def test_live_runs_go_to_a_normal_priority_worker(store):
    live = _run_with_snapshots(store, 1, projection="pca", priority="live")
    background = _run_with_snapshots(store, 2, projection="pca")
    proj = SnapshotProjector(store)
    try:
        for run_id, n in ((live, 1), (background, 2)):
            for idx in range(n):
                proj.submit(run_id, idx)
        assert proj.wait_idle(timeout=120)
        pid = proj.worker_pid("live")
        assert pid is not None and pid != proj.worker_pid("background")
        assert os.sched_getscheduler(pid) == os.SCHED_OTHER
        assert os.getpriority(os.PRIO_PROCESS, pid) == os.getpriority(os.PRIO_PROCESS, 0)
    finally:
        proj.close()
    assert store.list_snapshots(background)["projected"].all() and store.list_snapshots(live)["projected"].all()
