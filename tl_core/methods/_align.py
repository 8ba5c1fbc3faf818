"""Torch pieces the alignment methods share: multi-kernel MMD (DAN), CORAL, CDAN's multilinear map and
entropy weights. Imported only inside hooks (the training process): this module imports torch.

References: Gretton et al., "A Kernel Two-Sample Test", JMLR 13, 2012 (the unbiased MMD² estimate);
Long et al., DAN, ICML 2015; Sun & Saenko, Deep CORAL, ECCV-W 2016; Long et al., CDAN, NeurIPS 2018.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def kernel_scales(num_kernels: int) -> list[float]:
    """Bandwidth multipliers 2^k, k evenly spaced and centred on 0: 5 kernels give 2^-2 … 2^2."""
    half = (num_kernels - 1) / 2
    return [2.0 ** (k - half) for k in range(num_kernels)]


def mk_mmd(x: torch.Tensor, y: torch.Tensor, num_kernels: int = 5) -> torch.Tensor:
    """Unbiased (quadratic-time U-statistic) estimate of MMD² between samples ``x`` and ``y`` under the mean of
    Gaussian kernels exp(−‖a−b‖² / (2·s·σ²)), s in :func:`kernel_scales`.

    σ² is the mean squared distance between distinct points of the joint sample, detached (the bandwidth is
    a statistic of the batch, not something the features may shrink to). Equal kernel weights β stand in for
    DAN's learnt convex combination. The estimate may be slightly negative when the samples agree.

    Shape:
        x (m, d), y (n, d) with m, n ≥ 2; output a scalar.
    """
    x, y = x.float(), y.float()
    m, n = x.shape[0], y.shape[0]
    z = torch.cat([x, y], 0)
    d2 = torch.cdist(z, z).pow(2)
    total = m + n
    sigma2 = (d2.sum() / (total * (total - 1))).detach().clamp_min(1e-8)
    k = sum(torch.exp(-d2 / (2.0 * s * sigma2)) for s in kernel_scales(num_kernels)) / num_kernels
    kxx, kyy, kxy = k[:m, :m], k[m:, m:], k[:m, m:]
    xx = (kxx.sum() - kxx.diagonal().sum()) / (m * (m - 1))
    yy = (kyy.sum() - kyy.diagonal().sum()) / (n * (n - 1))
    return xx + yy - 2.0 * kxy.mean()


def coral(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Deep CORAL loss ‖C_S − C_T‖²_F / (4d²), with C the unbiased feature covariance of each domain.

    Shape:
        x (m, d), y (n, d) with m, n ≥ 2; output a scalar.
    """
    x, y = x.float(), y.float()
    d = x.shape[1]
    return (torch.cov(x.T) - torch.cov(y.T)).pow(2).sum() / (4.0 * d * d)


class MultilinearMap(nn.Module):
    """CDAN's conditioning: f ⊗ g (outer product, flattened), or, when that is wider than ``threshold``, its
    randomised form (R_f f) ⊙ (R_g g) / √dim with fixed Gaussian matrices R_f, R_g (buffers: they follow the
    device and the checkpoint, and are never trained).

    Shape:
        f (N, feature_dim), g (N, num_classes); output (N, feature_dim·num_classes) or (N, dim).
    """

    def __init__(self, feature_dim: int, num_classes: int, dim: int = 1024, threshold: int = 4096) -> None:
        super().__init__()
        self.randomised = feature_dim * num_classes > threshold
        self.out_dim = dim if self.randomised else feature_dim * num_classes
        if self.randomised:
            self.register_buffer("r_f", torch.randn(feature_dim, dim))
            self.register_buffer("r_g", torch.randn(num_classes, dim))

    def forward(self, f: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        if self.randomised:
            return (f @ self.r_f) * (g @ self.r_g) / math.sqrt(self.out_dim)
        return torch.bmm(f.unsqueeze(2), g.unsqueeze(1)).flatten(1)


def entropy_weights(p: torch.Tensor, n_src: int) -> torch.Tensor:
    """CDAN+E's example weights 1 + e^{−H(p)}, each domain's normalised to mean 1 (as the paper's code
    normalises each domain to sum 1), so confident predictions count more and neither domain outweighs the other.

    Shape:
        p (N, C) probabilities, the first ``n_src`` rows source; output (N,).
    """
    h = -(p * torch.log(p.clamp_min(1e-12))).sum(1)
    w = 1.0 + torch.exp(-h)
    ws, wt = w[:n_src], w[n_src:]
    return torch.cat([ws / ws.mean(), wt / wt.mean()]).detach()
