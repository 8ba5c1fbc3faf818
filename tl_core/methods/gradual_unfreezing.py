"""Gradual unfreezing: train the top of the network first, then let lower stages join one at a time.

Howard & Ruder, "Universal Language Model Fine-tuning for Text Classification", ACL 2018,
Section 3.3, "Gradual unfreezing": first only the last layer is unfrozen and fine-tuned for one
epoch, then the next lower frozen layer is unfrozen, and so on until all layers train. Their
last layer belongs to the new classifier, so the paper's start here
is the new head alone (``start_trainable`` 0) and one more backbone stage every epoch
(``every_epochs`` 1), top stage first.

The run's own ``model.freeze`` is a floor the schedule never goes below: stages the user froze
stay frozen for the whole run. Stages that become trainable join the optimiser at their own
learning rate (see ``optim.lr_decay``), and the loop logs the frozen count of every step as the
``frozen_stages`` metric, which the Monitor's freezing diagram reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tl_core.methods import Extra, param, register


@dataclass
class GradualUnfreezingParams:
    start_trainable: int = param(0, "Backbone stages trained from the start",
                                 "How many of the top backbone stages train in the first epoch; 0 (the paper's) "
                                 "trains the new head alone first.", min=0, max=100, step=1)
    every_epochs: int = param(1, "Unfreeze one more stage every N epochs",
                              "One more backbone stage (the next lower one) becomes trainable every N epochs; "
                              "the paper's 1.", min=1, max=1000, step=1)


def frozen_at(epoch: int, n_stages: int, floor: int, start_trainable: int, every_epochs: int) -> int:
    """How many leading stages are frozen in ``epoch`` (0-based): all but the top ``start_trainable``
    at first, one fewer every ``every_epochs`` epochs, never fewer than ``floor`` (the user's freeze)."""
    trainable = start_trainable + epoch // every_epochs
    return min(n_stages, max(floor, n_stages - trainable, 0))


@register
class GradualUnfreezing(Extra):
    name, title = "gradual_unfreezing", "Gradual unfreezing"
    description = "Schedule: trains the top first and unfreezes one more backbone stage every N epochs."
    citation = "Howard & Ruder, Universal Language Model Fine-tuning for Text Classification, ACL 2018"
    kind = "schedule"
    Params = GradualUnfreezingParams
    changes_freezing = True

    def start(self, run: Any) -> None:
        self.n_stages = len(run.model.backbone.stages)
        self.floor = int(self.ctx.config.model.freeze)

    def frozen_stages(self, epoch: int, current: int) -> int:
        return frozen_at(epoch, self.n_stages, self.floor, self.params.start_trainable, self.params.every_epochs)
