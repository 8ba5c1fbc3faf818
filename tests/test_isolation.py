"""Isolated mode: each run trains in its own process (``python -m tl_core.runner``).

What the dashboard uses: a run's interpreter is not the server's, so page renders never
hold its GIL, and a run killed for memory fails alone while the manager goes on.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tl_core.jobs import JobManager
from tl_core.store import RunStore

from _tiny import tiny_config

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def manager(tl_home):
    m = JobManager(RunStore(tl_home), isolate=True)
    yield m
    m.shutdown()


def _wait(pred, timeout=180, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _status(store, run_id, statuses):
    return _wait(lambda: (r := store.get_run(run_id)) is not None and r.status in statuses and r,
                 what=f"{run_id} to be one of {statuses}")


def _long(method="dann"):
    cfg = tiny_config(method)
    cfg.optim.epochs = 200
    cfg.snapshot.enabled = False
    return cfg


def test_run_trains_in_a_child_process_and_its_snapshots_are_projected(manager):
    cfg = tiny_config("dann", epochs=2)
    run_id = manager.submit(cfg)
    pid = _wait(lambda: manager.child_pid(run_id), what="the training process")
    assert pid != os.getpid()
    assert "tl_core.runner" in Path(f"/proc/{pid}/cmdline").read_text()
    assert manager.wait(run_id, 180)
    rec = manager.store.get_run(run_id)
    assert rec.status == "completed", rec.error
    assert manager.child_pid(run_id) is None and not Path(f"/proc/{pid}").exists()
    assert len(manager.store.epoch_metrics(run_id)) == 2
    assert 0 <= rec.summary["final_target_test_acc"] <= 1
    snaps = manager.store.list_snapshots(run_id)
    assert len(snaps) == 3  # before training and after each epoch
    # Projected by the manager's projector, which runs after training (at idle priority) and may lag it on a busy machine.
    coords = _wait(lambda: (cs := [manager.store.load_coords(run_id, int(i)) for i in snaps["idx"]])
                   and all(c is not None for c in cs) and cs, timeout=120, what="the projected snapshots")
    assert all(c.shape == (80, 2) for c in coords)


def test_stop_reaches_the_child_and_ends_it(manager):
    run_id = manager.submit(_long())
    _wait(lambda: manager.store.get_run(run_id).progress > 0, what="training steps")
    pid = manager.child_pid(run_id)
    assert manager.cancel(run_id)
    rec = _status(manager.store, run_id, ("stopped",))
    assert rec.error == "Stopped by the user."
    _wait(lambda: not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2],
          timeout=30, what="the child to exit")
    assert manager.store.get_run(run_id).step < 200 * 8


def test_killed_child_fails_the_run_with_a_memory_hint_and_the_manager_goes_on(manager):
    run_id = manager.submit(_long())
    _wait(lambda: manager.store.get_run(run_id).progress > 0, what="training steps")
    os.kill(manager.child_pid(run_id), signal.SIGKILL)  # what the kernel's out-of-memory killer does
    rec = _status(manager.store, run_id, ("failed",))
    assert "killed (signal 9)" in rec.error and "memory" in rec.hint and "resume" in rec.hint
    nxt = manager.submit(tiny_config("finetune"))
    assert _status(manager.store, nxt, ("completed",)).status == "completed"


def test_a_run_that_fails_in_the_child_is_recorded_with_its_message(manager, tmp_path):
    rng = np.random.default_rng(0)
    for root, classes in ((tmp_path / "one", ("only",)), (tmp_path / "good", ("a", "b"))):
        for cls in classes:
            (root / cls).mkdir(parents=True)
            for i in range(8):
                Image.fromarray(rng.integers(0, 255, (28, 28, 3), dtype=np.uint8)).save(root / cls / f"{i}.png")
    cfg = tiny_config("finetune")
    cfg.data.source, cfg.data.target = "folder", "folder"
    cfg.data.source_path, cfg.data.target_path = str(tmp_path / "one"), str(tmp_path / "good")
    cfg.data.image_size, cfg.optim.batch_size, cfg.snapshot.enabled = 28, 4, False
    run_id = manager.submit(cfg)
    rec = _status(manager.store, run_id, ("failed",))
    assert "has only one class ('only')" in rec.error and "Traceback" not in rec.error


def test_child_whose_manager_goes_away_stops_and_is_left_interrupted(tl_home):
    store = RunStore(tl_home)
    run_id = store.create_run(_long("finetune"))
    store.set_status(run_id, "running")
    child = subprocess.Popen([sys.executable, "-m", "tl_core.runner", "--home", str(tl_home), "--run-id", run_id],
                             cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    _wait(lambda: store.get_run(run_id).progress > 0, what="training steps")
    child.stdin.close()  # the server process died: its end of the pipe closes
    assert child.wait(timeout=60) == 0
    rec = store.get_run(run_id)
    assert rec.status == "interrupted" and "resume" in rec.hint
    assert child.stdout.read() == ""  # no snapshots in this run, and nothing else on the protocol


def test_resume_continues_in_a_new_child_from_the_checkpoint(manager):
    cfg = tiny_config("dann", epochs=3)
    cfg.snapshot.enabled = False
    run_id = manager.submit(cfg)
    _wait(lambda: len(manager.store.epoch_metrics(run_id)) >= 1, what="the first epoch")
    first_pid = manager.child_pid(run_id)
    manager.cancel(run_id)
    _status(manager.store, run_id, ("stopped",))
    kept = len(manager.store.epoch_metrics(run_id))
    manager.resume(run_id)
    second_pid = _wait(lambda: manager.child_pid(run_id), what="the resumed run's process")
    assert second_pid != first_pid
    assert _status(manager.store, run_id, ("completed",)).status == "completed"
    epochs = manager.store.epoch_metrics(run_id)
    assert list(epochs["epoch"]) == [1, 2, 3] and kept >= 1


def test_the_next_queued_run_trains_in_the_same_process_and_none_is_kept_once_the_queue_is_empty(manager):
    # a queue of short runs pays torch's import once: the process of a run that ends takes the next one
    first = manager.submit(_long("finetune"))
    second = manager.submit(tiny_config("finetune"))
    _wait(lambda: manager.store.get_run(first).progress > 0, what="training steps")
    pid = manager.child_pid(first)
    assert pid != os.getpid()
    assert manager.cancel(first)  # a stop ends the run, not the process
    assert _wait(lambda: manager.child_pid(second), what="the second run's process") == pid
    assert _status(manager.store, second, ("completed",)).status == "completed"
    assert manager.store.get_run(first).status == "stopped" and manager.store.get_run(first).error == "Stopped by the user."
    assert len(manager.store.epoch_metrics(second)) == 1  # the second run was not stopped by the first's stop
    snaps = manager.store.list_snapshots(second)  # its snapshots reached the projector through the same pipe
    assert len(snaps) >= 2
    _wait(lambda: all(manager.store.load_coords(second, int(i)) is not None for i in snaps["idx"]), timeout=120,
          what="the second run's projected snapshots")
    _wait(lambda: not Path(f"/proc/{pid}").exists(), timeout=30, what="the process to end with the queue empty")
    assert manager._spare is None


def test_a_waiting_process_trains_the_runs_it_is_given_and_ends_when_its_pipe_closes(tl_home):
    store = RunStore(tl_home)
    cfg = tiny_config("finetune")
    cfg.snapshot.enabled = False  # nothing but "done" on the protocol
    ids = [store.create_run(cfg) for _ in range(2)]
    child = subprocess.Popen([sys.executable, "-m", "tl_core.runner", "--home", str(tl_home), "--wait"],
                             cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    for run_id in ids:
        store.set_status(run_id, "running")
        child.stdin.write(json.dumps({"run_id": run_id, "resume": None}) + "\n")
        child.stdin.flush()
        assert json.loads(child.stdout.readline()) == {"done": run_id}
        assert store.get_run(run_id).status == "completed"
    child.stdin.close()
    assert child.wait(timeout=60) == 0
    assert child.stdout.read() == ""


def test_a_spare_whose_parent_closes_its_pipe_ends_without_a_run(tl_home):
    spare = subprocess.Popen([sys.executable, "-m", "tl_core.runner", "--home", str(tl_home), "--wait"],
                             cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    spare.stdin.close()
    assert spare.wait(timeout=60) == 0
    assert spare.stdout.read() == ""  # nothing on the protocol
    assert RunStore(tl_home).list_runs() == []
