"""Gradient reversal layer (Ganin & Lempitsky, ICML 2015).

Identity on the forward pass; multiplies the gradient by -λ on the backward pass, so the
feature extractor is trained to *increase* the domain discriminator's loss.
"""

from __future__ import annotations

import math

import torch


class _ReverseGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, coeff: float) -> torch.Tensor:  # type: ignore[override]
        ctx.coeff = coeff
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        return -ctx.coeff * grad, None


def reverse_gradient(x: torch.Tensor, coeff: float = 1.0) -> torch.Tensor:
    """Identity forward, gradient times ``-coeff`` backward.

    Shape:
        x: any shape; output has the same shape.
    """
    return _ReverseGrad.apply(x, float(coeff))


def dann_lambda(progress: float, gamma: float = 10.0, lambda_max: float = 1.0, schedule: str = "warmup",
                source_warmup: float = 0.0) -> float:
    """λ as a pure function of training progress p in [0, 1].

    λ is 0 for the first ``source_warmup`` of training (a source-only start, so the label task is learnt
    before the reversed domain gradient arrives), then follows the schedule over the rest, with p counted
    from the end of that start: "warmup" λ_max·(2/(1+exp(−γp)) − 1) (the DANN paper, which has no
    source-only start), or "constant" λ_max.
    """
    p = min(max(progress, 0.0), 1.0)
    w = min(max(source_warmup, 0.0), 0.99)
    if p < w:
        return 0.0
    if schedule == "constant":
        return float(lambda_max)
    p = (p - w) / (1.0 - w)
    return float(lambda_max * (2.0 / (1.0 + math.exp(-gamma * p)) - 1.0))
