"""The training loop: steps, evaluation, checkpoints, snapshots, stop.

``run(config, recorder, stop)`` reads top to bottom: prepare data and model
(:mod:`tl_core.prepare`), let the method start, then for each epoch let the method set the
frozen stages, take steps (checking the stop flag between them), evaluate
(:mod:`tl_core.evaluation`), checkpoint (:mod:`tl_core.checkpoint`) and snapshot
(:mod:`tl_core.snapshots`). It never prints and never touches Streamlit; everything it
learns goes through the recorder (see :mod:`tl_core.recorder`). What a method may do at
each point is the method contract in docs/ARCHITECTURE.md.
"""

from __future__ import annotations

import math
import threading
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from tl_core import backbones as bb
from tl_core import checkpoint as ckpt
from tl_core.config import RunConfig
from tl_core.device import pick_device
from tl_core.evaluation import evaluate
from tl_core.failures import RunError, expected_errors
from tl_core.methods import Batch, RunContext
from tl_core.optim import Optimisation
from tl_core.prepare import Prepared, prepare, skipped_warning, throttled
from tl_core.recorder import Recorder
from tl_core.selection import Tracker
from tl_core.snapshots import SnapshotSample, prepare_snapshots, snapshot_steps, take_snapshot

CACHE_BUDGET_BYTES = 3 * 1024**3  # frozen-stage outputs are cached only below this size
FLUSH_EVERY_S = 0.5  # how often step metrics and progress are written to the store


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
    was doing (e.g. "at step 12 (epoch 2)"), which :func:`tl_core.failures.describe_exception` reports.
    """
    where = {"phase": "while preparing the run"}
    try:
        return _run(config, recorder, stop or threading.Event(), resume, where)
    except Exception as exc:
        if not isinstance(exc, expected_errors()):
            try:
                exc.tl_phase = where["phase"]  # type: ignore[attr-defined]
            except AttributeError:
                pass
        raise


def _run(config: RunConfig, recorder: Recorder, stop: threading.Event, resume: Path | None,
         where: dict[str, str]) -> dict[str, Any]:
    problems = config.validate()
    if problems:
        raise RunError("; ".join(problems), hint="Fix the settings named above.")
    torch.manual_seed(config.seed)
    np.random.seed(config.seed % 2**32)
    device = pick_device(config.device)
    p = prepare(config, device, phase=lambda text: _phase(recorder, text))
    warnings = [skipped_warning(role, files) for role, files in p.skipped.items() if files]
    for w in warnings:
        _warn(recorder, w)
    o = config.optim
    train_in, tgt_in, cached = _cache_frozen_stages(config, p, lambda pct: _phase(
        recorder, f"computing the outputs of the {config.model.freeze} frozen stage"
                  f"{'s' if config.model.freeze != 1 else ''} once ({pct:.0f} %)"))
    augment = p.modality.augment if o.augment and not cached else (lambda x: x)

    where["phase"] = "while the method prepares (start hook)"
    _phase(recorder, f"preparing {p.method.title}")
    ctx = RunContext(model=p.model, labelled_x=train_in, labelled_y=p.train_y, target_x=tgt_in, device=device,
                     seed=config.seed, report=lambda message: _warn(recorder, message))
    for component in p.components:
        component.start(ctx)
        component.to(device)  # parts the start hook added
    weights = ctx.sample_weights
    if weights is not None and hasattr(recorder, "save_weights"):  # the Monitor shows them
        recorder.save_weights(torch.as_tensor(weights).detach().float().cpu().numpy())
    opt = Optimisation(config, p.model, p.method, device, p.extras)

    n_train = p.train_x.shape[0]
    steps_per_epoch = math.ceil(n_train / o.batch_size)
    total_steps = o.epochs * steps_per_epoch
    step, start_epoch, in_epoch, rng = 0, 0, 0, None
    # The label-free criterion: the selected checkpoint when it improves, early stopping on it (no target label).
    tracker = Tracker(config.selection.criterion, config.selection.patience)
    last_phase: float | None = None  # the phase of the last step (a multi-phase method logs it)
    if resume is not None:
        where["phase"] = "while loading the checkpoint"
        _phase(recorder, "loading the checkpoint")
        state = ckpt.load_checkpoint_file(resume, expect_config=config)
        in_epoch, rng = int(state.get("in_epoch", 0)), state.get("rng")
        tracker.load(state.get("selection"))
        for epoch in range(int(state["epoch"]) + (1 if in_epoch else 0)):  # the frozen stages it had then
            _apply_freezing(p, opt, epoch)
        step, start_epoch = ckpt.restore(state, p.model, p.method, opt, resume, p.extras)
    recorder.progress(epoch=start_epoch, step=step, total_steps=total_steps)

    snap = config.snapshot
    sample: SnapshotSample | None = prepare_snapshots(config, p, recorder) if snap.enabled else None
    snap_at = set(snapshot_steps(steps_per_epoch, o.epochs, snap.every_epochs, snap.every_steps)) \
        if snap.enabled else set()
    if sample is not None and resume is None:
        _phase(recorder, "taking the feature snapshot before training")
        take_snapshot(p, recorder, sample, 0, step, 0)
    _phase(recorder, "taking the first steps")
    n_snap = 1 + sum(1 for s_ in snap_at if s_ <= step)  # the next snapshot's index (resume: after those kept)

    buffer: list[dict[str, Any]] = []
    last_flush = last_checkpoint = t_run = time.perf_counter()
    ips_ema: float | None = None
    steps_this_session = 0
    train_s, eval_s = 0.0, None  # time in steps this session; the last evaluation's time
    n_eval = p.src_val[0].shape[0] + p.tgt_test[0].shape[0]

    def eta(epochs_to_evaluate: int) -> float:
        """Steps left at this session's pace, plus the evaluations left (before the first one, estimated
        as a forward pass over the held-out images at a third of the cost of a training step per image)."""
        per_step = train_s / max(1, steps_this_session)
        per_eval = eval_s if eval_s is not None else per_step / o.batch_size * n_eval / 3
        return per_step * (total_steps - step) + per_eval * epochs_to_evaluate
    final_metrics: dict[str, float] = {}
    status = "completed"
    note: str | None = None  # why the run ended before its last epoch (early stopping)

    for epoch in range(start_epoch, o.epochs):
        _apply_freezing(p, opt, epoch)
        # Per-epoch seeds make a resumed run identical to an uninterrupted one.
        g = torch.Generator(device="cpu").manual_seed(config.seed * 100_003 + epoch)
        torch.manual_seed(config.seed * 100_003 + epoch)
        order = torch.randperm(n_train, generator=g).to(device)
        tgt_order = (torch.randint(0, tgt_in.shape[0], (steps_per_epoch * o.batch_size,), generator=g).to(device)
                     if tgt_in is not None else None)
        first = in_epoch if epoch == start_epoch else 0  # a checkpoint from inside this epoch: go on after it
        for x_in, x_order in ((train_in, order), (tgt_in, tgt_order)):  # streamed folders decode ahead
            getattr(x_in, "plan", lambda *a: None)(x_order, o.batch_size, first)
        if first and rng is not None:
            torch.set_rng_state(rng)  # dropout and augmentation continue as they would have
        p.model.train()
        for component in p.components:
            component.train()
        for i in range(first, steps_per_epoch):
            if stop.is_set():
                status = "stopped"
                break
            where["phase"] = f"at step {step + 1} (epoch {epoch + 1})"
            t0 = time.perf_counter()
            progress = step / total_steps
            opt.set_progress(progress)
            opt.where = (step + 1, epoch + 1)
            idx = order[i * o.batch_size:(i + 1) * o.batch_size]
            x_tgt = None
            if tgt_order is not None:
                x_tgt = augment(tgt_in[tgt_order[i * o.batch_size:i * o.batch_size + idx.shape[0]]])
            batch = Batch(augment(train_in[idx]), p.train_y[idx], x_tgt,
                          weights[idx] if weights is not None else None, idx)
            try:
                metrics = p.method.train_step(batch, p.model, progress, opt)
            except RunError:
                _flush(recorder, buffer)
                raise
            step += 1
            steps_this_session += 1
            if "phase" in metrics:
                last_phase = float(metrics["phase"])
            train_s += time.perf_counter() - t0
            ips = idx.shape[0] / max(time.perf_counter() - t0, 1e-9)
            ips_ema = ips if ips_ema is None else 0.9 * ips_ema + 0.1 * ips
            row = {"step": step, "epoch": epoch + 1, "lr": opt.lr, "images_per_s": ips,
                   "frozen_stages": p.backbone.frozen_stages}  # the Monitor's freezing diagram reads it
            row.update({name: float(v) for name, v in metrics.items()})
            if opt.last_penalty is not None:
                row["penalty_extras"] = opt.last_penalty
            buffer.append(row)
            now = time.perf_counter()
            if now - last_flush >= FLUSH_EVERY_S:
                if last_flush <= t_run:
                    _phase(recorder, None)  # steps are under way: the card shows them
                _flush(recorder, buffer)
                recorder.progress(epoch=epoch + 1, step=step, total_steps=total_steps, eta_s=eta(o.epochs - epoch),
                                  images_per_s=ips_ema)
                last_flush = now
            if now - last_checkpoint >= ckpt.EVERY_S and i + 1 < steps_per_epoch:  # no hour lost
                where["phase"] = f"while saving the checkpoint at step {step}"
                _flush(recorder, buffer)  # the metrics up to it are in the store before it is
                recorder.save_checkpoint(ckpt.make_state(config, p.model, p.method, opt, step, epoch, p.extras,
                                                         in_epoch=i + 1, selection=tracker.state()))
                last_checkpoint = time.perf_counter()
            if sample is not None and step in snap_at and i + 1 < steps_per_epoch:  # mid-epoch snapshot
                where["phase"] = f"while taking the snapshot at step {step}"
                take_snapshot(p, recorder, sample, n_snap, step, round(step / steps_per_epoch, 3))
                n_snap += 1
        _flush(recorder, buffer)
        if status == "stopped":
            break
        where["phase"] = f"while evaluating after epoch {epoch + 1}"
        _phase(recorder, f"evaluating after epoch {epoch + 1}")
        t_eval = time.perf_counter()
        evaluated: dict[str, np.ndarray] = {}
        final_metrics, extra = evaluate(p, evaluated if sample is not None else None)
        if p.method.phases and last_phase is not None:  # which phase this epoch's model is of (selection)
            final_metrics["phase"] = last_phase
        eval_s = time.perf_counter() - t_eval
        recorder.log_epoch(epoch + 1, step, final_metrics, extra)
        where["phase"] = f"while saving the checkpoint of epoch {epoch + 1}"
        improved = tracker.update(epoch + 1, final_metrics)
        state = ckpt.make_state(config, p.model, p.method, opt, step, epoch + 1, p.extras,
                                selection=tracker.state())
        recorder.save_checkpoint(state)
        if improved and hasattr(recorder, "save_selected"):
            recorder.save_selected(state)
        del state
        last_checkpoint = time.perf_counter()
        where["phase"] = f"while taking the snapshot after epoch {epoch + 1}"
        if sample is not None and step in snap_at:
            take_snapshot(p, recorder, sample, n_snap, step, epoch + 1, evaluated)
            n_snap += 1
        _phase(recorder, None)
        recorder.progress(epoch=epoch + 1, step=step, total_steps=total_steps, eta_s=eta(o.epochs - epoch - 1),
                          images_per_s=ips_ema)
        if tracker.should_stop() and epoch + 1 < o.epochs:  # early stopping: a clean end, status completed
            note = tracker.stop_note(epoch + 1)
            break

    if status == "completed" and not final_metrics:  # resumed from the last epoch's checkpoint
        final_metrics, _ = evaluate(p)
    where["phase"] = "while saving the backbone"
    _phase(recorder, "saving the backbone")
    recorder.save_backbone(p.backbone)
    _phase(recorder, None)
    out = {"status": status, "step": step, "total_steps": total_steps, "device": str(device),
           "cached_frozen_stages": cached, **final_metrics, **({"note": note} if note else {}),
           **({} if p.target_labelled else {"target_labelled": False})}  # no target accuracy: no labels
    if any(p.skipped.values()):
        out["skipped_files"] = {role: len(files) for role, files in p.skipped.items()}
        out["warnings"] = warnings
    return out


def _cache_frozen_stages(config: RunConfig, p: Prepared, report: Callable[[float], None] = lambda pct: None,
                         ) -> tuple[torch.Tensor, torch.Tensor | None, bool]:
    """When nothing random touches the input and the first k stages stay frozen, their outputs never
    change: compute them once and train from there (same numbers). Returns the loop's inputs;
    ``report`` hears the percentage done."""
    k = config.model.freeze
    if k == 0 or config.optim.augment or any(c.changes_freezing for c in p.components):
        return p.train_x, p.tgt_x, False
    n = p.train_x.shape[0] + (0 if p.tgt_x is None else p.tgt_x.shape[0])
    if _cache_bytes(p, k, n) > CACHE_BUDGET_BYTES:
        return p.train_x, p.tgt_x, False
    done = 0
    say = throttled(report, last=lambda pct: pct >= 100)

    def on_batch(m: int) -> None:
        nonlocal done
        done += m
        say(100 * done / n)

    train_in = _stage_outputs(p, p.train_x, k, on_batch=on_batch)
    tgt_in = _stage_outputs(p, p.tgt_x, k, on_batch=on_batch) if p.tgt_x is not None else None
    p.model.cached = k
    return train_in, tgt_in, True


def _apply_freezing(p: Prepared, opt: Optimisation, epoch: int) -> None:
    """The frozen stages for this epoch, as the method and then each extra set them; stages they unfroze
    join the optimiser."""
    frozen = p.backbone.frozen_stages
    for component in p.components:
        frozen = component.frozen_stages(epoch, frozen)
    if frozen != p.backbone.frozen_stages:
        bb.freeze_stages(p.backbone, frozen)
        opt.add_unfrozen()


def _phase(recorder: Recorder, text: str | None) -> None:
    """Tell the recorder what the run does besides steps (None: taking steps), when it listens."""
    say = getattr(recorder, "phase", None)
    if say is not None:
        say(text)


def _warn(recorder: Recorder, message: str) -> None:
    warn = getattr(recorder, "warn", None)
    if warn is not None:
        warn(message)


def _flush(recorder: Recorder, buffer: list[dict[str, Any]]) -> None:
    if buffer:
        recorder.log_steps(list(buffer))
        buffer.clear()


@torch.no_grad()
def _stage_outputs(p: Prepared, x: torch.Tensor, k: int, batch: int = 256,
                   on_batch: Callable[[int], Any] = lambda n: None) -> torch.Tensor:
    """Outputs of the first k (frozen, eval-mode) stages for all of x; ``on_batch(n)`` after each batch."""
    outs = []
    for i in range(0, x.shape[0], batch):
        outs.append(p.backbone.forward_until(p.model.normalise(x[i:i + batch]), k))
        on_batch(outs[-1].shape[0])
    return torch.cat(outs)


@torch.no_grad()
def _cache_bytes(p: Prepared, k: int, n: int) -> int:
    out = p.backbone.forward_until(p.model.normalise(p.train_x[:1]), k)
    return int(out.numel() * out.element_size() * n)
