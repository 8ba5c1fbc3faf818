"""Methods: the reversal layer flips gradients, λ follows the DANN schedule, losses train."""

import math

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from tl_core.config import RunConfig
from tl_core.methods import Batch, create_method, list_methods
from tl_core.methods.grl import dann_lambda, reverse_gradient
from tl_core.optim import lr_factor


def test_reversal_layer_is_identity_forward_and_flips_gradient():
    x = torch.randn(5, 3, requires_grad=True)
    y = reverse_gradient(x, 0.5)
    assert torch.equal(y, x)
    y.sum().backward()
    assert torch.allclose(x.grad, torch.full_like(x, -0.5))


@pytest.mark.parametrize("p,expected", [(0.0, 0.0), (1.0, 2 / (1 + math.exp(-10)) - 1), (0.1, 2 / (1 + math.exp(-1)) - 1)])
def test_lambda_warmup_schedule(p, expected):
    assert dann_lambda(p) == pytest.approx(expected)
    assert dann_lambda(p, lambda_max=0.5) == pytest.approx(0.5 * expected)


def test_lambda_constant_and_monotone():
    assert dann_lambda(0.0, schedule="constant", lambda_max=0.3) == 0.3
    values = [dann_lambda(i / 20) for i in range(21)]
    assert values == sorted(values) and values[-1] < 1.0


def test_source_only_start_holds_lambda_at_zero_then_runs_the_schedule_over_the_rest():
    assert [dann_lambda(p, source_warmup=0.2) for p in (0.0, 0.1, 0.199)] == [0.0, 0.0, 0.0]
    # 60 % of the way through is half-way through the remaining 80 %: the paper's λ at p = 0.5
    assert dann_lambda(0.6, source_warmup=0.2) == pytest.approx(dann_lambda(0.5))
    assert dann_lambda(1.0, source_warmup=0.2) == pytest.approx(dann_lambda(1.0))
    assert dann_lambda(0.1, schedule="constant", lambda_max=0.3, source_warmup=0.2) == 0.0
    assert dann_lambda(0.3, schedule="constant", lambda_max=0.3, source_warmup=0.2) == 0.3


def test_source_only_start_must_be_a_fraction_below_one():
    cfg = RunConfig()
    cfg.method.params["source_warmup"] = 1.0
    assert any(e.startswith("method.params.source_warmup:") for e in cfg.validate())
    cfg.method.params["source_warmup"] = 0.0
    assert not cfg.validate()


def test_lr_annealing_matches_dann_paper():
    assert lr_factor(0.0, "anneal") == 1.0
    assert lr_factor(1.0, "anneal") == pytest.approx(1 / 11 ** 0.75)
    assert lr_factor(0.5, "constant") == 1.0
    assert lr_factor(1.0, "cosine") == pytest.approx(0.0)


def test_registry_lists_methods_and_refuses_unknown():
    assert {"finetune", "dann"} <= set(list_methods())
    cfg = RunConfig()
    cfg.method.name = "nope"
    with pytest.raises(KeyError, match="finetune"):
        create_method(cfg, 8, 3)


def _toy(method_name):
    torch.manual_seed(0)
    cfg = RunConfig()
    cfg.method.name = method_name
    if method_name == "dann":
        cfg.method.params["disc_hidden"] = 16
    feat = nn.Linear(4, 8)
    head = nn.Linear(8, 3)
    method = create_method(cfg, 8, 3)
    batch = Batch(torch.randn(16, 4), torch.randint(0, 3, (16,)), torch.randn(16, 4) + 3.0)
    return SimpleNamespace(features=feat, head=head), head, method, batch


def test_dann_reports_its_terms_and_reverses_gradient_into_features():
    model, head, method, batch = _toy("dann")
    feat = model.features
    loss, m = method.loss(batch, model, progress=1.0)
    assert set(m) >= {"loss_task", "loss_domain", "lambda", "domain_acc"}
    assert 0.0 <= float(m["domain_acc"]) <= 1.0
    # The discriminator's gradient descends the domain loss; the features' gradient ascends it.
    feat.zero_grad()
    method.discriminator.zero_grad()
    f = feat(torch.cat([batch.x_src, batch.x_tgt]))
    f.retain_grad()
    d = method.discriminator(reverse_gradient(f, 1.0))
    y = torch.cat([torch.ones(16), torch.zeros(16)])
    nn.functional.binary_cross_entropy_with_logits(d, y).backward()
    g_rev = f.grad.clone()
    f2 = feat(torch.cat([batch.x_src, batch.x_tgt]))
    f2.retain_grad()
    nn.functional.binary_cross_entropy_with_logits(method.discriminator(f2), y).backward()
    assert torch.allclose(g_rev, -f2.grad, atol=1e-6)


@pytest.mark.parametrize("name", ["finetune", "dann"])
def test_a_few_steps_reduce_the_task_loss(name):
    model, head, method, batch = _toy(name)
    params = list(model.features.parameters()) + list(head.parameters()) + list(method.parameters())
    opt = torch.optim.SGD(params, lr=0.1)
    method.train()
    first = None
    for _ in range(30):
        loss, m = method.loss(batch, model, progress=0.5)
        first = first if first is not None else float(m["loss_task"])
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(m["loss_task"]) < first
