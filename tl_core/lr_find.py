"""Learning-rate range test: a short sweep that suggests a learning rate for a run's settings.

Smith, "Cyclical Learning Rates for Training Neural Networks", WACV 2017, section 3.3 ("How can one
estimate reasonable minimum and maximum boundary values?"): train for a short while with a learning
rate that keeps growing and watch where the loss starts to fall and where it blows up. As is now usual
(Smith, "A disciplined approach to neural network hyper-parameters", 2018; the fast.ai finder) the
rate grows exponentially, lr_i = start · (end / start)^(i / (steps − 1)), so a few hundred steps cover
six decades, and the loss is smoothed with a debiased exponential moving average
(s_i = m_i / (1 − β^(i+1)), m_i = β m_{i−1} + (1 − β) loss_i). The sweep stops early once the smoothed
loss exceeds :data:`DIVERGE_FACTOR` × its lowest value, or the loss is not finite.

**Suggestion: the learning rate at the lowest smoothed loss, divided by 10** (never below ``start``).
The minimum is where the loss stops falling; a tenth of it is still on the falling side, away
from the blow-up. We chose it over "the steepest descent of the smoothed loss" because a finite
difference over a few hundred noisy CPU steps jumps about, while the minimum is stable.

The test runs on the run's own settings (data, backbone, freezing, method and its labelled domain:
source labels, or target labels only when the user chose a supervised target fine-tune) through the
engine's own parts: :func:`tl_core.prepare.prepare` builds a fresh model (its own copy: a backbone
saved by an earlier run is only read), :class:`tl_core.optim.Optimisation` steps it with the run's
parameter groups (the backbone keeps its multiplier, every group scaled together; the lr recorded
is the head's, i.e. ``optim.lr``), and each step is the method's own ``train_step`` (its loss, the
extras' penalties), seeing the progress the real run would have at that step. Nothing is written to
the store. A method's own optimisers (built in its hooks) are not swept.

This module loads no torch when imported: the dashboard uses :func:`launch` and :func:`read_state`
to run ``python -m tl_core lr-find`` in the background and poll its JSON result file.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from tl_core.config import RunConfig

DEFAULT_START, DEFAULT_END, DEFAULT_STEPS = 1e-6, 1.0, 200
SMOOTHING = 0.9         # β of the moving average: a window of about 10 steps (a sixth of a decade at 200 steps)
DIVERGE_FACTOR = 4.0    # stop once the smoothed loss exceeds this × its lowest value
MIN_STEPS_BEFORE_STOP = 10  # the first losses of a fresh head are noisy: no early stop before this many steps
SUGGESTION = "the learning rate at the lowest smoothed loss, divided by 10"
FINAL = ("done", "failed")  # statuses after which a result file no longer changes


# ------------------------------------------------------------------ pure parts
def lr_schedule(start: float, end: float, steps: int) -> list[float]:
    """``steps`` learning rates growing geometrically from ``start`` to ``end`` (both included)."""
    if not (0 < start < end) or steps < 2:
        raise ValueError(f"need 0 < start < end and at least 2 steps, got start={start}, end={end}, steps={steps}")
    ratio = math.log(end / start)
    return [start * math.exp(ratio * i / (steps - 1)) for i in range(steps - 1)] + [end]


def smooth(losses: list[float], beta: float = SMOOTHING) -> list[float]:
    """Debiased exponential moving average of ``losses`` (the first value is the first loss)."""
    out, avg = [], 0.0
    for i, loss in enumerate(losses):
        avg = beta * avg + (1 - beta) * loss
        out.append(avg / (1 - beta ** (i + 1)))
    return out


def suggest(lrs: list[float], smoothed: list[float]) -> tuple[float, float]:
    """(suggested lr, lr at the lowest smoothed loss): the suggestion is that lr / 10, at least ``lrs[0]``."""
    i = min(range(len(smoothed)), key=smoothed.__getitem__)
    return max(lrs[i] / 10.0, lrs[0]), lrs[i]


@dataclass
class LrFindResult:
    """The sweep: one entry per step taken (``lrs``, raw ``raw_losses``, ``losses`` smoothed)."""

    lrs: list[float]
    losses: list[float]
    raw_losses: list[float]
    suggested_lr: float
    min_loss_lr: float
    total: int                      # steps planned
    stopped: str = ""               # why it ended before ``total`` ("" when it swept to the end)
    start: float = DEFAULT_START
    end: float = DEFAULT_END
    suggestion: str = SUGGESTION
    device: str = "cpu"
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --------------------------------------------------------------------- the test
def lr_range_test(config: RunConfig, start: float = DEFAULT_START, end: float = DEFAULT_END,
                  steps: int = DEFAULT_STEPS, *, beta: float = SMOOTHING, diverge: float = DIVERGE_FACTOR,
                  report: Callable[[dict[str, Any]], None] = lambda state: None,
                  stop: threading.Event | None = None) -> LrFindResult:
    """Sweep the learning rate over ``steps`` steps of the run ``config`` describes; nothing is stored.

    Args:
        config: the run's settings (validated here; ``optim.epochs`` only sets the method's progress).
        start, end, steps: the sweep, ``lr_schedule(start, end, steps)``.
        beta: smoothing of the loss; diverge: stop once the smoothed loss exceeds this × its minimum.
        report: hears the state after preparing and after each step: ``status`` ('preparing' with a
            ``phase``, or 'running'), ``done``, ``total``, ``eta_s``, ``lrs``, ``losses``.
        stop: when set, the sweep ends after the current step (what was swept is kept).

    Returns:
        The curve and the suggestion (:data:`SUGGESTION`).

    Raises:
        RunError: settings or data that cannot make a run (as a run would say).
    """
    import numpy as np
    import torch

    from tl_core.device import pick_device
    from tl_core.failures import Diverged, RunError
    from tl_core.methods import Batch, RunContext
    from tl_core.optim import Optimisation
    from tl_core.prepare import prepare, skipped_warning
    # The loop's own helpers: the same frozen-stage cache and the method's freezing of epoch 0.
    from tl_core.trainer import _apply_freezing, _cache_frozen_stages

    problems = config.validate()
    if problems:
        raise RunError("; ".join(problems), hint="Fix the settings named above.")
    lrs_planned = lr_schedule(start, end, steps)
    torch.manual_seed(config.seed)
    np.random.seed(config.seed % 2**32)
    device = pick_device(config.device)

    def phase(text: str) -> None:
        report({"status": "preparing", "phase": text, "done": 0, "total": steps, "lrs": [], "losses": []})

    p = prepare(config, device, phase=phase)
    warnings = [skipped_warning(role, files) for role, files in p.skipped.items() if files]
    o = config.optim
    train_in, tgt_in, cached = _cache_frozen_stages(config, p, lambda pct: phase(
        f"computing the outputs of the frozen stages once ({pct:.0f} %)"))
    augment = p.modality.augment if o.augment and not cached else (lambda x: x)
    phase(f"preparing {p.method.title}")
    ctx = RunContext(model=p.model, labelled_x=train_in, labelled_y=p.train_y, target_x=tgt_in, device=device,
                     seed=config.seed, report=warnings.append)
    for component in p.components:
        component.start(ctx)
        component.to(device)
    opt = Optimisation(config, p.model, p.method, device, p.extras)
    _apply_freezing(p, opt, 0)
    base = [(g, g.get("base_lr", g["lr"]) / o.lr) for g in opt.opt.param_groups]  # each group's share of lr
    p.model.train()
    for component in p.components:
        component.train()

    n = p.train_x.shape[0]
    per_epoch = max(1, n // o.batch_size)  # full batches only: a small last batch would add noise
    total_steps = max(1, o.epochs * math.ceil(n / o.batch_size))  # the real run's, for the method's progress
    batches = _batches(n, tgt_in, o.batch_size, per_epoch, config.seed, device)
    lrs: list[float] = []
    raw: list[float] = []
    smoothed: list[float] = []
    avg, best, stopped = 0.0, math.inf, ""
    t0 = time.perf_counter()
    for i, lr in enumerate(lrs_planned):
        if stop is not None and stop.is_set():
            stopped = "stopped by the user"
            break
        for g, share in base:
            g["lr"] = lr * share
        opt.where = (i + 1, 1)
        idx, tgt_idx = next(batches)
        x_tgt = augment(tgt_in[tgt_idx]) if tgt_idx is not None else None
        weights = ctx.sample_weights
        batch = Batch(augment(train_in[idx]), p.train_y[idx], x_tgt, weights[idx] if weights is not None else None,
                      idx)
        try:
            metrics = p.method.train_step(batch, p.model, min(i / total_steps, 0.999), opt)
        except Diverged:
            stopped = f"the loss was not finite at lr {lr:.3g}"
            break
        loss = float(metrics.get("loss", metrics.get("loss_task", math.nan)))
        if not math.isfinite(loss):
            stopped = f"the loss was not finite at lr {lr:.3g}"
            break
        avg = beta * avg + (1 - beta) * loss
        s = avg / (1 - beta ** (i + 1))
        lrs.append(lr), raw.append(loss), smoothed.append(s)
        best = min(best, s)
        elapsed = time.perf_counter() - t0
        report({"status": "running", "phase": None, "done": i + 1, "total": steps,
                "eta_s": elapsed / (i + 1) * (steps - i - 1), "lrs": lrs, "losses": smoothed})
        if i + 1 >= MIN_STEPS_BEFORE_STOP and s > diverge * best:
            stopped = f"the smoothed loss passed {diverge:g}× its lowest value at lr {lr:.3g}"
            break
    if not lrs:
        raise RunError(f"The loss was not finite at the first learning rate ({start:g}).",
                       hint="Start the sweep lower, or check the settings.")
    suggested, at_min = suggest(lrs, smoothed)
    return LrFindResult(lrs=lrs, losses=smoothed, raw_losses=raw, suggested_lr=suggested, min_loss_lr=at_min,
                        total=steps, stopped=stopped, start=start, end=end, device=str(device), warnings=warnings)


def _batches(n: int, tgt_in: Any, batch_size: int, per_epoch: int, seed: int, device: Any):
    """Endless (labelled indices, target indices or None), reshuffled each epoch as the loop does."""
    import torch

    epoch = 0
    while True:
        g = torch.Generator(device="cpu").manual_seed(seed * 100_003 + epoch)
        order = torch.randperm(n, generator=g).to(device)
        tgt = (torch.randint(0, tgt_in.shape[0], (per_epoch * batch_size,), generator=g).to(device)
               if tgt_in is not None else None)
        for i in range(per_epoch):
            sl = slice(i * batch_size, (i + 1) * batch_size)
            yield order[sl], (tgt[sl] if tgt is not None else None)
        epoch += 1


# --------------------------------------------------------------- result file
def write_state(path: str | os.PathLike, state: dict[str, Any]) -> None:
    """Write the JSON result file atomically (a reader never sees half of it)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(state), encoding="utf-8")
    os.replace(tmp, path)


def read_state(path: str | os.PathLike) -> dict[str, Any] | None:
    """The result file's state, or None while there is none (not written yet, or unreadable)."""
    try:
        state = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) else None


# ---------------------------------------------------------------- command line
def add_flags(r: argparse.ArgumentParser) -> None:
    """The sweep's own flags of ``python -m tl_core lr-find`` (the run's settings come from config_flags)."""
    g = r.add_argument_group("the sweep")
    g.add_argument("--start", type=float, default=DEFAULT_START, help=f"first learning rate (default {DEFAULT_START:g})")
    g.add_argument("--end", type=float, default=DEFAULT_END, help=f"last learning rate (default {DEFAULT_END:g})")
    g.add_argument("--steps", type=int, default=DEFAULT_STEPS, help=f"steps of the sweep (default {DEFAULT_STEPS})")
    g.add_argument("--json-out", metavar="FILE", help="also write the progress and the result to this JSON file "
                   "(rewritten as the sweep goes; status preparing, running, done or failed)")
    g.add_argument("--quiet", action="store_true", help="no progress bar")


def fail(a: argparse.Namespace, message: str, hint: str | None = None, code: int = 2) -> int:
    """Say why the test could not run (stderr and the result file); returns the exit status."""
    print(f"error: {message}" + (f"\nhint: {hint}" if hint else ""), file=sys.stderr)
    if getattr(a, "json_out", None):
        write_state(a.json_out, {"status": "failed", "error": message, "hint": hint or ""})
    return code


def cli(cfg: RunConfig, a: argparse.Namespace) -> int:
    """``python -m tl_core lr-find``: check, sweep, print a summary and one JSON line. Exit 0, or 2 when the
    settings, data or weights cannot make a run, 1 when it failed otherwise."""
    import signal

    from tl_core.failures import describe_exception, expected_errors
    from tl_core.preflight import check

    problems = check(cfg)
    if problems:
        return fail(a, "the test cannot start:\n  " + "\n  ".join(problems))
    if not (0 < a.start < a.end) or a.steps < 2:
        return fail(a, f"--start and --end must satisfy 0 < start < end and --steps be at least 2 "
                       f"(got {a.start:g}, {a.end:g}, {a.steps})")
    bar: list[Any] = []
    last = {"t": 0.0}

    def report(state: dict[str, Any]) -> None:
        now = time.monotonic()
        if a.json_out and (now - last["t"] >= 0.5 or state["status"] == "preparing"):
            last["t"] = now
            write_state(a.json_out, {**state, "start": a.start, "end": a.end})
        if a.quiet or state["status"] != "running":
            return
        if not bar:
            from tqdm import tqdm

            bar.append(tqdm(total=state["total"], unit="step", file=sys.stderr, dynamic_ncols=True))
        bar[0].n = state["done"]
        bar[0].set_postfix({"lr": f"{state['lrs'][-1]:.2g}", "loss": f"{state['losses'][-1]:.3f}"}, refresh=False)
        bar[0].refresh()

    stop = threading.Event()
    previous = signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        result = lr_range_test(cfg, a.start, a.end, a.steps, report=report, stop=stop)
    except Exception as exc:  # one line that says what to do, never a traceback for expected errors
        message, hint = describe_exception(exc)
        return fail(a, message, hint, 2 if isinstance(exc, expected_errors()) else 1)
    finally:
        signal.signal(signal.SIGINT, previous)
        if bar:
            bar[0].close()
    for w in result.warnings:
        print(f"warning: {w}", file=sys.stderr)
    print(summary(result))
    out = result.to_dict()
    if a.json_out:
        write_state(a.json_out, {"status": "done", "done": len(result.lrs), **out})
    print(json.dumps({"suggested_lr": result.suggested_lr, "lrs": result.lrs, "losses": result.losses,
                      "min_loss_lr": result.min_loss_lr, "stopped": result.stopped}))
    return 0


def summary(result: LrFindResult, rows: int = 12) -> str:
    """A few lines: the smoothed loss at about ``rows`` learning rates, where it stopped, the suggestion."""
    n = len(result.lrs)
    picks = sorted({round(i * (n - 1) / max(1, rows - 1)) for i in range(rows)}) if n else []
    lines = [f"{'lr':>10}  {'loss (smoothed)':>15}"]
    lines += [f"{result.lrs[i]:>10.3g}  {result.losses[i]:>15.4f}" for i in picks]
    lines.append(f"{n} of {result.total} steps" + (f"; stopped early: {result.stopped}" if result.stopped else ""))
    lines.append(f"lowest smoothed loss at lr {result.min_loss_lr:.3g}")
    lines.append(f"suggested lr: {result.suggested_lr:.3g} ({SUGGESTION})")
    return "\n".join(lines)


# ------------------------------------------------------------- background runs
def launch(config: RunConfig, steps: int = DEFAULT_STEPS, start: float = DEFAULT_START,
           end: float = DEFAULT_END) -> tuple[subprocess.Popen, Path]:
    """Start ``python -m tl_core lr-find --config <file> --json-out <file>`` in the background.

    The config and the result file go to a new temporary folder (nothing under TL_HOME); the
    process's output goes to ``output.txt`` beside them. Returns the process and the result file,
    which :func:`read_state` polls.
    """
    folder = Path(tempfile.mkdtemp(prefix="tl-lr-find-"))
    cfg_path, out_path = folder / "config.json", folder / "result.json"
    cfg_path.write_text(config.to_json(), encoding="utf-8")
    write_state(out_path, {"status": "preparing", "phase": "starting", "done": 0, "total": steps,
                           "start": start, "end": end})
    cmd = [sys.executable, "-m", "tl_core", "lr-find", "--config", str(cfg_path), "--json-out", str(out_path),
           "--start", repr(start), "--end", repr(end), "--steps", str(steps), "--quiet"]
    with open(folder / "output.txt", "wb") as log:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                cwd=str(Path(__file__).resolve().parent.parent))
    return proc, out_path


def output_tail(out_path: str | os.PathLike, chars: int = 600) -> str:
    """The end of a launched test's output (beside its result file): why a process ended without a result."""
    try:
        return (Path(out_path).parent / "output.txt").read_text(encoding="utf-8", errors="replace")[-chars:]
    except OSError:
        return ""
