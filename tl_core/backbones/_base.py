"""The pieces every backbone shares: its facts (:class:`BackboneInfo`), the staged module
(:class:`Backbone`), freezing, parameter counts of a built backbone, and the new head.
"""

from __future__ import annotations

import dataclasses
import operator
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
HEAD_KINDS = ("linear", "mlp")


class BackboneError(RuntimeError):
    """A backbone cannot be built or loaded; the message says why and what to do."""


class UnknownBackboneError(BackboneError, KeyError):
    """No backbone of that name. A ``KeyError`` too, for callers that look names up."""

    def __str__(self) -> str:  # KeyError would print the message in quotes
        return str(self.args[0]) if self.args else ""


@dataclass
class BackboneInfo:
    """What a page or the trainer needs to know about a backbone without building it.

    Preprocessing: a uint8 pixel ``p`` (0-255) enters the backbone as
    ``(p / scale - mean) / std`` per channel; for ImageNet-style weights ``scale`` is 255
    and mean/std are in 0-1 units, for the TF EfficientNet-Lite weights ``scale`` is 1 and
    mean/std are 127/128 in pixel units.

    Attributes:
        name: Registry name (``"resnet18"``) or ``"run:<id>"`` for a saved backbone.
        title: Human-readable name.
        stage_names: Names of ``Backbone.stages``, input to output.
        feature_dim: Width of ``Backbone.forward``'s output.
        input_size: Side of the square images the weights were trained on.
        mean: Per-channel mean, after dividing pixels by ``scale``.
        std: Per-channel standard deviation, after dividing pixels by ``scale``.
        scale: Pixels are divided by this before ``(x - mean) / std``.
        weights: Where the pretrained weights come from, in words.
        params: Number of parameters of the backbone (without any ImageNet classifier).
        arch: The registered architecture (differs from ``name`` for ``run:<id>``).
    """

    name: str
    title: str
    stage_names: list[str]
    feature_dim: int
    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    scale: float
    weights: str
    params: int = 0
    arch: str = field(default="")

    def __post_init__(self) -> None:
        self.stage_names = list(self.stage_names)
        self.arch = self.arch or self.name


class GlobalAvgPool(nn.Module):
    """Average over the spatial axes; a (N, C) input passes through unchanged.

    Shape:
        (N, C, H, W) or (N, C) -> (N, C)
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3)) if x.dim() == 4 else x.flatten(1)


class Backbone(nn.Module):
    """A feature extractor cut into an ordered list of stages.

    ``forward(x) == forward_from(forward_until(x, k), k)`` for every ``k`` in
    ``0..len(stages)``: the trainer can compute the outputs of frozen stages once and
    train from there. Every parameter lives in ``stages``; ``pool`` only averages.

    Attributes:
        stages: The stages, input to output.
        pool: Parameter-free module turning the last stage's output into (N, num_features).
        num_features: Width of the feature vector.
        info: The backbone's facts; ``info.params`` is this module's parameter count.
        frozen_stages: How many leading stages :func:`freeze_stages` froze.
    """

    def __init__(self, info: BackboneInfo, stages: Sequence[nn.Module], pool: nn.Module | None = None,
                 imagenet_head: nn.Module | None = None) -> None:
        super().__init__()
        if len(stages) != len(info.stage_names):
            raise ValueError(f"{info.name}: {len(stages)} stages but {len(info.stage_names)} stage names")
        self.stages = nn.ModuleList(stages)
        self.pool = pool if pool is not None else GlobalAvgPool()
        if any(True for _ in self.pool.parameters()):
            raise ValueError(f"{info.name}: the pool must have no parameters; put them in a stage")
        self.num_features = int(info.feature_dim)
        self.frozen_stages = 0
        self.info = dataclasses.replace(info, params=sum(p.numel() for p in self.parameters()))
        # Kept outside the module tree: not trained, not saved, not counted.
        object.__setattr__(self, "_imagenet_head", imagenet_head.eval() if imagenet_head is not None else None)

    def _check_k(self, k: int) -> None:
        n = len(self.stages)
        if not 0 <= k <= n:
            raise ValueError(f"{self.info.name} has {n} stages ({', '.join(self.info.stage_names)}); "
                             f"stage index {k} is outside 0..{n}.")

    def forward_until(self, x: torch.Tensor, k: int) -> torch.Tensor:
        """Output of the first ``k`` stages (``x`` itself for ``k = 0``).

        Shape:
            (N, 3, H, W) -> whatever stage ``k`` emits, e.g. (N, C_k, H_k, W_k)
        """
        self._check_k(k)
        for stage in self.stages[:k]:
            x = stage(x)
        return x

    def forward_from(self, h: torch.Tensor, k: int) -> torch.Tensor:
        """Run stages ``k..`` on ``h`` (the output of the first ``k`` stages), then pool.

        Shape:
            output of stage ``k`` -> (N, num_features)
        """
        self._check_k(k)
        for stage in self.stages[k:]:
            h = stage(h)
        return self.pool(h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled, flattened features.

        Shape:
            (N, 3, H, W) -> (N, num_features)
        """
        return self.forward_from(x, 0)

    def train(self, mode: bool = True) -> Backbone:
        """Set train/eval mode, keeping frozen stages in eval (BatchNorm statistics stay put)."""
        super().train(mode)
        for stage in self.stages[: self.frozen_stages]:
            stage.eval()
        return self

    @property
    def imagenet_head(self) -> nn.Module | None:
        """The pretrained ImageNet classifier over the features, when the weights had one."""
        return self._imagenet_head


def check_freeze(k: object, n: int, name: str, stage_names: Sequence[str]) -> int:
    """``k`` as an int when ``0 <= k <= n``.

    Raises:
        ValueError: anything else; the message lists the stages and the valid range.
    """
    try:
        value = None if isinstance(k, bool) else operator.index(k)  # type: ignore[arg-type]
    except TypeError:
        value = None
    if value is None or not 0 <= value <= n:
        raise ValueError(f"{name} has {n} stages ({', '.join(stage_names)}); cannot freeze {k!r}. "
                         f"Choose a number from 0 to {n}.")
    return value


def freeze_stages(backbone: Backbone, k: int) -> None:
    """Freeze exactly the first ``k`` stages: no gradients, BatchNorm/Dropout in eval mode.

    Later stages become trainable. The eval mode survives ``backbone.train()``.

    Raises:
        ValueError: ``k`` is negative or larger than the number of stages.
    """
    k = check_freeze(k, len(backbone.stages), backbone.info.name, backbone.info.stage_names)
    for i, stage in enumerate(backbone.stages):
        for p in stage.parameters():
            p.requires_grad_(i >= k)
    backbone.frozen_stages = k
    backbone.train(backbone.training)


def stage_param_counts(backbone: Backbone) -> list[int]:
    """Number of parameters in each stage, input to output."""
    return [sum(p.numel() for p in stage.parameters()) for stage in backbone.stages]


def split_counts(per_stage: Sequence[int], k: int, name: str, stage_names: Sequence[str]) -> tuple[int, int]:
    """(trainable, frozen) parameter counts when the first ``k`` of these stages are frozen."""
    k = check_freeze(k, len(per_stage), name, stage_names)
    frozen = int(sum(per_stage[:k]))
    return int(sum(per_stage)) - frozen, frozen


def make_head(in_dim: int, num_classes: int, kind: str = "linear", hidden: int = 256,
              dropout: float = 0.5) -> nn.Module:
    """The new classifier on top of the features.

    ``linear`` is dropout then one linear layer (no dropout when ``dropout`` is 0);
    ``mlp`` is linear → ReLU → dropout → linear.

    Shape:
        (N, in_dim) -> (N, num_classes)

    Raises:
        ValueError: an unknown ``kind`` or a size/probability out of range.
    """
    if kind not in HEAD_KINDS:
        raise ValueError(f"head kind {kind!r} is unknown; choose one of {', '.join(HEAD_KINDS)}.")
    if in_dim < 1 or num_classes < 1 or hidden < 1:
        raise ValueError(f"head sizes must be positive (in_dim={in_dim}, num_classes={num_classes}, hidden={hidden}).")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}.")
    drop = [nn.Dropout(dropout)] if dropout > 0 else []
    if kind == "linear":
        return nn.Sequential(*drop, nn.Linear(in_dim, num_classes))
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(inplace=True), *drop, nn.Linear(hidden, num_classes))


@torch.no_grad()
def imagenet_logits(backbone: Backbone, x: torch.Tensor) -> torch.Tensor:
    """ImageNet-1k logits of a pretrained backbone (in eval mode), for checks and demos.

    Shape:
        (N, 3, H, W) normalised as ``backbone.info`` says -> (N, 1000)

    Raises:
        BackboneError: the backbone was built without pretrained ImageNet weights.
    """
    head = backbone.imagenet_head
    if head is None:
        raise BackboneError(f"{backbone.info.name} has no ImageNet classifier: it was built without "
                            "pretrained ImageNet weights.")
    was = backbone.training
    backbone.eval()
    try:
        feats = backbone(x)
    finally:
        backbone.train(was)
    return head.to(device=feats.device, dtype=feats.dtype)(feats)
