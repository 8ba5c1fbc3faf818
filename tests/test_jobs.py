"""The job manager: queue, run, cancel, failures recorded, the manager keeps serving."""

import time

import pytest

from tl_core.jobs import ConfigError, JobManager
from tl_core.methods import register
from tl_core.methods.finetune import FineTune
from tl_core.store import RunStore

from _tiny import tiny_config


@register
class _Boom(FineTune):
    name, title, description = "boom", "Boom", "test only: raises inside the training step"

    def loss(self, batch, model, progress):
        raise ValueError("synthetic failure in the step")


@pytest.fixture
def manager(tmp_path):
    m = JobManager(RunStore(tmp_path), project=False)
    yield m
    m.shutdown()


def _wait_status(store, run_id, statuses, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rec = store.get_run(run_id)
        if rec.status in statuses:
            return rec
        time.sleep(0.05)
    raise AssertionError(f"run {run_id} still {store.get_run(run_id).status}")


def test_two_runs_queue_and_both_complete_with_their_own_metrics(manager):
    a = manager.submit(tiny_config("finetune"), owner="alice")
    b = manager.submit(tiny_config("dann"), owner="bob")
    assert manager.store.get_run(b).status in ("queued", "running")
    assert manager.wait(a, 120) and manager.wait(b, 120)
    ra, rb = manager.store.get_run(a), manager.store.get_run(b)
    assert ra.status == rb.status == "completed"
    assert ra.owner == "alice" and rb.owner == "bob"
    assert "loss_domain" not in manager.store.step_metrics(a) and "loss_domain" in manager.store.step_metrics(b)
    assert 0 <= ra.summary["final_target_test_acc"] <= 1


def test_cancel_stops_only_that_run(manager):
    cfg = tiny_config("dann")
    cfg.optim.epochs = 50
    a = manager.submit(cfg)
    b = manager.submit(tiny_config("finetune"))
    _wait_status(manager.store, a, ("running",))
    assert manager.cancel(a)
    assert _wait_status(manager.store, a, ("stopped",)).error == "Stopped by the user."
    assert _wait_status(manager.store, b, ("completed",)).status == "completed"


def test_failing_run_is_recorded_and_the_manager_keeps_serving(manager, monkeypatch):
    bad = manager.submit(tiny_config("boom"))
    good = manager.submit(tiny_config("finetune"))
    rec = _wait_status(manager.store, bad, ("failed",))
    assert "synthetic failure in the step" in rec.error and "test_jobs.py" in rec.error
    assert _wait_status(manager.store, good, ("completed",)).status == "completed"


def test_invalid_config_is_refused_before_queueing(manager):
    cfg = tiny_config()
    cfg.optim.lr = -1
    with pytest.raises(ConfigError) as info:
        manager.submit(cfg)
    assert any("optim.lr" in p for p in info.value.problems)
    assert manager.store.list_runs() == []


def test_a_stopped_run_is_stopping_until_its_step_ends(manager):
    cfg = tiny_config("dann")
    cfg.optim.epochs = 50
    run_id = manager.submit(cfg)
    _wait_status(manager.store, run_id, ("running",))
    assert not manager.stopping(run_id)
    manager.cancel(run_id)
    assert manager.stopping(run_id) or manager.store.get_run(run_id).status == "stopped"
    _wait_status(manager.store, run_id, ("stopped",))
    deadline = time.monotonic() + 30
    while manager.stopping(run_id) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not manager.stopping(run_id)
