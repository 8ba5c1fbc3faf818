"""The "What is pretraining worth?" demo: what a backbone pretrained on other data buys with few labels.

Plan (:func:`plan`): one run pretrains LeNet on the synthetic digits with all their labels (its backbone is
saved as ``run:<id>``); then, on MNIST with only 10, 30 and 100 labelled images per class
(``data.labels_per_class``, the same images for every strategy of a seed), four strategies train over
three seeds:

- **from scratch**: LeNet without pretraining (the baseline of ``tl_core.gain``, built by it);
- **frozen backbone + new head** (feature extraction): the pretrained backbone with every stage frozen;
- **fine-tune all layers**: the pretrained backbone, every stage trained;
- **fine-tune with L2-SP**: the same, pulled towards the pretrained weights (``tl_core/methods/l2sp.py``).

Every run goes through the job queue (runs train one after the other, so the pretraining run has saved its
backbone when the others start). The demo is recorded in ``$TL_HOME/demos/pretraining.json`` (its run ids
and what each one is), from which :func:`status` gives progress with an ETA for the whole demo and
:func:`results` the MNIST test accuracy of each finished run; :func:`figure` draws accuracy against labels
per class, one line per strategy with a mean ± std band. Torch-free (Home imports it).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tl_core.config import RunConfig

TITLE = "What is pretraining worth?"
LABELS_PER_CLASS = (10, 30, 100)
SEEDS = (0, 1, 2)
PRETRAIN_SOURCE, TARGET = "syn-digits", "mnist"
PRETRAIN_EPOCHS = 3
#: (epochs, batch size) per labels per class: fewer labels, smaller batches and more epochs, so each run takes
#: about 50-65 steps with few evaluations (each epoch evaluates 2 × 1,000 MNIST test images: the main cost).
SCHEDULE = {10: (4, 8), 30: (3, 16), 100: (2, 32)}


@dataclass(frozen=True)
class Strategy:
    key: str
    title: str
    color: str
    dash: str = "solid"  # L2-SP dashed: it often lies on top of plain fine-tuning


STRATEGIES = (
    Strategy("scratch", "From scratch", "#7f7f7f"),
    Strategy("frozen", "Frozen pretrained backbone + new head", "#1f77b4"),
    Strategy("finetune", "Fine-tune all layers", "#2ca02c"),
    Strategy("l2sp", "Fine-tune with L2-SP", "#d62728", "dash"),
)
_BY_KEY = {s.key: s for s in STRATEGIES}
#: Runs the demo queues: the pretraining run, then every strategy × labels per class × seed.
N_RUNS = 1 + len(STRATEGIES) * len(LABELS_PER_CLASS) * len(SEEDS)


@dataclass(frozen=True)
class PlannedRun:
    """One run of the demo: what it is and its config (``backbone`` is the pretraining run's ``run:<id>``)."""

    strategy: str              # a Strategy key, or "pretrain"
    labels_per_class: int | None
    seed: int
    config: RunConfig


def _base(seed: int) -> RunConfig:
    cfg = RunConfig(seed=seed)
    cfg.method.name, cfg.method.train_on = "finetune", "source"
    cfg.model.backbone = "lenet"
    cfg.snapshot.enabled = False  # no feature pictures: the demo compares accuracies
    return cfg


def pretrain_config() -> RunConfig:
    """LeNet on every labelled synthetic digit (tested on MNIST, which it has not seen)."""
    cfg = _base(0)
    cfg.data.source, cfg.data.target = PRETRAIN_SOURCE, TARGET
    cfg.optim.batch_size, cfg.optim.epochs = 64, PRETRAIN_EPOCHS
    cfg.name = "Pretraining worth · pretrain LeNet on synthetic digits"
    return cfg


def strategy_config(strategy: str, labels_per_class: int, seed: int, backbone: str) -> RunConfig:
    """One strategy on MNIST with ``labels_per_class`` labelled images per class; ``backbone`` = ``run:<id>``."""
    from tl_core import gain

    cfg = _base(seed)
    cfg.data.source = cfg.data.target = TARGET
    cfg.data.labels_per_class = labels_per_class
    cfg.optim.epochs, cfg.optim.batch_size = SCHEDULE[labels_per_class]
    cfg.model.backbone = backbone
    if strategy == "frozen":
        cfg.model.freeze = 3  # all of LeNet's stages (conv1, conv2, fc): only the new head trains
    elif strategy == "l2sp":
        cfg.method.extras = [{"name": "l2sp", "params": {}}]
    elif strategy == "scratch":
        # the baseline rule has one owner: the same run without pretraining
        cfg = gain.baseline_config(cfg, arch=pretrain_config().model.backbone)
    elif strategy != "finetune":
        raise KeyError(f"unknown strategy {strategy!r}; known: {', '.join(_BY_KEY)}")
    cfg.name = f"Pretraining worth · {_BY_KEY[strategy].title} · {labels_per_class}/class · seed {seed}"
    return cfg


def plan(backbone: str = "run:PRETRAIN") -> list[PlannedRun]:
    """Every run of the demo in queue order: the pretraining run, then strategies × labels per class × seeds."""
    runs = [PlannedRun("pretrain", None, 0, pretrain_config())]
    for k in LABELS_PER_CLASS:
        for seed in SEEDS:
            for s in STRATEGIES:
                runs.append(PlannedRun(s.key, k, seed, strategy_config(s.key, k, seed, backbone)))
    return runs


# ------------------------------------------------------------------ the demo's record under TL_HOME
def _record_path(home: Path) -> Path:
    return Path(home) / "demos" / "pretraining.json"


def start(manager: Any, owner: str | None = None) -> list[str]:
    """Queue the demo on ``manager`` (a ``tl_core.jobs.JobManager``) and record it; returns the run ids."""
    from tl_core.backbones import RUN_PREFIX

    pre_id = manager.submit(pretrain_config(), owner=owner)
    entries = [{"id": pre_id, "strategy": "pretrain", "labels_per_class": None, "seed": 0}]
    try:
        for run in plan(RUN_PREFIX + pre_id)[1:]:
            run_id = manager.submit(run.config, owner=owner)
            entries.append({"id": run_id, "strategy": run.strategy, "labels_per_class": run.labels_per_class,
                            "seed": run.seed})
    finally:  # recorded even when a submit failed half-way, so Stop finds what was queued
        path = _record_path(manager.store.home)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"started": time.time(), "runs": entries}, indent=1))
        os.replace(tmp, path)
    return [e["id"] for e in entries]


def load(home: Path) -> dict[str, Any] | None:
    """The latest demo's record (``{"started", "runs": [{"id", "strategy", "labels_per_class", "seed"}]}``)."""
    try:
        return json.loads(_record_path(home).read_text())
    except (OSError, ValueError):
        return None


@dataclass
class Status:
    total: int
    done: int                 # finished runs (any end)
    failed: int               # runs that ended other than completed
    active: bool              # some run still queued or running
    fraction: float           # of the whole demo, the running run's progress included
    eta_s: float | None       # seconds left for the whole demo (None until something has been measured)
    elapsed_s: float


#: What starting a run costs (a training process, data, evaluations), in steps of work, for the ETA's weights.
RUN_OVERHEAD_STEPS = 30


def _work(rec: Any) -> float:
    """A run's share of the demo's work: its steps (planned ones while queued) plus the start-up cost."""
    if rec.total_steps:
        return rec.total_steps + RUN_OVERHEAD_STEPS
    import math

    from tl_core.data import DIGIT_CLASSES

    d, o = rec.config.get("data", {}), rec.config.get("optim", {})
    k = d.get("labels_per_class")
    n = k * len(DIGIT_CLASSES) if k else 5000  # the pretraining run starts first, so its own count is soon known
    return o.get("epochs", 1) * math.ceil(n / max(1, o.get("batch_size", 1))) + RUN_OVERHEAD_STEPS


def status(store: Any, record: dict[str, Any]) -> Status:
    """Progress of the demo: runs done, and an ETA for the whole demo from the time taken so far and the work
    left (each run weighted by its steps plus a start-up cost, so the long pretraining run counts for more)."""
    recs = [store.get_run(e["id"]) for e in record["runs"]]
    total = len(recs)
    done = sum(1 for r in recs if r is None or not r.active)
    failed = sum(1 for r in recs if r is not None and not r.active and r.status != "completed")
    weights = [_work(r) if r is not None else 0.0 for r in recs]
    worked = sum(w * (1.0 if not r.active else r.progress) for r, w in zip(recs, weights) if r is not None)
    fraction = worked / sum(weights) if sum(weights) else 1.0
    starts = [r.started for r in recs if r is not None and getattr(r, "started", None)]
    elapsed = time.time() - min(starts) if starts else 0.0
    active = done < total
    eta = elapsed * (1 - fraction) / fraction if active and fraction > 0.02 and elapsed > 0 else None
    return Status(total, done, failed, active, fraction, eta if active else 0.0, elapsed)


def results(store: Any, record: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per completed strategy run: strategy, labels_per_class, seed, accuracy (MNIST test, 0-1)."""
    from tl_core.gain import reported_accuracy

    rows = []
    for e in record["runs"]:
        if e["strategy"] == "pretrain":
            continue
        rec = store.get_run(e["id"])
        # MNIST is source and target: the last epoch's accuracy (gain.same_data), never a checkpoint chosen on it
        acc = reported_accuracy(rec.summary or {}, rec.config) if rec is not None and rec.status == "completed" else None
        if acc is not None:
            rows.append({"strategy": e["strategy"], "labels_per_class": e["labels_per_class"], "seed": e["seed"],
                         "accuracy": acc})
    return rows


def aggregate(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean and standard deviation (over seeds, ddof 0) per strategy and labels per class, in points."""
    import numpy as np

    out = []
    for s in STRATEGIES:
        for k in LABELS_PER_CLASS:
            accs = [100 * r["accuracy"] for r in rows if r["strategy"] == s.key and r["labels_per_class"] == k]
            if accs:
                out.append({"strategy": s.key, "labels_per_class": k, "mean": float(np.mean(accs)),
                            "std": float(np.std(accs)), "n": len(accs)})
    return out


def figure(summary: list[dict[str, Any]], height: int = 460) -> Any:
    """MNIST test accuracy against labels per class (log x): one line per strategy, a mean ± std band."""
    import math

    import plotly.graph_objects as go

    fig = go.Figure()
    for s in STRATEGIES:
        pts = sorted((r for r in summary if r["strategy"] == s.key), key=lambda r: r["labels_per_class"])
        if not pts:
            continue
        x = [r["labels_per_class"] for r in pts]
        lo = [r["mean"] - r["std"] for r in pts]
        hi = [r["mean"] + r["std"] for r in pts]
        fig.add_trace(go.Scatter(x=x + x[::-1], y=hi + lo[::-1], mode="lines", fill="toself",
                                 fillcolor=_rgba(s.color, 0.15),
                                 line={"width": 0}, hoverinfo="skip", showlegend=False, legendgroup=s.key))
        fig.add_trace(go.Scatter(x=x, y=[r["mean"] for r in pts], name=s.title, legendgroup=s.key,
                                 mode="lines+markers", line={"color": s.color, "width": 3, "dash": s.dash},
                                 marker={"size": 9},
                                 customdata=[[r["std"], r["n"]] for r in pts],
                                 hovertemplate="%{x} labels per class: %{y:.1f} % ± %{customdata[0]:.1f} "
                                               "(%{customdata[1]} seeds)<extra>" + s.title + "</extra>"))
    fig.update_layout(
        title={"text": "MNIST test accuracy with few labels (mean ± std over seeds)", "font": {"size": 19}},
        xaxis={"title": "labelled MNIST images per class (log scale)", "type": "log",
               "range": [math.log10(LABELS_PER_CLASS[0] / 1.3), math.log10(LABELS_PER_CLASS[-1] * 1.3)],
               "tickvals": list(LABELS_PER_CLASS), "ticktext": [str(k) for k in LABELS_PER_CLASS]},
        yaxis={"title": "MNIST test accuracy (%)", "ticksuffix": ""},
        legend={"orientation": "h", "y": -0.22, "x": 0, "font": {"size": 14}},
        font={"size": 15}, height=height, margin={"l": 70, "r": 20, "t": 60, "b": 110},
        template="plotly_white", hovermode="closest")
    return fig


def _rgba(hex_color: str, alpha: float) -> str:
    h = hex_color.lstrip("#")
    return f"rgba({int(h[0:2], 16)}, {int(h[2:4], 16)}, {int(h[4:6], 16)}, {alpha})"


def verdict(summary: list[dict[str, Any]]) -> str:
    """One sentence for a teacher: where pretraining helps most and whether it ever hurt (from the means)."""
    by = {(r["strategy"], r["labels_per_class"]): r["mean"] for r in summary}
    gains = {k: max((by[(s, k)] - by[("scratch", k)]) for s in ("frozen", "finetune", "l2sp") if (s, k) in by)
             for k in LABELS_PER_CLASS if ("scratch", k) in by and any((s, k) in by for s in ("frozen", "finetune", "l2sp"))}
    if not gains:
        return ""
    best_k = max(gains, key=gains.get)
    text = f"Pretraining helps most with {best_k} labels per class (+{gains[best_k]:.1f} points for the best strategy)."
    hurts = [(s, k, by[(s, k)] - by[("scratch", k)]) for s in ("frozen", "finetune", "l2sp") for k in LABELS_PER_CLASS
             if (s, k) in by and ("scratch", k) in by and by[(s, k)] < by[("scratch", k)]]
    if hurts:
        s, k, d = min(hurts, key=lambda t: t[2])
        text += f" It hurts too: {_BY_KEY[s].title.lower()} with {k} labels per class is {abs(d):.1f} points below from scratch."
    else:
        text += " No pretrained strategy fell below training from scratch."
    return text
