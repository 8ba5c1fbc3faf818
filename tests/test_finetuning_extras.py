"""Fine-tuning that composes with any method: L2-SP (a regulariser), gradual unfreezing (a schedule),
discriminative learning rates (``optim.lr_decay``), and the Monitor's freezing diagram.

Each mechanism on tiny real runs (MNIST → MNIST-M, LeNet, whose three stages conv1, conv2, fc
make freezing mean something): the penalty's value at and away from the start weights, the pull
it has in a real run (with fine-tuning and with DANN), which stage gets a gradient in which
epoch, the optimiser's per-stage rates, and a resume that goes on exactly as the run would have.
"""

from __future__ import annotations

import copy
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from tl_core import backbones as bb
from tl_core import trainer
from tl_core.config import RunConfig
from tl_core.methods import MethodContext, get_extra, make_params
from tl_core.methods.gradual_unfreezing import frozen_at
from tl_core.model import Model
from tl_core.optim import Optimisation
from tl_core.recorder import MemoryRecorder

from _tiny import StopInEpoch, tiny_config

ROOT = Path(__file__).resolve().parents[1]
CPU = torch.device("cpu")


def lenet_model(freeze: int = 0) -> Model:
    torch.manual_seed(0)
    backbone = bb.create_backbone("lenet", pretrained=False)
    bb.freeze_stages(backbone, freeze)
    return Model(backbone, bb.make_head(100, 10), lambda x: x)


def make_extra(name: str, config: RunConfig | None = None, **params):
    cls = get_extra(name)
    return cls(MethodContext(config or RunConfig(), cls.Params(**params), 100, 10, CPU))


def with_extras(method: str, *extras: tuple[str, dict], **optim) -> RunConfig:
    cfg = tiny_config(method, **optim)
    cfg.method.extras = [{"name": n, "params": p} for n, p in extras]
    return cfg


class Spy:
    """Wraps trainer.prepare and Optimisation.step: the prepared run, its start weights, the weights at
    the end of each epoch, and per step which backbone stages received a gradient."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.p = None
        self.w0: dict[str, torch.Tensor] = {}
        self.after: dict[int, dict[str, torch.Tensor]] = {}
        self.grads: list[tuple[int, list[bool]]] = []
        orig_prepare, orig_step = trainer.prepare, Optimisation.step
        spy = self

        def prepare(cfg, device, **kw):
            spy.p = orig_prepare(cfg, device, **kw)
            spy.w0 = copy.deepcopy(spy.p.backbone.state_dict())
            return spy.p

        def step(opt, loss):
            value = orig_step(opt, loss)
            stages = spy.p.backbone.stages
            spy.grads.append((opt.where[1], [any(q.grad is not None for q in s.parameters()) for s in stages]))
            spy.after[opt.where[1]] = copy.deepcopy(spy.p.backbone.state_dict())
            return value

        monkeypatch.setattr(trainer, "prepare", prepare)
        monkeypatch.setattr(Optimisation, "step", step)

    def drift(self) -> float:
        """How far the run moved the backbone: ‖w − w⁰‖ (what L2-SP penalises)."""
        w1 = self.p.backbone.state_dict()
        return sum(float((w1[k] - v).pow(2).sum()) for k, v in self.w0.items() if v.is_floating_point()) ** 0.5

    def stage_changed(self, epoch: int, stage: int) -> bool:
        prefix = f"stages.{stage}."
        return any(not self.after[epoch][k].equal(v) for k, v in self.w0.items() if k.startswith(prefix))


# ------------------------------------------------------------------ L2-SP
def test_l2sp_penalty_is_zero_at_the_start_weights_and_grows_as_alpha_half_the_squared_distance():
    model = lenet_model()
    extra = make_extra("l2sp", sp_alpha=0.3, sp_beta=0.0)
    extra.start(SimpleNamespace(model=model))
    assert float(extra.penalty(model).detach()) == 0.0
    conv1 = model.backbone.stages[0][0].weight
    with torch.no_grad():
        conv1.add_(0.1)
    expected = 0.3 / 2 * 0.1 ** 2 * conv1.numel()
    assert float(extra.penalty(model).detach()) == pytest.approx(expected, rel=1e-4)
    with torch.no_grad():
        conv1.add_(0.1)  # twice as far: four times the penalty
    assert float(extra.penalty(model).detach()) == pytest.approx(4 * expected, rel=1e-4)
    bb.freeze_stages(model.backbone, 1)  # a frozen stage has no gradient: it is not in the penalty
    assert float(extra.penalty(model).detach()) == pytest.approx(0.0, abs=1e-9)
    bb.freeze_stages(model.backbone, 0)  # unfrozen later (a schedule): back in, against the same w⁰
    assert float(extra.penalty(model).detach()) == pytest.approx(4 * expected, rel=1e-4)


def test_l2sp_head_term_is_beta_half_the_squared_norm_of_the_head():
    model = lenet_model()
    extra = make_extra("l2sp", sp_alpha=0.1, sp_beta=0.02)
    extra.start(SimpleNamespace(model=model))
    norm2 = sum(float(q.pow(2).sum()) for q in model.head.parameters())
    assert norm2 > 0
    assert float(extra.penalty(model).detach()) == pytest.approx(0.02 / 2 * norm2, rel=1e-5)
    penalty = extra.penalty(model)
    penalty.backward()  # its gradient on the head is β·w
    w = model.head[-1].weight
    assert torch.allclose(w.grad, 0.02 * w.detach(), atol=1e-7)


@pytest.mark.parametrize("method", ["finetune", "dann"])
def test_l2sp_holds_the_backbone_nearer_its_start_in_a_run(monkeypatch, method):
    spy = Spy(monkeypatch)
    free_cfg, held_cfg = tiny_config(method), with_extras(method, ("l2sp", {"sp_alpha": 30.0}))
    free_cfg.snapshot.enabled = held_cfg.snapshot.enabled = False
    trainer.run(free_cfg, MemoryRecorder())
    free = spy.drift()
    rec = MemoryRecorder()
    trainer.run(held_cfg, rec)
    held = spy.drift()
    assert held < 0.7 * free, (held, free)  # α = 30 at lr 0.01: a strong pull, visible within 8 steps (≈ 0.4-0.5)
    assert all(r["penalty_extras"] > 0 for r in rec.steps[1:])  # its share of the loss is logged


def test_l2sp_in_the_config_label_and_validation():
    cfg = with_extras("dann", ("l2sp", {"sp_alpha": 0.5}))
    back = RunConfig.from_json(cfg.to_json())
    assert back.validate() == [] and back.label().startswith("DANN + L2-SP · ")
    assert back.to_dict()["method"]["extras"] == [{"name": "l2sp", "params": {"sp_alpha": 0.5, "sp_beta": 0.01}}]
    cfg.method.extras = [{"name": "l2sp", "params": {"sp_alpha": -1.0}}]
    assert any(p.startswith("method.extras.l2sp.sp_alpha: must be at least 0") for p in cfg.validate())


# ----------------------------------------------------- gradual unfreezing
def test_frozen_at_unfreezes_one_stage_every_n_epochs_down_to_the_users_floor():
    assert [frozen_at(e, 3, 0, 0, 1) for e in range(5)] == [3, 2, 1, 0, 0]  # the paper's: the head alone first
    assert [frozen_at(e, 3, 0, 1, 2) for e in range(6)] == [2, 2, 1, 1, 0, 0]
    assert [frozen_at(e, 3, 1, 0, 1) for e in range(5)] == [3, 2, 1, 1, 1]  # the user froze conv1: it stays
    assert [frozen_at(e, 3, 0, 5, 1) for e in range(2)] == [0, 0]


def test_gradual_unfreezing_a_stage_has_no_gradient_before_its_epoch_and_one_after(monkeypatch):
    spy = Spy(monkeypatch)
    cfg = with_extras("finetune", ("gradual_unfreezing", {"start_trainable": 1}), epochs=3)
    cfg.snapshot.enabled = False
    rec = MemoryRecorder()
    trainer.run(cfg, rec)
    by_epoch = {e: [g for ep, g in spy.grads if ep == e] for e in (1, 2, 3)}
    assert all(g == [False, False, True] for g in by_epoch[1])  # fc only
    assert all(g == [False, True, True] for g in by_epoch[2])   # conv2 joins
    assert all(g == [True, True, True] for g in by_epoch[3])    # conv1 joins
    assert not spy.stage_changed(1, 0) and not spy.stage_changed(1, 1) and spy.stage_changed(1, 2)
    assert not spy.stage_changed(2, 0) and spy.stage_changed(2, 1)
    assert spy.stage_changed(3, 0)
    assert [r["frozen_stages"] for r in rec.steps] == [2] * 8 + [1] * 8 + [0] * 8


def test_gradual_unfreezing_composes_with_dann_and_keeps_the_users_freeze(monkeypatch):
    spy = Spy(monkeypatch)
    cfg = with_extras("dann", ("gradual_unfreezing", {"start_trainable": 1}), epochs=2)
    cfg.model.freeze = 1  # conv1: frozen by the user for the whole run
    cfg.snapshot.enabled = False
    rec = MemoryRecorder()
    result = trainer.run(cfg, rec)
    assert result["status"] == "completed" and all("domain_acc" in r for r in rec.steps)
    assert [r["frozen_stages"] for r in rec.steps] == [2] * 8 + [1] * 8
    assert not spy.stage_changed(1, 1) and spy.stage_changed(2, 1)
    assert not spy.stage_changed(2, 0)


# ------------------------------------------------ discriminative learning rates
class NoMethod:
    def param_groups(self, lr):
        return []


def group_lr_of(opt: Optimisation, params) -> list[float]:
    """The base learning rates of the optimiser groups that hold these parameters."""
    ids = {id(q) for q in params}
    return sorted({g["base_lr"] for g in opt.opt.param_groups for q in g["params"] if id(q) in ids})


def test_per_stage_learning_rates_are_top_times_factor_to_the_depth():
    cfg = tiny_config("finetune", lr=0.01, backbone_lr_mult=0.1, lr_decay=0.5)
    model = lenet_model(freeze=1)
    opt = Optimisation(cfg, model, NoMethod(), CPU)
    stages = model.backbone.stages
    assert group_lr_of(opt, stages[2].parameters()) == pytest.approx([0.001])  # top: lr × multiplier
    assert group_lr_of(opt, stages[1].parameters()) == pytest.approx([0.0005])  # × 0.5
    assert group_lr_of(opt, stages[0].parameters()) == []  # frozen: not in the optimiser yet
    assert group_lr_of(opt, model.head.parameters()) == [0.01]
    bb.freeze_stages(model.backbone, 0)
    opt.add_unfrozen()  # a schedule unfroze conv1: it joins at its own rate
    assert group_lr_of(opt, stages[0].parameters()) == pytest.approx([0.00025])
    opt.set_progress(0.5)
    lrs = [g["lr"] for g in opt.opt.param_groups]
    assert lrs[0] / lrs[1] == pytest.approx(0.5) and opt.lr == pytest.approx(lrs[2])  # the schedule keeps ratios
    assert opt.lr == pytest.approx(0.01 / (1 + 5) ** 0.75)  # the logged lr is the head's


def test_lr_decay_1_is_the_old_layout_one_backbone_group_then_the_head():
    cfg = tiny_config("finetune", lr=0.01, backbone_lr_mult=0.1)
    assert cfg.optim.lr_decay == 1.0
    model = lenet_model(freeze=1)
    opt = Optimisation(cfg, model, NoMethod(), CPU)
    groups = opt.opt.param_groups
    assert len(groups) == 2
    assert [id(q) for q in groups[0]["params"]] == [id(q) for q in model.trainable_backbone_parameters()]
    assert groups[0]["lr"] == pytest.approx(0.001) and groups[1]["lr"] == 0.01
    bb.freeze_stages(model.backbone, 0)
    opt.add_unfrozen()
    assert len(opt.opt.param_groups) == 3 and opt.opt.param_groups[2]["lr"] == pytest.approx(0.001)
    assert opt.lr == 0.01


@pytest.mark.parametrize("bad", [0, -0.5, 1.5, float("nan"), "x"])
def test_lr_decay_validation_says_what_is_allowed(bad):
    cfg = RunConfig()
    cfg.optim.lr_decay = bad
    problems = [p for p in cfg.validate() if p.startswith("optim.lr_decay")]
    assert len(problems) == 1, cfg.validate()
    if isinstance(bad, (int, float)) and bad == bad:
        assert "must be above 0 and at most 1" in problems[0] and "1/2.6" in problems[0]
    cfg.optim.lr_decay = 0.38
    assert cfg.validate() == []


def test_lr_decay_on_the_command_line():
    from tl_core.__main__ import _parser, build_config

    cfg = build_config(_parser().parse_args(["run", "--method", "finetune", "--lr-decay", "0.4",
                                              "--extra", "gradual_unfreezing", "--every-epochs", "2",
                                              "--extra", "l2sp", "--sp-alpha", "0.2"]))
    assert cfg.optim.lr_decay == 0.4
    assert cfg.method.extras == [{"name": "gradual_unfreezing", "params": {"every_epochs": 2}},
                                 {"name": "l2sp", "params": {"sp_alpha": 0.2}}]
    assert build_config(_parser().parse_args(["run"])).optim.lr_decay == 1.0


# --------------------------------------------------------- all three, resumed
def test_a_run_with_all_three_resumes_to_the_same_end_and_keeps_its_start_weights(tmp_path, monkeypatch):
    """Stopped in epoch 3 after two unfreezings (each added an optimiser group at its own rate), resumed:
    the same losses as the run that was never stopped. Before the resumed run's start hook sees the
    backbone, its weights are scrambled: L2-SP must take w⁰ from the checkpoint, not from there."""
    cfg = with_extras("finetune", ("gradual_unfreezing", {"start_trainable": 1}), ("l2sp", {"sp_alpha": 1.0}),
                      epochs=3, lr_decay=0.5)
    cfg.snapshot.enabled = False
    (tmp_path / "a").mkdir()
    full = MemoryRecorder(tmp_path / "a")
    spy = Spy(monkeypatch)
    trainer.run(cfg, full)
    w0 = spy.w0

    monkeypatch.setattr(trainer, "FLUSH_EVERY_S", 0.0)
    stop = threading.Event()
    (tmp_path / "b").mkdir()
    assert trainer.run(cfg, StopInEpoch(tmp_path / "b", 3, stop), stop)["status"] == "stopped"

    orig_prepare = trainer.prepare

    def scrambled(c, device, **kw):
        p = orig_prepare(c, device, **kw)
        with torch.no_grad():
            for q in p.backbone.parameters():
                q.add_(1.0)
        return p

    monkeypatch.setattr(trainer, "prepare", scrambled)
    resumed = MemoryRecorder(tmp_path / "b")
    res = trainer.run(cfg, resumed, resume=tmp_path / "b" / "checkpoint.pt")
    assert res["status"] == "completed" and res["step"] == 24
    assert [r["loss"] for r in resumed.steps] == pytest.approx([r["loss"] for r in full.steps[16:]], rel=1e-5)
    anchor = dict(spy.p.extras[1].anchor.named_buffers())
    assert all(anchor[k.replace(".", "__")].equal(v) for k, v in w0.items() if k.startswith("stages."))


# ------------------------------------------------------------ the pages
def test_setup_has_the_per_stage_factor_next_to_the_backbone_multiplier(tl_home, monkeypatch):
    from streamlit.testing.v1 import AppTest

    from tl_ui import keys

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=90)
    at.run()
    at.switch_page(keys.PAGE_SETUP).run()
    box = at.number_input(key=keys.setup_key("optim.lr_decay"))
    assert box.value == 1.0 and "stage" in box.label.lower()
    box.set_value(0.5).run()
    assert not at.exception and not at.button(key=keys.SETUP_START).disabled
    assert '"lr_decay": 0.5' in at.code[0].value
    at.number_input(key=keys.setup_key("optim.lr_decay")).set_value(0.0).run()
    assert any("must be above 0 and at most 1" in e.value.lower() for e in at.error), [e.value for e in at.error]
    assert at.button(key=keys.SETUP_START).disabled


def test_freezing_now_says_which_stages_train_and_when_the_frozen_ones_join():
    from tl_ui.freezing_view import freezing_now

    cfg = with_extras("finetune", ("gradual_unfreezing", {"start_trainable": 1}), epochs=3).to_dict()
    names = ["conv1", "conv2", "fc"]
    now = freezing_now(cfg, names, 2, 1)
    assert now.frozen == 1 and now.notes == ["frozen · trains from epoch 3", "trained since epoch 2", "trained"]
    assert freezing_now(cfg, names, 0, None).frozen == 2  # before the first step: what epoch 1 will train
    cfg["model"]["freeze"] = 1
    assert freezing_now(cfg, names, 3, 1).notes[0] == "frozen (your setting)"
    plain = tiny_config("finetune").to_dict()
    assert freezing_now(plain, names, 1, 0) is None  # nothing frozen, no schedule: no diagram
    plain["model"]["freeze"] = 2
    assert freezing_now(plain, names, 1, 2).notes == ["frozen (your setting)"] * 2 + ["trained"]


def test_monitor_draws_the_stages_a_gradually_unfrozen_run_trains_now(tl_home, monkeypatch):
    from test_pages import RecordingManager, _use_manager, open_app

    from tl_core.store import RunStore
    from tl_ui import keys, resources

    store = RunStore(tl_home)
    manager = RecordingManager(store)
    _use_manager(monkeypatch, manager)
    cfg = with_extras("dann", ("gradual_unfreezing", {"start_trainable": 1}), epochs=3)
    cfg.name = "gradual run"
    run_id = store.create_run(cfg)
    store.set_status(run_id, "running")
    store.log_steps(run_id, [{"step": s, "epoch": 1 + (s > 8), "loss": 1.0, "frozen_stages": 2 if s <= 8 else 1}
                             for s in range(1, 13)])
    store.set_progress(run_id, epoch=2, step=12, total_steps=24)
    plain_id = store.create_run(tiny_config("finetune"))  # freezes nothing: no diagram for it
    try:
        at = open_app()
        at.session_state[keys.MONITOR_REQUEST] = [run_id, plain_id]
        at.switch_page(keys.PAGE_MONITOR).run()
        assert not at.exception, [e.value for e in at.exception]
        diagrams = [h.value for h in at.html if h.value.startswith("<div class=\"tl-stages\">")]
        assert len(diagrams) == 1, diagrams
        body = diagrams[0]
        assert "conv1" in body and "frozen · trains from epoch 3" in body and "trained since epoch 2" in body
        assert body.count("dashed") == 1  # conv1 frozen, conv2 and fc trained
        assert any("gradual run · epoch 2 of 3: 2 of 3 stages trained" in c.value.replace("\\", "") for c in at.caption)
    finally:
        resources.get_manager.clear()
