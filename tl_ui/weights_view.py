"""The Monitor's view of per-image training weights (re-weighting methods such as KMM and KLIEP).

A run whose method weights its labelled images before training keeps the weights in its folder
(``RunStore.load_weights``). This shows, per run: the histogram of the weights, the effective sample
size (Σw)²/Σw², and the most and the least weighted training images. Reads only the store and the
run's data set; never imports torch.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import streamlit as st

from tl_core.methods._reweight import effective_sample_size
from tl_core.store import RunRecord
from tl_ui import charts, resources, runinfo, theme
from tl_ui.widgets import plain

CHART_CONFIG = {"displaylogo": False}
#: Images in each row of most and least weighted images.
ROW = 10
BINS = 40


def extremes(weights: np.ndarray, k: int = ROW) -> tuple[list[int], list[int]]:
    """Indices of the ``k`` most weighted images (heaviest first) and the ``k`` least (lightest first)."""
    order = np.argsort(np.asarray(weights), kind="stable")
    k = min(k, len(order))
    return [int(i) for i in order[::-1][:k]], [int(i) for i in order[:k]]


def weight_histogram(weights: np.ndarray, title: str, revision: str) -> Any:
    """Histogram of the weights (counts on a log axis: a few heavy images beside thousands of light ones)."""
    w = np.asarray(weights, dtype=np.float64)
    counts, edges = np.histogram(w, bins=BINS)
    mids = (edges[:-1] + edges[1:]) / 2
    trace = {"type": "bar", "x": mids.tolist(), "y": counts.tolist(), "width": float(edges[1] - edges[0]),
             "marker": {"color": theme.SOURCE}, "name": "images",
             "customdata": np.stack([edges[:-1], edges[1:]], 1).tolist(),
             "hovertemplate": "weight %{customdata[0]:.3g}–%{customdata[1]:.3g}: %{y} images<extra></extra>"}
    layout = charts._layout(title, revision=revision, x_title="weight (1 = as in unweighted training)",
                            y_title="images (log scale)", hovermode="closest", showlegend=False)
    layout["yaxis"]["type"] = "log"
    layout["shapes"].append({"type": "line", "x0": 1, "x1": 1, "yref": "paper", "y0": 0, "y1": 1,
                             "line": {"color": theme.NEUTRAL, "dash": "dot", "width": 2}})
    return charts._figure([trace], layout)


@st.cache_resource(show_spinner=False, max_entries=4)
def _training_set(name: str, path: str | None, data_root: str | None, max_samples: int | None, seed: int) -> Any:
    """The run's labelled training split as the trainer loaded it (the weights are in its order)."""
    from tl_core import data

    return data.load_split(name, "train", path=path, data_root=data_root, allow_download=False,
                           max_samples=max_samples, seed=seed)


def _images(rec: RunRecord, indices: list[int]) -> list[np.ndarray] | str:
    """Thumbnails of the run's labelled training images at ``indices``, or why they cannot be shown."""
    from tl_core import data
    from tl_core.data.folder import dashboard_data_root

    d = rec.config.get("data", {})
    role = "target" if rec.config.get("method", {}).get("train_on") == "target" else "source"
    name = str(d.get(role, ""))
    data_root = d.get("data_root")
    if name.strip().lower() == "folder":
        data_root = str(dashboard_data_root())  # folders only from the dashboard's data folder
    try:
        imgs = _training_set(name, d.get(f"{role}_path"), data_root, d.get("max_train"), int(rec.config.get("seed", 0)))
        return [data.thumbnail(imgs, i, size=64) for i in indices]
    except (data.DataError, OSError, IndexError) as exc:
        return f"Cannot show the images: {exc}"


def render_run_weights(rec: RunRecord, weights: np.ndarray) -> None:
    """One run: histogram and effective sample size side by side, then the image rows."""
    w = np.asarray(weights, dtype=np.float64)
    n = len(w)
    ess = effective_sample_size(w)
    left, right = st.columns([3, 1.3])
    with left:
        st.plotly_chart(weight_histogram(w, f"Weights of the {n:,} training images", f"weights-{rec.id}"),
                        key=f"monitor.weights.{rec.id}", config=CHART_CONFIG)
    with right:
        st.metric("Effective sample size", f"{ess:,.0f} of {n:,}", help="(Σw)² / Σw²: how many images, equally "
                  "weighted, the weighted training set is worth. Plain training: all of them.")
        st.caption(f"{100 * ess / max(n, 1):.1f} % of the images · largest weight {w.max():.3g} · "
                   f"{100 * float((w < 0.1).mean()):.0f} % of the images weigh under 0.1")
    top, bottom = extremes(w)
    for title, idx in (("Most weighted training images", top), ("Least weighted training images", bottom)):
        st.markdown(f"**{title}** (weight under each)")
        thumbs = _images(rec, idx)
        if isinstance(thumbs, str):
            st.caption(plain(thumbs))
            return
        st.image(thumbs, caption=[f"{w[i]:.3g}" for i in idx], width=64)


def render_weights_section(recs: list[RunRecord]) -> None:
    """The Monitor's section for the selected runs that weight their training images (nothing otherwise)."""
    store = resources.get_store()
    weighted = [(r, w) for r in recs if (w := store.load_weights(r.id)) is not None and len(w)]
    if not weighted:
        return
    st.subheader("Training image weights")
    st.caption("Before training, the method weighted each labelled training image by how much more likely "
               "such an image is in the target than in the source (p_target / p_source); the loss counts "
               "each image that many times. Target-like images weigh more; a low effective sample size "
               "means the loss rests on few images.")
    for rec, w in weighted:
        st.markdown(f"**{plain(runinfo.run_title(rec))}**")
        render_run_weights(rec, w)
