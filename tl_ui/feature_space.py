"""The feature-space view of the Monitor: where source and target images land in the
backbone's feature space, projected to 2-D off the training thread (see
tl_core.jobs.SnapshotProjector), how that picture moves over training, the domain-distance
metrics per snapshot, and per-class results of a chosen epoch. Reads only the store.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from tl_core.embedding import METRIC_HELP
from tl_core.figures import MAX_FRAMES as MAX_FRAMES  # noqa: F401 - read by the pages' tests
from tl_core.figures import SNAPSHOT_CURVES as _CURVES
from tl_core.figures import sample_index as _sample_index  # noqa: F401 - read by present_view
from tl_core.store import RunRecord
from tl_ui import charts, keys, live_chart, resources, runinfo, theme
from tl_ui.widgets import plain

CHART_CONFIG = {"displaylogo": False}
GALLERY_SIZE = 12
LATEST = "latest"  #: the epoch choice that follows the newest logged epoch
_METRIC_LABELS = {"source_acc": ("Source accuracy on the sample", True),
                  "target_acc": ("Target accuracy on the sample", True),
                  "a_distance": ("Proxy A-distance (0 = domains alike, 2 = fully apart)", False),
                  "mmd": ("MMD²", False)}
def _projected(run_id: str) -> tuple[pd.DataFrame, dict[str, np.ndarray] | None, list[tuple[str, np.ndarray]]]:
    """Snapshots table, the fixed sample, and (label, coords) of every projected snapshot (this server's store)."""
    from tl_core.figures import projected

    return projected(resources.get_store(), run_id)


def _classes(rec: RunRecord) -> list[str] | None:
    from tl_core.figures import run_classes

    return run_classes(resources.get_store().epoch_metrics(rec.id))


def color_choice() -> str:
    """The colour toggle shared by every run's scatter."""
    choice = st.segmented_control("Colour the points by", ["domain", "class"], key=keys.MONITOR_FS_COLOR,
                                  default="domain", format_func=lambda v: {"domain": "Domain (marker = class)",
                                                                           "class": "Class (marker = domain)"}[v])
    return choice or "domain"


@st.cache_resource(show_spinner=False, max_entries=16)
def _feature_figures(run_id: str, version: tuple[int, ...], color_by: str, projection: str,
                     classes: tuple[str, ...] | None) -> tuple[Any, ...] | None:
    """The animated scatter and the before/now pair of a run's projected snapshots.

    Cached per set of projected snapshots (``version``): the Monitor refreshes every two
    seconds, a new snapshot arrives about once an epoch, so most refreshes reuse the figures
    and pay only their JSON encoding. Returns (animation, before, now, latest label), or None
    before the first projected snapshot.
    """
    from tl_core.figures import feature_figures

    return feature_figures(resources.get_store(), run_id, color_by, projection, list(classes) if classes else None)


def render_feature_space(rec: RunRecord, color_by: str = "domain") -> None:
    """Animated scatter of every projected snapshot of a run, then "before" and "now" side by side."""
    if not rec.config.get("snapshot", {}).get("enabled", True):
        st.caption("Feature snapshots are off for this run.")
        return
    snaps = resources.get_store().list_snapshots(rec.id)
    version = tuple(int(i) for i in snaps.loc[snaps["projected"], "idx"]) if not snaps.empty else ()
    projection = str(rec.config.get("snapshot", {}).get("projection", "umap")).upper()
    classes = _classes(rec)
    figs = _feature_figures(rec.id, version, color_by, projection, tuple(classes) if classes else None) \
        if version else None
    if figs is None:
        st.caption("Waiting for the first projected feature snapshot…" if rec.active or not snaps.empty
                   else "This run has no projected feature snapshot.")
        return
    anim, before, now, latest = figs
    live_chart.live_chart(anim, f"monitor.features.{rec.id}", CHART_CONFIG)  # a new snapshot: the animation in place
    waiting = len(snaps) - len(version)
    proj = snaps[snaps["projected"]]
    row = proj.iloc[-1]
    parts = []
    for name, (label, pct) in _METRIC_LABELS.items():
        v = row.get(name)
        if isinstance(v, (int, float)) and math.isfinite(v):
            parts.append(f"{label}: {100 * v:.1f} %" if pct else f"{label}: {v:.3g}")
    if parts:
        st.caption(f"Latest snapshot ({latest}): " + " · ".join(parts))
    if "target_acc" not in row or not isinstance(row.get("target_acc"), (int, float)) or \
            not math.isfinite(row.get("target_acc")):
        sample = resources.get_store().snapshot_sample(rec.id)
        if sample is not None and (np.asarray(sample["labels"])[np.asarray(sample["domains"]) == 1] < 0).all():
            st.caption("The target has no labels: its points carry no class marks (open circles), and "
                       f"{runinfo.NO_TARGET_LABELS}.")
    if waiting > 0:
        st.caption(f"{waiting} newer snapshot{'s' if waiting > 1 else ''} waiting to be projected "
                   "(the projector runs at low priority and catches up when training leaves it time).")
    if before is not None:
        pair = lazy_expander("Before and now, side by side", keys.MONITOR_FS_PAIR_PREFIX + rec.id)
        if pair.open:
            with pair:
                left, right = st.columns(2)
                for col, fig, tag in ((left, before, "before"), (right, now, "now")):
                    with col:
                        st.plotly_chart(fig, key=f"monitor.features.{tag}.{rec.id}", config=CHART_CONFIG)


def lazy_expander(label: str, key: str) -> Any:
    """A closed-by-default section whose content is drawn only while it is open (``.open``).

    On the Monitor every new epoch or snapshot redraws what it changes; a chart nobody opened costs
    the server's encoding and the browser's drawing on the cores that train (issue 18,
    docs/BENCHMARK_HISTORY.md section 4). The open state is the session's: a section stays open
    across refreshes."""
    return st.expander(label, key=key, on_change="rerun")


def render_snapshot_metrics(recs: list[RunRecord]) -> None:
    """A-distance, MMD and target accuracy per snapshot, the selected runs overlaid."""
    store = resources.get_store()
    styles = theme.run_styles(recs)
    runs = [(runinfo.run_title(r), store.list_snapshots(r.id), *styles[r.id]) for r in recs]
    cols = st.columns(len(_CURVES))
    for col, (metric, title, y_title, scale, y_range) in zip(cols, _CURVES):
        with col:
            fig = charts.snapshot_metric_figure(runs, metric, title, y_title, scale=scale, y_range=y_range,
                                                revision=f"snapshot-{metric}")
            st.plotly_chart(fig, key=f"monitor.snapshot_metric.{metric}", config=CHART_CONFIG)
            st.caption(METRIC_HELP[metric])


@st.cache_resource(show_spinner=False, max_entries=8)
def _target_test_set(name: str, path: str | None, data_root: str | None, max_samples: int | None,
                     seed: int) -> Any:
    """The run's target test split, as the trainer loaded it (indices of 'misclassified' point into it)."""
    from tl_core import data

    return data.load_split(name, "test", path=path, data_root=data_root, allow_download=False,
                           max_samples=max_samples, seed=seed)


@st.cache_data(show_spinner=False, max_entries=64)
def _thumbnails(name: str, path: str | None, data_root: str | None, max_samples: int | None, seed: int,
                indices: tuple[int, ...]) -> list[np.ndarray]:
    from tl_core import data

    imgs = _target_test_set(name, path, data_root, max_samples, seed)
    return [data.thumbnail(imgs, i, size=64) for i in indices if 0 <= i < len(imgs.labels)]


def _gallery(rec: RunRecord, misclassified: list[list[int]], classes: list[str]) -> None:
    from tl_core import data
    from tl_core.data.folder import dashboard_data_root

    picks = [(int(i), int(p)) for i, p in misclassified[:GALLERY_SIZE]]
    if not picks:
        st.caption("No misclassified target test images at this epoch.")
        return
    d = rec.config.get("data", {})
    data_root = d.get("data_root")
    if str(d.get("target", "")).strip().lower() == "folder":
        # Image folders are shown only from the dashboard's data folder, whatever the run's config says
        # (a command-line run may have read a folder anywhere).
        data_root = str(dashboard_data_root())
    try:
        imgs = _target_test_set(d.get("target", ""), d.get("target_path"), data_root, d.get("max_test"),
                                int(rec.config.get("seed", 0)))
        thumbs = _thumbnails(d.get("target", ""), d.get("target_path"), data_root, d.get("max_test"),
                             int(rec.config.get("seed", 0)), tuple(i for i, _ in picks))
    except (data.DataError, OSError) as exc:
        st.caption(f"Cannot show the misclassified images: {plain(exc)}")
        return
    if len(thumbs) != len(picks):
        st.caption("The target images changed since this run; cannot show the misclassified ones.")
        return

    def name(c: int) -> str:
        return classes[c] if 0 <= c < len(classes) else str(c)

    captions = [plain(f"{name(int(imgs.labels[i]))} → {name(p)}") for i, p in picks]  # captions are Markdown
    st.image(thumbs, caption=captions, width=72)


def render_epoch_details(recs: list[RunRecord]) -> None:
    """Target confusion matrix, per-class accuracy and misclassified images of a chosen epoch."""
    store = resources.get_store()
    with_epochs = [(r, store.epoch_metrics(r.id)) for r in recs]
    with_epochs = [(r, e) for r, e in with_epochs if not e.empty and "extra" in e
                   and any(isinstance(x, dict) and x.get("confusion") for x in e["extra"])]
    if not with_epochs:
        unlabelled = any(runinfo.target_unlabelled(r, store.epoch_metrics(r.id)) for r in recs)
        st.caption(f"Per-class results need target labels: {runinfo.NO_TARGET_LABELS}." if unlabelled
                   else "Per-class results appear after the first epoch.")
        return
    by_id = {r.id: (r, e) for r, e in with_epochs}
    if len(with_epochs) > 1:
        if st.session_state.get(keys.MONITOR_FS_RUN) not in by_id:
            st.session_state[keys.MONITOR_FS_RUN] = with_epochs[0][0].id
        run_id = st.selectbox("Run", list(by_id), key=keys.MONITOR_FS_RUN,
                              format_func=lambda i: runinfo.run_title(by_id[i][0]))
    else:
        run_id = with_epochs[0][0].id
    rec, epochs = by_id[run_id]
    epochs = epochs[[isinstance(x, dict) and bool(x.get("confusion")) for x in epochs["extra"]]]
    options = [int(e) for e in epochs["epoch"]]
    if len(options) > 1:
        # "latest" is a choice of its own (and the default): it follows new epochs as they are
        # logged, where a remembered epoch number would stay at the epoch first shown.
        # The browser resets a slider whose options change to its first option (seen in Chromium: "epoch 1"
        # at epoch 40), so the slider is a new widget for each newest epoch (keys.monitor_fs_epoch_widget)
        # that starts at the choice kept under keys.MONITOR_FS_EPOCH.
        choices: list[Any] = [*options, LATEST]
        kept = st.session_state.get(keys.MONITOR_FS_EPOCH, LATEST)
        picked = st.select_slider("Epoch", choices, value=kept if kept in choices else LATEST,
                                  key=keys.monitor_fs_epoch_widget(options[-1]),
                                  format_func=lambda e: f"latest (epoch {options[-1]})" if e == LATEST
                                  else f"epoch {e}")
        st.session_state[keys.MONITOR_FS_EPOCH] = picked
        epoch = options[-1] if picked == LATEST else int(picked)
    else:
        epoch = options[0]
    extra = epochs[epochs["epoch"] == epoch]["extra"].iloc[-1]
    classes = [str(c) for c in extra.get("classes") or range(len(extra["confusion"]))]
    left, right = st.columns(2)
    with left:
        st.plotly_chart(charts.confusion_figure(extra["confusion"], classes,
                                                f"Target confusion matrix, epoch {epoch}", f"confusion-{rec.id}"),
                        key="monitor.confusion", config=CHART_CONFIG)
    with right:
        st.plotly_chart(charts.per_class_figure(extra.get("per_class") or [], classes,
                                                f"Target accuracy per class (%), epoch {epoch}",
                                                f"per-class-{rec.id}"),
                        key="monitor.per_class", config=CHART_CONFIG)
    from tl_ui.report_view import render_classification_report

    render_classification_report(extra["confusion"], classes, epoch)
    st.markdown(f"**Misclassified target test images, epoch {epoch}** (true → predicted)")
    _gallery(rec, extra.get("misclassified") or [], classes)


def render_feature_section(recs: list[RunRecord]) -> None:
    """The whole feature-space section of the Monitor for the selected runs: the animated scatter of each
    run, then, each in a section drawn only while the user has it open, the before/now pair, the domain
    distance curves and the per-class results."""
    st.subheader("Feature space")
    st.caption("Each dot is an image's backbone features, projected to 2-D: blue source, orange target. "
               "When adaptation works, the two colours mix while the classes stay apart. "
               "Press ▶ under a scatter or drag its slider to replay training.")
    color_by = color_choice()
    cols = st.columns(min(len(recs), 2))
    for i, rec in enumerate(recs):
        with cols[i % len(cols)]:
            st.markdown(f"**{plain(runinfo.run_title(rec))}**")
            render_feature_space(rec, color_by)
    store = resources.get_store()
    if any(not store.list_snapshots(r.id).empty for r in recs):
        distance = lazy_expander("Domain distance over training", keys.MONITOR_DISTANCE_OPEN)
        if distance.open:
            with distance:
                render_snapshot_metrics(recs)
    details = lazy_expander("Per-class results on the target test set", keys.MONITOR_DETAILS_OPEN)
    if details.open:
        with details:
            render_epoch_details(recs)
