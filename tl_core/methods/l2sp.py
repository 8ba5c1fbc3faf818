"""L2-SP: fine-tune while pulling the backbone towards its starting point, not towards zero.

Li, Grandvalet & Davoine, "Explicit Inductive Bias for Transfer Learning with Convolutional
Networks", ICML 2018 (arXiv:1802.01483), Section 3. With ``w⁰`` the weights the backbone starts
from (its pretrained values) and ``w_S̄`` the weights of the new layers, the regulariser is

    Ω(w) = α/2 · ‖w_S − w⁰_S‖² + β/2 · ‖w_S̄‖²

The paper's defaults are α = 0.1 and β = 0.01. Here ``w_S`` is every backbone parameter that is
trainable at the step (a stage a schedule unfreezes later joins the penalty from then on; frozen
stages have no gradient and are left out), and ``w_S̄`` is the new head. Weights and biases are
both included. The paper uses Ω *instead of* plain weight decay; the run's ``optim.weight_decay``
still applies on top, so set it to 0 for the paper's setting.

``w⁰`` is taken from the model in :meth:`L2SP.start`, before the first step, and kept as buffers of
a module of the extra: the checkpoint holds it and a resumed run is pulled to the same point.
With a backbone trained from scratch (LeNet) ``w⁰`` is its random initialisation: the regulariser
then only keeps weights near their start, which is not what the paper is about.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tl_core.methods import Extra, param, register


@dataclass
class L2SPParams:
    sp_alpha: float = param(0.1, "L2-SP α (backbone)",
                            "Weight of α/2·‖w − w⁰‖²: how hard the backbone's trainable weights are pulled back to "
                            "their starting (pretrained) values. The paper's 0.1.", min=0, max=1000, step=0.01)
    sp_beta: float = param(0.01, "L2-SP β (new head)",
                           "Weight of β/2·‖w‖² on the new head's weights (plain L2: the head has no starting "
                           "values). The paper's 0.01.", min=0, max=1000, step=0.01)


def _buffer_name(name: str) -> str:
    """A parameter's name as a buffer name (buffers may not contain dots)."""
    return name.replace(".", "__")


@register
class L2SP(Extra):
    name, title = "l2sp", "L2-SP"
    description = "Regulariser: pulls the backbone towards its starting weights (α) and keeps the new head small (β)."
    citation = "Li, Grandvalet & Davoine, Explicit Inductive Bias for Transfer Learning with CNNs, ICML 2018"
    kind = "regulariser"
    Params = L2SPParams

    def start(self, run: Any) -> None:
        """Keep ``w⁰``: every backbone parameter, frozen ones too (a schedule may unfreeze them later).

        On resume this runs again before the checkpoint loads, which then puts the saved ``w⁰`` back.
        """
        import torch

        anchor = torch.nn.Module()
        for name, q in run.model.backbone.named_parameters():
            anchor.register_buffer(_buffer_name(name), q.detach().clone())
        self.anchor = self.add_module("start_weights", anchor)

    def penalty(self, model: Any) -> Any:
        """α/2·‖w − w⁰‖² over the trainable backbone + β/2·‖w‖² over the head (a 0-d tensor)."""
        import torch

        a, b = self.params.sp_alpha, self.params.sp_beta
        start = dict(self.anchor.named_buffers())
        pull = [(q - start[_buffer_name(n)]).pow(2).sum()
                for n, q in model.backbone.named_parameters() if q.requires_grad]
        head = [q.pow(2).sum() for q in model.head.parameters() if q.requires_grad]
        zero = torch.zeros((), device=next(model.head.parameters()).device)
        return a / 2 * sum(pull, zero) + b / 2 * sum(head, zero)
