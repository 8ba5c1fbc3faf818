"""LeNet-style digit CNN: the feature extractor of the DANN paper's MNIST experiments.

Ganin, Ustinova, Ajakan, Germain, Larochelle, Laviolette, Marchand, Lempitsky,
"Domain-Adversarial Training of Neural Networks", JMLR 17 (2016), Fig. 4 (MNIST → MNIST-M):
conv 5×5×32 → ReLU → max-pool 2×2 → conv 5×5×48 → ReLU → max-pool 2×2 gives 48×4×4 = 768
features at 28×28 input. The paper's label predictor then has fully connected layers of 100.

Here the backbone has three stages so that freezing means something:
``conv1`` (conv 5×5×32, ReLU, pool), ``conv2`` (conv 5×5×48, ReLU, pool) and ``fc``
(768 → 100, ReLU: the label predictor's first layer). Features are 100-d. An adaptive
average pool to 4×4 before ``fc`` is the identity at 28×28 and lets other image sizes
(≥ 16) work too. Always trained from scratch.

One departure from the paper: a GroupNorm after each convolution, per channel after
``conv1`` (instance normalisation: each image's own contrast and colour cast are taken
out) and one group after ``conv2``. Without it, at the paper's learning rate and on our
short runs, LeNet never leaves the 2.30 loss plateau on the 5,000 synthetic digits
(source accuracy 17 %), and it learns MNIST → MNIST-M's shift worse. GroupNorm works per
image, so DANN's mixed source + target batches and evaluation see the same network
(BatchNorm would normalise over both domains at once).
"""

from __future__ import annotations

from torch import nn

from tl_core.backbones._base import Backbone, BackboneInfo
from tl_core.backbones._registry import register_backbone


@register_backbone("lenet", title="LeNet (DANN digits CNN)", stage_names=["conv1", "conv2", "fc"],
                   feature_dim=100, input_size=28, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), scale=255.0,
                   weights="none (trained from scratch)")
def lenet(info: BackboneInfo, pretrained: bool, allow_download: bool) -> Backbone:
    """The DANN MNIST CNN; ``pretrained`` and ``allow_download`` have no effect."""
    stages = [
        nn.Sequential(nn.Conv2d(3, 32, 5), nn.GroupNorm(32, 32), nn.ReLU(inplace=True), nn.MaxPool2d(2)),
        nn.Sequential(nn.Conv2d(32, 48, 5), nn.GroupNorm(1, 48), nn.ReLU(inplace=True), nn.MaxPool2d(2)),
        nn.Sequential(nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(48 * 4 * 4, 100), nn.ReLU(inplace=True)),
    ]
    return Backbone(info, stages, pool=nn.Identity())
