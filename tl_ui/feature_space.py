"""The feature-space view: where source and target images land in the backbone's feature
space, projected to 2-D off the training thread (see tl_core.jobs.SnapshotProjector).

Kept separate on purpose: a later issue extends it (a slider over snapshots, before/after
pictures, domain-distance curves). Reads only the store.
"""

from __future__ import annotations

import math

import streamlit as st

from tl_ui import charts, resources

_METRIC_LABELS = {"source_acc": ("Source accuracy on the sample", True),
                  "target_acc": ("Target accuracy on the sample", True),
                  "a_distance": ("Proxy A-distance (0 = domains alike, 2 = fully apart)", False),
                  "mmd": ("MMD²", False)}


def render_feature_space(run_id: str) -> None:
    """Show the latest projected feature snapshot of a run as a scatter coloured by domain."""
    store = resources.get_store()
    rec = store.get_run(run_id)
    if rec is None:
        return
    snaps = store.list_snapshots(run_id)
    if not rec.config.get("snapshot", {}).get("enabled", True):
        st.caption("Feature snapshots are off for this run.")
        return
    projected = snaps[snaps["projected"]] if not snaps.empty else snaps
    if projected.empty:
        st.caption("Waiting for the first projected feature snapshot…" if rec.active or not snaps.empty
                   else "This run has no projected feature snapshot.")
        return
    row = projected.iloc[-1]
    idx = int(row["idx"])
    coords = store.load_coords(run_id, idx)
    sample = store.snapshot_sample(run_id)
    if coords is None or sample is None or len(coords) != len(sample.get("domains", [])):
        st.caption("The feature snapshot is still being written…")
        return
    when = "before training" if int(row["epoch"]) == 0 else f"after epoch {int(row['epoch'])}"
    projection = str(rec.config.get("snapshot", {}).get("projection", "umap")).upper()
    fig = charts.feature_scatter(coords, sample["domains"], sample["labels"], None,
                                 title=f"Features of source and target images ({projection}, {when})",
                                 revision=f"features-{run_id}")
    st.plotly_chart(fig, key=f"monitor.features.{run_id}", config={"displaylogo": False})
    parts = []
    for name, (label, pct) in _METRIC_LABELS.items():
        v = row.get(name)
        if isinstance(v, (int, float)) and math.isfinite(v):
            parts.append(f"{label}: {100 * v:.1f} %" if pct else f"{label}: {v:.3g}")
    if parts:
        st.caption(" · ".join(parts))
