"""Own data (issue 16): image folders at the run's image size, the three layouts, unlabelled targets,
and augmentation per image. Generated folders of small PNG/JPEG files in tmp_path."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_pages import manager, open_app  # noqa: F401  (manager: a fixture)

from tl_core import data as tld
from tl_core.config import RunConfig
from tl_core.data import DataError
from tl_core.data import folder as fo
from tl_core.preflight import check
from tl_core.recorder import MemoryRecorder

CLASSES = ("circle", "square")


def _picture(cls: str, i: int, size: int = 40) -> Image.Image:
    """A class you can learn: a bright disc or a bright square on a noisy dark background."""
    rng = np.random.default_rng(1000 * CLASSES.index(cls) + i)
    a = rng.integers(0, 60, (size, size, 3), dtype=np.uint8)
    yy, xx = np.mgrid[:size, :size]
    c, r = size / 2 + rng.uniform(-3, 3), size / 4 + rng.uniform(-2, 2)
    mask = (yy - c) ** 2 + (xx - c) ** 2 < r * r if cls == "circle" else (abs(yy - c) < r) & (abs(xx - c) < r)
    a[mask] = rng.integers(180, 256, 3)
    return Image.fromarray(a)


def _write(folder: Path, cls: str | None, n: int, size: int = 40, start: int = 0) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(start, start + n):
        img = _picture(cls or CLASSES[i % 2], i, size)
        img.save(folder / (f"{i}.png" if i % 2 else f"{i}.jpg"), quality=95)


def class_folder(root: Path, n: int = 10, size: int = 40) -> Path:
    for cls in CLASSES:
        _write(root / cls, cls, n, size)
    return root


def flat_folder(root: Path, n: int = 20, size: int = 40) -> Path:
    _write(root, None, n, size)
    return root


def folder_config(src: Path, tgt: Path, method: str = "dann", train_on: str = "source") -> RunConfig:
    cfg = RunConfig(seed=0, device="cpu")
    cfg.data.source = cfg.data.target = "folder"
    cfg.data.source_path, cfg.data.target_path = str(src), str(tgt)
    cfg.data.image_size = 28
    cfg.method.name, cfg.method.train_on = method, train_on
    if method == "dann":
        cfg.method.params["disc_hidden"] = 32
    cfg.optim.batch_size, cfg.optim.epochs = 8, 1
    cfg.snapshot.per_domain = 10
    return cfg


# ----------------------------------------------------------------------------- layouts
def test_class_folders_split_80_20(tmp_path: Path) -> None:
    root = class_folder(tmp_path / "pets", n=10)
    layout = fo.folder_layout(root)
    assert (layout.kind, layout.labelled, layout.classes) == ("classes", True, CLASSES)
    tr, te = (tld.load_split("folder", s, path=root) for s in ("train", "test"))
    assert (len(tr), len(te)) == (16, 4) and tr.classes == list(CLASSES) and tr.labelled


def test_train_val_test_folders_use_the_given_split(tmp_path: Path) -> None:
    root = tmp_path / "splits"
    for cls in CLASSES:
        _write(root / "train" / cls, cls, 7)
        _write(root / "val" / cls, cls, 3, start=100)
    tr, te = (tld.load_split("folder", s, path=root) for s in ("train", "test"))
    assert (len(tr), len(te)) == (14, 6)  # val/ is the held-out split, not a class named "val"
    assert tr.classes == te.classes == list(CLASSES)
    assert np.bincount(te.labels).tolist() == [3, 3]
    assert fo.folder_layout(root).describe().startswith("train/ and val/ folders, 2 classes")
    for cls in CLASSES:  # with test/ beside val/, test/ is the held-out split
        _write(root / "test" / cls, cls, 2, start=200)
    assert len(tld.load_split("folder", "test", path=root)) == 4
    assert len(tld.load_split("folder", "train", path=root)) == 14


def test_flat_folder_is_an_unlabelled_set(tmp_path: Path) -> None:
    root = flat_folder(tmp_path / "street", n=20)
    layout = fo.folder_layout(root)
    assert (layout.kind, layout.labelled, layout.classes) == ("flat", False, ())
    tr, te = (tld.load_split("folder", s, path=root) for s in ("train", "test"))
    assert (len(tr), len(te)) == (16, 4)
    assert not tr.labelled and tr.classes == [] and (tr.labels == -1).all() and (te.labels == -1).all()
    src = tld.load_split("folder", "train", path=class_folder(tmp_path / "pets"))
    tld.check_pair(src, tr)  # an unlabelled target takes the source's classes
    with pytest.raises(DataError, match="no labels"):
        tld.check_pair(tr, src)


@pytest.mark.parametrize("make, expected", [
    (lambda r: (_write(r / "train" / "a", "circle", 2), _write(r / "cats", "circle", 2)),
     r"mixes split folders \(train/\) with other folders of images \(cats\)"),
    (lambda r: (_write(r / "val" / "a", "circle", 2), _write(r / "test" / "a", "circle", 2)),
     r"has test/, val/ but no train/ folder.*train/<class>/<image>"),
    (lambda r: (_write(r / "train" / "a", "circle", 2), _write(r / "train" / "b", "square", 2),
                _write(r / "test", None, 2)),
     r"some split folders have class sub-folders and others hold loose images"),
    (lambda r: (r / "empty" / "deeper").mkdir(parents=True), r"holds no class sub-folders with images.*Expected"),
])
def test_a_wrong_layout_is_refused_naming_the_folder(tmp_path: Path, make, expected: str) -> None:
    root = tmp_path / "odd"
    root.mkdir()
    make(root)
    with pytest.raises(DataError, match=expected) as err:
        tld.load_split("folder", "train", path=root)
    assert str(root) in str(err.value)
    cfg = folder_config(class_folder(tmp_path / "pets"), root)
    problems = check(cfg)
    assert any(p.startswith("data.target_path:") and str(root) in p for p in problems), problems


def test_unlabelled_target_accepted_for_dann_refused_for_a_target_finetune(tmp_path: Path) -> None:
    src, tgt = class_folder(tmp_path / "pets"), flat_folder(tmp_path / "street")
    assert check(folder_config(src, tgt, "dann")) == []
    assert check(folder_config(src, tgt, "finetune", "source")) == []  # source only: the baseline, label-free
    problems = check(folder_config(src, tgt, "finetune", "target"))
    assert len(problems) == 1 and problems[0].startswith("data.target_path:")
    assert f"folder '{tgt}' has no class sub-folders" in problems[0] and "fine-tune on the target" in problems[0]
    assert "DANN" in problems[0]
    problems = check(folder_config(tgt, src, "dann"))  # a source without labels
    assert any(p.startswith("data.source_path:") and "no labels" in p for p in problems), problems


def test_an_unlabelled_target_run_reports_no_target_accuracy_but_entropy(tmp_path: Path) -> None:
    from tl_core import trainer

    src, tgt = class_folder(tmp_path / "pets", n=12), flat_folder(tmp_path / "street", n=30)
    rec = MemoryRecorder()
    out = trainer.run(folder_config(src, tgt, "dann"), rec)
    assert out["status"] == "completed" and out["target_labelled"] is False
    assert "target_test_acc" not in out and "target_test_acc" not in rec.epochs[-1]
    k = len(CLASSES)
    assert 0 <= out["target_entropy"] <= np.log(k) + 1e-6 and 0 <= out["source_val_acc"] <= 1
    extra = rec.epochs[-1]["extra"]
    assert extra["target_labelled"] is False and "confusion" not in extra
    assert abs(sum(extra["target_pred_share"]) - 1) < 1e-6
    assert any(r.get("loss_domain") is not None for r in rec.steps)  # DANN trained end to end on the target
    labels, domains = rec.sample["labels"], rec.sample["domains"]
    assert (labels[domains == 1] == -1).all() and (labels[domains == 0] >= 0).all()
    assert rec.snapshots and all("target_acc" not in s and "source_acc" in s for s in rec.snapshots)


def test_entropy_is_reported_beside_accuracy_for_a_labelled_target(tmp_path: Path) -> None:
    from tl_core import trainer

    src = class_folder(tmp_path / "pets", n=8)
    cfg = folder_config(src, src, "finetune")
    cfg.snapshot.enabled = False
    out = trainer.run(cfg, MemoryRecorder())
    assert "target_test_acc" in out and "target_entropy" in out and "target_labelled" not in out


def test_pages_and_cli_say_target_accuracy_is_not_available(tmp_path: Path) -> None:
    import pandas as pd

    from tl_core.store import RunStore
    from tl_ui import charts, runinfo

    store = RunStore(tmp_path / "home")
    run_id = store.create_run(RunConfig())
    store.log_epoch(run_id, 1, 10, {"source_val_acc": 0.9, "target_entropy": 0.25}, {"target_labelled": False})
    from tl_core.execute import finish_run

    finish_run(store, run_id, {"status": "completed", "target_labelled": False, "source_val_acc": 0.9,
                               "target_entropy": 0.25})
    rec = store.get_run(run_id)
    assert runinfo.accuracies(rec) == (None, None) and runinfo.target_unlabelled(rec)
    text = runinfo.label_free_text(rec)
    assert text.startswith("target accuracy: not available (no labels)") and "0.250" in text and "90.0 %" in text
    fig = charts.accuracy_figure([charts.Series("r", pd.DataFrame(), store.epoch_metrics(run_id), "#000")])
    assert any("not available (no labels)" in a["text"] for a in fig.to_dict()["layout"]["annotations"])
    traces = charts.feature_traces(np.zeros((4, 2)), np.array([0, 0, 1, 1]), np.array([0, 1, -1, -1]), ["a", "b"])
    assert traces[1]["marker"]["symbol"] == ["circle-open", "circle-open"]  # no class marks on the target
    assert list(traces[1]["customdata"][:, 0]) == ["unknown", "unknown"]


def test_cli_run_on_an_unlabelled_target(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    from tl_core.__main__ import main

    monkeypatch.setenv("TL_HOME", str(tmp_path / "home"))
    src, tgt = class_folder(tmp_path / "pets", n=8), flat_folder(tmp_path / "street", n=16)
    code = main(["run", "--source", "folder", "--target", "folder", "--source-path", str(src), "--target-path",
                 str(tgt), "--method", "dann", "--backbone", "lenet", "--epochs", "1", "--batch-size", "8",
                 "--image-size", "28", "--device", "cpu", "--no-snapshots", "--quiet"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "target accuracy: not available (no labels)" in err
    result = json.loads(out.strip().splitlines()[-1])
    assert result["target_labelled"] is False and "target_test_acc" not in result and "target_entropy" in result


# ----------------------------------------------------------------------------- resolution
def test_folders_decode_at_the_run_image_size(tmp_path: Path) -> None:
    root = class_folder(tmp_path / "big", n=4, size=300)
    for size in (96, 40):
        s = tld.load_split("folder", "train", path=root, image_size=size)
        assert s.images.shape[1:] == (size, size, 3)
    assert tld.load_split("folder", "train", path=root).images.shape[1] == fo.WORK_SIZE


def test_a_run_hands_the_model_inputs_of_its_image_size(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A 224-px run (300-px files) trains on 224-px pictures: what the loop hands the method's step."""
    from tl_core import trainer
    from tl_core.methods.finetune import FineTune

    root = class_folder(tmp_path / "big", n=4, size=300)
    seen: list[tuple[int, ...]] = []
    real = FineTune.train_step

    def spy(self, batch, model, progress, opt):
        seen.append(tuple(batch.x_src.shape))
        return real(self, batch, model, progress, opt)

    monkeypatch.setattr(FineTune, "train_step", spy)
    cfg = folder_config(root, root, "finetune")
    cfg.data.image_size, cfg.snapshot.enabled, cfg.optim.batch_size = 224, False, 3
    trainer.run(cfg, MemoryRecorder())
    assert seen and all(s[1:] == (3, 224, 224) for s in seen)


def test_a_folder_over_the_memory_budget_is_refused_before_decoding(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    root = class_folder(tmp_path / "big", n=4, size=60)
    monkeypatch.setenv(fo.MEMORY_BUDGET_ENV, "0.0001")  # 100 KB: 8 images at 224 px need 3 × 1.2 MB
    with pytest.raises(DataError, match=r"8 images at 224×224 px take .* over the memory budget .*TL_DATA_MEMORY_GB"):
        tld.load_split("folder", "train", path=root, image_size=224)
    assert len(tld.load_split("folder", "train", path=root, image_size=16)) > 0  # small enough


# ----------------------------------------------------------------------------- augmentation
def test_augmentation_changes_each_image_on_its_own_draw() -> None:
    import torch

    from tl_core.data.augment import AugmentSpec, ImageAugment

    torch.manual_seed(0)
    one = torch.from_numpy(np.array(_picture("circle", 1, 28))).permute(2, 0, 1)
    x = one.expand(16, -1, -1, -1).contiguous()  # sixteen identical images in one batch
    for spec in (AugmentSpec(crop=0.5), AugmentSpec(jitter=0.4), AugmentSpec(trivial=True),
                 AugmentSpec(crop=0.8, flip=True, jitter=0.2, trivial=True)):
        y = ImageAugment(spec)(x)
        assert y.dtype == torch.uint8 and y.shape == x.shape
        distinct = {bytes(im.numpy().tobytes()) for im in y}
        assert len(distinct) >= 8, (spec, len(distinct))  # per image, not one draw for the batch
        assert not torch.equal(y[0], y[1]) or not torch.equal(y[2], y[3])
    flipped = ImageAugment(AugmentSpec(flip=True))(x)
    n_flipped = sum(bool(torch.equal(im, one.flip(-1))) for im in flipped)
    assert 0 < n_flipped < 16 and all(torch.equal(im, one) or torch.equal(im, one.flip(-1)) for im in flipped)
    assert torch.equal(ImageAugment(AugmentSpec())(x), x)  # nothing on: unchanged


def test_old_configs_with_augment_true_still_load() -> None:
    from tl_core.data.augment import spec_for

    old = {"optim": {"augment": True, "lr": 0.01}, "data": {"source": "mnist", "target": "mnist-m"}}
    cfg = RunConfig.from_json(json.dumps(old))
    assert cfg.validate() == [] and cfg.optim.augment is True
    spec = spec_for(cfg.optim, tld.DIGIT_CLASSES)
    assert spec.crop == 0.8 and not spec.flip and spec.jitter == 0 and not spec.trivial  # digits: no flip
    assert spec_for(cfg.optim, ["cat", "dog"]).flip  # auto flips other images
    assert spec_for(RunConfig().optim, ["cat", "dog"]) is None  # off by default
    assert RunConfig.from_json(cfg.to_json()).to_json() == cfg.to_json()
    bad = RunConfig()
    bad.optim.augment_crop, bad.optim.augment_flip, bad.optim.augment_jitter = 0.0, "sideways", 3
    msgs = bad.validate()
    assert any(m.startswith("optim.augment_crop:") for m in msgs)
    assert any(m.startswith("optim.augment_flip:") and "auto, on, off" in m for m in msgs)
    assert any(m.startswith("optim.augment_jitter:") for m in msgs)


def test_cli_flags_set_the_augmentation() -> None:
    from tl_core.__main__ import _parser, build_config

    a = _parser().parse_args(["run", "--preset", "mnist-mnist-m", "--augment-jitter", "0.3", "--augment-flip", "on",
                              "--augment-trivial"])
    o = build_config(a).optim
    assert (o.augment, o.augment_jitter, o.augment_flip, o.augment_trivial, o.augment_crop) == (True, 0.3, "on",
                                                                                                 True, 0.8)
    assert build_config(_parser().parse_args(["run", "--preset", "mnist-mnist-m"])).optim.augment is False


def test_the_loop_augments_per_image_and_skips_the_frozen_stage_cache(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A source of identical images: with augmentation on, the images of one batch reach the step different;
    the frozen-stage cache is used with augmentation off (exact) and skipped with it on."""
    import shutil

    import torch

    from tl_core import trainer
    from tl_core.methods.finetune import FineTune

    root = class_folder(tmp_path / "same", n=1)
    for cls in CLASSES:  # eight copies of one file per class
        first = next((root / cls).iterdir())
        for i in range(7):
            shutil.copy(first, root / cls / f"copy{i}{first.suffix}")
    batches: list[torch.Tensor] = []
    real = FineTune.train_step

    def spy(self, batch, model, progress, opt):
        batches.append(batch.x_src.clone())
        return real(self, batch, model, progress, opt)

    monkeypatch.setattr(FineTune, "train_step", spy)
    cfg = folder_config(root, root, "finetune")
    cfg.snapshot.enabled, cfg.model.freeze, cfg.optim.batch_size = False, 1, 6
    cfg.optim.augment, cfg.optim.augment_crop, cfg.optim.augment_jitter = True, 0.6, 0.3
    out = trainer.run(cfg, MemoryRecorder())
    assert out["cached_frozen_stages"] is False
    x = batches[0]
    assert x.dtype == torch.uint8 and x.shape[1:] == (3, 28, 28)
    assert len({bytes(im.numpy().tobytes()) for im in x}) == x.shape[0]  # every image its own draw
    batches.clear()
    cfg.optim.augment = False
    out = trainer.run(cfg, MemoryRecorder())
    assert out["cached_frozen_stages"] is True and batches and batches[0].dtype != torch.uint8  # stage outputs


# ----------------------------------------------------------------------------- Setup page (AppTest)
def test_setup_describes_the_folders_and_previews_the_augmentation(tmp_path: Path, manager,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from tl_ui import keys, resources

    root = tmp_path / "data"
    for cls in CLASSES:
        _write(root / "shapes" / "train" / cls, cls, 6, size=80)
        _write(root / "shapes" / "val" / cls, cls, 2, size=80, start=50)
    flat_folder(root / "street", n=12, size=80)
    monkeypatch.setenv("TL_DATA_ROOT", str(root))
    resources.folder_description.clear()
    resources.augment_preview.clear()
    k = keys.setup_key
    at = open_app(keys.PAGE_SETUP)
    at.selectbox(key=keys.SETUP_PRESET).set_value("folder").run()
    at.selectbox(key=k("model.backbone")).set_value("lenet").run()
    at.slider(key=k("model.freeze")).set_value(0).run()
    at.number_input(key=k("data.image_size")).set_value(64).run()
    at.text_input(key=k("data.source_path")).set_value("shapes").run()
    at.text_input(key=k("data.target_path")).set_value("street").run()
    assert not at.exception, [e.value for e in at.exception]
    captions = [c.value.replace("\\", "") for c in at.caption]  # plain(): Markdown characters escaped
    assert any("Found: train/ and val/ folders, 2 classes (circle, square), 12 + 4 image files" in c
               for c in captions), captions
    assert any("Found: no class sub-folders: unlabelled images" in c for c in captions), captions
    at.radio(key=keys.SETUP_METHOD).set_value("finetune@target").run()  # a fine-tune on an unlabelled target
    errors = [e.value for e in at.error]
    assert any("has no class sub-folders" in e and "street" in e for e in errors), errors
    assert at.button(key=keys.SETUP_START).disabled
    at.radio(key=keys.SETUP_METHOD).set_value("dann").run()
    at.checkbox(key=k("optim.augment")).check().run()
    at.number_input(key=k("optim.augment_jitter")).set_value(0.3).run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.selectbox(key=k("optim.augment_flip")).value == "auto"
    grids = list(at.get("image")) or list(at.get("imgs"))  # the element's name changed across Streamlit versions
    assert grids, "no augmentation preview"
    shown = str(grids[-1].proto).replace("\\", "")
    assert "What the model sees" in shown and "horizontal flip" in shown and "colour jitter 0.3" in shown, shown
    assert not at.button(key=keys.SETUP_START).disabled, [e.value for e in at.error]


# ----------------------------------------------------------------------------- larger than memory
def _streamed(rec: MemoryRecorder) -> bool:
    return any(p and p.startswith("streaming the source images from disk") for p in rec.phases)


def test_a_folder_over_the_budget_streams_and_trains_to_the_same_numbers(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Same files, same size, same batches: the streamed run's losses and accuracies are the in-memory run's."""
    from tl_core import trainer

    src, tgt = class_folder(tmp_path / "pets", n=12), class_folder(tmp_path / "pets2", n=6, size=50)
    cfg = folder_config(src, tgt, "dann")
    cfg.snapshot.per_domain = 6
    held = MemoryRecorder()
    in_memory = trainer.run(cfg, held)
    assert not _streamed(held)
    monkeypatch.setenv(fo.MEMORY_BUDGET_ENV, "0.000001")  # 1 KB: every folder streams
    from tl_core.data import stream

    decoded = []
    real = stream._decode
    monkeypatch.setattr(stream, "_decode", lambda path, size: decoded.append(path) or real(path, size))
    streamed_rec = MemoryRecorder()
    streamed = trainer.run(cfg, streamed_rec)
    phases = " ".join(p or "" for p in streamed_rec.phases)
    assert _streamed(streamed_rec) and "over the memory budget" in phases
    assert "decoding the streamed images once, to disk: " in phases and "images of pets2" in phases
    every = sorted(str(f) for f in [*src.rglob("*"), *tgt.rglob("*")] if f.is_file())
    assert sorted(decoded) == every  # each file decoded once in the whole run: steps and evaluations read back
    assert streamed["target_test_acc"] == pytest.approx(in_memory["target_test_acc"])
    assert streamed["source_val_acc"] == pytest.approx(in_memory["source_val_acc"])
    assert [r["loss"] for r in streamed_rec.steps] == pytest.approx([r["loss"] for r in held.steps], rel=1e-4)


def test_without_room_on_disk_a_streamed_run_decodes_in_worker_processes_to_the_same_numbers(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No room for the decoded pixels on disk: a DataLoader's worker process decodes each epoch's planned batches
    on the fly, and the run's losses and accuracies are still the in-memory run's."""
    from tl_core import trainer
    from tl_core.data import stream

    src, tgt = class_folder(tmp_path / "pets", n=12), flat_folder(tmp_path / "street", n=20)
    cfg = folder_config(src, tgt, "dann")
    cfg.optim.epochs, cfg.snapshot.enabled = 2, False
    held = MemoryRecorder()
    in_memory = trainer.run(cfg, held)
    monkeypatch.setenv(fo.MEMORY_BUDGET_ENV, "0.000001")
    monkeypatch.setattr(stream, "CACHE_SPARE_BYTES", 1 << 60)  # more than any disk has
    planned, workers = [], []
    real_take, real_plan = stream.StreamImages._take_planned, stream.StreamImages.plan

    def take(self, idx):
        out = real_take(self, idx)
        planned.append(out is not None)
        return out

    def plan(self, *a, **kw):
        real_plan(self, *a, **kw)
        workers.append(self._loader.num_workers if self._loader is not None else 0)

    monkeypatch.setattr(stream.StreamImages, "_take_planned", take)
    monkeypatch.setattr(stream.StreamImages, "plan", plan)
    rec = MemoryRecorder()
    streamed = trainer.run(cfg, rec)
    assert _streamed(rec) and not any("once, to disk" in (p or "") for p in rec.phases)
    assert workers and all(w >= 1 for w in workers)  # every epoch's batches came from worker processes
    assert sum(planned) >= 2 * len(rec.steps) - 1  # source and target batches, as planned
    assert streamed["target_entropy"] == pytest.approx(in_memory["target_entropy"], rel=1e-4)
    assert streamed["source_val_acc"] == pytest.approx(in_memory["source_val_acc"])
    assert [r["loss"] for r in rec.steps] == pytest.approx([r["loss"] for r in held.steps], rel=1e-4)


def test_a_streamed_run_resumes_inside_an_epoch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    from _tiny import StopInEpoch

    from tl_core import checkpoint, trainer

    monkeypatch.setenv(fo.MEMORY_BUDGET_ENV, "0.000001")
    monkeypatch.setattr(checkpoint, "EVERY_S", 0.0)  # a checkpoint after every step
    src, tgt = class_folder(tmp_path / "pets", n=12), flat_folder(tmp_path / "street", n=20)
    cfg = folder_config(src, tgt, "dann")
    cfg.optim.epochs, cfg.snapshot.enabled = 2, False
    full = MemoryRecorder()
    res_full = trainer.run(cfg, full)
    assert _streamed(full) and res_full["target_labelled"] is False
    stop = threading.Event()
    (tmp_path / "run").mkdir()
    part = StopInEpoch(tmp_path / "run", 2, stop)
    assert trainer.run(cfg, part, stop)["status"] == "stopped"
    state = checkpoint.load_checkpoint_file(tmp_path / "run" / "checkpoint.pt")
    assert state.get("in_epoch", 0) > 0  # stopped inside epoch 2
    resumed = MemoryRecorder(tmp_path / "run")
    res = trainer.run(cfg, resumed, resume=tmp_path / "run" / "checkpoint.pt")
    assert res["status"] == "completed" and res["step"] == res_full["step"]
    assert res["target_entropy"] == pytest.approx(res_full["target_entropy"], rel=1e-4)
    assert [r["loss"] for r in resumed.steps] == pytest.approx([r["loss"] for r in full.steps[-len(resumed.steps):]],
                                                               rel=1e-4)


def test_decoding_and_scanning_report_progress_with_skipped_counts(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    root = class_folder(tmp_path / "pets", n=6)
    (root / "circle" / "broken.jpg").write_bytes(b"not a jpeg")
    heard: list[tuple[int, int, str]] = []
    token = fo.DECODE_PROGRESS.set(lambda done, total, name: heard.append((done, total, name)))
    try:
        s = tld.load_split("folder", "train", path=root, image_size=24)
        assert heard[-1] == (13, 13, "pets (1 unreadable, skipped)") and s.skipped == 1
        heard.clear()
        monkeypatch.setenv(fo.MEMORY_BUDGET_ENV, "0.000001")
        streamed = tld.load_split("folder", "train", path=root, image_size=25, stream=True)
        assert heard[-1] == (13, 13, "pets (1 unreadable, skipped)")
        assert streamed.skipped == 1 and len(streamed) == len(s) and "over the memory budget" in streamed.reason
    finally:
        fo.DECODE_PROGRESS.reset(token)


def test_an_evaluation_batch_holds_at_most_512_images_of_64_px_worth_of_pixels():
    # 512 held-out images at 224 px in one forward pass took 1.3 GB more than training
    # (docs/BENCHMARK_HISTORY.md, section 6).
    import torch

    from tl_core.evaluation import eval_batch

    assert eval_batch(torch.zeros(0, 3, 28, 28, dtype=torch.uint8)) == 512
    assert eval_batch(torch.zeros(0, 3, 64, 64, dtype=torch.uint8)) == 512
    assert eval_batch(torch.zeros(0, 3, 224, 224, dtype=torch.uint8)) == 41
    assert eval_batch(torch.zeros(0, 3, 1024, 1024, dtype=torch.uint8)) == 2
    assert eval_batch(torch.zeros(0, 3, 4096, 4096, dtype=torch.uint8)) == 1  # never 0


def test_a_streamed_image_is_decoded_once_per_run_and_its_file_goes_with_the_run(tl_home: Path, tmp_path: Path):
    """Epoch 1 decodes every image (in a worker process) and writes its pixels to TL_HOME/cache/stream; epoch 2
    (the same worker process) and an evaluation read them from there, with the image files gone, and get the same
    pixels; the file goes at the end."""
    import torch

    from tl_core.data import stream

    root = class_folder(tmp_path / "pets", n=12)
    files = sorted(str(p) for p in root.rglob("*") if p.is_file())
    fresh = np.stack([fo.read_image(f, 20).transpose(2, 0, 1) for f in files])
    x = stream.StreamImages(files, 20, "cpu", workers=1)
    [cache] = list(stream.cache_dir().glob("*.u8"))
    assert cache.stat().st_size == len(files) * 3 * 20 * 20 and x.cached == 0
    order = torch.randperm(len(files), generator=torch.Generator().manual_seed(0))
    x.plan(order, 5)
    first = torch.cat([x[order[i:i + 5]] for i in range(0, len(files), 5)])
    assert x.cached == len(files)  # the worker process wrote them, the loop marked them
    assert torch.equal(first, torch.from_numpy(fresh)[order])

    import shutil

    shutil.rmtree(root)  # decoding again would now give black images and failures
    x.plan(order.flip(0), 6)  # the same worker process, a new epoch
    again = torch.cat([x[order.flip(0)[i:i + 6]] for i in range(0, len(files), 6)])
    assert torch.equal(again, torch.from_numpy(fresh)[order.flip(0)])
    assert torch.equal(x[:], torch.from_numpy(fresh)) and not x.failed  # evaluation's path: from the file too
    x.close()
    assert not cache.exists() and list(stream.cache_dir().glob("*.u8")) == []


def test_a_filled_stream_reads_every_batch_back_from_disk_without_worker_processes(tl_home: Path, tmp_path: Path):
    """``fill`` (what a run does) decodes every image once, up front, reporting progress; the planned batches of
    each epoch are then read back from the file in the loop's own thread, with the same pixels."""
    import torch

    from tl_core.data import stream

    root = class_folder(tmp_path / "pets", n=6)
    (root / "circle" / "broken.jpg").write_bytes(b"not a jpeg")  # its header is all a scan reads
    files = sorted(str(p) for p in root.rglob("*") if p.is_file())
    fresh = np.stack([fo.read_image(f, 18).transpose(2, 0, 1) if not f.endswith("broken.jpg")
                      else np.zeros((3, 18, 18), np.uint8) for f in files])
    x = stream.StreamImages(files, 18, "cpu", workers=1)
    heard: list[tuple[int, int, str]] = []
    token = fo.DECODE_PROGRESS.set(lambda done, total, name: heard.append((done, total, name)))
    try:
        x.fill("pets")
    finally:
        fo.DECODE_PROGRESS.reset(token)
    assert heard[-1] == (len(files), len(files), "pets (1 unreadable, skipped)")
    assert x.cached == len(files) - 1 and x.failed == {files.index(str(root / "circle" / "broken.jpg"))}
    import shutil

    shutil.rmtree(root)  # decoding now would give black images and failures: every pixel comes from the file
    for epoch in range(2):
        order = torch.randperm(len(files), generator=torch.Generator().manual_seed(epoch))
        x.plan(order, 4)
        got = torch.cat([x[order[i:i + 4]] for i in range(0, len(files), 4)])
        assert torch.equal(got, torch.from_numpy(fresh)[order])
    assert x._loader is None  # no worker process was started
    x.close()


def test_without_room_on_disk_a_streamed_image_is_decoded_each_time(tl_home: Path, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from tl_core.data import stream

    root = class_folder(tmp_path / "pets", n=4)
    files = sorted(str(p) for p in root.rglob("*") if p.is_file())
    monkeypatch.setattr(stream, "CACHE_SPARE_BYTES", 1 << 60)  # more than any disk has
    x = stream.StreamImages(files, 16, "cpu", workers=0)
    assert list(stream.cache_dir().glob("*.u8")) == []
    decoded = []
    real = stream._decode
    monkeypatch.setattr(stream, "_decode", lambda path, size: decoded.append(path) or real(path, size))
    a, b = x[:], x[:]
    assert x.cached == 0 and len(decoded) == 2 * len(files) and bool((a == b).all())
    x.close()


def test_a_killed_runs_decoded_pixels_are_removed_by_the_next_streamed_run(tl_home: Path, tmp_path: Path) -> None:
    from tl_core.data import stream

    stream.cache_dir().mkdir(parents=True)
    dead = stream.cache_dir() / f"{stream._HOST}-999999999-abc.u8"  # no process has this id
    other_host = stream.cache_dir() / "elsewhere-1-abc.u8"  # another machine's run on a shared TL_HOME
    dead.write_bytes(b"x"), other_host.write_bytes(b"x")
    root = class_folder(tmp_path / "pets", n=2)
    x = stream.StreamImages(sorted(str(p) for p in root.rglob("*") if p.is_file()), 16, "cpu", workers=0)
    assert not dead.exists() and other_host.exists()
    x.close()


def test_decoding_progress_on_the_run_card_says_how_long_is_left(monkeypatch: pytest.MonkeyPatch) -> None:
    from tl_core import prepare

    clock = iter([100.0, 100.0, 104.0, 104.0, 106.0, 106.0, 200.0, 200.0, 201.0, 201.0])
    monkeypatch.setattr(prepare.time, "monotonic", lambda: next(clock))
    said: list[str] = []
    report = prepare._decode_progress(said.append, "decoding the streamed images once, to disk")
    report(100, 1000, "pets")
    report(500, 1000, "pets (2 unreadable, skipped)")  # 400 images in 4 s: 500 left take 5 s
    report(1000, 1000, "pets (2 unreadable, skipped)")
    report(10, 1000, "pets")  # a new pass over the same folder (its test split): timed afresh
    assert said == ["decoding the streamed images once, to disk: 100 of 1,000 images of pets",
                    "decoding the streamed images once, to disk: 500 of 1,000 images of pets (2 unreadable, skipped), "
                    "about 5 s left",
                    "decoding the streamed images once, to disk: 1,000 of 1,000 images of pets (2 unreadable, skipped)",
                    "decoding the streamed images once, to disk: 10 of 1,000 images of pets"]
