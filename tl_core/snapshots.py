"""Feature snapshots: when they are taken, the fixed sample, and taking one.

The sample is stratified from the held-out splits of both domains and fixed for the run;
a snapshot stores the sample's features (source rows through the source encoder, target
rows through the target encoder), which the projector turns into 2-D pictures.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from tl_core.config import RunConfig
from tl_core.embedding import stratified_sample
from tl_core.evaluation import predict
from tl_core.prepare import Prepared
from tl_core.recorder import Recorder


@dataclass
class SnapshotSample:
    """The fixed snapshot sample: its inputs per domain, and where its rows sit in the held-out splits."""

    src_x: torch.Tensor
    tgt_x: torch.Tensor
    src_idx: np.ndarray
    tgt_idx: np.ndarray


def snapshot_steps(steps_per_epoch: int, epochs: int, every_epochs: int, every_steps: int) -> list[int]:
    """The steps after which a snapshot is taken (the one before training, step 0, not included).

    Every ``every_steps`` steps and at the end of every ``every_epochs``-th epoch (0 turns
    either off); a step that is both gets one snapshot.
    """
    total = steps_per_epoch * epochs
    steps = set(range(every_steps, total + 1, every_steps)) if every_steps > 0 else set()
    if every_epochs > 0:
        steps |= {e * steps_per_epoch for e in range(every_epochs, epochs + 1, every_epochs)}
    return sorted(steps)


def prepare_snapshots(config: RunConfig, p: Prepared, recorder: Recorder) -> SnapshotSample:
    """Fix the snapshot sample: stratified, from the held-out splits of both domains.

    An unlabelled target's rows have label -1 (unknown): the pictures draw them without class marks."""
    n = config.snapshot.per_domain
    src_idx = stratified_sample(p.src_val[1].cpu().numpy(), n, config.seed)
    tgt_idx = stratified_sample(p.tgt_test[1].cpu().numpy(), n, config.seed + 1)
    labels = np.concatenate([p.src_val[1].cpu().numpy()[src_idx], p.tgt_test[1].cpu().numpy()[tgt_idx]])
    domains = np.concatenate([np.zeros(len(src_idx), np.int8), np.ones(len(tgt_idx), np.int8)])
    recorder.save_snapshot_sample(labels=labels, domains=domains, source_index=src_idx, target_index=tgt_idx)
    src_t = torch.as_tensor(src_idx, device=p.device)
    tgt_t = torch.as_tensor(tgt_idx, device=p.device)
    return SnapshotSample(p.src_val[0][src_t], p.tgt_test[0][tgt_t], src_idx, tgt_idx)


def take_snapshot(p: Prepared, recorder: Recorder, sample: SnapshotSample, idx: int, step: int,
                  epoch: float, evaluated: dict[str, np.ndarray] | None = None) -> None:
    """Features (and predictions) of the fixed sample, stored through the recorder.

    ``evaluated``: the outputs of an evaluation with the same weights; the sample's rows are
    taken from them (no forward pass on the training thread).
    """
    if evaluated:
        s, t = sample.src_idx, sample.tgt_idx
        preds = np.concatenate([evaluated["src_pred"][s], evaluated["tgt_pred"][t]])
        feats = np.concatenate([evaluated["src_feats"][s], evaluated["tgt_feats"][t]])
    else:
        sp, sf = predict(p, sample.src_x, "source")
        tp, tf = predict(p, sample.tgt_x, "target")
        preds, feats = np.concatenate([sp, tp]), np.concatenate([sf, tf])
    labels_domains = recorder.snapshot_labels()
    metrics: dict[str, Any] = {}
    if labels_domains is not None:
        labels, domains = labels_domains
        tgt = domains == 1
        if (labels[tgt] >= 0).any():  # an unlabelled target (labels -1) has no accuracy
            metrics["target_acc"] = float((preds[tgt] == labels[tgt]).mean())
        metrics["source_acc"] = float((preds[~tgt] == labels[~tgt]).mean())
    recorder.save_snapshot(idx, step, epoch, feats, metrics)
