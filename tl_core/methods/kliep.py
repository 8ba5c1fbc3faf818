"""KLIEP: the Kullback-Leibler importance estimation procedure.

Sugiyama, Nakajima, Kashima, von Bünau & Kawanabe, "Direct Importance Estimation with Model Selection
and Its Application to Covariate Shift Adaptation", NIPS 2007. The importance w(x) = p_target(x) /
p_source(x) is modelled as ŵ(x) = Σ_l α_l k_σ(x, c_l), a Gaussian kernel at b centres c_l drawn from the
target points (paper: b = 100), and fitted by maximising the target log-likelihood Σ_j log ŵ(x'_j) under
ŵ ≥ 0 and (1/m) Σ_i ŵ(x_i) = 1 over the source, so that ŵ·p_source is a density. The paper's algorithm is
projected gradient ascent:

    α ← α + ε Aᵀ(1./Aα);  α ← α + (1 − bᵀα) b/(bᵀb);  α ← max(0, α);  α ← α/(bᵀα),

with A_jl = k_σ(x'_j, c_l) and b_l = (1/m) Σ_i k_σ(x_i, c_l); here ε runs down 10³ … 10⁻³, each kept while
the likelihood grows (as the authors' code does). The width σ is chosen by likelihood cross-validation:
the target points are split into k folds (paper: 5), ŵ is fitted on k − 1 of them and scored by the mean
log ŵ on the held-out fold; the σ with the best mean score (among multiples of the median distance) is
refitted on all target points. Training then uses the source cross-entropy weighted by ŵ (mean 1 over
the source by construction), after an unweighted start (``unweighted_start``, 20 % of training by
default; a departure explained in ``_reweight.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from tl_core.methods._base import param, register
from tl_core.methods._reweight import ReweightMethod, ReweightParams, gaussian_kernel, median_distance

#: Candidate widths for the cross-validation, as multiples of the median distance.
WIDTH_FACTORS = (0.1, 0.2, 0.3, 0.5, 0.7, 1.0, 1.5)
#: Step sizes of the gradient ascent, largest first (the authors' code), and the steps kept at each.
STEP_SIZES = tuple(10.0 ** k for k in range(3, -4, -1))
STEPS_PER_SIZE = 100


@dataclass
class KLIEPParams(ReweightParams):
    kliep_centres: int = param(100, "Kernel centres", "Target images that carry a Gaussian kernel of the "
                               "importance model (paper: 100).", min=1, step=10)
    kliep_folds: int = param(5, "Cross-validation folds", "Folds of the target images in the likelihood "
                             "cross-validation of the kernel width (paper: 5).", min=2, max=20, step=1)


def fit_alpha(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The paper's projected gradient ascent of Σ_j log (Aα)_j s.t. α ≥ 0, bᵀα = 1.

    Shape:
        A (n, b), b (b,) -> α (b,).
    """
    bb = float(b @ b)

    def project(alpha: np.ndarray) -> np.ndarray:
        alpha = alpha + (1.0 - b @ alpha) * b / bb
        alpha = np.maximum(alpha, 0.0)
        s = float(b @ alpha)
        return alpha / s if s > 0 else np.full_like(alpha, 1.0 / max(float(b.sum()), 1e-300))

    def score(alpha: np.ndarray) -> float:
        return float(np.mean(np.log(np.maximum(a @ alpha, 1e-300))))

    alpha = project(np.ones(a.shape[1]))
    best = score(alpha)
    for eps in STEP_SIZES:
        for _ in range(STEPS_PER_SIZE):
            new = project(alpha + eps * (a.T @ (1.0 / np.maximum(a @ alpha, 1e-300))))
            s = score(new)
            if s <= best:
                break
            alpha, best = new, s
    return alpha


def kliep_weights(xs: np.ndarray, xt: np.ndarray, *, centres: int = 100, folds: int = 5,
                  widths: tuple[float, ...] | None = None,
                  rng: np.random.Generator | None = None) -> tuple[np.ndarray, dict[str, Any]]:
    """KLIEP importance ŵ of each source row ``xs`` given the target rows ``xt``.

    Args:
        xs, xt: source and target features.
        centres: kernel centres, drawn at random from the target rows.
        folds: folds of the likelihood cross-validation over the target rows.
        widths: candidate σ; None: ``WIDTH_FACTORS`` × the median distance.
        rng: for the centres, the folds and the median's sample.

    Shape:
        (m, d), (m', d) -> (m,).

    Returns:
        (ŵ, info) with info: ``width`` (the chosen σ), ``scores`` (σ -> mean held-out log-likelihood).
    """
    rng = rng or np.random.default_rng(0)
    if widths is None:
        med = median_distance(xs, xt, rng)
        widths = tuple(f * med for f in WIDTH_FACTORS)
    c = xt[rng.choice(len(xt), min(centres, len(xt)), replace=False)]
    fold_of = rng.permutation(len(xt)) % max(2, min(folds, len(xt)))
    scores: dict[float, float] = {}
    for sigma in widths:
        a_all = gaussian_kernel(xt, c, sigma)
        b = gaussian_kernel(xs, c, sigma).mean(0)
        if not b.any():
            scores[sigma] = -np.inf
            continue
        held = []
        for r in np.unique(fold_of):
            alpha = fit_alpha(a_all[fold_of != r], b)
            held.append(np.mean(np.log(np.maximum(a_all[fold_of == r] @ alpha, 1e-300))))
        scores[sigma] = float(np.mean(held))
    sigma = max(scores, key=lambda s: scores[s])
    alpha = fit_alpha(gaussian_kernel(xt, c, sigma), gaussian_kernel(xs, c, sigma).mean(0))
    return gaussian_kernel(xs, c, sigma) @ alpha, {"width": sigma, "scores": scores}


@register
class KLIEP(ReweightMethod):
    name = "kliep"
    title = "KLIEP"
    description = ("Direct importance estimation: before training, fit p_target/p_source as a sum of Gaussian "
                   "kernels by maximum likelihood; then fine-tune on the weighted source loss.")
    citation = ("Sugiyama et al., Direct Importance Estimation with Model Selection and Its Application to "
                "Covariate Shift Adaptation, NIPS 2007")
    Params = KLIEPParams
    choice_help = {"source": "KLIEP: source labels, each image weighted by an estimated density ratio"}

    def estimate(self, xs: np.ndarray, xt: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        w, _ = kliep_weights(xs, xt, centres=self.params.kliep_centres, folds=self.params.kliep_folds, rng=rng)
        return w
