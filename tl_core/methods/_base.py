"""Method base class and registry."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from tl_core.config import RunConfig

_REGISTRY: dict[str, tuple[type["Method"], str]] = {}


@dataclass
class Batch:
    """One training step's data.

    Attributes:
        x_src: labelled inputs (source, or target for a supervised target fine-tune).
        y_src: their labels, shape (B,).
        x_tgt: unlabelled target inputs, or None when the method does not use them.
    """

    x_src: torch.Tensor
    y_src: torch.Tensor
    x_tgt: torch.Tensor | None = None


class Method(nn.Module):
    """Base class: subclasses set ``uses_target`` and implement ``forward``."""

    uses_target: bool = False

    def __init__(self, config: RunConfig, feature_dim: int, num_classes: int) -> None:
        super().__init__()
        self.config = config
        self.feature_dim = feature_dim
        self.num_classes = num_classes

    def forward(self, batch: Batch, features: Callable[[torch.Tensor], torch.Tensor], head: nn.Module,
                progress: float) -> tuple[torch.Tensor, dict[str, float]]:
        """Return the loss to minimise and a dict of float metrics for this step."""
        raise NotImplementedError


def register_method(name: str, description: str) -> Callable[[type[Method]], type[Method]]:
    def deco(cls: type[Method]) -> type[Method]:
        _REGISTRY[name] = (cls, description)
        return cls
    return deco


def list_methods() -> dict[str, str]:
    """Method names and one-line descriptions."""
    return {name: desc for name, (_, desc) in sorted(_REGISTRY.items())}


def create_method(config: RunConfig, feature_dim: int, num_classes: int) -> Method:
    name = config.method.name
    if name not in _REGISTRY:
        raise KeyError(f"unknown method '{name}'; known: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name][0](config, feature_dim, num_classes)
