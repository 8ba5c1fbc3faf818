"""ADDA (tl_core/methods/adda.py) on tiny real data: the two phases, the target encoder, resume, the Monitor.

Most tests drive the method's own step by hand on a prepared run (MNIST → MNIST-M, 256 images), so
each phase can be inspected between steps; the resume and cache tests run the real loop.
"""

from __future__ import annotations

import threading

import pytest
import torch

from tl_core import trainer
from tl_core.config import RunConfig
from tl_core.evaluation import predict
from tl_core.methods import Batch, RunContext
from tl_core.methods.adda import ADDA
from tl_core.optim import Optimisation
from tl_core.prepare import prepare
from tl_core.recorder import MemoryRecorder
from tl_core.store import RunStore

from _tiny import StopInEpoch, tiny_config

CPU = torch.device("cpu")


def _prepared(**params):
    cfg = tiny_config("adda")
    cfg.method.params.update(params)
    torch.manual_seed(0)
    p = prepare(cfg, CPU)
    ctx = RunContext(model=p.model, labelled_x=p.train_x, labelled_y=p.train_y, target_x=p.tgt_x, device=CPU, seed=1)
    p.method.start(ctx)
    p.method.to(CPU)
    opt = Optimisation(cfg, p.model, p.method, CPU, p.extras)
    p.model.train()
    p.method.train()
    return p, opt


def _step(p, opt, i: int, progress: float) -> dict:
    j = torch.arange(i * 32, (i + 1) * 32) % p.train_x.shape[0]
    batch = Batch(p.train_x[j], p.train_y[j], p.tgt_x[j % p.tgt_x.shape[0]])
    opt.where = (i + 1, 1)
    return p.method.train_step(batch, p.model, progress, opt)


def _state(module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_phase_two_starts_the_target_encoder_from_the_source_encoder_and_holds_source_encoder_and_head(monkeypatch):
    p, opt = _prepared()
    placeholder = _state(p.method.target_encoder)
    rows = [_step(p, opt, i, i / 10) for i in range(5)]  # phase 1 (progress < 0.5)
    assert [r["phase"] for r in rows] == [1] * 5 and not p.method.in_phase2
    assert not _same(_state(p.model.backbone), placeholder)  # phase 1 trained the source encoder
    source, head = _state(p.model.backbone), _state(p.model.head)
    seen = {}
    make = ADDA._make_target_optimiser

    def spy(self):  # called right after the copy, before the first update of the target encoder
        seen["target"] = _state(self.target_encoder)
        make(self)
    monkeypatch.setattr(ADDA, "_make_target_optimiser", spy)
    rows = [_step(p, opt, i, 0.5 + i / 20) for i in range(5, 10)]
    assert [r["phase"] for r in rows] == [2] * 5 and p.method.in_phase2
    assert _same(seen["target"], source)  # the target encoder began as the source encoder
    assert not _same(_state(p.method.target_encoder), source)  # ... and phase 2 moved it
    assert _same(_state(p.model.backbone), source) and _same(_state(p.model.head), head)  # both held
    assert all("domain_acc" in r and "loss_target" in r for r in rows)


def test_the_discriminator_learns_source_one_target_zero_and_the_target_encoder_learns_to_fool_it():
    # Target encoder held (tiny lr): the discriminator alone learns to tell MNIST from MNIST-M features.
    p, opt = _prepared(target_lr=1e-9, disc_lr=1e-3)
    rows = [_step(p, opt, i, 0.5) for i in range(40)]
    assert sum(r["domain_acc"] for r in rows[-10:]) / 10 > 0.75, [round(float(r["domain_acc"]), 2) for r in rows]
    assert rows[-1]["loss_domain"] < rows[0]["loss_domain"] - 0.2
    with torch.no_grad():  # the orientation: positive logits for source features, negative for target ones
        d = p.method.discriminator
        assert (d(p.model.features_eval(p.train_x[:64])) > 0).float().mean() > 0.7
        assert (d(p.method.target_encoder(p.model.normalise(p.tgt_x[:64]))) < 0).float().mean() > 0.7
    # Discriminator held (tiny lr) after it has learnt: the target encoder lowers its inverted-label loss.
    p.method.opt_disc.param_groups[0]["lr"] = 1e-9
    for g in p.method.opt_target.param_groups:
        g["lr"] = 1e-3
    rows = [_step(p, opt, i, 0.5) for i in range(40, 60)]
    assert rows[-1]["loss_target"] < rows[0]["loss_target"] / 2, [round(r["loss_target"], 2) for r in rows]


def test_the_target_is_evaluated_through_the_target_encoder_and_the_source_through_the_source_encoder():
    p, opt = _prepared()
    _step(p, opt, 0, 0.0)
    src_x, tgt_x = p.src_val[0], p.tgt_test[0]
    with torch.no_grad():
        for q in p.method.target_encoder.parameters():
            q.add_(torch.randn_like(q))  # not yet used: phase 2 has not begun
    before = predict(p, src_x, "source"), predict(p, tgt_x, "target")
    assert (before[1][1] == p.model.features_eval(tgt_x).detach().numpy()).all()
    _step(p, opt, 1, 0.6)  # phase 2 begins
    src0, tgt0 = predict(p, src_x, "source"), predict(p, tgt_x, "target")
    with torch.no_grad():
        for q in p.method.target_encoder.parameters():
            q.add_(torch.randn_like(q))
    src1, tgt1 = predict(p, src_x, "source"), predict(p, tgt_x, "target")
    assert (src1[1] == src0[1]).all() and (src1[0] == src0[0]).all()  # the source went through the backbone
    assert (tgt1[1] != tgt0[1]).any() and (tgt1[0] != tgt0[0]).any()  # the target through the target encoder


def test_a_run_resumed_inside_phase_two_goes_on_from_its_target_encoder(tmp_path, monkeypatch):
    cfg = tiny_config("adda", epochs=2)
    cfg.method.params["source_phase"] = 0.25  # phase 2 from step 5 of 16: the epoch-1 checkpoint is inside it
    cfg.snapshot.enabled = False
    (tmp_path / "a").mkdir()
    full = MemoryRecorder(tmp_path / "a")
    res_full = trainer.run(cfg, full)
    assert [r["phase"] for r in full.steps] == [1] * 4 + [2] * 12

    monkeypatch.setattr(trainer, "FLUSH_EVERY_S", 0.0)
    stop = threading.Event()
    (tmp_path / "b").mkdir()
    assert trainer.run(cfg, StopInEpoch(tmp_path / "b", 2, stop), stop)["status"] == "stopped"
    resumed = MemoryRecorder(tmp_path / "b")
    res = trainer.run(cfg, resumed, resume=tmp_path / "b" / "checkpoint.pt")
    assert res["status"] == "completed" and res["step"] == res_full["step"] == 16
    # A fresh copy of the source encoder (or fresh Adam states) would give other losses from the first step on.
    for key in ("loss_domain", "loss_target"):
        assert [r[key] for r in resumed.steps] == pytest.approx([r[key] for r in full.steps[8:]], rel=1e-5)
    assert res["target_test_acc"] == res_full["target_test_acc"]


def test_the_frozen_stage_cache_feeds_the_target_encoder_too(monkeypatch):
    cfg = tiny_config("adda", epochs=2)
    cfg.model.freeze = 1
    cfg.snapshot.enabled = False
    a = MemoryRecorder()
    cached = trainer.run(cfg, a)
    monkeypatch.setattr(trainer, "CACHE_BUDGET_BYTES", 0)  # the same run on images
    b = MemoryRecorder()
    plain = trainer.run(cfg, b)
    assert cached["cached_frozen_stages"] and not plain["cached_frozen_stages"]
    phase2 = [(ra, rb) for ra, rb in zip(a.steps, b.steps) if ra["phase"] == 2]
    assert len(phase2) == 8
    for key in ("loss_domain", "loss_target"):  # the target encoder's features are the same either way
        assert [ra[key] for ra, _ in phase2] == pytest.approx([rb[key] for _, rb in phase2], abs=1e-4)
    assert cached["target_test_acc"] == pytest.approx(plain["target_test_acc"], abs=0.011)


# ------------------------------------------------------------------ Monitor
def test_the_monitor_card_says_which_phase_an_adda_run_is_in(tl_home, monkeypatch):
    from test_pages import RecordingManager, _use_manager, open_app
    from tl_ui import keys, resources

    assert resources.methods()["adda"]["phases"] == list(ADDA.phases)
    manager = RecordingManager(RunStore(tl_home))
    _use_manager(monkeypatch, manager)
    try:
        store = manager.store
        cfg = RunConfig(name="adda run")
        cfg.method.name = "adda"
        adda = store.create_run(cfg)
        store.set_status(adda, "running")
        manager.active.add(adda)
        store.log_steps(adda, [{"step": s, "epoch": 1 + (s - 1) // 4, "phase": 1 if s <= 8 else 2, "loss": 1.0}
                               for s in range(1, 11)])
        store.set_progress(adda, epoch=3, step=10, total_steps=16)
        other = store.create_run(RunConfig(name="dann run"))
        store.set_status(other, "running")
        store.log_steps(other, [{"step": 1, "epoch": 1, "loss": 1.0}])
        store.set_progress(other, epoch=1, step=1, total_steps=16)
        at = open_app(keys.PAGE_MONITOR)
        at.multiselect(key=keys.MONITOR_PICK).set_value([adda, other]).run()
        captions = [c.value for c in at.caption]
        assert sum("Phase 2 of 2: target encoder vs discriminator" in c for c in captions) == 1, captions
        assert not any("Phase 1" in c for c in captions)
        store.set_progress(adda, epoch=2, step=6, total_steps=16)  # the same run, earlier (a resume truncated it)
        store.truncate_after(adda, 6, 2)
        at.run()
        captions = [c.value for c in at.caption]
        assert any("Phase 1 of 2: source encoder + classifier on source labels" in c for c in captions), captions
    finally:
        resources.get_manager.clear()


def test_no_criterion_chooses_a_phase_one_checkpoint_which_is_source_only_training():
    """ADDA's source encoder and head do not change in phase 2, so source validation accuracy cannot see the
    adaptation: chosen over all epochs it took a phase-1 epoch (on MNIST → MNIST-M, 51 % where the run ended at
    78 %). The epochs carry their phase; the choice and the selected checkpoint come from the last phase."""
    from tl_core import selection

    cfg = tiny_config("adda", epochs=4)
    cfg.method.params["source_phase"] = 0.5  # epochs 1-2 in phase 1, 3-4 in phase 2
    cfg.snapshot.enabled = False
    rec = MemoryRecorder()
    trainer.run(cfg, rec)
    assert [e["phase"] for e in rec.epochs] == [1, 1, 2, 2]
    for name in selection.CRITERIA:
        assert selection.choose(rec.epochs, name)["epoch"] in (3, 4), name
    assert rec.selected_epochs[-1] in (3, 4) and 3 in rec.selected_epochs  # phase 2's first epoch starts afresh


def test_the_choice_among_phases_and_the_tracker_restart_on_rows_by_hand():
    from tl_core import selection

    rows = [{"epoch": 1, "phase": 1, "source_val_acc": 0.97, "target_test_acc": 0.51},
            {"epoch": 2, "phase": 2, "source_val_acc": 0.96, "target_test_acc": 0.70},
            {"epoch": 3, "phase": 2, "source_val_acc": 0.96, "target_test_acc": 0.78}]
    assert selection.choose(rows, "source_val_acc")["epoch"] == 3  # phase 2 only; a tie goes to the later epoch
    assert selection.oracle(rows) == {"epoch": 3, "target_test_acc": 0.78}
    assert selection.choose(rows[:1], "source_val_acc")["epoch"] == 1  # during phase 1: its best so far
    assert selection.choose([{k: v for k, v in r.items() if k != "phase"} for r in rows], "source_val_acc")["epoch"] == 1
    t = selection.Tracker("source_val_acc", patience=1)
    assert [t.update(r["epoch"], r) for r in rows] == [True, True, True]  # epoch 3 ties: the selection moves
    assert t.best_epoch == 3 and t.should_stop()  # but a tie is no improvement for early stopping
    again = selection.Tracker("source_val_acc", patience=1)
    again.load(t.state())
    assert again.phase == 2 and not again.update(4, {"phase": 2, "source_val_acc": 0.95})
