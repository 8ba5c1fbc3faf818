"""Torch building blocks methods share (imported only in the training process)."""

from __future__ import annotations

import torch
from torch import nn


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
