"""Where the trainer writes what it learns: the run store, or memory (tests, benchmarks)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Protocol

import numpy as np

from tl_core import checkpoint


class Recorder(Protocol):
    """What the trainer needs from its surroundings."""

    def progress(self, *, epoch: int, step: int, total_steps: int, eta_s: float | None = None,
                 images_per_s: float | None = None) -> None: ...
    def log_steps(self, rows: list[dict[str, Any]]) -> None: ...
    def log_epoch(self, epoch: int, step: int, metrics: dict[str, Any], extra: dict[str, Any]) -> None: ...
    def save_checkpoint(self, state: dict[str, Any]) -> None: ...
    def save_backbone(self, backbone: Any) -> None: ...
    def save_snapshot_sample(self, **arrays: np.ndarray) -> None: ...
    def snapshot_labels(self) -> tuple[np.ndarray, np.ndarray] | None: ...
    def save_snapshot(self, idx: int, step: int, epoch: int, features: np.ndarray, metrics: dict[str, Any]) -> None: ...
    # Optional: ``warn(message)`` for something the user should know that does not stop the run
    # (unreadable images skipped), and ``phase(text or None)``: what the run does besides taking steps
    # (loading data, evaluating). The trainer calls them only when the recorder has them, as it does
    # ``save_weights(weights)``: the per-image weights a method set before training (one per labelled image),
    # and ``save_selected(state)``: the checkpoint of the epoch the label-free criterion chose so far.


class StoreRecorder:
    """Writes one run's data into a :class:`tl_core.store.RunStore`."""

    def __init__(self, store: Any, run_id: str,
                 on_snapshot: Callable[[str, int], None] | None = None) -> None:
        self.store, self.run_id = store, run_id
        self.on_snapshot = on_snapshot
        self.run_dir = store.run_dir(run_id)
        self._labels: tuple[np.ndarray, np.ndarray] | None = None

    def progress(self, *, epoch: int, step: int, total_steps: int, eta_s: float | None = None,
                 images_per_s: float | None = None) -> None:
        self.store.set_progress(self.run_id, epoch=epoch, step=step, total_steps=total_steps,
                                eta_s=eta_s, images_per_s=images_per_s)

    def log_steps(self, rows: list[dict[str, Any]]) -> None:
        self.store.log_steps(self.run_id, rows)

    def phase(self, text: str | None) -> None:
        self.store.set_phase(self.run_id, text)

    def warn(self, message: str) -> None:
        """Kept in the run's summary['warnings'] at once, so the dashboard shows it during the run."""
        self.store.add_warning(self.run_id, message)

    def log_epoch(self, epoch: int, step: int, metrics: dict[str, Any], extra: dict[str, Any]) -> None:
        self.store.log_epoch(self.run_id, epoch, step, metrics, extra)

    def save_checkpoint(self, state: dict[str, Any]) -> None:
        checkpoint.write(state, self.run_dir)

    def save_selected(self, state: dict[str, Any]) -> None:
        checkpoint.write_selected(state, self.run_dir)

    def save_backbone(self, backbone: Any) -> None:
        from tl_core.backbones import save_backbone

        save_backbone(backbone, self.run_dir)

    def save_snapshot_sample(self, **arrays: np.ndarray) -> None:
        self.store.save_snapshot_sample(self.run_id, **arrays)
        self._labels = (arrays["labels"], arrays["domains"])

    def snapshot_labels(self) -> tuple[np.ndarray, np.ndarray] | None:
        return self._labels

    def save_weights(self, weights: np.ndarray) -> None:
        self.store.save_weights(self.run_id, weights)

    def save_snapshot(self, idx: int, step: int, epoch: int, features: np.ndarray, metrics: dict[str, Any]) -> None:
        self.store.save_snapshot(self.run_id, idx, step, epoch, features, metrics)
        if self.on_snapshot is not None:
            self.on_snapshot(self.run_id, idx)


class MemoryRecorder:
    """Keeps everything in lists; used by tests, benchmarks and the quiet CLI path."""

    def __init__(self, run_dir: Path | None = None) -> None:
        self.run_dir = run_dir
        self.steps: list[dict[str, Any]] = []
        self.epochs: list[dict[str, Any]] = []
        self.snapshots: list[dict[str, Any]] = []
        self.checkpoints: list[dict[str, Any]] = []
        self.sample: dict[str, np.ndarray] = {}
        self.last_progress: dict[str, Any] = {}
        self.keep_checkpoints = False
        self.warnings: list[str] = []
        self.phases: list[str | None] = []
        self.weights: np.ndarray | None = None
        self.selected_epochs: list[int] = []  # each epoch whose selected checkpoint was written

    def save_weights(self, weights: np.ndarray) -> None:
        self.weights = np.asarray(weights, dtype=np.float32)

    def warn(self, message: str) -> None:
        self.warnings.append(message)

    def phase(self, text: str | None) -> None:
        self.phases.append(text)

    def progress(self, **kw: Any) -> None:
        self.last_progress = kw

    def log_steps(self, rows: list[dict[str, Any]]) -> None:
        self.steps.extend(rows)

    def log_epoch(self, epoch: int, step: int, metrics: dict[str, Any], extra: dict[str, Any]) -> None:
        self.epochs.append({"epoch": epoch, "step": step, **metrics, "extra": extra})

    def save_checkpoint(self, state: dict[str, Any]) -> None:
        if self.run_dir is not None:
            checkpoint.write(state, self.run_dir)
        if self.keep_checkpoints:
            self.checkpoints.append(state)

    def save_selected(self, state: dict[str, Any]) -> None:
        if self.run_dir is not None:
            checkpoint.write_selected(state, self.run_dir)
        self.selected_epochs.append(int(state["epoch"]))

    def save_backbone(self, backbone: Any) -> None:
        if self.run_dir is not None:
            from tl_core.backbones import save_backbone

            save_backbone(backbone, Path(self.run_dir))

    def save_snapshot_sample(self, **arrays: np.ndarray) -> None:
        self.sample = arrays

    def snapshot_labels(self) -> tuple[np.ndarray, np.ndarray] | None:
        return (self.sample["labels"], self.sample["domains"]) if self.sample else None

    def save_snapshot(self, idx: int, step: int, epoch: int, features: np.ndarray, metrics: dict[str, Any]) -> None:
        self.snapshots.append({"idx": idx, "step": step, "epoch": epoch, "features": features, **metrics})
