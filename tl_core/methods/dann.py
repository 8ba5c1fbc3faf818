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

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from tl_core.methods._base import Batch, Method, register_method
from tl_core.methods.grl import dann_lambda, reverse_gradient


class DomainDiscriminator(nn.Module):
    """MLP that outputs one logit per feature vector (positive = source).

    Shape:
        input (N, in_dim); output (N,).
    """

    def __init__(self, in_dim: int, hidden: int = 1024, layers: int = 2) -> None:
        super().__init__()
        parts: list[nn.Module] = []
        width = in_dim
        for _ in range(layers):
            parts += [nn.Linear(width, hidden), nn.BatchNorm1d(hidden), nn.ReLU()]
            width = hidden
        parts.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*parts)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return self.net(f).squeeze(1)


@register_method("dann", "Domain-adversarial training: gradient reversal against a domain discriminator.")
class DANN(Method):
    uses_target = True

    def __init__(self, config, feature_dim: int, num_classes: int) -> None:
        super().__init__(config, feature_dim, num_classes)
        m = config.method
        self.discriminator = DomainDiscriminator(feature_dim, m.disc_hidden, m.disc_layers)

    def forward(self, batch: Batch, features: Callable[[torch.Tensor], torch.Tensor], head: nn.Module,
                progress: float) -> tuple[torch.Tensor, dict[str, float]]:
        m = self.config.method
        lam = dann_lambda(progress, m.gamma, m.lambda_max, m.lambda_schedule, m.source_warmup)
        n_src = batch.x_src.shape[0]
        # One pass over both domains, so BatchNorm sees the mixed batch as in the paper.
        f = features(torch.cat([batch.x_src, batch.x_tgt], 0))
        logits = head(f[:n_src])
        loss_task = F.cross_entropy(logits, batch.y_src)
        d_logits = self.discriminator(reverse_gradient(f, lam)).float()
        d_true = torch.cat([torch.ones(n_src, device=f.device), torch.zeros(f.shape[0] - n_src, device=f.device)])
        loss_domain = F.binary_cross_entropy_with_logits(d_logits, d_true)
        domain_acc = ((d_logits > 0).float() == d_true).float().mean()
        acc = (logits.argmax(1) == batch.y_src).float().mean()
        loss = loss_task + loss_domain  # λ acts through the reversal layer only
        return loss, {"loss_task": loss_task.detach(), "loss_domain": loss_domain.detach(),
                      "lambda": lam, "domain_acc": domain_acc, "train_acc": acc}
