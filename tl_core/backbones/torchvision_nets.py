"""torchvision ImageNet backbones, cut into stages.

Each is built with ``torchvision.models.get_model(name, weights=None)``; pretrained
weights come from the torch hub cache (see ``_weights.py``). Stages follow the networks'
own resolution steps, so "freeze the first k stages" freezes the first k blocks of
resolution:

- resnet18/50: ``stem`` (conv1, bn1, relu, maxpool), ``layer1`` … ``layer4``.
- mobilenet_v3_small: ``stem`` = features[0], ``stage1`` = [1], ``stage2`` = [2:4],
  ``stage3`` = [4:9], ``stage4`` = [9:12], ``head conv`` = [12] (576 channels).
- efficientnet_b0: ``stem`` = features[0], ``stage1`` … ``stage7`` = features[1:8],
  ``head conv`` = features[8] (1280 channels).
- convnext_tiny: pairs (downsample, stage) of ``features``; the last stage ends with the
  global average pool and the pretrained LayerNorm that precedes the classifier.

The ImageNet classifier (what follows the pooled features) is kept beside the backbone
for :func:`imagenet_logits`; it is not part of the module and is never trained.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from tl_core.backbones import _weights
from tl_core.backbones._base import IMAGENET_MEAN, IMAGENET_STD, Backbone, BackboneError, BackboneInfo
from tl_core.backbones._registry import register_backbone

Splitter = Callable[[nn.Module], tuple[list[nn.Module], nn.Module | None, nn.Module]]
"""model -> (stages, pool or None for global average, ImageNet classifier over the features)."""


def _build(info: BackboneInfo, pretrained: bool, allow_download: bool, split: Splitter) -> Backbone:
    from torchvision.models import get_model

    model = get_model(info.arch, weights=None)
    if not pretrained:
        stages, pool, _ = split(model)
        return Backbone(info, stages, pool)
    state = _weights.load_state_dict(info.arch, allow_download)
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise BackboneError(f"{info.arch}: the weights file {_weights.weights_path(info.arch)} does not fit "
                            f"the architecture ({str(e).splitlines()[0]}). Replace it with the file from "
                            f"{_weights.weights_url(info.arch)}.") from e
    stages, pool, head = split(model)
    return Backbone(info, stages, pool, imagenet_head=head)


def _register(arch: str, title: str, stage_names: list[str], feature_dim: int, split: Splitter,
              weights: str) -> None:
    # ``weights`` names torchvision's DEFAULT weights enum (tests/test_backbones.py checks it against
    # torchvision): written here, so listing the backbones does not import torchvision, whose import pulls
    # in torch._dynamo (about 2.5 s of every training process's start for runs that never use it)

    @register_backbone(arch, title=title, stage_names=stage_names, feature_dim=feature_dim, input_size=224,
                       mean=IMAGENET_MEAN, std=IMAGENET_STD, scale=255.0,
                       weights=f"ImageNet-1k, torchvision {weights} (torch hub cache)",
                       weights_status=lambda: _weights.weights_status(arch))
    def build(info: BackboneInfo, pretrained: bool, allow_download: bool) -> Backbone:
        return _build(info, pretrained, allow_download, split)


def _split_resnet(m: nn.Module) -> tuple[list[nn.Module], None, nn.Module]:
    stem = nn.Sequential(m.conv1, m.bn1, m.relu, m.maxpool)
    return [stem, m.layer1, m.layer2, m.layer3, m.layer4], None, m.fc


def _split_mobilenet_v3(m: nn.Module) -> tuple[list[nn.Module], None, nn.Module]:
    f = m.features
    cuts = [(0, 1), (1, 2), (2, 4), (4, 9), (9, 12), (12, 13)]
    return [nn.Sequential(*f[a:b]) for a, b in cuts], None, m.classifier


def _split_efficientnet(m: nn.Module) -> tuple[list[nn.Module], None, nn.Module]:
    return list(m.features), None, m.classifier


def _split_convnext(m: nn.Module) -> tuple[list[nn.Module], nn.Module, nn.Module]:
    f = m.features
    norm, flatten, linear = m.classifier
    stages = [nn.Sequential(f[0], f[1]), nn.Sequential(f[2], f[3]), nn.Sequential(f[4], f[5]),
              nn.Sequential(f[6], f[7], m.avgpool, norm, flatten)]
    return stages, nn.Identity(), linear


_STAGES5 = ["stem", "layer1", "layer2", "layer3", "layer4"]
# Registration order is listing order: small and quick first.
_register("mobilenet_v3_small", "MobileNetV3-Small",
          ["stem", "stage1", "stage2", "stage3", "stage4", "head conv"], 576, _split_mobilenet_v3,
          "MobileNet_V3_Small_Weights.IMAGENET1K_V1")
_register("resnet18", "ResNet-18", _STAGES5, 512, _split_resnet, "ResNet18_Weights.IMAGENET1K_V1")
_register("resnet50", "ResNet-50", _STAGES5, 2048, _split_resnet, "ResNet50_Weights.IMAGENET1K_V2")
_register("efficientnet_b0", "EfficientNet-B0",
          ["stem"] + [f"stage{i}" for i in range(1, 8)] + ["head conv"], 1280, _split_efficientnet,
          "EfficientNet_B0_Weights.IMAGENET1K_V1")
_register("convnext_tiny", "ConvNeXt-Tiny", ["stem+stage1", "stage2", "stage3", "stage4+norm"], 768,
          _split_convnext, "ConvNeXt_Tiny_Weights.IMAGENET1K_V1")
