"""Plain helpers that turn run records into words and numbers for people (no Streamlit)."""

from __future__ import annotations

import math
import time
from typing import Any

import pandas as pd

from tl_core.config import method_label as method_label  # the one rule for a run's method label
from tl_core.store import RunRecord


def data_pair(config: dict[str, Any]) -> str:
    d = config.get("data", {})
    return f"{d.get('source', '?')} → {d.get('target', '?')}"


def fmt_duration(seconds: float | None) -> str:
    """'42 s', '3 min 05 s', '1 h 02 min'; '–' when unknown."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "–"
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {(s % 3600) // 60:02d} min"


def fmt_count(n: int | None) -> str:
    """Parameter counts: '61,706' below a million, '11.2 M' above."""
    if n is None:
        return "–"
    if n >= 1_000_000:
        return f"{n / 1e6:.1f} M"
    return f"{n:,}"


def fmt_pct(x: float | None) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    return f"{100 * x:.1f} %"


def fmt_when(t: float | None) -> str:
    if t is None:
        return "–"
    return time.strftime("%d %b %H:%M", time.localtime(t))


def accuracies(rec: RunRecord, epochs: pd.DataFrame | None = None) -> tuple[float | None, float | None]:
    """(final, best) target test accuracy as fractions, from the summary or the epoch metrics."""
    s = rec.summary or {}
    final, best = s.get("final_target_test_acc"), s.get("best_target_test_acc")
    if (final is None or best is None) and epochs is not None and "target_test_acc" in epochs:
        acc = epochs["target_test_acc"].dropna()
        if not acc.empty:
            final = float(acc.iloc[-1]) if final is None else final
            best = float(acc.max()) if best is None else best
    return final, best


#: What every page says instead of a target accuracy when the target folder has no class folders.
NO_TARGET_LABELS = "target accuracy: not available (no labels)"


def target_unlabelled(rec: RunRecord, epochs: pd.DataFrame | None = None) -> bool:
    """True for a run whose target has no labels (an image folder without class folders): its summary says
    so, or its epochs carry the label-free score but no target accuracy."""
    if (rec.summary or {}).get("target_labelled") is False:
        return True
    return (epochs is not None and not epochs.empty and "target_entropy" in epochs
            and "target_test_acc" not in epochs)


def label_free_text(rec: RunRecord, epochs: pd.DataFrame | None = None) -> str:
    """'target accuracy: not available (no labels) · source accuracy 91.2 % · target entropy 0.41' (the
    label-free scores as far as known)."""
    s = rec.summary or {}
    src, ent = s.get("final_source_val_acc", s.get("source_val_acc")), s.get("final_target_entropy")
    if epochs is not None and not epochs.empty:
        if src is None and "source_val_acc" in epochs and not epochs["source_val_acc"].dropna().empty:
            src = float(epochs["source_val_acc"].dropna().iloc[-1])
        if ent is None and "target_entropy" in epochs and not epochs["target_entropy"].dropna().empty:
            ent = float(epochs["target_entropy"].dropna().iloc[-1])
    bits = [NO_TARGET_LABELS]
    if src is not None:
        bits.append(f"source accuracy {fmt_pct(src)}")
    if ent is not None:
        bits.append(f"target prediction entropy {ent:.3f}")
    return " · ".join(bits)


def run_title(rec: RunRecord) -> str:
    """The name people see for a run, e.g. 'DANN · MNIST → MNIST-M'."""
    return rec.name or rec.id


def option_label(rec: RunRecord) -> str:
    """A run as one line in a selection list (no status: lists are not redrawn while runs train)."""
    return f"{run_title(rec)} · {fmt_when(rec.created)}"


def progress_text(rec: RunRecord) -> str:
    """'Epoch 3 of 10 · step 120 of 700'."""
    epochs = rec.config.get("optim", {}).get("epochs", "?")
    if rec.total_steps:
        return f"Epoch {rec.epoch} of {epochs} · step {rec.step} of {rec.total_steps}"
    return f"Epoch {rec.epoch} of {epochs}"


def step_seconds(rec: RunRecord) -> float | None:
    """About how long one training step of a run takes, from its speed and batch size."""
    batch = rec.config.get("optim", {}).get("batch_size")
    if not rec.images_per_s or not batch:
        return None
    return float(batch) / rec.images_per_s
