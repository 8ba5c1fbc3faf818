"""Reliability of the engine (issue 5), docs/WHAT_HAPPENS_WHEN.md "Bad input": settings, image
folders, weights, device and checkpoints that cannot make a run are refused (at submit, at resume,
or by the run failing at once with a clear message), and the command line exits 2.

Every test goes through the engine's front doors: ``JobManager`` (what the dashboard calls),
``trainer.run``, or the command line (``tl_core.__main__.main`` in this process, or
``python -m tl_core`` as a real process where the process itself matters). Runs are tiny (LeNet,
a few hundred images, one epoch, no snapshots). Shared helpers are in ``_reliability.py``.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tl_core import backbones, data, failures, trainer
from tl_core.config import RunConfig
from tl_core.jobs import ConfigError
from tl_core.recorder import MemoryRecorder

from _reliability import home, manager  # noqa: F401  (pytest fixtures, used by name)
from _reliability import CLI_TINY, ROOT, _Marker, cli, small, wait_status

CHECKPOINT_FORMAT = "transfer-lab-checkpoint/1"


# ------------------------------------------------------------------------------ helpers
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
    if method == "dann":
        cfg.method.params["disc_hidden"] = 32
    cfg.optim.batch_size = 8
    cfg.optim.epochs = 1
    cfg.snapshot.enabled = False
    return cfg


def folder_cli(source: Path, target: Path, *extra: str) -> list[str]:
    return ["--source", "folder", "--target", "folder", "--source-path", str(source), "--target-path", str(target),
            "--backbone", "lenet", "--method", "finetune", "--batch-size", "8", "--epochs", "1", "--device", "cpu",
            "--no-snapshots", "--quiet", *extra]


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


def _class_unreadable(tmp: Path) -> Path:
    root = image_folder(tmp / "one-bad-class")
    for f in (root / "c").iterdir():
        f.write_bytes(b"")  # zero-byte files: class c has no image left
    return root


FOLDER_PROBLEMS = [
    ("empty", _empty, "holds no class sub-folders with images"),
    ("one class only", _one_class, "has only one class ('only')"),
    ("no readable image", _all_corrupt, "None of the 6 image files"),
    ("a class without a readable image", _class_unreadable, "Class folder 'c' in"),
]


@pytest.mark.parametrize("what,make,words", FOLDER_PROBLEMS, ids=[f[0] for f in FOLDER_PROBLEMS])
def test_folder_that_cannot_train_fails_the_run_with_a_clear_message(what, make, words, tmp_path, manager, capsys):
    good = image_folder(tmp_path / "good")
    bad = make(tmp_path)
    if what == "empty":  # a folder without images has no layout: refused at submit, naming it (preflight)
        with pytest.raises(ConfigError) as info:
            manager.submit(folder_config(bad, good), owner="alice")
        assert any(words in p and str(bad) in p for p in info.value.problems), info.value.problems
    else:
        run_id = manager.submit(folder_config(bad, good), owner="alice")
        rec = wait_status(manager.store, run_id, ("failed",))
        assert words in rec.error and str(bad) in rec.error, rec.error
        assert "Traceback" not in rec.error
    code, out, err = cli(capsys, *folder_cli(bad, good))
    assert code == 2 and words in err and (what == "empty" or json.loads(out)["status"] == "failed")


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
    with pytest.raises(data.DataError, match="outside the data folder"):
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
    with pytest.raises(backbones.BackboneError) as exc:
        trainer.run(cfg, MemoryRecorder())
    assert str(expected) in str(exc.value) and "download.pytorch.org" in str(exc.value)
    assert failures.describe_exception(exc.value)[0] == str(exc.value)
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


def _damaged_store(home: Path) -> Path:
    home.mkdir(parents=True, exist_ok=True)
    (home / "runs.db").write_bytes(b"this is not a database, a disk error ate it" * 100)
    return home


def test_a_damaged_run_store_or_unwritable_tl_home_says_what_to_do(tmp_path, monkeypatch):
    """CLI: one 'error:' line naming the file and what to do, exit 2; the dashboard: a page that says so."""
    from streamlit.testing.v1 import AppTest

    from tl_core import jobs
    from tl_ui import resources

    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    cases = {"damaged": (_damaged_store(tmp_path / "damaged"), "runs.db cannot be read", "move it aside"),
             "unwritable": (blocker / "home", "cannot be used for the run store", "Point TL_HOME")}
    for name, (home, what, todo) in cases.items():
        env = {**os.environ, "TL_HOME": str(home)}
        p = subprocess.run([sys.executable, "-m", "tl_core", "run", *CLI_TINY], capture_output=True, text=True,
                           env=env, cwd=ROOT, timeout=300)
        assert p.returncode == 2, (name, p.stderr)
        assert p.stderr.startswith("error: ") and what in p.stderr and todo in p.stderr, p.stderr
        assert "Traceback" not in p.stderr
        monkeypatch.setenv("TL_HOME", str(home))
        monkeypatch.setattr(jobs, "_MANAGER", None)  # the dashboard's manager is made anew, on this TL_HOME
        resources.get_manager.clear()
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=90)
        at.run()
        assert not at.exception, [e.value for e in at.exception]
        shown = [e.value.replace("\\", "") for e in at.error]  # plain text: Markdown characters escaped
        assert any(what in e and todo in e for e in shown), shown
