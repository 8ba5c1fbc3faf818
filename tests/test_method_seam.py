"""The method seam: a method defined here, in this test file only, is everywhere a method must be.

No other file is edited for it: the command line's ``--help`` (through ``TL_PLUGINS``, as a
user's own method would be loaded), the config's JSON round trip and validation, the Setup
page's method choices and parameter widgets (AppTest), and a real one-epoch run. Further toy
methods exercise each hook of the contract in docs/ARCHITECTURE.md on small real data:
per-sample weights computed before training, a regulariser on weights, unfreezing during
the run, a method with its own optimiser and step, and a separate target encoder.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tl_core import trainer
from tl_core.config import RunConfig, method_choices
from tl_core.methods import Extra, Method, StepChart, param, register, unregister
from tl_core.recorder import MemoryRecorder

from _tiny import StopInEpoch, tiny_config

ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------ toy methods
@dataclass
class ToyParams:
    push: float = param(0.5, "Toy push", "How hard the toy pushes its scale.", min=0, max=2, step=0.1)
    mode: str = param("calm", "Toy mode", "A choice.", choices={"calm": "Calm", "wild": "Wild"})
    hidden: int = param(8, "Toy width", "Width of its extra layer.", min=1, step=1)


@register
class ToyMethod(Method):
    """Cross-entropy plus a learnt scale on the logits (an extra module of the method)."""

    name = "toy"
    title = "Toy"
    description = "A toy method defined only in the test file."
    citation = "Nobody, A toy, 2026"
    Params = ToyParams
    choice_help = {"source": "Toy: defined in tests/test_method_seam.py"}
    uses_target = True
    step_charts = (StepChart("toy_scale", "line", "Toy scale per step"),)

    def __init__(self, ctx):
        super().__init__(ctx)
        import torch

        self.scale = self.add_module("scale", torch.nn.Linear(1, 1))

    def loss(self, batch, model, progress):
        import torch
        import torch.nn.functional as F

        assert batch.x_tgt is not None  # uses_target: the loop hands unlabelled target images
        logits = model.head(model.features(batch.x_src))
        s = self.scale(torch.ones(1, 1, device=logits.device)).squeeze()
        loss = F.cross_entropy(logits * (1 + self.params.push * torch.tanh(s)), batch.y_src)
        return loss, {"loss_task": loss.detach(), "toy_scale": float(s.detach())}


def test_toy_method_is_on_the_command_line_help():
    env = {**os.environ, "TL_PLUGINS": "test_method_seam",
           "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), str(ROOT)])}
    out = subprocess.run([sys.executable, "-m", "tl_core", "run", "--help"], capture_output=True, text=True,
                         env=env, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    text = " ".join(out.stdout.split())
    assert "toy" in text and "A toy method defined only in the test file." in text
    assert "--push" in text and "Toy push" in text and "--mode {calm,wild}" in text and "--hidden" in text


def test_toy_method_flags_make_its_config(tmp_path, monkeypatch):
    from tl_core.__main__ import _parser, build_config

    a = _parser().parse_args(["run", "--method", "toy", "--push", "1.5", "--mode", "wild"])
    cfg = build_config(a)
    assert (cfg.method.name, cfg.method.params) == ("toy", {"push": 1.5, "mode": "wild"})
    a = _parser().parse_args(["run", "--method", "finetune", "--push", "1.5"])
    with pytest.raises(Exception, match="no setting --push"):
        build_config(a)


def test_toy_method_config_round_trips_and_validates():
    cfg = RunConfig()
    cfg.method.name, cfg.method.params = "toy", {"push": 1.25}
    back = RunConfig.from_json(cfg.to_json())
    assert back.to_dict() == cfg.to_dict()
    assert back.to_dict()["method"]["params"] == {"push": 1.25, "mode": "calm", "hidden": 8}
    assert back.validate() == []
    cfg.method.params = {"push": 3.0, "mode": "odd"}
    problems = cfg.validate()
    assert any(p.startswith("method.params.push: must be at least 0 and at most 2") for p in problems)
    assert any(p.startswith("method.params.mode: 'odd' is not one of calm, wild") for p in problems)
    cfg.method.params, cfg.method.train_on = {}, "target"
    assert any("Toy trains on source labels only" in p for p in cfg.validate())
    assert cfg.label().startswith("Toy · ") and "toy" in method_choices()


def test_toy_method_on_the_setup_page_with_its_widgets(tl_home, monkeypatch):
    from streamlit.testing.v1 import AppTest

    from tl_ui import keys

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.run()
    at.switch_page(keys.PAGE_SETUP).run()
    radio = at.radio(key=keys.SETUP_METHOD)
    assert "toy" in radio.options or "Toy: defined in tests/test_method_seam.py" in radio.options
    radio.set_value("toy").run()
    assert not at.exception, [e.value for e in at.exception]
    push = at.number_input(key=keys.setup_key("method.toy.push"))
    assert push.value == pytest.approx(0.5) and push.label == "Toy push"
    assert at.selectbox(key=keys.setup_key("method.toy.mode")).value == "calm"
    assert at.number_input(key=keys.setup_key("method.toy.hidden")).value == 8
    push.set_value(5.0).run()  # out of its range: its own message under its widget, Start disabled
    assert any("must be at least 0 and at most 2" in e.value.lower() for e in at.error), [e.value for e in at.error]
    assert at.button(key=keys.SETUP_START).disabled


def test_toy_method_trains_a_real_epoch():
    cfg = tiny_config("toy")
    cfg.method.params = {"push": 1.0}
    rec = MemoryRecorder()
    result = trainer.run(cfg, rec)
    assert result["status"] == "completed" and len(rec.epochs) == 1
    assert all("toy_scale" in row for row in rec.steps)
    assert len({round(row["toy_scale"], 6) for row in rec.steps}) > 1  # its own module trains


# ----------------------------------------------------- the other hook shapes
@register
class WeightedToy(Method):
    """Per-sample weights computed before training (the KMM/KLIEP shape): class 0 gets weight 0."""

    name, title, description = "toy-weighted", "Toy weighted", "test only: weights from a pre-pass"
    seen_weights: list = []

    def start(self, run):
        w = (run.labelled_y != 0).float()
        run.set_sample_weights(w * len(w) / w.sum())

    def loss(self, batch, model, progress):
        from tl_core.methods.finetune import weighted_cross_entropy

        type(self).seen_weights.append((batch.y_src.clone(), batch.w_src.clone()))
        logits = model.head(model.features(batch.x_src))
        return weighted_cross_entropy(logits, batch.y_src, batch.w_src), {}


def test_sample_weights_from_the_start_hook_reach_every_batch():
    WeightedToy.seen_weights = []
    trainer.run(tiny_config("toy-weighted"), MemoryRecorder())
    assert WeightedToy.seen_weights
    for y, w in WeightedToy.seen_weights:
        assert ((w == 0) == (y == 0)).all()


@register
class AnchoredToy(Method):
    """A regulariser on weights (the L2-SP shape): a huge pull of the backbone to its start values."""

    name, title, description = "toy-anchored", "Toy anchored", "test only: penalty towards start weights"

    def start(self, run):
        self.start_weights = [q.detach().clone() for q in run.model.backbone.parameters()]

    def loss(self, batch, model, progress):
        import torch.nn.functional as F

        logits = model.head(model.features(batch.x_src))
        return F.cross_entropy(logits, batch.y_src), {}

    def penalty(self, model):
        return 1e3 * sum(((q - q0) ** 2).sum() for q, q0 in zip(model.backbone.parameters(), self.start_weights))


def _drift(monkeypatch, cfg, rec=None) -> float:
    """How far a run moves the backbone's weights (sum of absolute changes)."""
    box = {}
    orig = trainer.prepare

    def wrapped(cfg, device, **kw):
        p = orig(cfg, device, **kw)
        box["p"], box["w0"] = p, copy.deepcopy(p.backbone.state_dict())
        return p

    monkeypatch.setattr(trainer, "prepare", wrapped)
    trainer.run(cfg, rec or MemoryRecorder())
    w1 = box["p"].backbone.state_dict()
    return sum(float((w1[k].float() - v.float()).abs().sum()) for k, v in box["w0"].items())


def test_a_penalty_on_weights_holds_the_backbone(monkeypatch):
    free = _drift(monkeypatch, tiny_config("finetune", lr=0.001))
    anchored = _drift(monkeypatch, tiny_config("toy-anchored", lr=0.001))
    assert anchored < free / 5, (anchored, free)


@register
class UnfreezingToy(Method):
    """Changes frozen stages during the run (the gradual-unfreezing shape): all frozen, then none."""

    name, title, description = "toy-unfreeze", "Toy unfreeze", "test only: unfreezes at epoch 2"
    changes_freezing = True

    def frozen_stages(self, epoch, current):
        return 3 if epoch == 0 else 0

    def loss(self, batch, model, progress):
        import torch.nn.functional as F

        return F.cross_entropy(model.head(model.features(batch.x_src)), batch.y_src), {}


def _weights_after_epochs_1_and_2(monkeypatch, cfg):
    """(initial, after epoch 1, after epoch 2) backbone weights of a two-epoch run."""
    snaps = []
    orig_flush = trainer._flush

    def spy(recorder, buffer):
        if buffer:
            p = box["p"]
            snaps.append((buffer[-1]["epoch"], copy.deepcopy(p.backbone.state_dict())))
        return orig_flush(recorder, buffer)

    box = {}
    orig = trainer.prepare

    def wrapped(cfg, device, **kw):
        box["p"] = orig(cfg, device, **kw)
        box["w0"] = copy.deepcopy(box["p"].backbone.state_dict())
        return box["p"]

    monkeypatch.setattr(trainer, "prepare", wrapped)
    monkeypatch.setattr(trainer, "_flush", spy)
    trainer.run(cfg, MemoryRecorder())
    return box["w0"], [w for e, w in snaps if e == 1][-1], [w for e, w in snaps if e == 2][-1]


def test_a_schedule_unfreezes_stages_during_the_run(monkeypatch):
    cfg = tiny_config("toy-unfreeze", epochs=2)
    cfg.model.freeze = 1  # the method's schedule overrides it from epoch 1
    w0, after_1, after_2 = _weights_after_epochs_1_and_2(monkeypatch, cfg)
    assert all(after_1[k].equal(v) for k, v in w0.items())  # epoch 1: every stage frozen
    assert any(not after_2[k].equal(v) for k, v in w0.items() if v.is_floating_point())  # epoch 2: trained


@register
class TwoEncoderToy(Method):
    """Own optimiser and step, and a separate target encoder used at evaluation (the ADDA shape)."""

    name, title, description = "toy-adda", "Toy two encoders", "test only: a separate target encoder"
    uses_target = True
    target_calls = 0

    def start(self, run):
        import torch

        self.target_encoder = self.add_module("target_encoder", copy.deepcopy(run.model.backbone))
        self.own_opt = torch.optim.SGD(self.target_encoder.parameters(), lr=0.01)
        self.normalise = run.model.normalise

    def param_groups(self, lr):
        return []  # its encoder is trained by its own optimiser only

    def train_step(self, batch, model, progress, opt):
        import torch.nn.functional as F

        with opt.autocast():
            loss = F.cross_entropy(model.head(model.features(batch.x_src)), batch.y_src)
        value = opt.step(loss)
        # its own alternation: pull target features towards the source mean with its own optimiser
        f_t = self.target_encoder(self.normalise(batch.x_tgt))
        gap = (f_t.mean(0) - model.features(batch.x_src).detach().mean(0)).pow(2).sum()
        self.own_opt.zero_grad()
        gap.backward()
        self.own_opt.step()
        return {"loss": value, "gap": float(gap)}

    def encoder(self, domain, model):
        if domain == "source":
            return model.features_eval

        def encode(x):
            type(self).target_calls += 1
            return self.target_encoder(self.normalise(x))
        return encode


def test_a_separate_target_encoder_evaluates_the_target_and_is_checkpointed(tmp_path):
    TwoEncoderToy.target_calls = 0
    rec = MemoryRecorder(tmp_path)
    rec.keep_checkpoints = True
    result = trainer.run(tiny_config("toy-adda"), rec)
    assert result["status"] == "completed" and all("gap" in r for r in rec.steps)
    assert TwoEncoderToy.target_calls >= 2  # the target's evaluation and snapshot went through it
    state = rec.checkpoints[-1]["method"]
    assert any(k.startswith("target_encoder.") for k in state)


def test_a_name_can_be_registered_only_once():
    @dataclass
    class P:
        pass

    class Other(Method):
        name, title, description = "toy", "Other", "clash"

    with pytest.raises(ValueError, match="registered already"):
        register(Other)
    unregister("toy-temporary")  # unknown names are fine


def test_a_run_that_unfroze_stages_resumes_to_the_same_end(tmp_path, monkeypatch):
    """The checkpoint after the unfreezing has one more optimiser group; resume replays the schedule first."""
    import threading

    cfg = tiny_config("toy-unfreeze", epochs=3)
    cfg.model.freeze = 1  # stage 1 is not in the optimiser at first: unfreezing adds a group
    cfg.snapshot.enabled = False
    (tmp_path / "a").mkdir()
    full = MemoryRecorder(tmp_path / "a")
    res_full = trainer.run(cfg, full)
    stop = threading.Event()

    monkeypatch.setattr(trainer, "FLUSH_EVERY_S", 0.0)
    (tmp_path / "b").mkdir()
    assert trainer.run(cfg, StopInEpoch(tmp_path / "b", 3, stop), stop)["status"] == "stopped"
    resumed = MemoryRecorder(tmp_path / "b")
    res = trainer.run(cfg, resumed, resume=tmp_path / "b" / "checkpoint.pt")
    assert res["status"] == "completed" and res["step"] == res_full["step"]
    assert [r["loss"] for r in resumed.steps] == pytest.approx([r["loss"] for r in full.steps[16:]], rel=1e-5)


# ----------------------------------------- extras: compose with any method
@dataclass
class AnchorParams:
    alpha: float = param(1e3, "Anchor strength", "Weight of the pull to the start weights.", min=0, step=10.0)


@register
class AnchorExtra(Extra):
    """A regulariser that composes with any method (the L2-SP shape): pull the backbone to its start."""

    name, title, description = "toy-anchor", "Toy anchor", "test only: pulls the backbone to its start weights"
    kind = "regulariser"
    Params = AnchorParams

    def start(self, run):
        self.start_weights = [q.detach().clone() for q in run.model.backbone.parameters()]

    def penalty(self, model):
        return self.params.alpha * sum(((q - q0) ** 2).sum()
                                       for q, q0 in zip(model.backbone.parameters(), self.start_weights))


@register
class ThawExtra(Extra):
    """A fine-tuning schedule that composes with any method: everything frozen in epoch 1, nothing after."""

    name, title, description = "toy-thaw", "Toy thaw", "test only: frozen in epoch 1, all trained after"
    kind = "schedule"
    changes_freezing = True

    def frozen_stages(self, epoch, current):
        return 3 if epoch == 0 else 0


def with_extra(method, extra, **params):
    cfg = tiny_config(method, lr=0.001)
    cfg.method.extras = [{"name": extra, "params": params}]
    return cfg


@pytest.mark.parametrize("method", ["finetune", "dann", "toy-adda"])
def test_a_regulariser_extra_composes_with_any_method(monkeypatch, method):
    free = _drift(monkeypatch, tiny_config(method, lr=0.001))
    rec = MemoryRecorder()
    anchored = _drift(monkeypatch, with_extra(method, "toy-anchor"), rec)
    assert anchored < free / 5, (anchored, free)
    assert all(row["penalty_extras"] >= 0 for row in rec.steps)  # its share of the loss is logged


@pytest.mark.parametrize("method", ["finetune", "dann"])
def test_a_schedule_extra_composes_with_any_method(monkeypatch, method):
    cfg = tiny_config(method, epochs=2)
    cfg.method.extras = [{"name": "toy-thaw", "params": {}}]
    w0, after_1, after_2 = _weights_after_epochs_1_and_2(monkeypatch, cfg)
    assert all(after_1[k].equal(v) for k, v in w0.items())
    assert any(not after_2[k].equal(v) for k, v in w0.items() if v.is_floating_point())


def test_extras_in_the_config_label_and_validation():
    cfg = with_extra("dann", "toy-anchor", alpha=5.0)
    back = RunConfig.from_json(cfg.to_json())
    assert back.to_dict() == cfg.to_dict() and back.validate() == []
    assert back.label().startswith("DANN + Toy anchor · ")
    cfg.method.extras = [{"name": "toy-anchor", "params": {"alpha": -1.0}}, {"name": "nope"}]
    problems = cfg.validate()
    assert any(p.startswith("method.extras.toy-anchor.alpha: must be at least 0") for p in problems), problems
    assert any(p.startswith("method.extras: 'nope' is not one of") for p in problems), problems


def test_extras_on_the_command_line(tmp_path):
    from tl_core.__main__ import _parser, build_config

    a = _parser().parse_args(["run", "--method", "dann", "--extra", "toy-anchor", "--alpha", "5",
                              "--lambda-max", "0.5"])
    cfg = build_config(a)
    assert cfg.method.extras == [{"name": "toy-anchor", "params": {"alpha": 5.0}}]
    assert cfg.method.params == {"lambda_max": 0.5}
    with pytest.raises(Exception, match="has no setting --alpha"):
        build_config(_parser().parse_args(["run", "--method", "dann", "--alpha", "5"]))
    env = {**os.environ, "TL_PLUGINS": "test_method_seam",
           "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), str(ROOT)])}
    out = subprocess.run([sys.executable, "-m", "tl_core", "run", "--help"], capture_output=True, text=True,
                         env=env, cwd=ROOT, timeout=120)
    text = " ".join(out.stdout.split())
    assert "--extra EXTRA" in text and "toy-anchor: test only" in text and "--alpha" in text


def test_extras_on_the_setup_page(tl_home):
    from streamlit.testing.v1 import AppTest

    from tl_ui import keys

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.run()
    at.switch_page(keys.PAGE_SETUP).run()
    box = at.checkbox(key=keys.setup_key("extra.toy-anchor"))
    assert not box.value and "Toy anchor (regulariser)" in box.label
    with pytest.raises(KeyError):  # its settings show only when it is added
        at.number_input(key=keys.setup_key("method.extras.toy-anchor.alpha"))
    box.check().run()
    alpha = at.number_input(key=keys.setup_key("method.extras.toy-anchor.alpha"))
    assert alpha.value == pytest.approx(1e3)
    alpha.set_value(7.0).run()
    assert not at.exception and not at.button(key=keys.SETUP_START).disabled
    assert '"extras": [{"name": "toy-anchor", "params": {"alpha": 7.0}}]' in at.code[0].value
    at.number_input(key=keys.setup_key("method.extras.toy-anchor.alpha")).set_value(-1.0).run()
    assert any("must be at least 0" in e.value.lower() for e in at.error), [e.value for e in at.error]
    assert at.button(key=keys.SETUP_START).disabled
