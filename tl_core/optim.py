"""The run's optimiser: parameter groups, learning-rate schedule, mixed precision, one step.

Methods with their own optimisers (ADDA's discriminator, say) build them in ``__init__`` or
:meth:`Method.start` and use :meth:`Optimisation.autocast` and :func:`check_finite` the same way.
"""

from __future__ import annotations

import math
from contextlib import AbstractContextManager
from typing import Any

import torch

from tl_core.config import RunConfig
from tl_core.failures import Diverged


def lr_factor(progress: float, schedule: str) -> float:
    """Learning-rate multiplier at progress p: DANN's lr0/(1+10p)^0.75, cosine, or 1."""
    p = min(max(progress, 0.0), 1.0)
    if schedule == "anneal":
        return 1.0 / (1.0 + 10.0 * p) ** 0.75
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * p))
    return 1.0


def stage_lrs(n_stages: int, top_lr: float, decay: float) -> list[float]:
    """Discriminative learning rates (Howard & Ruder, ACL 2018): the top (last) backbone stage at ``top_lr``,
    each stage below it at the rate of the one above × ``decay``. Input to output order."""
    return [top_lr * decay ** (n_stages - 1 - i) for i in range(n_stages)]


def make_optimizer(config: RunConfig, groups: list[dict[str, Any]]) -> torch.optim.Optimizer:
    o = config.optim
    if o.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay,
                               nesterov=o.momentum > 0)
    if o.optimizer == "adam":
        return torch.optim.Adam(groups, lr=o.lr, weight_decay=o.weight_decay)
    return torch.optim.AdamW(groups, lr=o.lr, weight_decay=o.weight_decay)


def check_finite(loss_value: float, where: tuple[int, int], lr: float) -> None:
    """Raise Diverged when a loss is NaN or infinite; ``where`` is (step, epoch), both 1-based."""
    if not math.isfinite(loss_value):
        raise Diverged(f"The loss became {loss_value} at step {where[0]} (epoch {where[1]}).",
                       hint=f"Lower the learning rate (now {lr}) or the backbone multiplier, "
                            "or use a smaller λ.")


class Optimisation:
    """The run's optimiser over the trainable backbone, the head and the method's own groups."""

    def __init__(self, config: RunConfig, model: Any, method: Any, device: torch.device,
                 extras: list[Any] = ()) -> None:
        self.config = config
        o = config.optim
        self.use_amp = bool(config.amp and device.type == "cuda")
        self.amp_dtype = torch.bfloat16 if self.use_amp and torch.cuda.is_bf16_supported() else torch.float16
        self.device_type = device.type
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp and self.amp_dtype == torch.float16)
        self.model = model
        self._in_optimizer: set[int] = set()
        groups = self._backbone_groups()
        head = [q for q in model.head.parameters() if q.requires_grad]
        self._head_group = len(groups)  # the run's lr (what the step rows log) is the head's
        groups.append({"params": head, "lr": o.lr, "base_lr": o.lr})
        groups += method.param_groups(o.lr)
        for extra in extras:
            groups += extra.param_groups(o.lr)
        self.extras = list(extras)
        self.last_penalty: float | None = None
        self.opt = make_optimizer(config, groups)
        self.where = (0, 0)

    # -------------------------------------------------------------- schedule
    def set_progress(self, progress: float) -> None:
        factor = lr_factor(progress, self.config.optim.lr_schedule)
        for group in self.opt.param_groups:
            group["lr"] = group["base_lr"] * factor

    @property
    def lr(self) -> float:
        """The head's learning rate now (the run's lr after the schedule)."""
        return float(self.opt.param_groups[self._head_group]["lr"])

    def _backbone_groups(self) -> list[dict[str, Any]]:
        """Groups of the trainable backbone parameters not yet in the optimiser, stage by stage at
        :func:`stage_lrs` (stages in a row with the same rate share a group: with ``lr_decay`` 1 the whole
        backbone is one group, the layout before per-stage rates). Marks them as in the optimiser."""
        o = self.config.optim
        if o.backbone_lr_mult <= 0:  # the backbone stays fixed: it is not in the optimiser at all
            return []
        stages = list(self.model.backbone.stages)
        lrs = stage_lrs(len(stages), o.lr * o.backbone_lr_mult, o.lr_decay)
        groups: list[dict[str, Any]] = []
        for stage, lr in zip(stages, lrs):
            new = [q for q in stage.parameters() if q.requires_grad and id(q) not in self._in_optimizer]
            if not new:
                continue
            self._in_optimizer |= set(map(id, new))
            if groups and groups[-1]["base_lr"] == lr:
                groups[-1]["params"] += new
            else:
                groups.append({"params": new, "lr": lr, "base_lr": lr})
        return groups

    def add_unfrozen(self) -> None:
        """Backbone parameters that became trainable (a schedule unfroze stages) join the optimiser, each
        stage at its own rate."""
        for group in self._backbone_groups():
            self.opt.add_param_group(group)

    # ------------------------------------------------------------------ step
    def autocast(self) -> AbstractContextManager:
        return torch.autocast(self.device_type, dtype=self.amp_dtype, enabled=self.use_amp)

    def step(self, loss: torch.Tensor) -> float:
        """Add the extras' penalties, backward and optimiser step; returns the loss as a float (Diverged
        when it is not finite). The extras' share is kept in ``last_penalty``."""
        penalties = [p for p in (e.penalty(self.model) for e in self.extras) if p is not None]
        if penalties:
            extra = sum(penalties)
            self.last_penalty = float(extra.detach())
            loss = loss + extra
        value = float(loss.detach())  # CPU-GPU sync point: needed to catch divergence
        check_finite(value, self.where, self.config.optim.lr)
        self.opt.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.opt)
        self.scaler.update()
        return value

    # ------------------------------------------------------------ checkpoint
    def state_dict(self) -> dict[str, Any]:
        return self.opt.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.opt.load_state_dict(state)

    def scaler_state_dict(self) -> dict[str, Any]:
        return self.scaler.state_dict()

    def load_scaler_state_dict(self, state: dict[str, Any]) -> None:
        self.scaler.load_state_dict(state)
