"""The training loop on small real data: metrics, freezing, caching, stop, divergence, resume."""

import copy
import threading

import numpy as np
import pytest
import torch

from tl_core import trainer
from tl_core import checkpoint, evaluation, snapshots
from tl_core.failures import Diverged, RunError
from tl_core.methods import register
from tl_core.methods.finetune import FineTune
from tl_core.recorder import MemoryRecorder

from _tiny import StopInEpoch, tiny_config


def test_dann_run_records_step_epoch_and_snapshot_metrics():
    rec = MemoryRecorder()
    result = trainer.run(tiny_config("dann"), rec)
    assert result["status"] == "completed" and result["step"] == 8  # 256 / 32
    assert {"loss", "loss_task", "loss_domain", "lambda", "lr", "images_per_s", "domain_acc"} <= set(rec.steps[0])
    assert [r["step"] for r in rec.steps] == list(range(1, 9))
    lam = [r["lambda"] for r in rec.steps]
    assert lam == sorted(lam) and lam[:2] == [0.0, 0.0] and lam[2] > 0  # source only for the first 20 %
    lrs = [r["lr"] for r in rec.steps]
    assert lrs == sorted(lrs, reverse=True)  # annealed
    (ep,) = rec.epochs
    assert 0 <= ep["target_test_acc"] <= 1 and 0 <= ep["source_val_acc"] <= 1
    conf = np.array(ep["extra"]["confusion"])
    assert conf.shape == (10, 10) and conf.sum() == 100
    assert len(rec.snapshots) == 2  # before training and after epoch 1
    assert rec.snapshots[0]["features"].shape == (80, rec.snapshots[1]["features"].shape[1])
    assert rec.sample["domains"].tolist() == [0] * 40 + [1] * 40


def test_source_only_never_sees_target_training_images(monkeypatch):
    seen = []
    orig = FineTune.loss

    def spy(self, batch, *a, **k):
        seen.append(batch.x_tgt)
        return orig(self, batch, *a, **k)

    monkeypatch.setattr(FineTune, "loss", spy)
    trainer.run(tiny_config("finetune"), MemoryRecorder())
    assert seen and all(x is None for x in seen)


def _capture_prepared(monkeypatch):
    box = {}
    orig = trainer.prepare

    def wrapped(cfg, device, **kw):
        p = orig(cfg, device, **kw)
        box["p"] = p
        box["initial"] = copy.deepcopy(p.backbone.state_dict())
        return p

    monkeypatch.setattr(trainer, "prepare", wrapped)
    return box


def test_frozen_stages_and_their_batchnorm_statistics_do_not_move(monkeypatch):
    box = _capture_prepared(monkeypatch)
    cfg = tiny_config("dann")
    cfg.model.freeze = 1
    cfg.optim.augment = True  # no caching: the frozen stage really runs forward in train mode
    trainer.run(cfg, MemoryRecorder())
    p, initial = box["p"], box["initial"]
    frozen_prefix = "stages.0."
    after = p.backbone.state_dict()
    frozen = [k for k in initial if k.startswith(frozen_prefix)]
    trainable = [k for k in initial if not k.startswith(frozen_prefix) and initial[k].is_floating_point()]
    assert frozen and trainable
    for k in frozen:
        assert torch.equal(initial[k], after[k]), k
    assert any(not torch.equal(initial[k], after[k]) for k in trainable)


def test_cached_frozen_stages_give_the_same_numbers(monkeypatch):
    cfg = tiny_config("finetune")
    cfg.model.freeze = 2
    cfg.snapshot.enabled = False
    a = MemoryRecorder()
    res_a = trainer.run(cfg, a)
    monkeypatch.setattr(trainer, "CACHE_BUDGET_BYTES", 0)
    b = MemoryRecorder()
    res_b = trainer.run(cfg, b)
    assert res_a["cached_frozen_stages"] and not res_b["cached_frozen_stages"]
    assert np.allclose([r["loss"] for r in a.steps], [r["loss"] for r in b.steps], atol=1e-4)
    assert res_a["target_test_acc"] == pytest.approx(res_b["target_test_acc"], abs=0.011)


class _StopAfterFirstStep(MemoryRecorder):
    def __init__(self, stop):
        super().__init__()
        self.stop = stop

    def log_steps(self, rows):
        super().log_steps(rows)
        self.stop.set()


def test_stop_ends_the_run_within_one_step(monkeypatch):
    monkeypatch.setattr(trainer, "FLUSH_EVERY_S", 0.0)  # flush after every step
    stop = threading.Event()
    rec = _StopAfterFirstStep(stop)
    result = trainer.run(tiny_config("dann"), rec, stop)
    assert result["status"] == "stopped"
    assert len(rec.steps) == 1 and result["step"] == 1


@register
class _NanAfter3(FineTune):
    name, title, description = "nan-after-3", "NaN after 3", "test only: the loss becomes NaN at the fourth step"
    calls = 0

    def loss(self, batch, model, progress):
        loss, m = super().loss(batch, model, progress)
        type(self).calls += 1
        return (loss * float("nan") if type(self).calls > 3 else loss), m


def test_nan_loss_stops_as_diverged_keeping_earlier_metrics(monkeypatch):
    monkeypatch.setattr(trainer, "FLUSH_EVERY_S", 0.0)
    _NanAfter3.calls = 0
    rec = MemoryRecorder()
    cfg = tiny_config("nan-after-3")
    with pytest.raises(Diverged, match="step 4") as info:
        trainer.run(cfg, rec)
    assert info.value.status == "diverged" and "learning rate" in info.value.hint
    assert [r["step"] for r in rec.steps] == [1, 2, 3]


def test_invalid_and_impossible_configs_raise_clear_errors():
    cfg = tiny_config()
    cfg.model.freeze = 9
    with pytest.raises(RunError, match="has 3 stages"):
        trainer.run(cfg, MemoryRecorder())
    cfg = tiny_config()
    cfg.optim.batch_size = 10_000
    with pytest.raises(RunError, match="larger than the training set"):
        trainer.run(cfg, MemoryRecorder())
    cfg = tiny_config()
    cfg.optim.lr = 0
    with pytest.raises(RunError, match="optim.lr"):
        trainer.run(cfg, MemoryRecorder())


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_cuda_on_a_machine_without_it_is_refused():
    cfg = tiny_config()
    cfg.device = "cuda"
    with pytest.raises(RunError, match="no usable CUDA"):
        trainer.run(cfg, MemoryRecorder())


def test_resume_from_checkpoint_reaches_the_same_end(tmp_path, monkeypatch):
    cfg = tiny_config("dann")
    cfg.optim.epochs = 2
    cfg.snapshot.enabled = False
    full = MemoryRecorder(tmp_path / "a")
    (tmp_path / "a").mkdir()
    res_full = trainer.run(cfg, full)

    # Interrupt during epoch 2, then resume from the epoch-1 checkpoint.
    (tmp_path / "b").mkdir()
    stop = threading.Event()

    monkeypatch.setattr(trainer, "FLUSH_EVERY_S", 0.0)
    part = StopInEpoch(tmp_path / "b", 2, stop)
    assert trainer.run(cfg, part, stop)["status"] == "stopped"
    resumed = MemoryRecorder(tmp_path / "b")
    res = trainer.run(cfg, resumed, resume=tmp_path / "b" / "checkpoint.pt")
    assert res["status"] == "completed" and res["step"] == res_full["step"]
    assert res["target_test_acc"] == pytest.approx(res_full["target_test_acc"])
    assert [r["loss"] for r in resumed.steps] == pytest.approx([r["loss"] for r in full.steps[8:]], rel=1e-5)


def test_foreign_or_corrupt_checkpoint_is_refused(tmp_path):
    bad = tmp_path / "checkpoint.pt"
    bad.write_bytes(b"not a checkpoint at all")
    with pytest.raises(RunError, match="not a readable"):
        checkpoint.load_checkpoint_file(bad)
    torch.save({"some": torch.zeros(2)}, bad)
    with pytest.raises(RunError, match="not a Transfer Lab checkpoint"):
        checkpoint.load_checkpoint_file(bad)

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"format": "transfer-lab-checkpoint/1", "x": Evil()}, bad, _use_new_zipfile_serialization=True)
    with pytest.raises(RunError):
        checkpoint.load_checkpoint_file(bad)  # weights_only refuses arbitrary objects


# ------------------------------------------------------------- snapshot schedule

def test_snapshot_steps_every_epoch_every_n_steps_and_both():
    assert snapshots.snapshot_steps(8, 3, 1, 0) == [8, 16, 24]
    assert snapshots.snapshot_steps(8, 3, 2, 0) == [16]
    assert snapshots.snapshot_steps(8, 2, 0, 3) == [3, 6, 9, 12, 15]
    assert snapshots.snapshot_steps(8, 2, 1, 4) == [4, 8, 12, 16]  # step 8 is both: one snapshot
    assert snapshots.snapshot_steps(8, 2, 0, 0) == []


def test_snapshots_every_n_steps_have_fixed_sample_and_fractional_epochs():
    cfg = tiny_config("dann")
    cfg.optim.epochs = 2
    cfg.snapshot.every_steps = 3  # 8 steps per epoch
    rec = MemoryRecorder()
    trainer.run(cfg, rec)
    assert [s["step"] for s in rec.snapshots] == [0, 3, 6, 8, 9, 12, 15, 16]
    assert [s["idx"] for s in rec.snapshots] == list(range(8))
    assert [s["epoch"] for s in rec.snapshots] == [0, 0.375, 0.75, 1, 1.125, 1.5, 1.875, 2]
    shapes = {s["features"].shape for s in rec.snapshots}
    assert shapes == {(80, rec.snapshots[0]["features"].shape[1])}  # one fixed sample throughout
    # the features move as training goes on
    assert not np.allclose(rec.snapshots[1]["features"], rec.snapshots[-1]["features"])


def test_end_of_epoch_snapshot_reuses_evaluation_features_and_matches_a_forward_pass(monkeypatch):
    calls = []
    orig_predict = evaluation.predict

    def spy(p, x, *a, **k):
        calls.append(x.shape[0])
        out = orig_predict(p, x, *a, **k)
        box["p"], box["last"] = p, (x, out)
        return out

    box = {}
    monkeypatch.setattr(evaluation, "predict", spy)
    monkeypatch.setattr(snapshots, "predict", spy)
    cfg = tiny_config("finetune")
    rec = MemoryRecorder()
    trainer.run(cfg, rec)
    n = cfg.snapshot.per_domain
    # one forward over the sample (per domain) before training; after epoch 1 only the evaluation's two passes
    assert calls == [n, n, cfg.data.max_test, cfg.data.max_test]
    # the reused rows are what a forward pass over the sample gives
    p = box["p"]
    src_idx, tgt_idx = rec.sample["source_index"], rec.sample["target_index"]
    _, src_feats = orig_predict(p, p.src_val[0][torch.as_tensor(src_idx)], "source")
    _, tgt_feats = orig_predict(p, p.tgt_test[0][torch.as_tensor(tgt_idx)], "target")
    np.testing.assert_allclose(rec.snapshots[-1]["features"], np.concatenate([src_feats, tgt_feats]),
                               rtol=1e-4, atol=1e-5)


def test_resumed_run_continues_the_snapshot_numbering(tmp_path, monkeypatch):
    cfg = tiny_config("finetune")
    cfg.optim.epochs = 2
    cfg.snapshot.every_steps = 5
    stop = threading.Event()

    monkeypatch.setattr(trainer, "FLUSH_EVERY_S", 0.0)
    part = StopInEpoch(tmp_path, 2, stop)
    trainer.run(cfg, part, stop)
    kept = [s for s in part.snapshots if s["step"] <= 8]  # the checkpoint is at the end of epoch 1
    resumed = MemoryRecorder(tmp_path)
    trainer.run(cfg, resumed, resume=tmp_path / "checkpoint.pt")
    assert [s["step"] for s in kept] == [0, 5, 8]
    assert [(s["idx"], s["step"]) for s in resumed.snapshots] == [(3, 10), (4, 15), (5, 16)]


def test_a_checkpoint_by_time_inside_an_epoch_resumes_to_the_same_end(tmp_path, monkeypatch):
    """No lost hour: with checkpoints every few minutes (here: every step), a crash inside an epoch resumes from
    the last step saved, with the same dropout and order, to the same end as an uninterrupted run."""
    cfg = tiny_config("dann")
    cfg.optim.epochs = 2
    cfg.model.dropout = 0.5
    cfg.model.head = "mlp"  # dropout in the head: the random state must be carried over too
    cfg.snapshot.enabled = False
    (tmp_path / "a").mkdir()
    full = MemoryRecorder(tmp_path / "a")
    res_full = trainer.run(cfg, full)

    class CrashAtStep11(MemoryRecorder):
        def log_steps(self, rows):
            super().log_steps(rows)
            if any(r["step"] == 11 for r in rows):
                raise OSError("the machine went away")

    monkeypatch.setattr(trainer, "FLUSH_EVERY_S", 0.0)
    monkeypatch.setattr(checkpoint, "EVERY_S", 0.0)
    (tmp_path / "b").mkdir()
    with pytest.raises(OSError):
        trainer.run(cfg, CrashAtStep11(tmp_path / "b"))
    state = checkpoint.load_checkpoint_file(tmp_path / "b" / "checkpoint.pt")
    assert (state["step"], state["epoch"], state["in_epoch"]) == (10, 1, 2)  # inside epoch 2, not at its start
    assert {k: v for k, v in checkpoint.last_saved(tmp_path / "b").items() if k != "t"} == {
        "step": 10, "epoch": 1, "in_epoch": 2}  # what the pages read to say where Resume goes on
    resumed = MemoryRecorder(tmp_path / "b")
    res = trainer.run(cfg, resumed, resume=tmp_path / "b" / "checkpoint.pt")
    assert res["status"] == "completed" and res["step"] == res_full["step"]
    assert [r["step"] for r in resumed.steps] == list(range(11, 17))
    assert [r["loss"] for r in resumed.steps] == pytest.approx([r["loss"] for r in full.steps[10:]], rel=1e-5)
    assert res["target_test_acc"] == pytest.approx(res_full["target_test_acc"])


def test_the_run_says_its_phase_before_and_between_steps():
    rec = MemoryRecorder()
    trainer.run(tiny_config("dann"), rec)
    said = [p for p in rec.phases if p]
    assert said[0] == "loading and decoding the data" and said[1].startswith("building lenet")
    assert "taking the first steps" in said and "evaluating after epoch 1" in said
    assert said.index("taking the first steps") < said.index("evaluating after epoch 1")
    assert rec.phases[-1] is None  # done: nothing left to say


def test_the_eta_counts_the_evaluations_left(monkeypatch):
    """Evaluation can take as long as an epoch (20 min at 224 px): the ETA includes the ones still to come."""
    real_evaluate = trainer.evaluate

    def slow_evaluate(*a, **k):
        import time as _time

        _time.sleep(1.0)
        return real_evaluate(*a, **k)

    monkeypatch.setattr(trainer, "evaluate", slow_evaluate)
    monkeypatch.setattr(trainer, "FLUSH_EVERY_S", 0.0)

    class Etas(MemoryRecorder):
        def progress(self, **kw):
            super().progress(**kw)
            if kw.get("eta_s") is not None:
                self.etas.append((kw["step"], kw["eta_s"]))

    rec = Etas()
    rec.etas = []
    cfg = tiny_config("finetune", epochs=3)
    cfg.snapshot.enabled = False
    trainer.run(cfg, rec)
    first_in_epoch_2 = next(eta for step, eta in rec.etas if step == 9)
    assert first_in_epoch_2 >= 2.0, rec.etas  # two evaluations of about 1 s are still to come


def test_the_slow_phases_say_how_far_they_have_got(tmp_path):
    """Decoding a folder says how many images are done; caching frozen stages says its percentage."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for cls in ("a", "b"):
        (tmp_path / "imgs" / cls).mkdir(parents=True)
        for i in range(40):
            Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)).save(tmp_path / "imgs" / cls / f"{i}.png")
    cfg = tiny_config("finetune")
    cfg.data.source = cfg.data.target = "folder"
    cfg.data.source_path = cfg.data.target_path = str(tmp_path / "imgs")
    cfg.data.max_train = None
    cfg.optim.batch_size = 16
    cfg.model.freeze = 1
    rec = MemoryRecorder()
    trainer.run(cfg, rec)
    said = [p for p in rec.phases if p]
    assert "loading and decoding the data: 80 of 80 images of imgs" in said, said
    assert "computing the outputs of the 1 frozen stage once (100 %)" in said, said
