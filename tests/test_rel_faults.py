"""Reliability of the engine (issue 5), docs/WHAT_HAPPENS_WHEN.md "Faults": an exception in a
training step, a NaN loss, the GPU out of memory, a full disk while a checkpoint is written, and the
process running a run killed with SIGKILL (a real ``python -m tl_core run``), then resumed.

Runs are tiny (LeNet, a few hundred images, one to ten epochs, no snapshots). Shared helpers are in
``_reliability.py``; ``patch_step`` stays here because the failure message names the file of the
function that raised (``make`` below).
"""

from __future__ import annotations

import errno
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest
import torch

from tl_core import checkpoint, failures, trainer
from tl_core.jobs import JobManager
from tl_core.methods.finetune import FineTune
from tl_core.recorder import MemoryRecorder
from tl_core.store import RunStore

from _tiny import tiny_config
from _reliability import home, manager  # noqa: F401  (pytest fixtures, used by name)
from _reliability import CLI_TINY, ROOT, cli, small, wait_status


# ------------------------------------------------------------------------------ helpers
def patch_step(monkeypatch: pytest.MonkeyPatch, fail_at: int, make) -> None:
    """FineTune's step works normally, then at call ``fail_at`` (1-based) and after does ``make(loss)``."""
    orig = FineTune.loss
    calls = {"n": 0}

    def loss(self, batch, model, progress):
        calls["n"] += 1
        value, metrics = orig(self, batch, model, progress)
        return (make(value) if calls["n"] >= fail_at else value), metrics

    monkeypatch.setattr(FineTune, "loss", loss)


def _raise(exc: BaseException):
    def make(loss):
        raise exc
    return make


# =========================================================================== faults
def test_exception_in_a_training_step_fails_the_run_saying_what_and_where(manager, monkeypatch, capsys):
    original = FineTune.loss
    patch_step(monkeypatch, 3, _raise(ValueError("synthetic failure in the step")))
    run_id = manager.submit(small(), owner="alice")
    rec = wait_status(manager.store, run_id, ("failed",))
    assert rec.error.startswith("ValueError: synthetic failure in the step")
    assert "test_rel_faults.py" in rec.error and "make" in rec.error and "at step 3 (epoch 1)" in rec.error
    assert rec.hint
    assert manager.store.step_metrics(run_id)["step"].tolist() in ([], [1], [1, 2])  # what was flushed
    tb = (manager.store.run_dir(run_id) / "traceback.txt").read_text()
    assert "synthetic failure in the step" in tb and "trainer.py" in tb
    monkeypatch.setattr(FineTune, "loss", original)
    good = manager.submit(small(), owner="bob")  # the manager keeps serving
    assert wait_status(manager.store, good, ("completed",)).status == "completed"
    patch_step(monkeypatch, 3, _raise(ValueError("synthetic failure in the step")))
    code, out, err = cli(capsys, *CLI_TINY, "--method", "finetune")
    assert code == 1 and "error: ValueError: synthetic failure in the step" in err and "at step 3" in err
    assert json.loads(out)["status"] == "failed"


def test_nan_loss_stops_as_diverged_with_a_hint_and_keeps_the_metrics(manager, monkeypatch, capsys):
    monkeypatch.setattr(trainer, "FLUSH_EVERY_S", 0.0)
    patch_step(monkeypatch, 4, lambda loss: loss * float("nan"))
    run_id = manager.submit(small(), owner="alice")
    rec = wait_status(manager.store, run_id, ("diverged",))
    assert "The loss became nan at step 4" in rec.error and "Lower the learning rate" in rec.hint
    steps = manager.store.step_metrics(run_id)
    assert steps["step"].tolist() == [1, 2, 3] and steps["loss"].notna().all()
    code, out, err = cli(capsys, *CLI_TINY, "--method", "finetune")
    assert code == 1 and "The loss became nan" in err and "hint: Lower the learning rate" in err
    assert json.loads(out)["status"] == "diverged"


def test_gpu_out_of_memory_says_use_a_smaller_batch_or_image_size(manager, monkeypatch, capsys):
    oom = torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    patch_step(monkeypatch, 2, _raise(oom))
    run_id = manager.submit(small(), owner="alice")
    rec = wait_status(manager.store, run_id, ("failed",))
    assert "ran out of memory at step 2 (epoch 1)" in rec.error
    assert "smaller batch or image size" in rec.error and "smaller batch size" in rec.hint
    code, _, err = cli(capsys, *CLI_TINY, "--method", "finetune")
    assert code == 1 and "smaller batch or image size" in err
    # Apple GPUs and cuDNN say it with a plain RuntimeError.
    message, _ = failures.describe_exception(RuntimeError("MPS backend out of memory (MPS allocated: 8 GB)"))
    assert "smaller batch or image size" in message


def test_disk_full_while_writing_a_checkpoint_fails_the_run_and_keeps_the_database(manager, monkeypatch):
    real_save = torch.save

    def save(obj, f, *a, **k):
        # The epoch-1 checkpoints (the last, and the label-free selected one) are written; epoch 2 hits a full disk.
        if isinstance(obj, dict) and obj.get("epoch") == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, f, *a, **k)

    monkeypatch.setattr(torch, "save", save)
    cfg = small(epochs=2)
    run_id = manager.submit(cfg, owner="alice")
    store = manager.store
    rec = wait_status(store, run_id, ("failed",))
    assert rec.error.startswith("The disk is full while saving the checkpoint of epoch 2")
    assert "No space left on device" in rec.error and "Free some space" in rec.hint
    # The database is intact and readable; the previous checkpoint is whole; no partial file is left.
    assert [r.id for r in store.list_runs()] == [run_id]
    assert store.step_metrics(run_id)["step"].tolist() == list(range(1, 17))
    assert store.epoch_metrics(run_id)["epoch"].tolist() == [1, 2]
    files = sorted(p.name for p in store.run_dir(run_id).iterdir())
    assert "checkpoint.pt" in files and not any(f.endswith(".tmp") for f in files)
    assert checkpoint.load_checkpoint_file(store.run_dir(run_id) / "checkpoint.pt")["epoch"] == 1
    # A database that cannot grow says the same.
    message, hint = failures.describe_exception(sqlite3.OperationalError("database or disk is full"))
    assert message.startswith("The disk is full") and "Free some space" in hint
    # Space freed: resume finishes the run from epoch 1.
    monkeypatch.setattr(torch, "save", real_save)
    manager.resume(run_id)
    rec = wait_status(store, run_id, ("completed",))
    assert rec.step == 16 and store.step_metrics(run_id)["step"].tolist() == list(range(1, 17))


# ===================================================================== the kill test
def test_sigkill_mid_run_leaves_an_interrupted_run_that_resumes_to_the_same_end(home, tmp_path):
    cfg = tiny_config("dann")
    cfg.data.max_train, cfg.data.max_test = 128, 50
    cfg.optim.epochs = 10  # 40 steps; it is killed right after its first checkpoint, 9 epochs before the end
    cfg.snapshot.enabled = False
    (tmp_path / "run.json").write_text(cfg.to_json())
    env = {**os.environ, "TL_HOME": str(home), "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "tl_core", "run", "--config", str(tmp_path / "run.json"),
                             "--quiet"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    store = RunStore(home)
    try:
        deadline = time.monotonic() + 120
        run_id = None
        while time.monotonic() < deadline and proc.poll() is None:
            runs = store.list_runs()
            if runs:
                run_id = runs[0].id
                if (store.run_dir(run_id) / "checkpoint.pt").exists() and not store.epoch_metrics(run_id).empty:
                    break
            time.sleep(0.05)
        assert proc.poll() is None, f"the run ended before it could be killed: {proc.stderr.read()}"
        assert run_id is not None and store.get_run(run_id).status == "running"
        # Another process starting now (a dashboard) leaves the live run alone.
        assert store.mark_interrupted() == [] and store.get_run(run_id).status == "running"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL

    # The same run uninterrupted (same config and seed; CPU runs are deterministic).
    full = MemoryRecorder()
    res_full = trainer.run(cfg, full)

    manager = JobManager(RunStore(home), project=False)  # "the next start"
    try:
        rec = manager.store.get_run(run_id)
        assert rec.status == "interrupted" and "resume" in rec.hint
        steps = manager.store.step_metrics(run_id)["step"].tolist()
        assert steps == list(range(1, len(steps) + 1)) and len(steps) >= 4  # every flushed step, in order
        assert len(steps) < 40
        done_epochs = manager.store.epoch_metrics(run_id)["epoch"].tolist()
        assert done_epochs == list(range(1, len(done_epochs) + 1))

        manager.resume(run_id, owner="alice")
        assert manager.wait(run_id, 180)
        rec = manager.store.get_run(run_id)
        assert rec.status == "completed" and rec.step == res_full["step"] == 40
        steps = manager.store.step_metrics(run_id)
        assert steps["step"].tolist() == list(range(1, 41))
        assert steps["loss"].tolist() == pytest.approx([r["loss"] for r in full.steps], rel=1e-4, abs=1e-6)
        epochs = manager.store.epoch_metrics(run_id)
        assert epochs["epoch"].tolist() == list(range(1, 11))
        assert epochs["target_test_acc"].tolist() == pytest.approx([e["target_test_acc"] for e in full.epochs],
                                                                   abs=0.011)
        assert rec.summary["final_target_test_acc"] == pytest.approx(res_full["target_test_acc"], abs=0.011)
        assert rec.summary["final_source_val_acc"] == pytest.approx(res_full["source_val_acc"], abs=0.011)
    finally:
        manager.shutdown()


def test_cli_stdout_is_one_json_line_and_a_failure_is_said_once(home, tmp_path):
    """stdout carries only the final JSON line (the progress bar and epoch lines go to stderr); a run that
    fails says so once on stderr, not once from the log and again from the command line. A real process:
    under pytest, logging has a handler and would hide the second copy."""
    (tmp_path / "failing_plugin.py").write_text(
        "from tl_core.methods import register\n"
        "from tl_core.methods.finetune import FineTune\n\n"
        "@register\n"
        "class Failing(FineTune):\n"
        "    name, title, description = 'failing', 'Failing', 'test only: fails at its second step'\n"
        "    calls = 0\n\n"
        "    def loss(self, batch, model, progress):\n"
        "        type(self).calls += 1\n"
        "        if type(self).calls == 2:\n"
        "            raise ValueError('synthetic failure in the step')\n"
        "        return super().loss(batch, model, progress)\n")
    env = {**os.environ, "TL_HOME": str(home), "TL_PLUGINS": "failing_plugin",
           "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}

    def run(*args):
        p = subprocess.run([sys.executable, "-m", "tl_core", "run", *args], capture_output=True, text=True,
                           env=env, cwd=ROOT, timeout=300)
        return p.returncode, p.stdout, p.stderr

    code, out, err = run(*[a for a in CLI_TINY if a != "--quiet"], "--method", "finetune")
    assert code == 0 and len(out.splitlines()) == 1 and json.loads(out)["status"] == "completed", err
    assert "epoch 1:" in err
    code, out, err = run(*CLI_TINY, "--method", "failing")
    assert code == 1 and len(out.splitlines()) == 1 and json.loads(out)["status"] == "failed", err
    assert err.count("synthetic failure in the step") == 1, err


@pytest.fixture
def small_disk(tmp_path):
    """A real 24 MB filesystem (tmpfs, mounted as root, as CI runs) to fill for real."""
    mount = tmp_path / "fs"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mount)], capture_output=True,
                          text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()}); CI runs as root and can")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def _fill(folder, leave_bytes):
    """Write a filler file so that only about ``leave_bytes`` stay free on folder's filesystem."""
    import shutil

    filler = folder / "filler.bin"
    size = max(0, shutil.disk_usage(folder).free - leave_bytes)
    with open(filler, "wb") as f:
        chunk = b"\0" * (1 << 20)
        while size > 0:
            f.write(chunk[:min(size, len(chunk))])
            size -= min(size, len(chunk))
    return filler


def test_a_really_full_disk_fails_the_run_saying_so_and_resume_works_once_space_is_freed(small_disk, monkeypatch):
    from tl_core.recorder import StoreRecorder

    home = small_disk / "home"
    monkeypatch.setenv("TL_HOME", str(home))
    manager = JobManager(RunStore(home), project=False)
    filler = {}
    real = StoreRecorder.save_checkpoint

    def save_then_fill(self, state):
        real(self, state)
        if not filler:  # the epoch-1 checkpoint is written; then the disk fills up (for real)
            filler["path"] = _fill(small_disk, 48 * 1024)

    monkeypatch.setattr(StoreRecorder, "save_checkpoint", save_then_fill)
    try:
        cfg = small(epochs=2)
        run_id = manager.submit(cfg, owner="alice")
        store = manager.store
        rec = wait_status(store, run_id, ("failed",), timeout=120)
        assert rec.error.startswith("The disk is full"), rec.error
        assert "MB free under TL_HOME" in rec.error and "This looks like a bug" not in (rec.hint or "")
        assert "resume" in rec.hint.lower()
        # The store stays readable and the epoch-1 checkpoint whole.
        assert [r.id for r in RunStore(home).list_runs()] == [run_id]
        assert checkpoint.load_checkpoint_file(store.run_dir(run_id) / "checkpoint.pt")["epoch"] == 1
        # Space freed: resume finishes the run.
        filler["path"].unlink()
        monkeypatch.setattr(StoreRecorder, "save_checkpoint", real)
        manager.resume(run_id)
        rec = wait_status(store, run_id, ("completed",), timeout=120)
        assert rec.step == 16
    finally:
        manager.shutdown()
        manager.store.close()


def test_the_command_line_on_a_full_disk_says_so_without_a_traceback(small_disk):
    """A store made before the disk filled, and a TL_HOME first made on a full disk: exit 2, one error line."""
    made = small_disk / "made"
    RunStore(made).close()
    _fill(small_disk, 0)
    for home in (made, small_disk / "new"):
        env = {**os.environ, "TL_HOME": str(home)}
        p = subprocess.run([sys.executable, "-m", "tl_core", "run", *CLI_TINY], capture_output=True, text=True,
                           env=env, cwd=ROOT, timeout=300)
        assert p.returncode == 2, (home, p.stderr)
        assert p.stderr.startswith("error: ") and "full" in p.stderr and "Free some space" in p.stderr, p.stderr
        assert "Traceback" not in p.stderr


def test_a_database_that_fills_while_logging_steps_says_disk_full(small_disk):
    """SQLite rolls a transaction back itself on a full disk: the error must be that, not 'cannot rollback'."""
    store = RunStore(small_disk / "home")
    run_id = store.create_run(small())
    store.release_reserve()
    _fill(small_disk, 0)
    rows = [{"step": i, "epoch": 1, "loss": 1.0, "note": "x" * 200} for i in range(1, 5000)]
    with pytest.raises(sqlite3.OperationalError) as err:
        for start in range(0, len(rows), 500):
            store.log_steps(run_id, rows[start:start + 500])
    assert failures.is_disk_full(err.value), err.value
    assert "cannot rollback" not in str(err.value)
    store.close()
