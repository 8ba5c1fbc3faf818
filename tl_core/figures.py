"""A run's figures read from the run store: the feature-space replay and before/now pair, the
per-snapshot domain distances, the class names. Shared by the Monitor (:mod:`tl_ui.feature_space`, which
caches them) and the HTML report (:mod:`tl_core.report`); the drawing itself is :mod:`tl_core.charts`.
No torch, no streamlit.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from tl_core import charts

#: Frames in the animated scatter at most (1,000 points each are sent to the browser on every
#: redraw): a long run's snapshots are thinned evenly, keeping the first and the latest.
MAX_FRAMES = 25

#: The per-snapshot curves: metric, title, y axis, scale, y range.
SNAPSHOT_CURVES = (
    ("a_distance", "Proxy A-distance per snapshot", "A-distance", 1.0, [0, 2.05]),
    ("mmd", "MMD² (Gaussian kernel) per snapshot", "MMD²", 1.0, None),
    ("target_acc", "Target accuracy on the sample (%)", "accuracy (%)", 100.0, [0, 101]),
)


def snapshot_label(epoch: float, step: int, duplicate: bool = False) -> str:
    """'before training', 'epoch 3', 'epoch 2.5' (a snapshot every N steps), with the step
    when labels would otherwise repeat."""
    base = "before training" if epoch == 0 and step == 0 else f"epoch {float(epoch):g}"
    return f"{base} (step {step})" if duplicate else base


def every_nth_frame(frames: list[Any], most: int = MAX_FRAMES) -> list[Any]:
    """At most ``most`` items of ``frames``, evenly spaced, always the first and the last."""
    if len(frames) <= most:
        return frames
    picks = sorted({round(i * (len(frames) - 1) / (most - 1)) for i in range(most)})
    return [frames[i] for i in picks]


def projected(store: Any, run_id: str) -> tuple[pd.DataFrame, dict[str, np.ndarray] | None,
                                                list[tuple[str, np.ndarray]]]:
    """Snapshots table, the fixed sample, and (label, coords) of every projected snapshot."""
    snaps = store.list_snapshots(run_id)
    sample = store.snapshot_sample(run_id)
    frames: list[tuple[str, np.ndarray]] = []
    if snaps.empty or sample is None:
        return snaps, sample, frames
    n = len(sample.get("domains", []))
    dup = snaps["epoch"].duplicated(keep=False)
    for (_, row), d in zip(snaps.iterrows(), dup):
        if not row["projected"]:
            continue
        coords = store.load_coords(run_id, int(row["idx"]))
        if coords is not None and len(coords) == n:
            frames.append((snapshot_label(float(row["epoch"]), int(row["step"]), bool(d)), coords))
    return snaps, sample, frames


def sample_index(sample: dict[str, np.ndarray]) -> np.ndarray:
    """Each point's index in its own held-out split (source or target), for the hover."""
    domains = np.asarray(sample["domains"])
    out = np.arange(len(domains))
    for value, key in ((0, "source_index"), (1, "target_index")):
        if key in sample and (domains == value).sum() == len(sample[key]):
            out[domains == value] = sample[key]
    return out


def run_classes(epochs: pd.DataFrame) -> list[str] | None:
    """Class names as the run's evaluation recorded them (its latest epoch that has them)."""
    for extra in reversed(list(epochs.get("extra", []))):
        if isinstance(extra, dict) and extra.get("classes"):
            return [str(c) for c in extra["classes"]]
    return None


def feature_figures(store: Any, run_id: str, color_by: str, projection: str, classes: list[str] | None,
                    ) -> tuple[Any, ...] | None:
    """The animated scatter and the before/now pair of a run's projected snapshots.

    Returns (animation, before, now, latest label), before/now None with a single snapshot, or None
    before the first projected snapshot.
    """
    _, sample, frames = projected(store, run_id)
    if not frames or sample is None:
        return None
    index = sample_index(sample)
    anim = charts.feature_animation(every_nth_frame(frames, MAX_FRAMES), sample["domains"], sample["labels"], classes,
                                    title=f"Source and target features ({projection}), {{frame}}",
                                    revision=f"features-{run_id}-{color_by}", color_by=color_by, index=index)
    pair: list[Any] = []
    if len(frames) >= 2:
        xr, yr = charts.coords_range([c for _, c in frames])
        for (label, coords), tag in ((frames[0], "before"), (frames[-1], "now")):
            title = "Before training" if tag == "before" and label == "before training" else \
                f"{'First' if tag == 'before' else 'Now'}: {label}"
            # two to a run's column, two runs to a row: about 200 px wide, so a smaller title that wraps
            pair.append(charts.feature_scatter(coords, sample["domains"], sample["labels"], classes,
                                               title=title, revision=f"features-{tag}-{run_id}", color_by=color_by,
                                               index=index, xrange=xr, yrange=yr, height=300, size=4,
                                               showlegend=False, title_chars=24, title_size=15))
    return (anim, *(pair or [None, None]), frames[-1][0])
