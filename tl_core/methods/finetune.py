"""Supervised fine-tuning: cross-entropy on labelled images.

"Source only" fine-tunes on source labels and reports target accuracy (the baseline a
domain-adaptation method must beat); "target supervised" fine-tunes on target labels,
chosen explicitly by the user, as the upper bound. See Yosinski et al., "How transferable
are features in deep neural networks?", NeurIPS 2014.
"""

from __future__ import annotations

from typing import Any

from tl_core.methods._base import Method, register


def weighted_cross_entropy(logits: Any, y: Any, w: Any | None) -> Any:
    """Mean cross-entropy, each sample's term times its weight when weights are given."""
    import torch.nn.functional as F

    if w is None:
        return F.cross_entropy(logits, y)
    return (F.cross_entropy(logits, y, reduction="none") * w).sum() / w.sum().clamp_min(1e-12)


@register
class FineTune(Method):
    name = "finetune"
    title = "Fine-tune"
    description = "Supervised fine-tuning on source labels (or on target labels, chosen explicitly)."
    citation = "Yosinski et al., How transferable are features in deep neural networks?, NeurIPS 2014"
    trains_on = {"source": "Source only", "target": "Target supervised"}
    choice_help = {"source": "Fine-tune on source labels (source only)",
                   "target": "Fine-tune on target labels (upper bound: uses target labels)"}

    def loss(self, batch: Any, model: Any, progress: float) -> tuple[Any, dict[str, float]]:
        logits = model.head(model.features(batch.x_src))
        loss = weighted_cross_entropy(logits, batch.y_src, batch.w_src)
        acc = (logits.argmax(1) == batch.y_src).float().mean()
        return loss, {"loss_task": loss.detach(), "train_acc": acc}
