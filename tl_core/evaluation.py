"""Evaluation: predictions and features of the held-out splits, accuracies, confusion matrix.

Each domain is evaluated through the encoder its method names (``Method.encoder``): the
backbone for most methods, a separate target encoder for ADDA-like ones.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch

from tl_core.prepare import Prepared
from tl_core.selection import label_free_scores


#: An evaluation batch holds at most this many pixels per channel: 512 images at 64×64, 41 at 224×224. Without the
#: cap a 224-px MobileNetV3 run evaluated 512 images at a time, 1.3 GB more than training needed
#: (docs/BENCHMARK_HISTORY.md, "Own data larger than memory").
EVAL_PIXELS = 512 * 64 * 64


def eval_batch(x: torch.Tensor) -> int:
    """How many images of ``x`` (n, C, H, W) one evaluation forward pass takes (see :data:`EVAL_PIXELS`)."""
    return max(1, min(512, EVAL_PIXELS // max(1, int(x.shape[-1]) * int(x.shape[-2]))))


def predict(p: Prepared, x: torch.Tensor, domain: str = "source", batch: int | None = None, entropy: bool = False,
            probs: bool = False) -> tuple[np.ndarray, ...]:
    """Predicted labels and features for compact inputs of one domain, in eval mode (with ``entropy``, the
    entropy of each softmax as the next array; with ``probs``, the softmax itself as the last)."""
    preds, feats, ents, softmax = predict_full(p, x, domain, batch)
    return (preds, feats) + ((ents,) if entropy else ()) + ((softmax,) if probs else ())


@torch.no_grad()
def predict_full(p: Prepared, x: torch.Tensor, domain: str = "source", batch: int | None = None,
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Predicted labels, features, the entropy (nats) of each softmax and the softmax itself, in eval mode
    (``batch`` images at a time; default :func:`eval_batch`)."""
    batch = batch or eval_batch(x)
    model = p.model
    was = model.backbone.training, model.head.training
    model.train(False)
    p.method.train(False)
    encode: Callable[[torch.Tensor], torch.Tensor] = p.method.encoder(domain, model)
    preds, feats, ents, probs = [], [], [], []
    for i in range(0, x.shape[0], batch):
        f = encode(x[i:i + batch])
        logits = model.head(f).float()
        preds.append(logits.argmax(1).cpu())
        feats.append(f.float().cpu())
        logp = torch.log_softmax(logits, 1)
        ents.append(-(logp.exp() * logp).sum(1).cpu())
        probs.append(logp.exp().cpu())
    model.backbone.train(was[0])
    model.head.train(was[1])
    p.method.train(was[0])
    return torch.cat(preds).numpy(), torch.cat(feats).numpy(), torch.cat(ents).numpy(), torch.cat(probs).numpy()


def _same_pass(p: Prepared) -> bool:
    """Whether the target test pass would repeat the source validation pass: the same images through the
    same encoder (a run whose source and target are one data set, e.g. few labels of MNIST on MNIST)."""
    if p.method.encoder("source", p.model) != p.method.encoder("target", p.model):
        return False
    a, b = p.src_val[0], p.tgt_test[0]
    if a is b:
        return True
    # streamed images (tl_core/data/stream.py) are decoded on the fly: not compared
    return (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.shape == b.shape
            and a.dtype == b.dtype and a.device == b.device and bool(torch.equal(a, b)))


def evaluate(p: Prepared, outputs: dict[str, np.ndarray] | None = None) -> tuple[dict[str, float], dict[str, Any]]:
    """Source validation and target test accuracy, per-class accuracy and confusion (target), and the
    label-free scores of :func:`tl_core.selection.label_free_scores` (``source_val_acc``, ``target_entropy``:
    the mean entropy (nats) of the softmax on the target test images, lower: more confident, log(classes) is a
    uniform guess; ``target_im``, ``target_snd``, ``dev_risk``), computed from the same forward pass with no
    target label.

    With an unlabelled target (``p.target_labelled`` False) there is no target accuracy: the metrics
    hold no ``target_test_acc`` (never a made-up number), and ``extra`` holds ``target_labelled``
    False and the share of target images predicted as each class instead of per-class accuracy.

    With ``outputs``, the predictions and features of both held-out splits are put there
    (``src_pred``, ``src_feats``, ``tgt_pred``, ``tgt_feats``): a snapshot taken right after an
    evaluation reads its sample's rows from them instead of a second forward pass.
    """
    src_pred, src_feats, src_probs = predict(p, p.src_val[0], "source", probs=True)
    if _same_pass(p):  # source = target (a fine-tune on the target's own labels): one forward pass, not two
        tgt_pred, tgt_feats, tgt_probs = src_pred, src_feats, src_probs
    else:
        tgt_pred, tgt_feats, tgt_probs = predict(p, p.tgt_test[0], "target", probs=True)
    if outputs is not None:
        outputs.update(src_pred=src_pred, src_feats=src_feats, tgt_pred=tgt_pred, tgt_feats=tgt_feats)
    src_y = p.src_val[1].cpu().numpy()
    k = len(p.classes)
    scores = label_free_scores(src_probs, src_y, src_feats, tgt_probs, tgt_feats)
    if not p.target_labelled:
        share = np.bincount(tgt_pred, minlength=k) / max(1, len(tgt_pred))
        return (scores, {"classes": p.classes, "target_labelled": False, "target_pred_share": share.tolist()})
    tgt_y = p.tgt_test[1].cpu().numpy()  # for reporting only: no score above reads it
    conf = np.zeros((k, k), dtype=np.int64)
    np.add.at(conf, (tgt_y, tgt_pred), 1)
    per_class = [float(conf[i, i] / conf[i].sum()) if conf[i].sum() else None for i in range(k)]
    wrong = np.nonzero(tgt_pred != tgt_y)[0][:24]
    metrics = {"source_val_acc": scores["source_val_acc"], "target_test_acc": float((tgt_pred == tgt_y).mean()),
               **scores}
    extra = {"per_class": per_class, "confusion": conf.tolist(), "classes": p.classes,
             "misclassified": [[int(i), int(tgt_pred[i])] for i in wrong]}
    return metrics, extra
