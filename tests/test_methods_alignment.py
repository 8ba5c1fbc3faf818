"""Alignment methods (DAN, Deep CORAL, CDAN, CDAN+E): their discrepancies measure a shift, their conditioning
is the paper's, their terms pull the features together, and each trains from a config without target labels."""

from __future__ import annotations

import dataclasses
import math
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from tl_core import trainer
from tl_core.config import RunConfig
from tl_core.methods import Batch, create_method, get_method
from tl_core.methods._align import MultilinearMap, coral, entropy_weights, kernel_scales, mk_mmd
from tl_core.recorder import MemoryRecorder

from _tiny import tiny_config

ROOT = Path(__file__).resolve().parents[1]
NAMES = ("dan", "coral", "cdan", "cdan_e")


def _sample(n=64, d=16, seed=0):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed))


def test_kernel_bandwidths_span_two_to_the_minus_two_to_two():
    assert kernel_scales(5) == [0.25, 0.5, 1.0, 2.0, 4.0]
    assert kernel_scales(1) == [1.0]


@pytest.mark.parametrize("loss,shift", [(mk_mmd, lambda x, s: x + s), (coral, lambda x, s: x * (1 + s))])
def test_discrepancy_is_zero_for_identical_features_and_grows_with_the_shift(loss, shift):
    x = _sample()
    same = float(loss(x, x.clone()))
    values = [float(loss(x, shift(_sample(seed=1), s))) for s in (0.5, 1.0, 2.0)]
    # The unbiased MMD² of a sample with itself is −2(1 − mean kernel)/n, a little below 0; CORAL's is 0.
    assert abs(same) < 0.3 * values[0] and abs(same) < 0.02
    assert values[0] < values[1] < values[2]


def test_mmd_separates_mnist_from_mnist_m_more_than_two_halves_of_mnist():
    from tl_core.backbones import create_backbone
    from tl_core.modality import ImageModality

    cfg = tiny_config("dan")
    mod = ImageModality()
    src = mod.to_device(mod.load(cfg, "source", "train", 256), cfg, torch.device("cpu"))
    tgt = mod.to_device(mod.load(cfg, "target", "train", 128), cfg, torch.device("cpu"))
    torch.manual_seed(0)
    bb = create_backbone("lenet", pretrained=False).eval()
    norm = mod.normaliser(bb.info, torch.device("cpu"))
    with torch.no_grad():
        fs, ft = bb(norm(src)), bb(norm(tgt))
    within = float(mk_mmd(fs[:128], fs[128:]))
    across = float(mk_mmd(fs[:128], ft))
    assert across > 5 * max(within, 1e-3), (within, across)
    assert float(coral(fs[:128], ft)) > float(coral(fs[:128], fs[128:]))


def test_multilinear_map_is_the_outer_product_below_the_threshold_and_random_above():
    f, g = _sample(8, 100), torch.softmax(_sample(8, 10, seed=1), 1)
    exact = MultilinearMap(100, 10)
    h = exact(f, g)
    assert not exact.randomised and h.shape == (8, 1000)
    assert torch.allclose(h.view(8, 100, 10), torch.einsum("nf,nc->nfc", f, g))
    torch.manual_seed(0)
    rand = MultilinearMap(100, 10, dim=256, threshold=999)
    hr = rand(f, g)
    assert rand.randomised and hr.shape == (8, 256)
    assert not any(p.requires_grad for p in rand.parameters()) and set(dict(rand.named_buffers())) == {"r_f", "r_g"}
    # Its inner products estimate the outer products' ones: <T(f,g), T(f',g')> ≈ <f,f'><g,g'> (paper, Thm. 1).
    torch.manual_seed(0)
    big = MultilinearMap(100, 10, dim=20000, threshold=0)
    hb = big(f, g)
    assert torch.allclose(hb[0] @ hb[0], h[0] @ h[0], rtol=0.15)


def test_cdan_discriminator_sees_the_map_width():
    cfg = RunConfig()
    cfg.method.name = "cdan"
    cfg.method.params = {"disc_hidden": 16}
    assert create_method(cfg, 100, 10).discriminator.net[0].in_features == 1000
    cfg.method.params = {"disc_hidden": 16, "random_dim": 64}
    assert create_method(cfg, 500, 10).discriminator.net[0].in_features == 64  # 5000 > 4096: randomised


def test_entropy_weights_favour_confident_predictions_within_each_domain():
    confident, unsure = torch.tensor([[0.97, 0.01, 0.01, 0.01]]), torch.full((1, 4), 0.25)
    p = torch.cat([confident, unsure, unsure, unsure, confident, confident])
    w = entropy_weights(p, 3)
    assert w[0] > w[1] == w[2] and w[3] < w[4] == w[5]
    assert torch.allclose(w[:3].mean(), torch.tensor(1.0)) and torch.allclose(w[3:].mean(), torch.tensor(1.0))
    assert float(entropy_weights(torch.full((4, 4), 0.25), 2).std()) == 0.0  # no confidence: plain mean


def _toy(name, **params):
    torch.manual_seed(0)
    cfg = RunConfig()
    cfg.method.name, cfg.method.params = name, params
    if name.startswith("cdan"):
        cfg.method.params.setdefault("disc_hidden", 16)
    model = SimpleNamespace(features=nn.Linear(4, 8), head=nn.Linear(8, 3))
    method = create_method(cfg, 8, 3)
    g = torch.Generator().manual_seed(1)
    batch = Batch(torch.randn(16, 4, generator=g), torch.randint(0, 3, (16,), generator=g),
                  torch.randn(16, 4, generator=g) * 2 + 3.0)
    return model, method, batch


@pytest.mark.parametrize("name,term", [("dan", "mmd"), ("coral", "loss_coral")])
def test_the_alignment_term_pulls_the_features_together(name, term):
    model, method, batch = _toy(name, **({"source_warmup": 0.0} if name == "dan" else {"coral_weight": 50.0}))
    opt = torch.optim.SGD(list(model.features.parameters()) + list(model.head.parameters()), lr=0.05)
    first = None
    for _ in range(40):
        loss, m = method.loss(batch, model, progress=0.9)
        first = first if first is not None else float(m[term])
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(m[term]) < 0.5 * first


def test_dan_aligns_the_logits_when_asked():
    model, method, batch = _toy("dan")
    assert "mmd_logits" not in method.loss(batch, model, 0.5)[1]
    model, method, batch = _toy("dan", align_logits=True)
    _, m = method.loss(batch, model, 0.5)
    assert float(m["mmd_logits"]) > 0
    assert method.loss(batch, model, 0.0)[1]["mmd_weight"] == 0.0  # source-only start


def test_cdan_reverses_the_domain_gradient_and_cdan_e_reweights_it():
    model, method, batch = _toy("cdan", source_warmup=0.0, lambda_schedule="constant")
    linear, seen = model.features, {}

    def features(x):  # keep the features the loss computes, to read their gradient
        seen["f"] = linear(x)
        seen["f"].retain_grad()
        return seen["f"]

    model.features = features
    method.loss(batch, model, 0.5)[0].backward()
    f = seen["f"].detach().requires_grad_()
    g = torch.softmax(model.head(f), 1).detach()
    d = method.discriminator(method.map(f, g))
    nn.functional.binary_cross_entropy_with_logits(d, torch.cat([torch.ones(16), torch.zeros(16)])).backward()
    # Target features get gradient from the domain loss only (the predictions enter the map detached):
    # through the reversal layer, the opposite of the gradient that descends it.
    assert torch.allclose(seen["f"].grad[16:], -f.grad[16:], atol=1e-6) and f.grad[16:].abs().sum() > 0
    # CDAN+E: same network, same batch, a different (re-weighted) domain loss; switched off, CDAN's loss.
    model.features = linear
    values = [float(_toy(name, **kw)[1].loss(batch, model, 0.5)[1]["loss_domain"])
              for name, kw in (("cdan", {}), ("cdan_e", {}), ("cdan_e", {"entropy_conditioning": False}))]
    assert values[0] == pytest.approx(values[2]) and values[0] != pytest.approx(values[1], abs=1e-6)


class _Reads:
    """A batch that records which of its fields a method reads."""

    def __init__(self, batch):
        self._batch, self.read = batch, set()

    def __getattr__(self, name):
        self.read.add(name)
        return getattr(self._batch, name)


@pytest.mark.parametrize("name", NAMES)
def test_no_target_labels_reach_the_method(name):
    assert {f.name for f in dataclasses.fields(Batch)} == {"x_src", "y_src", "x_tgt", "w_src", "idx_src"}
    model, method, batch = _toy(name)
    reads = _Reads(batch)
    loss, _ = method.loss(reads, model, 0.5)
    assert math.isfinite(float(loss.detach())) and "x_tgt" in reads.read
    assert reads.read <= {"x_src", "y_src", "x_tgt", "w_src"}


@pytest.mark.parametrize("name", NAMES)
def test_each_method_trains_a_tiny_epoch_and_logs_its_step_metrics(name):
    cls = get_method(name)
    rec = MemoryRecorder()
    res = trainer.run(tiny_config(name), rec)
    assert 0.0 <= res["target_test_acc"] <= 1.0
    wanted = {c.metric for c in cls.step_charts} | {"loss_task", "train_acc"}
    assert rec.steps and all(wanted <= set(row) for row in rec.steps)
    assert all(math.isfinite(float(row[k])) for row in rec.steps for k in wanted)


def test_every_alignment_method_is_on_the_command_line():
    out = subprocess.run([sys.executable, "-m", "tl_core", "run", "--help"], capture_output=True, text=True,
                         cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    text = " ".join(out.stdout.split())
    for name in NAMES:
        assert name in text and get_method(name).description in text
    for flag in ("--mmd-weight", "--align-logits", "--num-kernels", "--coral-weight", "--entropy-conditioning",
                 "--random-dim", "--random-threshold"):
        assert flag in text


def test_a_flag_shared_by_methods_with_different_defaults_names_each_default():
    from tl_core.__main__ import _parser

    help_text = " ".join(_parser().format_help().split())
    run_help = next(a for a in _parser()._subparsers._group_actions[0].choices.values()
                    if "--source-warmup" in a._option_string_actions)
    text = " ".join(run_help.format_help().split())
    assert "(defaults: dann 0.2, cdan 0.0, cdan_e 0.0, dan 0.2)" in text
    assert help_text  # the top-level help still renders
