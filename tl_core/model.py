"""The network a run trains: backbone, new head, input normalisation and the frozen-stage cache.

Methods receive a :class:`Model` in their hooks; they never need to know whether the first
stages' outputs were cached.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from tl_core import backbones as bb


@dataclass
class Model:
    """Backbone + head. ``cached``: the inputs the loop hands out are the outputs of the first
    ``cached`` (frozen) stages, not images; 0 when they are images."""

    backbone: bb.Backbone
    head: nn.Module
    normalise: Callable[[torch.Tensor], torch.Tensor]
    cached: int = 0

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Training-mode features of a batch as the loop hands it out (images or cached stage outputs)."""
        if self.cached:
            return self.backbone.forward_from(x, self.cached)
        return self.backbone(self.normalise(x))

    def features_eval(self, x: torch.Tensor) -> torch.Tensor:
        """Features of raw images (evaluation and snapshots), whatever the cache."""
        return self.backbone(self.normalise(x))

    def train(self, mode: bool = True) -> None:
        self.backbone.train(mode)
        self.head.train(mode)

    def trainable_backbone_parameters(self) -> list[nn.Parameter]:
        return [q for q in self.backbone.parameters() if q.requires_grad]
