"""The backbone registry: register, list, describe, build, count parameters.

Architecture modules register a builder with :func:`register_backbone`; everything
else goes through the functions here. Names of the form ``run:<run_id>`` are not
registered: they refer to a backbone saved by an earlier run (see ``_saved.py``).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from tl_core.backbones._base import (
    Backbone,
    BackboneInfo,
    UnknownBackboneError,
    split_counts,
    stage_param_counts,
)

RUN_PREFIX = "run:"

Builder = Callable[[BackboneInfo, bool, bool], Backbone]
"""``builder(info, pretrained, allow_download) -> Backbone``."""


@dataclass(frozen=True)
class _Entry:
    info: BackboneInfo  # params filled in lazily by get_info
    build: Builder
    weights_status: Callable[[], tuple[bool, str]]


_REGISTRY: dict[str, _Entry] = {}


def _no_weights_needed() -> tuple[bool, str]:
    return True, "no pretrained weights: trained from scratch"


def register_backbone(name: str, *, title: str, stage_names: list[str], feature_dim: int, input_size: int,
                      mean: tuple[float, float, float], std: tuple[float, float, float], weights: str,
                      scale: float = 255.0,
                      weights_status: Callable[[], tuple[bool, str]] | None = None) -> Callable[[Builder], Builder]:
    """Decorator registering ``builder(info, pretrained, allow_download) -> Backbone`` under ``name``.

    Args:
        name: Registry name; must be new and must not start with ``run:``.
        title, stage_names, feature_dim, input_size, mean, std, weights, scale: see :class:`BackboneInfo`.
        weights_status: ``() -> (available offline, explanation)``; default: nothing needed.
    """
    if name in _REGISTRY or name.startswith(RUN_PREFIX):
        raise ValueError(f"backbone name {name!r} is taken or reserved")
    info = BackboneInfo(name=name, title=title, stage_names=list(stage_names), feature_dim=feature_dim,
                        input_size=input_size, mean=tuple(mean), std=tuple(std), scale=float(scale),
                        weights=weights)

    def deco(builder: Builder) -> Builder:
        _REGISTRY[name] = _Entry(info, builder, weights_status or _no_weights_needed)
        return builder

    return deco


def _entry(name: str) -> _Entry:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownBackboneError(
            f"Unknown backbone {name!r}. Known backbones: {', '.join(_REGISTRY)}; "
            f"or {RUN_PREFIX}<run_id> for a backbone saved by an earlier run.") from None


@functools.cache
def _stage_params(arch: str) -> tuple[int, ...]:
    """Parameters per stage of a registered architecture, built on the meta device (no memory, no weights)."""
    entry = _entry(arch)
    with torch.device("meta"):  # thread-local: other threads keep allocating normally
        backbone = entry.build(entry.info, False, False)
    return tuple(stage_param_counts(backbone))


def list_backbones() -> list[BackboneInfo]:
    """Facts about every registered backbone, in registry order (``run:<id>`` ones are not listed)."""
    return [get_info(name) for name in _REGISTRY]


def get_info(name: str, home: str | Path | None = None) -> BackboneInfo:
    """Facts about one backbone, without loading weights.

    Raises:
        UnknownBackboneError: (a ``KeyError``) no such backbone; the message lists the known ones.
        BackboneError: ``run:<id>`` with no saved backbone.
    """
    if name.startswith(RUN_PREFIX):
        from tl_core.backbones import _saved

        return _saved.saved_info(name, home)
    entry = _entry(name)
    return dataclasses.replace(entry.info, stage_names=list(entry.info.stage_names),
                               params=sum(_stage_params(name)))


def default_image_size(name: str, home: str | Path | None = None) -> int:
    """The image size a run of this backbone gets when the user sets none: the size its weights
    were trained on (28 for LeNet, 224 for the ImageNet backbones). The one owner of this rule:
    the command line, the Setup page and bench ask here."""
    return int(get_info(name, home).input_size)


def freeze_problem(name: str, k: object, home: str | Path | None = None) -> str | None:
    """The ``model.freeze`` message when ``k`` stages cannot be frozen in this backbone; None when they can."""
    from tl_core.backbones._base import check_freeze

    info = get_info(name, home)
    try:
        check_freeze(k, len(info.stage_names), info.name, info.stage_names)
    except ValueError as e:
        return f"model.freeze: {e}"
    return None


def weights_available(name: str, home: str | Path | None = None) -> tuple[bool, str]:
    """Whether ``create_backbone(name, pretrained=True)`` works offline, and why (or which file to place)."""
    if name.startswith(RUN_PREFIX):
        from tl_core.backbones import _saved

        return _saved.saved_status(name, home)
    try:
        return _entry(name).weights_status()
    except UnknownBackboneError as e:
        return False, str(e)


def has_pretrained_weights(name: str) -> bool:
    """True when ``name`` brings pretrained weights: ``run:<id>``, or a registered backbone with weights
    (``lenet``: False; an unknown name: False)."""
    if name.startswith(RUN_PREFIX):
        return True
    entry = _REGISTRY.get(name)
    return entry is not None and entry.weights_status is not _no_weights_needed


def create_backbone(name: str, pretrained: bool = True, allow_download: bool = False,
                    home: str | Path | None = None) -> Backbone:
    """Build a backbone, with its pretrained weights when ``pretrained``.

    Args:
        name: A registered name or ``run:<run_id>``.
        pretrained: Load pretrained weights (for ``run:<id>``: the saved ones); a no-op for
            backbones trained from scratch (``lenet``).
        allow_download: Fetch missing torchvision weights into the torch hub cache.
        home: Run store home for ``run:<id>`` (default ``TL_HOME`` or ``~/.transfer-lab``).

    Raises:
        UnknownBackboneError: no such backbone (message lists the known ones).
        BackboneError: weights missing offline (message names the file to place), unreadable or mismatched.
    """
    if name.startswith(RUN_PREFIX):
        from tl_core.backbones import _saved

        return _saved.load_saved(name, pretrained=pretrained, home=home)
    entry = _entry(name)
    return entry.build(entry.info, bool(pretrained), bool(allow_download))


def param_counts(backbone_or_name: Backbone | str, k: int) -> tuple[int, int]:
    """(trainable, frozen) backbone parameters when the first ``k`` stages are frozen.

    A name is answered without loading weights (cached per architecture).

    Raises:
        ValueError: ``k`` is negative or exceeds the number of stages (the message says how many).
    """
    if isinstance(backbone_or_name, nn.Module):
        bb = backbone_or_name
        return split_counts(stage_param_counts(bb), k, bb.info.name, bb.info.stage_names)
    info = get_info(backbone_or_name)
    return split_counts(_stage_params(info.arch), k, info.name, info.stage_names)
