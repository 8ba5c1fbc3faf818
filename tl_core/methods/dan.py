"""Deep Adaptation Network (DAN): multi-kernel MMD between source and target features.

Long, Cao, Wang, Jordan, "Learning Transferable Features with Deep Adaptation Networks", ICML 2015.
The label loss on source plus a weight times MMD² (maximum mean discrepancy) between the source and the
target features of each batch, under a family of Gaussian kernels, so the two feature distributions are
pulled together. As implemented here:

- the estimate is the unbiased quadratic-time one over the batch (the paper uses a linear-time unbiased
  estimate to keep large batches cheap; 64 + 64 features need no such economy);
- bandwidths are 2^k times the batch's mean squared distance, k spread evenly around 0 (2^-2 … 2^2 for 5
  kernels), with equal kernel weights where the paper learns a convex combination;
- the adapted layers are the backbone's features and, optionally, the logits (the paper adapts fc6-fc8);
- the weight warms up like DANN's λ, w_max·(2/(1+exp(−γp))−1), after a source-only start (the paper uses a
  constant weight 1; a weight that arrives before the classes are learnt can merge the domains and lose
  the classes).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tl_core.methods._base import Method, StepChart, param, register
from tl_core.methods.dann import source_only_start, warmup_gamma
from tl_core.methods.finetune import weighted_cross_entropy


@dataclass
class DANParams:
    mmd_weight: float = param(1.0, "MMD weight", "Weight of the MMD² term at the end of the warm-up (the DAN "
                              "paper: 1).", min=0, max=100, step=0.1)
    gamma: float = warmup_gamma()
    source_warmup: float = source_only_start()
    align_logits: bool = param(False, "Align the logits too", "Add the MMD² between source and target logits "
                               "(the paper adapts every task-specific layer, up to the classifier).")
    num_kernels: int = param(5, "Gaussian kernels", "How many bandwidths, 2^k times the mean squared distance "
                             "with k evenly spaced around 0 (5 gives 2^-2 … 2^2).", min=1, max=17, step=1)


@register
class DAN(Method):
    name = "dan"
    title = "DAN"
    description = "Deep Adaptation Network: multi-kernel MMD between source and target features."
    citation = "Long et al., Learning Transferable Features with Deep Adaptation Networks, ICML 2015"
    Params = DANParams
    choice_help = {"source": "DAN: multi-kernel MMD alignment (source labels + unlabelled target images)"}
    uses_target = True
    step_charts = (StepChart("mmd", "line", "MMD² between source and target features per step"),
                   StepChart("mmd_weight", "schedule", "DAN MMD weight (left) and learning rate (right) per step"))

    def loss(self, batch: Any, model: Any, progress: float) -> tuple[Any, dict[str, float]]:
        import torch

        from tl_core.methods._align import mk_mmd
        from tl_core.methods.grl import dann_lambda

        p = self.params
        weight = dann_lambda(progress, p.gamma, p.mmd_weight, "warmup", p.source_warmup)
        n = batch.x_src.shape[0]
        f = model.features(torch.cat([batch.x_src, batch.x_tgt], 0))
        logits = model.head(f)
        loss_task = weighted_cross_entropy(logits[:n], batch.y_src, batch.w_src)
        mmd = mk_mmd(f[:n], f[n:], p.num_kernels)
        metrics = {"loss_task": loss_task.detach(), "mmd": mmd.detach(), "mmd_weight": weight,
                   "train_acc": (logits[:n].argmax(1) == batch.y_src).float().mean()}
        if p.align_logits:
            mmd_logits = mk_mmd(logits[:n], logits[n:], p.num_kernels)
            metrics["mmd_logits"] = mmd_logits.detach()
            mmd = mmd + mmd_logits
        return loss_task + weight * mmd, metrics
