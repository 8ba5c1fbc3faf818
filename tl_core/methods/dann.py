"""Domain-adversarial training (DANN).

Ganin et al., "Domain-Adversarial Training of Neural Networks", JMLR 17(59), 2016.
A domain discriminator learns to tell source features from target features; through a
gradient reversal layer the feature extractor learns to fool it, while the label head
learns the source task. λ warms up as 2/(1+exp(−10p))−1 over training progress p; by default the
first 20 % of training is source only (λ = 0), a departure from the paper: on short runs a domain gradient
that arrives before the label task has left its loss plateau can collapse the features to a constant
(domains merged, classes lost), as LeNet on synthetic digits → MNIST did.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tl_core.methods._base import Method, StepChart, param, register
from tl_core.methods.finetune import weighted_cross_entropy


def warmup_gamma() -> Any:
    """The warm-up steepness γ, as DANN and the methods that borrow its schedule declare it."""
    return param(10.0, "λ warm-up steepness γ", "γ in 2/(1+exp(−γp))−1; the DANN paper uses 10.",
                 min=0, min_open=True, step=1.0)


def source_only_start() -> Any:
    """The share of training before the domain term starts (default 0.2), as DANN and DAN declare it."""
    return param(0.2, "Source-only start", "Fraction of training with λ = 0, so the classes "
                 "are learnt before the domain gradient arrives (default 0.2; the DANN paper uses "
                 "0). Too early a domain gradient can collapse the features: domains merged, "
                 "classes lost.", min=0, max=1, max_open=True, step=0.05)


@dataclass
class DANNParams:
    lambda_max: float = param(1.0, "λ max", "Weight of the reversed domain gradient at the end of the warm-up "
                              "(paper: 1.0).", min=0, max=10, step=0.1)
    lambda_schedule: str = param("warmup", "λ schedule", "How λ grows over training.",
                                 choices={"warmup": "Warm-up: 0 → λ max (DANN paper)",
                                          "constant": "Constant λ max"})
    gamma: float = warmup_gamma()
    source_warmup: float = source_only_start()
    disc_hidden: int = param(1024, "Discriminator width", "Hidden units in each layer of the domain "
                             "discriminator.", min=1, step=64)
    disc_layers: int = param(2, "Discriminator layers", "Hidden layers of the domain discriminator.", min=1, step=1)


@register
class DANN(Method):
    name = "dann"
    title = "DANN"
    description = "Domain-adversarial training: gradient reversal against a domain discriminator."
    citation = "Ganin et al., Domain-Adversarial Training of Neural Networks, JMLR 17(59), 2016"
    Params = DANNParams
    choice_help = {"source": "DANN: domain-adversarial training (source labels + unlabelled target images)"}
    uses_target = True
    step_charts = (StepChart("domain_acc", "domain_accuracy", "Domain discriminator accuracy (%) per step"),
                   StepChart("lambda", "schedule", "DANN λ (left) and learning rate (right) per step"))

    def __init__(self, ctx: Any) -> None:
        super().__init__(ctx)
        from tl_core.methods.parts import DomainDiscriminator

        p = self.params
        self.discriminator = self.add_module("discriminator",
                                             DomainDiscriminator(ctx.feature_dim, p.disc_hidden, p.disc_layers))

    def loss(self, batch: Any, model: Any, progress: float) -> tuple[Any, dict[str, float]]:
        import torch
        import torch.nn.functional as F

        from tl_core.methods.grl import dann_lambda, reverse_gradient

        p = self.params
        lam = dann_lambda(progress, p.gamma, p.lambda_max, p.lambda_schedule, p.source_warmup)
        n_src = batch.x_src.shape[0]
        # One pass over both domains, so BatchNorm sees the mixed batch as in the paper.
        f = model.features(torch.cat([batch.x_src, batch.x_tgt], 0))
        logits = model.head(f[:n_src])
        loss_task = weighted_cross_entropy(logits, batch.y_src, batch.w_src)
        d_logits = self.discriminator(reverse_gradient(f, lam)).float()
        d_true = torch.cat([torch.ones(n_src, device=f.device), torch.zeros(f.shape[0] - n_src, device=f.device)])
        loss_domain = F.binary_cross_entropy_with_logits(d_logits, d_true)
        domain_acc = ((d_logits > 0).float() == d_true).float().mean()
        acc = (logits.argmax(1) == batch.y_src).float().mean()
        loss = loss_task + loss_domain  # λ acts through the reversal layer only
        return loss, {"loss_task": loss_task.detach(), "loss_domain": loss_domain.detach(),
                      "lambda": lam, "domain_acc": domain_acc, "train_acc": acc}
