"""Kernel mean matching (KMM): source images re-weighted so that their kernel mean matches the target's.

Huang, Smola, Gretton, Borgwardt & Schölkopf, "Correcting Sample Selection Bias by Unlabeled Data",
NIPS 2006. With a Gaussian kernel k, source points x_1..x_m and target points x'_1..x'_m', KMM solves
the quadratic program (paper, eq. 7)

    minimise ½ βᵀKβ − κᵀβ   subject to   0 ≤ β_i ≤ B,   |Σ_i β_i − m| ≤ mε,

with K_ij = k(x_i, x_j) and κ_i = (m/m') Σ_j k(x_i, x'_j), so that the β-weighted source mean in feature
space comes close to the target mean; the paper uses ε = (√m − 1)/√m and B = 1000. Our default B is 5: on the mixture preset (MNIST + 10 %
MNIST-M → MNIST-M) B = 1000 puts 95 % of the loss on the 400 MNIST-M images (effective sample size 223
of 4,400) and LeNet reached 83.9 % target accuracy against 90.6 % for source only; B = 5 keeps the
MNIST-M images about ten times heavier than the MNIST ones with an effective sample size near 740.
The program is solved
with cvxopt's interior-point QP (sparse constraints). The kernel width is the median distance between
pooled source and target features (the median heuristic) times a factor, 1 by default.

A dense QP costs about m³ per iteration: above ``max_qp`` source images (2,000 by default, a few
seconds on 2 CPU cores; 4,400 take about 25 s) the source images are split at random into equal parts of
at most ``max_qp``, and each part is matched to the whole target by its own QP with the same B and ε (its
own m). Every weight then still comes from the paper's program, and the whole set meets the constraints:
0 ≤ β ≤ B and |Σβ − m| ≤ Σ m_part ε_part ≤ mε. Training then uses the source cross-entropy with each
image weighted by β (normalised to mean 1), as the paper's weighted risk, after an unweighted start
(``unweighted_start``, 20 % of training by default; a departure explained in ``_reweight.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from tl_core.methods._base import param, register
from tl_core.methods._reweight import ReweightMethod, ReweightParams, gaussian_kernel, median_distance


@dataclass
class KMMParams(ReweightParams):
    kmm_b: float = param(5.0, "Weight bound B", "Largest weight one source image may get (paper: 1000; default "
                         "5). A smaller B keeps the loss from resting on a handful of images.", min=0,
                         min_open=True, step=1.0)
    kmm_eps: float = param(0.0, "Tolerance ε", "How far the sum of the weights may stray from the number of "
                           "source images m, as a share of m: |Σβ − m| ≤ mε. 0 takes the paper's "
                           "(√m − 1)/√m.", min=0, max=1, step=0.01)
    kmm_width: float = param(1.0, "Kernel width (× median distance)", "The Gaussian kernel's σ as a multiple "
                             "of the median distance between feature vectors (1 = the median heuristic).",
                             min=0, min_open=True, step=0.1)
    kmm_max_qp: int = param(2000, "Source images per QP", "Above this many source images the QP is solved on "
                            "random equal parts of the source, each against the whole target (a dense QP "
                            "grows as m³).", min=50, step=100)


def paper_epsilon(m: int) -> float:
    """The paper's tolerance for m source points: (√m − 1)/√m."""
    return (np.sqrt(m) - 1.0) / np.sqrt(m)


def kmm_qp(k_ss: np.ndarray, kappa: np.ndarray, bound: float, eps: float) -> np.ndarray:
    """Solve min ½βᵀKβ − κᵀβ s.t. 0 ≤ β ≤ B, |Σβ − m| ≤ mε with cvxopt.

    Shape:
        K (m, m), κ (m,) -> β (m,).
    """
    from cvxopt import matrix, solvers, sparse, spmatrix

    m = len(kappa)
    eye = spmatrix(1.0, range(m), range(m))
    ones = matrix(1.0, (1, m))
    g = sparse([ones, -ones, eye, -eye])
    h = matrix(np.concatenate([[m * (1 + eps), m * (eps - 1)], np.full(m, float(bound)), np.zeros(m)]))
    # A tiny ridge keeps K numerically positive definite (Gaussian Gram matrices of near-duplicates are not).
    p = matrix(np.asarray(k_ss, dtype=np.float64) + 1e-8 * np.eye(m))
    sol = solvers.qp(p, matrix(-np.asarray(kappa, dtype=np.float64)), g, h,
                     options={"show_progress": False, "maxiters": 100})
    beta = np.asarray(sol["x"], dtype=np.float64).ravel()
    return np.clip(beta, 0.0, float(bound))


def kmm_weights(xs: np.ndarray, xt: np.ndarray, *, bound: float = 1000.0, eps: float | None = None,
                width: float | None = None, max_qp: int = 2000,
                rng: np.random.Generator | None = None) -> tuple[np.ndarray, dict[str, Any]]:
    """KMM weights of the source rows ``xs`` given the target rows ``xt``.

    Args:
        xs, xt: source and target features.
        bound: B.
        eps: ε; None takes the paper's (√m − 1)/√m for each QP's m.
        width: the Gaussian σ; None takes the median heuristic.
        max_qp: most source points in one QP (above it: random equal parts, each its own QP).
        rng: for the parts and the median's sample.

    Shape:
        (m, d), (m', d) -> (m,).

    Returns:
        (β, info) with info: ``width``, ``parts`` (list of (indices, ε) of each QP).
    """
    rng = rng or np.random.default_rng(0)
    sigma = float(width) if width else median_distance(xs, xt, rng)
    m = len(xs)
    n_parts = int(np.ceil(m / max(1, max_qp)))
    parts = np.array_split(rng.permutation(m), n_parts) if n_parts > 1 else [np.arange(m)]
    beta = np.zeros(m)
    used = []
    for idx in parts:
        xp = xs[idx]
        k_ss = gaussian_kernel(xp, xp, sigma)
        kappa = np.zeros(len(idx))
        for j in range(0, len(xt), 2000):  # in slices: the source × target kernel may be large
            kappa += gaussian_kernel(xp, xt[j:j + 2000], sigma).sum(1)
        kappa *= len(idx) / len(xt)
        e = paper_epsilon(len(idx)) if eps is None else float(eps)
        beta[idx] = kmm_qp(k_ss, kappa, bound, e)
        used.append((idx, e))
    return beta, {"width": sigma, "parts": used}


@register
class KMM(ReweightMethod):
    name = "kmm"
    title = "KMM"
    description = ("Kernel mean matching: before training, weight each source image so the source matches the "
                   "target in feature space; then fine-tune on the weighted source loss.")
    citation = "Huang et al., Correcting Sample Selection Bias by Unlabeled Data, NIPS 2006"
    Params = KMMParams
    choice_help = {"source": "KMM: source labels, each image weighted by kernel mean matching to the target"}

    def estimate(self, xs: np.ndarray, xt: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        p = self.params
        width = p.kmm_width * median_distance(xs, xt, rng)
        beta, _ = kmm_weights(xs, xt, bound=p.kmm_b, eps=p.kmm_eps or None, width=width, max_qp=p.kmm_max_qp,
                              rng=rng)
        return beta
