"""Reliability and security of the engine (issue 5): bad input, faults, a killed process,
several users at once, and what a run may read, write and execute.

Every test goes through the engine's front doors: ``JobManager`` (what the dashboard calls),
``trainer.run``, or the command line (``tl_core.__main__.main`` in this process, or
``python -m tl_core`` as a real process where the process itself matters). docs/WHAT_HAPPENS_WHEN.md
maps each row of the issue to the test here that proves it. Runs are tiny (LeNet, a few
hundred images, one or two epochs, no snapshots) so the whole file stays around a minute.
"""

from __future__ import annotations

import errno
import json
import math
import os
import pickle
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import tomllib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tl_core import trainer
from tl_core.__main__ import main as cli_main
from tl_core.config import RunConfig
from tl_core.jobs import ConfigError, JobManager
from tl_core.methods.finetune import FineTune
from tl_core.recorder import MemoryRecorder
from tl_core.store import RunStore

from _tiny import tiny_config

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINT_FORMAT = "transfer-lab-checkpoint/1"


# ------------------------------------------------------------------------------ helpers
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


def image_folder(root: Path, classes=("a", "b", "c"), n: int = 12, size: int = 32) -> Path:
    """``root/<class>/<i>.png``: small RGB images, one hue per class plus noise."""
    rng = np.random.default_rng(len(classes) * 100 + n)
    for ci, cls in enumerate(classes):
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            img = rng.integers(0, 80, (size, size, 3), dtype=np.uint8)
            img[..., ci % 3] += 150
            Image.fromarray(img).save(root / cls / f"{i:02d}.png")
    return root


def folder_config(source: Path, target: Path, method: str = "finetune", **data) -> RunConfig:
    cfg = RunConfig(seed=0, device="cpu")
    cfg.data.source, cfg.data.target = "folder", "folder"
    cfg.data.source_path, cfg.data.target_path = str(source), str(target)
    cfg.data.image_size = 28
    for k, v in data.items():
        setattr(cfg.data, k, v)
    cfg.model.backbone = "lenet"
    cfg.method.name = method
    cfg.method.disc_hidden = 32
    cfg.optim.batch_size = 8
    cfg.optim.epochs = 1
    cfg.snapshot.enabled = False
    return cfg


def folder_cli(source: Path, target: Path, *extra: str) -> list[str]:
    return ["--source", "folder", "--target", "folder", "--source-path", str(source), "--target-path", str(target),
            "--backbone", "lenet", "--method", "finetune", "--batch-size", "8", "--epochs", "1", "--device", "cpu",
            "--no-snapshots", "--quiet", *extra]


class _Marker:
    """Unpickling this creates ``path``: proof that a loader executed code from a file."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def patch_step(monkeypatch: pytest.MonkeyPatch, fail_at: int, make) -> None:
    """FineTune's step works normally, then at call ``fail_at`` (1-based) and after does ``make(loss)``."""
    orig = FineTune.forward
    calls = {"n": 0}

    def forward(self, batch, features, head, progress):
        calls["n"] += 1
        loss, metrics = orig(self, batch, features, head, progress)
        return (make(loss) if calls["n"] >= fail_at else loss), metrics

    monkeypatch.setattr(FineTune, "forward", forward)


def _raise(exc: BaseException):
    def make(loss):
        raise exc
    return make


# ============================================================== bad input: settings
BAD_SETTINGS = [
    # (what, config change, CLI flags, field the message names, words it must contain)
    ("freeze more stages than lenet has", ("model", "freeze", 9), ["--freeze", "9"], "model.freeze", "has 3 stages"),
    ("learning rate 0", ("optim", "lr", 0.0), ["--lr", "0"], "optim.lr", "above 0"),
    ("learning rate below 0", ("optim", "lr", -0.1), ["--lr", "-0.1"], "optim.lr", "above 0"),
    ("learning rate NaN", ("optim", "lr", math.nan), ["--lr", "nan"], "optim.lr", "finite number"),
    ("learning rate absurdly large", ("optim", "lr", 1e6), ["--lr", "1e6"], "optim.lr", "far too large"),
    ("batch larger than the data", ("optim", "batch_size", 512), ["--batch-size", "512"], "optim.batch_size",
     "larger than the training set"),
    ("zero epochs", ("optim", "epochs", 0), ["--epochs", "0"], "optim.epochs", "at least one epoch"),
]


@pytest.mark.parametrize("what,change,flags,field,words", BAD_SETTINGS, ids=[b[0] for b in BAD_SETTINGS])
def test_bad_settings_are_refused_before_a_run_exists(what, change, flags, field, words, manager, capsys):
    cfg = small()
    section, name, value = change
    setattr(getattr(cfg, section), name, value)
    with pytest.raises(ConfigError) as info:
        manager.submit(cfg, owner="alice")
    assert any(p.startswith(field + ":") and words in p for p in info.value.problems), info.value.problems
    code, out, err = cli(capsys, *CLI_TINY, *flags)
    assert code == 2 and out == ""
    assert err.startswith("error: the run cannot start") and field in err and words in err
    assert manager.store.list_runs() == []  # nothing was queued, nothing half-made


def test_bad_settings_exit_2_from_a_real_process(home):
    env = {**os.environ, "TL_HOME": str(home), "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "tl_core", "run", "--preset", "mnist-mnist-m", "--lr", "nan",
                           "--epochs", "0", "--quiet"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "optim.lr: must be a finite number, got nan" in proc.stderr and "optim.epochs" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_unreadable_config_file_and_unknown_names(home, tmp_path, capsys):
    bad = tmp_path / "run.json"
    bad.write_text("{not json")
    code, _, err = cli(capsys, "--config", str(bad), "--quiet")
    assert code == 2 and "cannot read the config file" in err and "Traceback" not in err
    bad.write_text(json.dumps({"optim": "fast"}))
    code, _, err = cli(capsys, "--config", str(bad), "--quiet")
    assert code == 2 and "optim: must be an object of settings" in err
    code, _, err = cli(capsys, *CLI_TINY, "--backbone", "vgg99")
    assert code == 2 and "model.backbone: Unknown backbone 'vgg99'" in err and "resnet18" in err
    code, _, err = cli(capsys, *CLI_TINY, "--source", "imagenet")
    assert code == 2 and "data.source: unknown data set 'imagenet'" in err and "mnist-m" in err


# ================================================================ bad input: folders
def _empty(tmp: Path) -> Path:
    (tmp / "empty").mkdir()
    return tmp / "empty"


def _one_class(tmp: Path) -> Path:
    return image_folder(tmp / "one", classes=("only",))


def _all_corrupt(tmp: Path) -> Path:
    for cls in ("a", "b"):
        (tmp / "corrupt" / cls).mkdir(parents=True)
        for i in range(3):
            (tmp / "corrupt" / cls / f"{i}.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    return tmp / "corrupt"


FOLDER_PROBLEMS = [
    ("empty", _empty, "holds no class sub-folders with images"),
    ("one class only", _one_class, "has only one class ('only')"),
    ("no readable image", _all_corrupt, "None of the 6 image files"),
]


@pytest.mark.parametrize("what,make,words", FOLDER_PROBLEMS, ids=[f[0] for f in FOLDER_PROBLEMS])
def test_folder_that_cannot_train_fails_the_run_with_a_clear_message(what, make, words, tmp_path, manager, capsys):
    good = image_folder(tmp_path / "good")
    bad = make(tmp_path)
    run_id = manager.submit(folder_config(bad, good), owner="alice")
    rec = wait_status(manager.store, run_id, ("failed",))
    assert words in rec.error and str(bad) in rec.error, rec.error
    assert "Traceback" not in rec.error
    code, out, err = cli(capsys, *folder_cli(bad, good))
    assert code == 2 and words in err and json.loads(out)["status"] == "failed"


def test_missing_folder_is_refused_at_submit(tmp_path, manager, capsys):
    good = image_folder(tmp_path / "good")
    missing = tmp_path / "no-such-folder"
    with pytest.raises(ConfigError) as info:
        manager.submit(folder_config(missing, good))
    assert any(p.startswith("data.source_path:") and "does not exist" in p for p in info.value.problems)
    code, _, err = cli(capsys, *folder_cli(good, missing))
    assert code == 2 and "data.target_path:" in err and "does not exist" in err


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads folders whatever their permissions")
def test_unreadable_folder_fails_with_a_clear_message(tmp_path, manager):
    good = image_folder(tmp_path / "good")
    locked = image_folder(tmp_path / "locked")
    locked.chmod(0)
    try:
        run_id = manager.submit(folder_config(locked, good))
        rec = wait_status(manager.store, run_id, ("failed",))
        assert "cannot be read" in rec.error
    finally:
        locked.chmod(0o755)


def test_classes_that_do_not_match_are_named(tmp_path, manager, capsys):
    src = image_folder(tmp_path / "src", classes=("cat", "dog", "fox"))
    tgt = image_folder(tmp_path / "tgt", classes=("cat", "dog", "owl"))
    run_id = manager.submit(folder_config(src, tgt, method="dann"))
    rec = wait_status(manager.store, run_id, ("failed",))
    assert "only in the source" in rec.error and "fox" in rec.error
    assert "only in the target" in rec.error and "owl" in rec.error
    code, _, err = cli(capsys, *folder_cli(src, tgt))
    assert code == 2 and "fox" in err and "owl" in err


def test_batch_larger_than_a_folder_fails_the_run_saying_how_many_images(tmp_path, manager, capsys):
    good = image_folder(tmp_path / "good")  # 36 images: about 28 for training
    cfg = folder_config(good, good)
    cfg.optim.batch_size = 64
    run_id = manager.submit(cfg)  # the folder's size is known only once decoded
    rec = wait_status(manager.store, run_id, ("failed",))
    assert "optim.batch_size: 64 is larger than the training set" in rec.error and rec.hint
    code, _, err = cli(capsys, *folder_cli(good, good, "--batch-size", "64"))
    assert code == 2 and "larger than the training set" in err


def test_corrupt_images_among_good_ones_are_skipped_counted_and_reported(tmp_path, manager, capsys):
    src = image_folder(tmp_path / "src")
    tgt = image_folder(tmp_path / "tgt")
    raw = (src / "a" / "00.png").read_bytes()
    (src / "a" / "truncated.png").write_bytes(raw[: len(raw) // 2])
    (src / "b" / "fake.jpg").write_text("this is not a JPEG")
    (src / "c" / "empty.png").write_bytes(b"")
    run_id = manager.submit(folder_config(src, tgt, method="dann"))
    rec = wait_status(manager.store, run_id, ("completed",))
    assert rec.summary["skipped_files"] == {"source": 3, "target": 0}
    (warning,) = rec.summary["warnings"]
    assert warning.startswith("3 unreadable image files in the source folder were skipped")
    assert "truncated.png" in warning and "fake.jpg" in warning
    code, out, err = cli(capsys, *folder_cli(src, tgt))
    assert code == 0 and "warning: 3 unreadable image files in the source folder" in err
    assert json.loads(out)["skipped_files"] == {"source": 3, "target": 0}


def test_grey_rgba_palette_16bit_and_very_large_images_train_together(tmp_path, manager):
    root = tmp_path / "mixed"
    rng = np.random.default_rng(0)
    for ci, cls in enumerate(("a", "b", "c")):
        (root / cls).mkdir(parents=True)
        for i in range(12):
            rgb = Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
            kind = i % 6
            if kind == 0:
                img = rgb.convert("L")
            elif kind == 1:
                img = rgb.convert("RGBA")
                img.putalpha(100)
            elif kind == 2:
                img = rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=8)
            elif kind == 3:
                img = Image.fromarray((rng.integers(0, 60000, (32, 32))).astype(np.uint16))  # 16-bit grey
            elif kind == 4:
                img = rgb.convert("LA")
            else:
                img = rgb.convert("1")
            img.save(root / cls / f"{i:02d}.png")
    Image.linear_gradient("L").resize((4000, 3000)).convert("RGB").save(root / "a" / "huge.jpg", quality=70)
    Image.new("RGB", (3000, 3000), (200, 30, 30)).save(root / "b" / "huge.png")
    assert {Image.open(p).mode for p in root.rglob("*.png")} >= {"L", "RGBA", "P", "I;16", "LA", "1", "RGB"}
    run_id = manager.submit(folder_config(root, root))
    rec = wait_status(manager.store, run_id, ("completed",))
    assert "skipped_files" not in rec.summary and rec.step > 0
    assert 0 <= rec.summary["final_target_test_acc"] <= 1


def test_folder_outside_the_data_root_is_refused(tmp_path, manager, capsys):
    data_root = tmp_path / "data"
    inside = image_folder(data_root / "digits")
    outside = image_folder(tmp_path / "private")
    (data_root / "link").symlink_to(outside, target_is_directory=True)
    sneaky = [outside, data_root / ".." / "private", data_root / "link"]
    for path in sneaky:
        with pytest.raises(ConfigError) as info:
            manager.submit(folder_config(path, inside, data_root=str(data_root)))
        assert any(p.startswith("data.source_path:") and "outside the data folder" in p
                   for p in info.value.problems), path
    code, _, err = cli(capsys, *folder_cli(inside, outside, "--data-root", str(data_root)))
    assert code == 2 and "data.target_path:" in err and "outside the data folder" in err
    # The trainer checks again (a config that skipped the queue, or a folder swapped after submit).
    with pytest.raises(trainer.tld.DataError, match="outside the data folder"):
        trainer.run(folder_config(data_root / "link", inside, data_root=str(data_root)), MemoryRecorder())
    assert manager.store.list_runs() == []
    # Inside the root is fine.
    run_id = manager.submit(folder_config(inside, inside, data_root=str(data_root)))
    assert wait_status(manager.store, run_id, ("completed",)).status == "completed"


# ======================================================== bad input: weights, device
def test_pretrained_weights_missing_offline_name_the_file(tmp_path, manager, monkeypatch, capsys):
    monkeypatch.setattr(torch.hub, "_hub_dir", None)  # no torch.hub.set_dir: TORCH_HOME decides
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-torch-home"))
    expected = tmp_path / "empty-torch-home" / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    cfg = small()
    cfg.model.backbone, cfg.model.pretrained, cfg.data.image_size = "resnet18", True, 32
    with pytest.raises(ConfigError) as info:
        manager.submit(cfg)
    assert any(p.startswith("model.pretrained:") and str(expected) in p for p in info.value.problems)
    code, _, err = cli(capsys, *CLI_TINY, "--backbone", "resnet18")
    assert code == 2 and str(expected) in err
    # Started anyway (the file removed between submit and start): the run says the same.
    with pytest.raises(trainer.bb.BackboneError) as exc:
        trainer.run(cfg, MemoryRecorder())
    assert str(expected) in str(exc.value) and "download.pytorch.org" in str(exc.value)
    assert trainer.describe_exception(exc.value)[0] == str(exc.value)
    assert not expected.exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_cuda_on_a_machine_without_it_is_refused_at_submit_and_on_the_command_line(manager, capsys):
    cfg = small()
    cfg.device = "cuda"
    with pytest.raises(ConfigError) as info:
        manager.submit(cfg)
    assert any(p.startswith("device: cuda is not available") for p in info.value.problems)
    code, _, err = cli(capsys, *CLI_TINY, "--device", "cuda")
    assert code == 2 and "device: cuda is not available" in err


# ============================================================= bad input: checkpoints
def _broken_checkpoints(tmp_path: Path, cfg: RunConfig) -> dict[str, tuple[callable, str]]:
    marker = tmp_path / "pwned"

    def garbage(p):
        p.write_bytes(b"not a checkpoint at all")

    def truncated(p):
        torch.save({"format": CHECKPOINT_FORMAT, "config": cfg.to_json(), "w": torch.zeros(5000)}, p)
        p.write_bytes(p.read_bytes()[:3000])

    def foreign(p):
        torch.save({"state_dict": {"w": torch.zeros(2)}}, p)

    def malicious(p):
        torch.save({"format": CHECKPOINT_FORMAT, "payload": _Marker(marker)}, p)

    def other_run(p):
        other = RunConfig.from_dict(cfg.to_dict())
        other.optim.lr = 0.5
        torch.save({"format": CHECKPOINT_FORMAT, "config": other.to_json(), "step": 8, "epoch": 1, "backbone": {},
                    "head": {}, "method": {}, "optimizer": {}, "scaler": {}}, p)

    return {"garbage": (garbage, "not a readable"), "truncated": (truncated, "not a readable"),
            "foreign": (foreign, "not a Transfer Lab checkpoint"), "malicious": (malicious, "not a readable"),
            "another run's": (other_run, "other settings")}


def test_corrupt_foreign_or_malicious_checkpoint_is_refused_on_resume(tmp_path, manager, capsys):
    cfg = small()
    store = manager.store
    for what, (write, words) in _broken_checkpoints(tmp_path, cfg).items():
        run_id = store.create_run(cfg, owner="alice")
        store.set_status(run_id, "interrupted", error="The server stopped while this run was active.")
        write(store.run_dir(run_id) / "checkpoint.pt")
        with pytest.raises(ValueError, match=words):
            manager.resume(run_id)
        assert store.get_run(run_id).status == "interrupted", what  # untouched, nothing queued
        assert not manager.is_active(run_id)
        code, _, err = cli(capsys, "--resume", run_id, "--quiet")
        assert code == 2 and f"error: cannot resume {run_id}" in err and words in err, (what, err)
        assert store.get_run(run_id).status == "interrupted"
    assert not (tmp_path / "pwned").exists()  # weights_only: the pickle's code never ran


# =========================================================================== faults
def test_exception_in_a_training_step_fails_the_run_saying_what_and_where(manager, monkeypatch, capsys):
    original = FineTune.forward
    patch_step(monkeypatch, 3, _raise(ValueError("synthetic failure in the step")))
    run_id = manager.submit(small(), owner="alice")
    rec = wait_status(manager.store, run_id, ("failed",))
    assert rec.error.startswith("ValueError: synthetic failure in the step")
    assert "test_reliability.py" in rec.error and "make" in rec.error and "at step 3 (epoch 1)" in rec.error
    assert rec.hint
    assert manager.store.step_metrics(run_id)["step"].tolist() in ([], [1], [1, 2])  # what was flushed
    tb = (manager.store.run_dir(run_id) / "traceback.txt").read_text()
    assert "synthetic failure in the step" in tb and "trainer.py" in tb
    monkeypatch.setattr(FineTune, "forward", original)
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
    message, _ = trainer.describe_exception(RuntimeError("MPS backend out of memory (MPS allocated: 8 GB)"))
    assert "smaller batch or image size" in message


def test_disk_full_while_writing_a_checkpoint_fails_the_run_and_keeps_the_database(manager, monkeypatch):
    real_save = torch.save
    calls = {"n": 0}

    def save(obj, f, *a, **k):
        calls["n"] += 1
        if calls["n"] >= 2:  # the epoch-1 checkpoint is written, the epoch-2 one hits a full disk
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
    assert trainer.load_checkpoint_file(store.run_dir(run_id) / "checkpoint.pt")["epoch"] == 1
    # A database that cannot grow says the same.
    message, hint = trainer.describe_exception(sqlite3.OperationalError("database or disk is full"))
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


# ================================================================ several users
def test_two_users_submitting_at_the_same_moment_get_their_own_runs(manager):
    configs = {"alice": small("finetune"), "bob": small("dann")}
    configs["bob"].seed = 2
    ids: dict[str, str] = {}
    barrier = threading.Barrier(2)

    def user(name: str) -> None:
        barrier.wait()
        ids[name] = manager.submit(configs[name], owner=name)

    threads = [threading.Thread(target=user, args=(n,)) for n in configs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(ids.values())) == 2
    for run_id in ids.values():
        assert manager.wait(run_id, 120)
    for name, run_id in ids.items():  # (the solo runs below must not overlap a queued one: one RNG per process)
        rec = manager.store.get_run(run_id)
        assert rec.status == "completed" and rec.owner == name
        steps = manager.store.step_metrics(run_id)
        assert steps["step"].tolist() == list(range(1, 9))  # one series each, never interleaved
        solo = MemoryRecorder()
        trainer.run(configs[name], solo)  # the same run alone gives the same numbers
        assert steps["loss"].tolist() == pytest.approx([r["loss"] for r in solo.steps], rel=1e-5)
    assert "loss_domain" in manager.store.step_metrics(ids["bob"])
    assert "loss_domain" not in manager.store.step_metrics(ids["alice"])


def test_cancelling_one_users_run_stops_only_that_run(manager):
    long = small("finetune", epochs=50)
    a = manager.submit(long, owner="alice")
    b = manager.submit(small("finetune"), owner="bob")
    step = wait_progress(manager.store, a, 1)
    assert manager.cancel(b)  # bob stops his queued run: at once, not after alice's run
    rec_b = wait_status(manager.store, b, ("stopped",), timeout=5)
    assert rec_b.error == "Stopped before it started." and not manager.is_active(b)
    wait_progress(manager.store, a, step + 1)  # alice's run goes on
    assert manager.store.get_run(a).status == "running" and manager.is_active(a)
    assert manager.cancel(a)
    assert wait_status(manager.store, a, ("stopped",)).error == "Stopped by the user."


# ========================================================================= security
def test_dashboard_listens_on_localhost_only():
    conf = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    server = conf["server"]
    assert server["address"] in ("localhost", "127.0.0.1")
    assert server.get("enableXsrfProtection", True) and server.get("enableCORS", True)
    assert 0 < server.get("maxUploadSize", 200) <= 200


def test_saved_backbone_that_is_a_pickle_is_refused_and_never_executed(home, tmp_path, manager):
    marker = tmp_path / "pwned"
    d = home / "runs" / "20260101-000000-evil00"
    d.mkdir(parents=True)
    (d / "backbone.json").write_text(json.dumps({"backbone": "lenet"}))
    (d / "backbone.safetensors").write_bytes(pickle.dumps(_Marker(marker)))
    with pytest.raises(trainer.bb.BackboneError, match="cannot load"):
        trainer.bb.create_backbone("run:20260101-000000-evil00")
    cfg = small()
    cfg.model.backbone = "run:20260101-000000-evil00"
    run_id = manager.submit(cfg)
    rec = wait_status(manager.store, run_id, ("failed",))
    assert "cannot load" in rec.error
    for name in ("run:../../etc", "run:..", "run:/etc/passwd"):
        with pytest.raises(trainer.bb.BackboneError):
            trainer.bb.create_backbone(name)
    assert not marker.exists()


def test_a_run_writes_nothing_outside_tl_home(tmp_path):
    dirs = {name: tmp_path / name for name in ("home", "tl_home", "tmp", "cwd")}
    for d in dirs.values():
        d.mkdir()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("TL_", "TORCH", "XDG_", "NUMBA", "MPL", "HF_", "PYTHONPYCACHE"))}
    env.update(HOME=str(dirs["home"]), TL_HOME=str(dirs["tl_home"]), TMPDIR=str(dirs["tmp"]),
               PYTHONPATH=str(ROOT), PYTHONDONTWRITEBYTECODE="1")
    cfg = small("dann")
    cfg.data.max_train, cfg.data.max_test = 64, 50
    (tmp_path / "run.json").write_text(cfg.to_json())
    proc = subprocess.run([sys.executable, "-m", "tl_core", "run", "--config", str(tmp_path / "run.json"), "--quiet"],
                          cwd=dirs["cwd"], env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr
    run_id = json.loads(proc.stdout)["run_id"]
    for name in ("home", "tmp", "cwd"):
        assert sorted(str(p.relative_to(dirs[name])) for p in dirs[name].rglob("*")) == [], name
    written = {str(p.relative_to(dirs["tl_home"])) for p in dirs["tl_home"].rglob("*") if p.is_file()}
    assert {"runs.db", f"runs/{run_id}/checkpoint.pt", f"runs/{run_id}/config.json"} <= written


def test_nothing_a_user_types_is_evaluated(home, tmp_path, manager):
    marker = tmp_path / "pwned"
    payload = f"__import__('pathlib').Path({str(marker)!r}).touch()"
    text = json.dumps({"name": payload, "device": payload, "model": {"backbone": payload},
                       "data": {"source": payload, "target": "{{7*7}}", "source_path": "$(touch x)"},
                       "optim": {"optimizer": payload, "lr": "1e-3"}})
    cfg = RunConfig.from_json(text)
    assert cfg.name == payload and cfg.model.backbone == payload and cfg.optim.lr == "1e-3"  # kept as text
    with pytest.raises(ConfigError) as info:
        manager.submit(cfg)
    text_of_problems = " ".join(info.value.problems)
    assert "optim.lr: must be a finite number, got '1e-3'" in text_of_problems and "device:" in text_of_problems
    for bad in ('{"__class__": "os.system"}', '{"optim": "__import__(\'os\')"}', '["not", "an", "object"]'):
        with pytest.raises(ValueError):
            RunConfig.from_json(bad)
    # Names and ids reach SQL and paths only as data.
    store = manager.store
    evil = "x'); DROP TABLE runs; --"
    run_id = store.create_run(RunConfig(name=evil))
    store.rename(run_id, evil + " again")
    assert store.get_run(run_id).name == evil + " again" and len(store.list_runs()) == 1
    for bad_id in ("../../etc", "..", "/etc", ".hidden"):
        with pytest.raises(ValueError):
            store.run_dir(bad_id)
    assert not marker.exists() and not (Path.cwd() / "x").exists()
