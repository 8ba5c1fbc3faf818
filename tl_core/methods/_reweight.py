"""What KMM and KLIEP share: features of the labelled and the target images, Gaussian kernels, the
median heuristic, the effective sample size, and a fine-tune whose start hook sets per-image weights.

Covariate-shift re-weighting (Shimodaira 2000) trains on the source loss with each source image
weighted by w(x) ≈ p_target(x) / p_source(x); KMM (``kmm.py``) and KLIEP (``kliep.py``) estimate w
from features, before training. The weights reach the loss through ``RunContext.set_sample_weights``
and ``finetune.weighted_cross_entropy`` (the method's loss is FineTune's).

One departure from the papers: the first ``unweighted_start`` of training (default 20 %) uses every
weight 1. On the mixture preset (MNIST + 10 % MNIST-M → MNIST-M) the weights put almost all the loss on
the 400 MNIST-M images (effective sample size about 220 of 4,400), and LeNet trained from scratch on that
loss from the first step never left its 2.30 loss plateau: 10 % (KMM) and 19 % (KLIEP) target accuracy
after 10 epochs, against 90.6 % for source only. Learning the classes on all images first avoids it.

Importing this module does not import torch (the methods' facts are read without it).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from tl_core.methods._base import param
from tl_core.methods.finetune import FineTune

#: Where the features for the weights come from.
FEATURES = {"pixels": "Raw pixels, downsampled to 7×7 colour",
            "backbone": "The run's starting backbone (pretrained or frozen; random for LeNet)",
            "saved": "A backbone saved by an earlier run (name it below)"}
#: Side of the downsampled images of the "pixels" features.
PIXEL_SIDE = 7
#: Points (source and target pooled) the median heuristic looks at.
MEDIAN_SAMPLE = 1000
_SAVED_RE = re.compile(r"^run:[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass
class ReweightParams:
    """Settings every re-weighting method has: where its features come from."""

    weight_features: str = param("pixels", "Features for the weights",
                                 "What the density ratio is estimated on. Raw pixels need no model; the starting "
                                 "backbone is the one the run fine-tunes (pretrained weights, or a random LeNet); a "
                                 "saved backbone is one an earlier run trained (e.g. a source-only run).",
                                 choices=FEATURES)
    saved_backbone: str = param("", "Saved backbone (run:<id>)",
                                "With 'a backbone saved by an earlier run': its name, run:<run id>, as the Setup "
                                "page's backbone list shows it. Ignored otherwise.")
    unweighted_start: float = param(0.2, "Unweighted start", "Share of training with every weight 1, before "
                                    "the weights apply (default 0.2; the papers use 0). LeNet trained from scratch "
                                    "on a loss that rests on a few hundred images never leaves its first loss "
                                    "plateau; learning the classes on all images first avoids that.",
                                    min=0, max=1, max_open=True, step=0.05)


def validate_features(params: Any) -> list[str]:
    """Messages for a features choice that cannot work (a saved backbone without a valid name)."""
    if params.weight_features != "saved":
        return []
    name = str(params.saved_backbone or "").strip()
    if not name:
        return ["method.params.saved_backbone: name the saved backbone (run:<run id>) to compute the weights "
                "with, or choose other features."]
    if not _SAVED_RE.match(name) or ".." in name:
        return [f"method.params.saved_backbone: '{name}' is not a saved backbone name; expected run:<run id>, "
                "e.g. run:20260101-120000-ab12 (the Setup page's backbone list shows them)."]
    return []


# ------------------------------------------------------------------ features
def feature_matrices(run: Any, config: Any, params: Any, batch: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """Features of every labelled training image and every target training image, float64.

    Shape:
        (n_labelled, d), (n_target, d).

    Raises:
        RunError: the features need the images but the loop holds frozen-stage outputs, or the saved
            backbone cannot be loaded.
    """
    import torch
    import torch.nn.functional as F

    from tl_core.failures import RunError

    if run.target_x is None:
        raise RunError("re-weighting needs the unlabelled target training images, and the run has none.")
    kind = params.weight_features
    model = run.model
    if kind in ("pixels", "saved") and getattr(model, "cached", 0):
        raise RunError(f"method.params.weight_features: '{kind}' needs the images, but the run trains from the "
                       f"outputs of its {model.cached} frozen stage(s), computed once.",
                       hint="Choose 'the run's starting backbone' as features, or turn augmentation on "
                            "(which switches that cache off).")
    if kind == "pixels":
        def encode(x: Any) -> Any:
            return F.adaptive_avg_pool2d(x.float() / 255.0, PIXEL_SIDE).flatten(1)
    elif kind == "backbone":
        def encode(x: Any) -> Any:
            return model.features(x)
    else:
        from tl_core import backbones as bb
        from tl_core.modality import modality_for

        name = str(params.saved_backbone).strip()
        try:
            net = bb.create_backbone(name, pretrained=True).to(run.device).eval()
        except bb.BackboneError as e:
            raise RunError(f"method.params.saved_backbone: {e}",
                           hint="Pick a finished run's backbone (run:<id>), or choose other features.") from e
        normalise = modality_for(config).normaliser(net.info, run.device)

        def encode(x: Any) -> Any:
            return net(normalise(x))

    was_training = model.backbone.training
    model.backbone.eval()  # BatchNorm statistics and dropout as at evaluation; frozen stages stay frozen
    try:
        with torch.no_grad():
            out = [np.concatenate([encode(x[i:i + batch]).float().cpu().numpy() for i in range(0, x.shape[0], batch)])
                   for x in (run.labelled_x, run.target_x)]
    finally:
        model.backbone.train(was_training)
    return out[0].astype(np.float64), out[1].astype(np.float64)


# ------------------------------------------------------------------ kernels
def sq_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances between the rows of ``a`` and of ``b``.

    Shape:
        (n, d), (m, d) -> (n, m).
    """
    d = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * (a @ b.T)
    return np.maximum(d, 0.0)


def gaussian_kernel(a: np.ndarray, b: np.ndarray, width: float) -> np.ndarray:
    """k(x, y) = exp(−‖x − y‖² / (2 σ²)) with σ = ``width``. Shape: (n, d), (m, d) -> (n, m)."""
    return np.exp(-sq_distances(a, b) / (2.0 * width * width))


def median_distance(xs: np.ndarray, xt: np.ndarray, rng: np.random.Generator, most: int = MEDIAN_SAMPLE) -> float:
    """The median heuristic's width: the median distance between pooled source and target points
    (a random sample of at most ``most`` of them)."""
    pooled = np.concatenate([xs, xt])
    if len(pooled) > most:
        pooled = pooled[rng.choice(len(pooled), most, replace=False)]
    d = np.sqrt(sq_distances(pooled, pooled)[np.triu_indices(len(pooled), k=1)])
    med = float(np.median(d)) if d.size else 0.0
    return med if med > 0 else 1.0


def effective_sample_size(weights: np.ndarray) -> float:
    """(Σw)² / Σw²: how many equally weighted images the weighted set is worth (n when all are equal)."""
    w = np.asarray(weights, dtype=np.float64)
    s2 = float((w * w).sum())
    return float(w.sum() ** 2 / s2) if s2 > 0 else 0.0


# ------------------------------------------------------------------ the methods' common part
class ReweightMethod(FineTune):
    """A fine-tune on source labels whose start hook weights every source image by an estimate of
    p_target(x)/p_source(x). Subclasses implement :meth:`estimate` (and are registered)."""

    uses_target = True  # the start hook needs the unlabelled target images (the steps ignore them)

    @classmethod
    def validate(cls, params: Any) -> list[str]:
        return validate_features(params)

    def loss(self, batch: Any, model: Any, progress: float) -> tuple[Any, dict[str, float]]:
        """FineTune's weighted cross-entropy, unweighted during the first ``unweighted_start`` of training."""
        if progress < self.params.unweighted_start:
            batch = dataclasses.replace(batch, w_src=None)
        loss, metrics = super().loss(batch, model, progress)
        metrics["weighted"] = float(batch.w_src is not None)
        return loss, metrics

    def estimate(self, xs: np.ndarray, xt: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Weights of the source feature rows ``xs`` given target rows ``xt``. Shape: (n_s, d), (n_t, d) -> (n_s,)."""
        raise NotImplementedError

    def start(self, run: Any) -> None:
        import torch

        xs, xt = feature_matrices(run, self.ctx.config, self.params)
        w = np.asarray(self.estimate(xs, xt, np.random.default_rng(run.seed)), dtype=np.float64)
        w = np.clip(np.nan_to_num(w, nan=0.0, posinf=0.0), 0.0, None)
        if w.sum() <= 0:
            run.report(f"{self.title} gave every source image weight 0; training unweighted instead.")
            w = np.ones_like(w)
        self.weights = w / w.mean()  # mean 1: a weight of 1 is an image counted as in plain training
        ess = effective_sample_size(self.weights)
        if ess < 0.02 * len(w):
            run.report(f"{self.title}: the weights rest on few images (effective sample size {ess:.0f} of "
                       f"{len(w):,}); training may overfit them.")
        run.set_sample_weights(torch.as_tensor(self.weights, dtype=torch.float32, device=run.device))
