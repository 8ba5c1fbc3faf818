"""Supervised fine-tuning: cross-entropy on labelled images.

"Source only" fine-tunes on source labels and reports target accuracy (the baseline a
domain-adaptation method must beat); "target supervised" fine-tunes on target labels,
chosen explicitly by the user, as the upper bound. See Yosinski et al., "How transferable
are features in deep neural networks?", NeurIPS 2014.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from tl_core.methods._base import Batch, Method, register_method


@register_method("finetune", "Supervised fine-tuning on source labels (or on target labels, chosen explicitly).")
class FineTune(Method):
    uses_target = False

    def forward(self, batch: Batch, features: Callable[[torch.Tensor], torch.Tensor], head: nn.Module,
                progress: float) -> tuple[torch.Tensor, dict[str, float]]:
        logits = head(features(batch.x_src))
        loss = F.cross_entropy(logits, batch.y_src)
        acc = (logits.argmax(1) == batch.y_src).float().mean()
        return loss, {"loss_task": loss.detach(), "train_acc": acc}
