"""The training loop: data on the device, steps, evaluation, checkpoints, snapshots, stop.

``run(config, recorder, stop)`` reads top to bottom: prepare data and model, then for
each epoch take steps (checking the stop flag between them), evaluate, checkpoint and
snapshot. It never prints and never touches Streamlit; everything it learns goes through
the recorder (see :mod:`tl_core.recorder`).
"""

from __future__ import annotations

import errno
import math
import os
import sqlite3
import sysconfig
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from tl_core import backbones as bb
from tl_core import data as tld
from tl_core.config import RunConfig
from tl_core.embedding import stratified_sample
from tl_core.methods import Batch, create_method
from tl_core.recorder import Recorder

CACHE_BUDGET_BYTES = 3 * 1024**3  # frozen-stage outputs are cached only below this size
FLUSH_EVERY_S = 0.5  # how often step metrics and progress are written to the store


class RunError(Exception):
    """A run ended with a reason the user can act on (``status`` says how it ended)."""

    status = "failed"

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


class Diverged(RunError):
    status = "diverged"


@dataclass
class Prepared:
    """Everything a run needs, on the device."""

    device: torch.device
    classes: list[str]
    train_x: torch.Tensor          # uint8 (N,3,S,S) labelled training images
    train_y: torch.Tensor
    tgt_x: torch.Tensor | None     # uint8 unlabelled target training images (adaptation only)
    src_val: tuple[torch.Tensor, torch.Tensor]
    tgt_test: tuple[torch.Tensor, torch.Tensor]
    backbone: bb.Backbone
    head: nn.Module
    method: nn.Module
    normalise: Callable[[torch.Tensor], torch.Tensor]
    skipped: dict[str, list[str]] = field(default_factory=dict)  # role -> unreadable files skipped


# ------------------------------------------------------------------ helpers
def pick_device(choice: str) -> torch.device:
    """'auto' picks cuda, then mps, then cpu; an unavailable choice raises RunError."""
    if choice == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if choice == "cuda" and not torch.cuda.is_available():
        raise RunError("CUDA was chosen but this machine has no usable CUDA GPU.",
                       hint="Choose device 'auto' or 'cpu'.")
    if choice == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise RunError("MPS was chosen but this machine has no Apple GPU.", hint="Choose device 'auto' or 'cpu'.")
    return torch.device(choice)


def device_availability() -> dict[str, tuple[bool, str]]:
    """Which device choices work here: name -> (available, one-line reason) for the dashboard."""
    cuda = torch.cuda.is_available()
    mps = bool(getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available())
    if cuda:
        cuda_why = f"{torch.cuda.get_device_name(0)}"
    elif torch.version.cuda is None:
        cuda_why = "this torch build has no CUDA support"
    else:
        cuda_why = "torch found no CUDA GPU on this machine"
    auto = "cuda" if cuda else "mps" if mps else "cpu"
    return {"auto": (True, f"picks {auto} here"), "cpu": (True, "always available"), "cuda": (cuda, cuda_why),
            "mps": (mps, "Apple GPU" if mps else "no Apple GPU on this machine")}


def lr_factor(progress: float, schedule: str) -> float:
    """Learning-rate multiplier at progress p: DANN's lr0/(1+10p)^0.75, cosine, or 1."""
    p = min(max(progress, 0.0), 1.0)
    if schedule == "anneal":
        return 1.0 / (1.0 + 10.0 * p) ** 0.75
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * p))
    return 1.0


def _to_uint8(imgs: tld.ImageSet, size: int, device: torch.device) -> torch.Tensor:
    """Resize to size×size, 3 channels, kept as uint8 on the device (normalised per batch)."""
    chunks = []
    for i in range(0, len(imgs.labels), 1024):
        part = tld.ImageSet(images=imgs.images[i:i + 1024], labels=imgs.labels[i:i + 1024],
                            classes=imgs.classes, name=imgs.name)
        t = tld.to_tensor(part, size, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), scale=1.0)
        chunks.append(t.round_().clamp_(0, 255).to(torch.uint8))
    return torch.cat(chunks).to(device)


def _normaliser(info: bb.BackboneInfo, device: torch.device) -> Callable[[torch.Tensor], torch.Tensor]:
    mean = torch.tensor(info.mean, device=device, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(info.std, device=device, dtype=torch.float32).view(1, 3, 1, 1)
    scale = float(info.scale)

    def normalise(x: torch.Tensor) -> torch.Tensor:
        return (x.float() / scale - mean) / std
    return normalise


def _load(config: RunConfig, role: str, split: str, max_samples: int | None) -> tld.ImageSet:
    d = config.data
    name = getattr(d, role)
    return tld.load_split(name, split, path=getattr(d, f"{role}_path"), data_root=d.data_root,
                          allow_download=d.allow_download, max_samples=max_samples, seed=config.seed)


def prepare(config: RunConfig, device: torch.device) -> Prepared:
    """Load data (checking the domains share classes), build backbone, head and method."""
    d, m = config.data, config.model
    src_train = _load(config, "source", "train", d.max_train)
    src_test = _load(config, "source", "test", d.max_test)
    tgt_train = _load(config, "target", "train", d.max_train)
    tgt_test = _load(config, "target", "test", d.max_test)
    tld.check_pair(src_train, tgt_train)
    skipped = {role: _skipped_files(train, test)
               for role, train, test in (("source", src_train, src_test), ("target", tgt_train, tgt_test))}

    backbone = bb.create_backbone(m.backbone, pretrained=m.pretrained, allow_download=d.allow_download)
    n_stages = len(backbone.stages)
    if m.freeze > n_stages:
        raise RunError(f"model.freeze: {m.backbone} has {n_stages} stages "
                       f"({', '.join(backbone.info.stage_names)}); you asked to freeze {m.freeze}.",
                       hint=f"Choose a number from 0 to {n_stages}.")
    bb.freeze_stages(backbone, m.freeze)

    target_supervised = config.method.name == "finetune" and config.method.train_on == "target"
    labelled = tgt_train if target_supervised else src_train
    if config.optim.batch_size > len(labelled.labels):
        raise RunError(f"optim.batch_size: {config.optim.batch_size} is larger than the training set "
                       f"({len(labelled.labels)} images).", hint="Choose a smaller batch size.")
    size = d.image_size
    backbone.to(device)
    with torch.no_grad():
        probe = torch.zeros(2, 3, size, size, device=device)
        try:
            feat_dim = backbone.eval()(probe).shape[1]
        except RuntimeError as e:
            raise RunError(f"data.image_size: {size}×{size} images do not fit {m.backbone} ({e}).",
                           hint=f"Use image size {backbone.info.input_size}.") from e
    backbone.train()
    head = bb.make_head(feat_dim, len(src_train.classes), m.head, m.head_hidden, m.dropout).to(device)
    method = create_method(config, feat_dim, len(src_train.classes)).to(device)

    def on_device(s: tld.ImageSet) -> tuple[torch.Tensor, torch.Tensor]:
        return _to_uint8(s, size, device), torch.as_tensor(s.labels, dtype=torch.long, device=device)

    train_x, train_y = on_device(labelled)
    tgt_x = _to_uint8(tgt_train, size, device) if getattr(method, "uses_target", False) else None
    return Prepared(device=device, classes=list(src_train.classes), train_x=train_x, train_y=train_y,
                    tgt_x=tgt_x, src_val=on_device(src_test), tgt_test=on_device(tgt_test),
                    backbone=backbone, head=head, method=method,
                    normalise=_normaliser(backbone.info, device), skipped=skipped)


def _skipped_files(train: tld.ImageSet, test: tld.ImageSet) -> list[str]:
    """Unreadable files of one domain: the 80/20 layout reports its folder's list in both splits."""
    if list(train.skipped_files) == list(test.skipped_files):
        return list(train.skipped_files)
    return [f"train/{f}" for f in train.skipped_files] + [f"test/{f}" for f in test.skipped_files]


def skipped_warning(role: str, files: list[str]) -> str:
    """'3 unreadable image files in the source folder were skipped: a.png (why); ...'."""
    n = len(files)
    shown = "; ".join(files[:3]) + ("; ..." if n > 3 else "")
    return (f"{n} unreadable image file{'s' if n != 1 else ''} in the {role} folder "
            f"{'were' if n != 1 else 'was'} skipped: {shown}")


def build_optimizer(config: RunConfig, p: Prepared) -> torch.optim.Optimizer:
    """Parameter groups from trainable parameters only; the backbone gets lr × multiplier."""
    o = config.optim
    groups = []
    bb_params = [q for q in p.backbone.parameters() if q.requires_grad]
    if bb_params and o.backbone_lr_mult > 0:
        groups.append({"params": bb_params, "lr": o.lr * o.backbone_lr_mult, "base_lr": o.lr * o.backbone_lr_mult})
    other = [q for q in list(p.head.parameters()) + list(p.method.parameters()) if q.requires_grad]
    groups.append({"params": other, "lr": o.lr, "base_lr": o.lr})
    if o.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay, nesterov=o.momentum > 0)
    if o.optimizer == "adam":
        return torch.optim.Adam(groups, lr=o.lr, weight_decay=o.weight_decay)
    return torch.optim.AdamW(groups, lr=o.lr, weight_decay=o.weight_decay)


@torch.no_grad()
def predict(p: Prepared, x: torch.Tensor, batch: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """Predicted labels and backbone features for uint8 images, in eval mode."""
    was = p.backbone.training, p.head.training
    p.backbone.eval()
    p.head.eval()
    preds, feats = [], []
    for i in range(0, x.shape[0], batch):
        f = p.backbone(p.normalise(x[i:i + batch]))
        preds.append(p.head(f).argmax(1).cpu())
        feats.append(f.float().cpu())
    p.backbone.train(was[0])
    p.head.train(was[1])
    return torch.cat(preds).numpy(), torch.cat(feats).numpy()


def evaluate(p: Prepared, outputs: dict[str, np.ndarray] | None = None) -> tuple[dict[str, float], dict[str, Any]]:
    """Source validation and target test accuracy, per-class accuracy and confusion (target).

    With ``outputs``, the predictions and backbone features of both held-out splits are put
    there (``src_pred``, ``src_feats``, ``tgt_pred``, ``tgt_feats``): a snapshot taken right
    after an evaluation reads its sample's rows from them instead of a second forward pass.
    """
    src_pred, src_feats = predict(p, p.src_val[0])
    tgt_pred, tgt_feats = predict(p, p.tgt_test[0])
    if outputs is not None:
        outputs.update(src_pred=src_pred, src_feats=src_feats, tgt_pred=tgt_pred, tgt_feats=tgt_feats)
    src_y, tgt_y = p.src_val[1].cpu().numpy(), p.tgt_test[1].cpu().numpy()
    k = len(p.classes)
    conf = np.zeros((k, k), dtype=np.int64)
    np.add.at(conf, (tgt_y, tgt_pred), 1)
    per_class = [float(conf[i, i] / conf[i].sum()) if conf[i].sum() else None for i in range(k)]
    wrong = np.nonzero(tgt_pred != tgt_y)[0][:24]
    metrics = {"source_val_acc": float((src_pred == src_y).mean()), "target_test_acc": float((tgt_pred == tgt_y).mean())}
    extra = {"per_class": per_class, "confusion": conf.tolist(), "classes": p.classes,
             "misclassified": [[int(i), int(tgt_pred[i])] for i in wrong]}
    return metrics, extra


# ---------------------------------------------------------------- the loop
def run(config: RunConfig, recorder: Recorder, stop: threading.Event | None = None,
        resume: Path | None = None) -> dict[str, Any]:
    """Train one run to the end, or until ``stop`` is set.

    Args:
        config: the validated run configuration.
        recorder: where metrics, progress, checkpoints and snapshots go.
        stop: checked between steps; when set the run ends as 'stopped' within one step.
        resume: a checkpoint file to continue from (same config).

    Returns:
        Final metrics plus ``status`` ('completed' or 'stopped').

    Raises:
        RunError: a problem the user can fix (bad value, missing data, divergence).

    An exception that is not a RunError gets a ``tl_phase`` attribute saying what the run
    was doing (e.g. "at step 12 (epoch 2)"), which :func:`describe_exception` reports.
    """
    where = {"phase": "while preparing the run"}
    try:
        return _run(config, recorder, stop, resume, where)
    except Exception as exc:
        if not isinstance(exc, EXPECTED_ERRORS):
            try:
                exc.tl_phase = where["phase"]  # type: ignore[attr-defined]
            except AttributeError:
                pass
        raise


def _run(config: RunConfig, recorder: Recorder, stop: threading.Event | None, resume: Path | None,
         where: dict[str, str]) -> dict[str, Any]:
    problems = config.validate()
    if problems:
        raise RunError("; ".join(problems), hint="Fix the settings named above.")
    stop = stop or threading.Event()
    torch.manual_seed(config.seed)
    np.random.seed(config.seed % 2**32)
    device = pick_device(config.device)
    p = prepare(config, device)
    warnings = [skipped_warning(role, files) for role, files in p.skipped.items() if files]
    warn = getattr(recorder, "warn", None)
    for w in warnings:
        if warn is not None:
            warn(w)
    opt = build_optimizer(config, p)
    o, k = config.optim, config.model.freeze
    use_amp = bool(config.amp and device.type == "cuda")
    amp_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)

    # When nothing random touches the input and the first k stages are frozen, their
    # outputs never change: compute them once and train from there (same numbers).
    train_in, tgt_in = p.train_x, p.tgt_x
    cached = False
    if k > 0 and not o.augment:
        est = _cache_bytes(p, k, p.train_x.shape[0] + (0 if p.tgt_x is None else p.tgt_x.shape[0]))
        if est <= CACHE_BUDGET_BYTES:
            train_in = _stage_outputs(p, p.train_x, k)
            tgt_in = _stage_outputs(p, p.tgt_x, k) if p.tgt_x is not None else None
            cached = True

    def features(x: torch.Tensor) -> torch.Tensor:
        if cached:
            return p.backbone.forward_from(x, k)
        return p.backbone(p.normalise(x))

    def augment(x: torch.Tensor) -> torch.Tensor:
        if not o.augment or cached:
            return x
        shift = max(1, x.shape[-1] // 10)  # random translation by up to 10%
        dx, dy = (int(v) for v in torch.randint(-shift, shift + 1, (2,)))
        return torch.roll(x, shifts=(dy, dx), dims=(2, 3))

    n_train = p.train_x.shape[0]
    steps_per_epoch = math.ceil(n_train / o.batch_size)
    total_steps = o.epochs * steps_per_epoch
    step, start_epoch = 0, 0
    if resume is not None:
        where["phase"] = "while loading the checkpoint"
        step, start_epoch = _load_checkpoint(resume, p, opt, scaler, config)
    recorder.progress(epoch=start_epoch, step=step, total_steps=total_steps)

    snap = config.snapshot
    snap_x: _SnapshotSample | None = None
    snap_at = set(snapshot_steps(steps_per_epoch, o.epochs, snap.every_epochs, snap.every_steps)) \
        if snap.enabled else set()
    if snap.enabled:
        snap_x = _prepare_snapshots(config, p, recorder)
        if resume is None:
            _take_snapshot(p, recorder, snap_x, 0, step, 0)

    buffer: list[dict[str, Any]] = []
    last_flush = time.perf_counter()
    ips_ema: float | None = None
    t_run = time.perf_counter()
    steps_this_session = 0
    final_metrics: dict[str, float] = {}
    status = "completed"
    n_snap = 1 + sum(1 for s_ in snap_at if s_ <= step)  # the next snapshot's index (resume: after those kept)

    for epoch in range(start_epoch, o.epochs):
        # Per-epoch seeds make a resumed run identical to an uninterrupted one.
        g = torch.Generator(device="cpu").manual_seed(config.seed * 100_003 + epoch)
        torch.manual_seed(config.seed * 100_003 + epoch)
        order = torch.randperm(n_train, generator=g).to(device)
        tgt_order = (torch.randint(0, tgt_in.shape[0], (steps_per_epoch * o.batch_size,), generator=g).to(device)
                     if tgt_in is not None else None)
        p.backbone.train()
        p.head.train()
        p.method.train()
        for i in range(steps_per_epoch):
            if stop.is_set():
                status = "stopped"
                break
            where["phase"] = f"at step {step + 1} (epoch {epoch + 1})"
            t0 = time.perf_counter()
            progress = step / total_steps
            factor = lr_factor(progress, o.lr_schedule)
            for group in opt.param_groups:
                group["lr"] = group["base_lr"] * factor
            idx = order[i * o.batch_size:(i + 1) * o.batch_size]
            batch = Batch(augment(train_in[idx]), p.train_y[idx],
                          augment(tgt_in[tgt_order[i * o.batch_size:i * o.batch_size + idx.shape[0]]])
                          if tgt_order is not None else None)
            with torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp):
                loss, metrics = p.method(batch, features, p.head, progress)
            loss_value = float(loss.detach())  # CPU-GPU sync point: needed to catch divergence
            if not math.isfinite(loss_value):
                _flush(recorder, buffer)
                raise Diverged(f"The loss became {loss_value} at step {step + 1} (epoch {epoch + 1}).",
                               hint=f"Lower the learning rate (now {o.lr}) or the backbone multiplier, "
                                    "or use a smaller λ.")
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            step += 1
            steps_this_session += 1
            dt = time.perf_counter() - t0
            ips = idx.shape[0] / max(dt, 1e-9)
            ips_ema = ips if ips_ema is None else 0.9 * ips_ema + 0.1 * ips
            row = {"step": step, "epoch": epoch + 1, "loss": loss_value, "lr": opt.param_groups[-1]["lr"],
                   "images_per_s": ips}
            row.update({name: float(v) for name, v in metrics.items()})
            buffer.append(row)
            now = time.perf_counter()
            if now - last_flush >= FLUSH_EVERY_S:
                _flush(recorder, buffer)
                elapsed = now - t_run
                eta = elapsed / steps_this_session * (total_steps - step)
                recorder.progress(epoch=epoch + 1, step=step, total_steps=total_steps, eta_s=eta, images_per_s=ips_ema)
                last_flush = now
            if snap_x is not None and step in snap_at and i + 1 < steps_per_epoch:  # mid-epoch snapshot
                where["phase"] = f"while taking the snapshot at step {step}"
                _take_snapshot(p, recorder, snap_x, n_snap, step, round(step / steps_per_epoch, 3))
                n_snap += 1
        _flush(recorder, buffer)
        if status == "stopped":
            break
        where["phase"] = f"while evaluating after epoch {epoch + 1}"
        evaluated: dict[str, np.ndarray] = {}
        final_metrics, extra = evaluate(p, evaluated if snap_x is not None else None)
        recorder.log_epoch(epoch + 1, step, final_metrics, extra)
        where["phase"] = f"while saving the checkpoint of epoch {epoch + 1}"
        recorder.save_checkpoint(_checkpoint(config, p, opt, scaler, step, epoch + 1))
        where["phase"] = f"while taking the snapshot after epoch {epoch + 1}"
        if snap_x is not None and step in snap_at:
            _take_snapshot(p, recorder, snap_x, n_snap, step, epoch + 1, evaluated)
            n_snap += 1
        elapsed = time.perf_counter() - t_run
        recorder.progress(epoch=epoch + 1, step=step, total_steps=total_steps,
                          eta_s=elapsed / max(1, steps_this_session) * (total_steps - step), images_per_s=ips_ema)

    if status == "completed" and not final_metrics:  # resumed from the last epoch's checkpoint
        final_metrics, _ = evaluate(p)
    where["phase"] = "while saving the backbone"
    recorder.save_backbone(p.backbone)
    out = {"status": status, "step": step, "total_steps": total_steps, "device": str(device),
           "cached_frozen_stages": cached, **final_metrics}
    if any(p.skipped.values()):
        out["skipped_files"] = {role: len(files) for role, files in p.skipped.items()}
        out["warnings"] = warnings
    return out


def _flush(recorder: Recorder, buffer: list[dict[str, Any]]) -> None:
    if buffer:
        recorder.log_steps(list(buffer))
        buffer.clear()


@torch.no_grad()
def _stage_outputs(p: Prepared, x: torch.Tensor, k: int, batch: int = 256) -> torch.Tensor:
    """Outputs of the first k (frozen, eval-mode) stages for all of x."""
    outs = [p.backbone.forward_until(p.normalise(x[i:i + batch]), k) for i in range(0, x.shape[0], batch)]
    return torch.cat(outs)


@torch.no_grad()
def _cache_bytes(p: Prepared, k: int, n: int) -> int:
    out = p.backbone.forward_until(p.normalise(p.train_x[:1]), k)
    return int(out.numel() * out.element_size() * n)


@dataclass
class _SnapshotSample:
    """The fixed snapshot sample: its images, and where its rows sit in the held-out splits."""

    x: torch.Tensor
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


def _prepare_snapshots(config: RunConfig, p: Prepared, recorder: Recorder) -> _SnapshotSample:
    """Fix the snapshot sample: stratified, from the held-out splits of both domains."""
    n = config.snapshot.per_domain
    src_idx = stratified_sample(p.src_val[1].cpu().numpy(), n, config.seed)
    tgt_idx = stratified_sample(p.tgt_test[1].cpu().numpy(), n, config.seed + 1)
    labels = np.concatenate([p.src_val[1].cpu().numpy()[src_idx], p.tgt_test[1].cpu().numpy()[tgt_idx]])
    domains = np.concatenate([np.zeros(len(src_idx), np.int8), np.ones(len(tgt_idx), np.int8)])
    recorder.save_snapshot_sample(labels=labels, domains=domains, source_index=src_idx, target_index=tgt_idx)
    src_t = torch.as_tensor(src_idx, device=p.device)
    tgt_t = torch.as_tensor(tgt_idx, device=p.device)
    return _SnapshotSample(torch.cat([p.src_val[0][src_t], p.tgt_test[0][tgt_t]]), src_idx, tgt_idx)


def _take_snapshot(p: Prepared, recorder: Recorder, sample_x: _SnapshotSample, idx: int, step: int,
                   epoch: float, evaluated: dict[str, np.ndarray] | None = None) -> None:
    """Features (and predictions) of the fixed sample, stored through the recorder.

    ``evaluated``: the outputs of an evaluation with the same weights; the sample's rows are
    taken from them (no forward pass on the training thread).
    """
    if evaluated:
        s, t = sample_x.src_idx, sample_x.tgt_idx
        preds = np.concatenate([evaluated["src_pred"][s], evaluated["tgt_pred"][t]])
        feats = np.concatenate([evaluated["src_feats"][s], evaluated["tgt_feats"][t]])
    else:
        preds, feats = predict(p, sample_x.x)
    sample = recorder.snapshot_labels()
    metrics: dict[str, Any] = {}
    if sample is not None:
        labels, domains = sample
        tgt = domains == 1
        metrics["target_acc"] = float((preds[tgt] == labels[tgt]).mean())
        metrics["source_acc"] = float((preds[~tgt] == labels[~tgt]).mean())
    recorder.save_snapshot(idx, step, epoch, feats, metrics)


def _checkpoint(config: RunConfig, p: Prepared, opt: torch.optim.Optimizer, scaler: Any, step: int,
                epoch: int) -> dict[str, Any]:
    return {"format": "transfer-lab-checkpoint/1", "config": config.to_json(), "step": step, "epoch": epoch,
            "backbone": p.backbone.state_dict(), "head": p.head.state_dict(), "method": p.method.state_dict(),
            "optimizer": opt.state_dict(), "scaler": scaler.state_dict()}


def load_checkpoint_file(path: Path, expect_config: RunConfig | None = None) -> dict[str, Any]:
    """Load one of our checkpoints safely (weights_only); a foreign or corrupt file raises RunError.

    With ``expect_config``, a checkpoint written by a run of another configuration is refused too.
    """
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError as e:
        raise RunError(f"No checkpoint at {path}.", hint="The run saves one at the end of each epoch.") from e
    except Exception as e:  # pickle errors, truncated zip, unsafe globals
        raise RunError(f"{Path(path).name} is not a readable Transfer Lab checkpoint ({type(e).__name__}: "
                       f"{str(e).splitlines()[0][:200] if str(e) else 'no detail'}).",
                       hint="Use a checkpoint.pt written by Transfer Lab; it may be corrupt.") from e
    if not isinstance(ckpt, dict) or ckpt.get("format") != "transfer-lab-checkpoint/1":
        raise RunError(f"{Path(path).name} is not a Transfer Lab checkpoint.",
                       hint="Use a checkpoint.pt written by Transfer Lab.")
    for key in ("step", "epoch", "backbone", "head", "method", "optimizer", "scaler", "config"):
        if key not in ckpt:
            raise RunError(f"{Path(path).name} is an incomplete Transfer Lab checkpoint (no '{key}').",
                           hint="It may be corrupt; start the run again.")
    if expect_config is not None:
        try:
            same = RunConfig.from_json(ckpt["config"]).to_json() == expect_config.to_json()
        except (ValueError, TypeError):
            same = False
        if not same:
            raise RunError(f"{Path(path).name} was written by a run with other settings than this one.",
                           hint="Resume a run only from its own checkpoint.")
    return ckpt


def _load_checkpoint(path: Path, p: Prepared, opt: torch.optim.Optimizer, scaler: Any,
                     config: RunConfig | None = None) -> tuple[int, int]:
    ckpt = load_checkpoint_file(path, expect_config=config)
    try:
        p.backbone.load_state_dict(ckpt["backbone"])
        p.head.load_state_dict(ckpt["head"])
        p.method.load_state_dict(ckpt["method"])
        opt.load_state_dict(ckpt["optimizer"])
        scaler.load_state_dict(ckpt["scaler"])
    except (RuntimeError, ValueError, KeyError, TypeError) as e:
        raise RunError(f"{Path(path).name} does not fit this run's model ({str(e).splitlines()[0][:200]}).",
                       hint="Resume a run only from its own checkpoint; it may be corrupt.") from e
    return int(ckpt["step"]), int(ckpt["epoch"])


EXPECTED_ERRORS = (RunError, bb.BackboneError, tld.DataError)
"""Errors whose message already says what was wrong and what to do (no traceback needed)."""


def _is_out_of_memory(exc: BaseException) -> bool:
    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()  # MPS, cuDNN, cuBLAS


def _is_disk_full(exc: BaseException) -> bool:
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", -1)):
        return True
    return isinstance(exc, sqlite3.OperationalError) and "full" in str(exc).lower()


def _library_file(filename: str) -> bool:
    return ("site-packages" in filename or "dist-packages" in filename
            or os.path.abspath(filename).startswith(_STDLIB))


_STDLIB = sysconfig.get_paths()["stdlib"]


def describe_exception(exc: BaseException) -> tuple[str, str | None]:
    """A one-line message with where it happened, and a hint, for a failed run.

    Where: the deepest frame of the traceback outside installed libraries (our code or a
    user's method), plus what the run was doing (``tl_phase``, set by :func:`run`).
    """
    if isinstance(exc, RunError):
        return str(exc), exc.hint
    if isinstance(exc, (bb.BackboneError, tld.DataError)):  # their messages already say what to do
        return str(exc), None
    phase = getattr(exc, "tl_phase", None)
    during = f" {phase}" if phase else ""
    if _is_out_of_memory(exc):
        return (f"The GPU ran out of memory{during}: try a smaller batch or image size.",
                "Use a smaller batch size or image size, or freeze more stages (frozen stages keep no gradients).")
    if _is_disk_full(exc):
        return (f"The disk is full{during}: {exc}", "Free some space under TL_HOME, then resume the run.")
    frames = traceback.extract_tb(exc.__traceback__)
    where = ""
    if frames:
        ours = [f for f in frames if not _library_file(f.filename)]
        f = (ours or frames)[-1]
        where = f" (in {os.path.basename(f.filename)}:{f.lineno}, {f.name}{';' + during if phase else ''})"
    text = str(exc).splitlines()[0][:300] if str(exc) else ""
    return f"{type(exc).__name__}: {text}{where}", "This looks like a bug or a data problem; the message says where."
