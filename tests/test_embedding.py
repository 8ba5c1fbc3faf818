"""Embedding: stratified samples, aligned 2-D projections, domain-distance metrics, projector."""


import numpy as np
import pytest

from tl_core import embedding
from tl_core.embedding import (
    METRIC_HELP,
    align_to,
    domain_metrics,
    mmd_rbf,
    project,
    project_series,
    proxy_a_distance,
    stratified_sample,
)


def clustered(n: int = 200, d: int = 32, k: int = 4, seed: int = 0, spread: float = 4.0) -> np.ndarray:
    """``n`` points in ``k`` Gaussian clusters in ``d`` dimensions."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, d)) * spread
    return (centres[np.arange(n) % k] + rng.normal(size=(n, d))).astype(np.float32)


def rel_displacement(a: np.ndarray, b: np.ndarray) -> float:
    """Mean distance a point moved, relative to the spread of the picture."""
    return float(np.linalg.norm(a - b, axis=1).mean() / np.linalg.norm(a - a.mean(0), axis=1).mean())


# ----------------------------------------------------------------- stratified_sample

def test_stratified_sample_is_balanced_sorted_and_unique():
    labels = np.repeat(np.arange(10), [200, 150, 100, 90, 80, 70, 60, 50, 40, 3])
    idx = stratified_sample(labels, 500, seed=0)
    assert len(idx) == 500 and idx.dtype == np.int64
    assert np.all(np.diff(idx) > 0)
    per_class = np.bincount(labels[idx], minlength=10)
    counts = np.bincount(labels)
    small = per_class == counts  # classes too small for their share give all they have ...
    assert list(np.flatnonzero(small)) == [7, 8, 9]
    assert per_class[~small].max() - per_class[~small].min() <= 1  # ... the rest share equally
    assert per_class[~small].min() >= per_class[small].max()


def test_stratified_sample_is_deterministic_per_seed():
    labels = np.random.default_rng(0).integers(0, 7, 1000)
    assert np.array_equal(stratified_sample(labels, 100, 3), stratified_sample(labels, 100, 3))
    assert not np.array_equal(stratified_sample(labels, 100, 3), stratified_sample(labels, 100, 4))


def test_stratified_sample_small_and_large_n():
    labels = np.arange(12) % 3
    assert np.array_equal(stratified_sample(labels, 12, 0), np.arange(12))
    assert np.array_equal(stratified_sample(labels, 50, 0), np.arange(12))
    two = stratified_sample(labels, 2, 0)
    assert len(two) == 2 and len(set(labels[two])) == 2  # fewer items than classes: distinct classes
    assert len(stratified_sample(labels, 0, 0)) == 0


# ----------------------------------------------------------------- align_to

def test_align_to_recovers_a_rotated_scaled_shifted_copy():
    ref = np.random.default_rng(1).normal(size=(100, 2))
    theta = 1.1
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    moved = 3.7 * ref @ rot + np.array([5.0, -2.0])
    np.testing.assert_allclose(align_to(ref, moved), ref, atol=1e-5)
    flipped = ref * np.array([-1.0, 1.0]) * 0.2 - 1.0  # a reflection is undone too
    np.testing.assert_allclose(align_to(ref, flipped), ref, atol=1e-5)


def test_align_to_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="same"):
        align_to(np.zeros((5, 2)), np.zeros((4, 2)))


# ----------------------------------------------------------------- project

@pytest.mark.parametrize("method", ["pca", "umap"])
def test_project_shape_and_dtype(method):
    coords = project(clustered(200).astype(np.float16), method=method)
    assert coords.shape == (200, 2) and coords.dtype == np.float32
    assert np.isfinite(coords).all()
    np.testing.assert_allclose(coords.mean(0), 0.0, atol=1e-3)  # first picture is centred


@pytest.mark.parametrize("method", ["pca", "umap"])
def test_reprojecting_the_same_features_stays_put(method):
    feats = clustered(200, seed=2)
    first = project(feats, method=method)
    # Hand it a rotated, flipped copy as "previous": the result must land on that frame.
    frame = (first @ np.array([[0.0, 1.0], [1.0, 0.0]])) * 2.0 + 10.0
    again = project(feats, method=method, previous=frame)
    # UMAP is stochastic: points wander within their cluster (0.1-0.3 of the radius measured)
    assert rel_displacement(frame, again) < (0.01 if method == "pca" else 0.5)


def test_umap_is_deterministic_for_a_seed():
    feats = clustered(200, seed=3)
    np.testing.assert_array_equal(project(feats, "umap", seed=5), project(feats, "umap", seed=5))


def test_umap_keeps_clusters_apart():
    feats = clustered(200, k=4, seed=4)
    coords = project(feats, "umap")
    labels = np.arange(200) % 4
    centres = np.stack([coords[labels == c].mean(0) for c in range(4)])
    within = np.mean([np.linalg.norm(coords[labels == c] - centres[c], axis=1).mean() for c in range(4)])
    between = np.linalg.norm(centres[:, None] - centres[None], axis=2)[np.triu_indices(4, 1)].min()
    assert between > 2 * within


def test_project_series_moves_smoothly_under_small_drift():
    rng = np.random.default_rng(5)
    base = clustered(200, seed=5)
    series = [base + 0.05 * t * rng.normal(size=base.shape).astype(np.float32) for t in range(3)]
    coords = project_series(series, "umap")
    assert len(coords) == 3 and all(c.shape == (200, 2) for c in coords)
    assert rel_displacement(coords[0], coords[1]) < 0.6 and rel_displacement(coords[1], coords[2]) < 0.6


def test_project_rejects_bad_input():
    with pytest.raises(ValueError, match="method"):
        project(clustered(20), method="tsne")
    with pytest.raises(ValueError, match="NaN"):
        project(np.full((20, 4), np.nan))
    with pytest.raises(ValueError, match="previous"):
        project(clustered(20), method="pca", previous=np.zeros((19, 2)))


def test_project_tiny_inputs_fall_back_gracefully():
    assert project(np.zeros((0, 8)), "umap").shape == (0, 2)
    assert project(clustered(5, d=3), "umap").shape == (5, 2)  # too few for UMAP: PCA
    assert project(np.ones((1, 3)), "pca").shape == (1, 2)
    assert project(clustered(30, d=1), "pca").shape == (30, 2)


# ----------------------------------------------------------------- domain metrics

def test_a_distance_near_two_for_separable_domains():
    rng = np.random.default_rng(6)
    src = rng.normal(size=(300, 16))
    tgt = rng.normal(size=(300, 16)) + 4.0
    assert proxy_a_distance(src, tgt) > 1.9


def test_a_distance_near_zero_for_one_distribution():
    rng = np.random.default_rng(7)
    src, tgt = rng.normal(size=(500, 32)), rng.normal(size=(400, 32))
    assert proxy_a_distance(src, tgt) < 0.3


def test_mmd_zero_for_identical_sets_and_grows_with_shift():
    x = np.random.default_rng(8).normal(size=(1500, 16))  # > 1,000: subsampled, same rows both sides
    assert mmd_rbf(x, x.copy()) == pytest.approx(0.0, abs=1e-9)
    y = np.random.default_rng(9).normal(size=(300, 16))
    small, large = mmd_rbf(x, y + 0.5), mmd_rbf(x, y + 2.0)
    assert 0 < small < large
    assert mmd_rbf(x, y + 2.0, bandwidth=4.0) > 0


def test_domain_metrics_splits_rows_by_domain():
    feats = clustered(200, seed=10)
    domains = np.r_[np.zeros(100), np.ones(100)].astype(np.int8)
    shifted = feats + domains[:, None] * 10.0
    same, apart = domain_metrics(feats, domains), domain_metrics(shifted, domains)
    assert set(same) == {"a_distance", "mmd"} and all(isinstance(v, float) for v in same.values())
    assert apart["a_distance"] > same["a_distance"] and apart["mmd"] > same["mmd"]


def test_metric_help_explains_each_dashboard_metric():
    assert set(METRIC_HELP) >= {"a_distance", "mmd", "target_acc"}
    assert all(isinstance(v, str) and len(v) > 20 for v in METRIC_HELP.values())


def test_importing_embedding_does_not_import_umap_or_streamlit():
    import subprocess
    import sys

    code = ("import sys, tl_core.embedding; "
            "print(any(m in sys.modules for m in ('umap', 'numba', 'streamlit', 'torch')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    assert embedding.__name__ == "tl_core.embedding"


def test_blas_thread_limit_is_restored_after_projecting():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    before = [p["num_threads"] for p in threadpoolctl.threadpool_info()]
    project(clustered(50), "pca")
    mmd_rbf(clustered(20), clustered(20, seed=1))
    assert [p["num_threads"] for p in threadpoolctl.threadpool_info()] == before
