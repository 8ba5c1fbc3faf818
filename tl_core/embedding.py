"""Feature snapshots in two dimensions, and how far apart the two domains are.

Pure functions on numpy arrays; no torch, no streamlit. Pages draw what these return.

Projection (:func:`project`):
    Features are *centred and divided by one global scale* (the RMS distance to the
    centroid) before UMAP or PCA. We chose this over per-feature z-scoring because it keeps
    the Euclidean geometry the linear head sees, does not blow up near-dead ReLU features
    into unit-variance noise, and still removes the drift of the overall feature scale
    during training. UMAP uses ``n_neighbors=15, min_dist=0.1`` and ``random_state=seed``:
    a seeded UMAP runs single-threaded, which makes it deterministic and leaves the other
    cores to the training thread, and it is fast enough: for 1,000 points about 0.9 s for
    a first picture and 0.4 s for a later one on two cores (``bench/bench_projection.py``).
    Below 4,096 points we hand UMAP a distance matrix computed with BLAS, because
    umap-learn 0.5 fills it by calling its metric from Python once per pair, which was
    two thirds of the time; the neighbours are the same.

Alignment across snapshots:
    A trainer snapshots the same fixed sample before training and every epoch; the
    dashboard slides over the snapshots, so consecutive pictures must not rotate or flip.
    With ``previous`` given, UMAP starts from the previous picture (``init=``) and runs
    200 epochs at learning rate 0.25 instead of 500 at 1.0, so it refines the picture
    rather than redrawing it. UMAP min-max rescales any init per axis, so it gets the
    previous picture turned to the angle where its x and y ranges are equal: the rescaling
    is then uniform and keeps the shape. Then, for UMAP and PCA alike, the result is
    mapped onto ``previous`` by a Procrustes similarity (rotation or reflection, uniform
    scale, translation; :func:`align_to`). A series keeps the frame of its first picture.
    UMAP is stochastic: re-projecting unchanged features moves points by about 0.1-0.3 of
    the picture's radius (mostly within their cluster); PCA moves them by ~0.

Domain distance (:func:`domain_metrics`):
    - proxy A-distance (Ben-David et al., "Analysis of representations for domain
      adaptation", NeurIPS 2006; Ganin et al., "Domain-adversarial training of neural
      networks", JMLR 2016): ``2 (1 - 2 err)`` of a linear domain classifier, 5-fold
      stratified cross-validation, balanced error.
    - squared MMD with a Gaussian kernel (Gretton et al., "A kernel two-sample test",
      JMLR 2012), biased V-statistic, median-heuristic bandwidth.

JIT cost:
    umap-learn compiles its numba kernels on first use (10-15 s on two cores) and, in the
    installed version, does not cache most of them. Importing umap through this module
    turns numba's on-disk cache on for umap's kernels and points ``NUMBA_CACHE_DIR`` (if
    unset) at ``$XDG_CACHE_HOME/transfer-lab/numba`` (``~/.cache/...``). That is a
    machine-wide cache on purpose, not under ``TL_HOME``: tests and scratch run stores
    point ``TL_HOME`` at temporary folders and would throw the compiled code away. After
    the first process, a fresh process pays about 2 s (import + cache load) instead of
    ~25 s. :func:`warm_up` fills the cache ahead of time. umap is imported lazily, so
    ``import tl_core.embedding`` stays cheap.

Threads: nothing here calls streamlit, and nothing may. UMAP fits are serialised by a
module lock (two concurrent fits on a small CPU would only slow each other down).
:func:`project`, :func:`proxy_a_distance` and :func:`mmd_rbf` run with single-threaded
BLAS (threadpoolctl): they run beside training, and on a busy CPU multi-threaded OpenBLAS
spin-waits; we measured a 1,000-point PCA at 2.6 s with two BLAS threads against 0.015 s
with one, on two cores loaded by other work. The limit is process-wide while any of
these functions runs (torch's own thread pools are not affected).
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import wraps
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

import numpy as np

log = logging.getLogger(__name__)

__all__ = [
    "METRIC_HELP",
    "METHODS",
    "align_to",
    "domain_metrics",
    "mmd_rbf",
    "project",
    "project_series",
    "proxy_a_distance",
    "stratified_sample",
    "warm_up",
]

METHODS = ("umap", "pca")
UMAP_NEIGHBORS = 15
UMAP_MIN_DIST = 0.1
UMAP_EPOCHS_FROM_PREVIOUS = 200
"""Epochs of a UMAP fit that starts from the previous picture (a fresh fit of < 10,000
points uses UMAP's default 500); the layout is already close, and it saves a third of the time."""
UMAP_LEARNING_RATE_FROM_PREVIOUS = 0.25
"""UMAP's default is 1.0. Started from the previous picture, a gentler step halves how far
points wander when the features have not changed (0.41 -> 0.21 of the picture's radius on
clustered test data) and moves them less under drift, with the same trustworthiness."""
UMAP_EXACT_LIMIT = 4096
"""Below this many points UMAP uses exact neighbours (from a distance matrix we compute)."""
MIN_POINTS_FOR_UMAP = 10
"""Below this many points UMAP has no neighbourhood to speak of; :func:`project` uses PCA."""
MMD_MAX_POINTS = 1000
A_DISTANCE_MAX_POINTS = 2000
A_DISTANCE_C = 1e-3
"""Inverse L2 strength of the A-distance's logistic regression (on standardised features).
A strong penalty keeps the probe simple: as C -> 0 its weights turn towards the line between
the two domains' means, so it asks "are the domains apart along the way they differ on
average?" rather than "is there any direction at all that splits 1,000 points in 100-d?".
With the default C=1 the probe finds such a direction in almost every lenet snapshot and the
curve stays near 1.6 for source-only and DANN alike (MNIST -> MNIST-M demo, 3 seeds: 1.59 vs
1.57 at the end); with C=1e-3 DANN ends at 1.28 +- 0.04 and source-only at 1.57 +- 0.02
(``python -m bench.feature_space``)."""

METRIC_HELP: dict[str, str] = {
    "a_distance": (
        "Proxy A-distance: how well a simple linear classifier (strongly regularised, so it "
        "looks mostly along the line between the domains' means) tells source features from "
        "target features, from 0 (indistinguishable, the domains overlap) to 2 (perfectly "
        "separable). Domain adaptation should push it down."
    ),
    "mmd": (
        "Maximum mean discrepancy: a kernel measure of the gap between the source and target "
        "feature distributions; 0 means the same distribution, larger means further apart. "
        "Compare it between snapshots of one run, not across backbones."
    ),
    "target_acc": (
        "Target accuracy: the share of held-out target-domain images the model labels "
        "correctly, the number transfer learning is trying to raise."
    ),
}

# --------------------------------------------------------------------------- numba cache


def _default_numba_cache_dir() -> str:
    try:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser()
    except RuntimeError:  # no home directory to be found
        base = Path(tempfile.gettempdir())
    return str(base / "transfer-lab" / "numba")


# Must happen before numba is first imported: numba reads it once, at import.
os.environ.setdefault("NUMBA_CACHE_DIR", _default_numba_cache_dir())

_UMAP_LOCK = threading.RLock()  # guards the lazy import and every UMAP fit
_umap: ModuleType | None = None


def _writable_cache_dir() -> str | None:
    """``NUMBA_CACHE_DIR`` if it can be created and written, else a per-user temp folder.

    None if neither can be written: umap then compiles in every process, as it would anyway.
    """
    uid = os.getuid() if hasattr(os, "getuid") else 0
    for candidate in (Path(os.environ["NUMBA_CACHE_DIR"]).expanduser(),
                      Path(tempfile.gettempdir()) / f"transfer-lab-numba-{uid}"):
        try:
            candidate.mkdir(parents=True, exist_ok=True)
        except OSError:
            continue
        if os.access(candidate, os.W_OK):
            if str(candidate) != os.environ["NUMBA_CACHE_DIR"]:
                log.warning("numba cache folder %s is not writable; using %s", os.environ["NUMBA_CACHE_DIR"], candidate)
            return str(candidate)
    log.warning("no writable folder for numba's cache; umap will compile its kernels in every process")
    return None


def _enable_umap_jit_cache(umap: ModuleType) -> int:
    """Turn numba's on-disk cache on for umap's module-level kernels; returns how many.

    umap-learn compiles most kernels without ``cache=True``, so every process would pay the
    JIT again. ``Dispatcher.enable_caching()`` is what ``cache=True`` does at decoration
    time; it is safe as long as nothing has been compiled yet. numba names a cache file
    after the Python function, so two dispatchers around one function (umap's serial and
    parallel layout epoch) would read each other's code: of such pairs only the serial one
    (the one a seeded UMAP uses) is cached.
    """
    import importlib

    from numba.core.caching import NullCache
    from numba.core.registry import CPUDispatcher

    by_func: dict[int, list[tuple[str, Any]]] = {}
    for name in ("umap.umap_", "umap.layouts", "umap.utils", "umap.spectral", "umap.distances", "umap.sparse"):
        try:
            mod = importlib.import_module(name)
        except ImportError:  # pragma: no cover - layout differs in another umap version
            continue
        for attr, obj in vars(mod).items():
            if isinstance(obj, CPUDispatcher) and obj.py_func.__module__.startswith("umap"):
                group = by_func.setdefault(id(obj.py_func), [])
                if all(other is not obj for _, other in group):
                    group.append((attr, obj))
    enabled = 0
    for group in by_func.values():
        if len(group) > 1:
            group = [(attr, obj) for attr, obj in group if not obj.targetoptions.get("parallel")][:1]
        for _, obj in group:
            if isinstance(obj._cache, NullCache) and not obj.overloads:
                try:
                    obj.enable_caching()
                    enabled += 1
                except Exception:  # noqa: BLE001 - a kernel that cannot be cached just compiles
                    log.debug("cannot cache %s", obj.py_func, exc_info=True)
    return enabled


def _load_umap() -> ModuleType:
    """Import umap once (slow: numba), with the JIT cache on."""
    global _umap
    with _UMAP_LOCK:
        if _umap is None:
            cache_dir = _writable_cache_dir()
            if cache_dir is not None:
                os.environ["NUMBA_CACHE_DIR"] = cache_dir
            import numba

            if cache_dir is not None:
                numba.config.CACHE_DIR = cache_dir  # in case numba was imported before us
            import umap

            if cache_dir is not None:
                _enable_umap_jit_cache(umap)
            _umap = umap
        return _umap


def warm_up(n: int = 60, seed: int = 0) -> float:
    """Import umap and run a tiny fit so the JIT work is done (and cached on disk).

    Call it from a background thread at start-up; the first snapshot is then projected at
    full speed. Returns the seconds it took (about 25 s the first time on a machine, about
    2 s in later processes, ~0 when already warm in this process).
    """
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    x = (rng.normal(size=(3, 16))[rng.integers(0, 3, n)] + 0.3 * rng.normal(size=(n, 16))).astype(np.float32)
    first = project(x, "umap", seed=seed)
    project(x, "umap", previous=first, seed=seed)  # the init= path as well
    return time.perf_counter() - t0


# --------------------------------------------------------------------------- BLAS threads

_BLAS_LOCK = threading.Lock()
_blas_users = 0
_blas_limiter: Any = None
_F = TypeVar("_F", bound=Callable[..., Any])


@contextmanager
def _single_threaded_blas() -> Iterator[None]:
    """BLAS limited to one thread while any caller is inside (re-entrant across threads)."""
    global _blas_users, _blas_limiter
    with _BLAS_LOCK:
        if _blas_users == 0:
            try:
                from threadpoolctl import threadpool_limits

                _blas_limiter = threadpool_limits(limits=1, user_api="blas")
            except Exception:  # noqa: BLE001 - only a speed measure; never fail a projection over it
                _blas_limiter = None
        _blas_users += 1
    try:
        yield
    finally:
        with _BLAS_LOCK:
            _blas_users -= 1
            if _blas_users == 0 and _blas_limiter is not None:
                _blas_limiter.restore_original_limits()
                _blas_limiter = None


def _blas1(fn: _F) -> _F:
    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with _single_threaded_blas():
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


# --------------------------------------------------------------------------- sampling


def stratified_sample(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Indices of a sample of ``n`` items with classes as equal in size as possible.

    Every class gets ``n // k`` items; a class with fewer items gives all it has and the
    rest is shared among the others; leftover single items go to classes drawn at random.
    Deterministic for a given ``seed``.

    Args:
        labels: class label of every item, any sortable dtype.
        n: sample size; ``n >= len(labels)`` returns every index.
        seed: random seed.

    Returns:
        Sorted int64 indices into ``labels``.

    Shape:
        labels (N,) -> (min(n, N),)
    """
    labels = np.asarray(labels).reshape(-1)
    if n >= len(labels):
        return np.arange(len(labels), dtype=np.int64)
    if n <= 0:
        return np.zeros(0, dtype=np.int64)
    rng = np.random.default_rng(seed)
    _, inverse = np.unique(labels, return_inverse=True)
    counts = np.bincount(inverse)
    take = np.zeros_like(counts)
    remaining = n
    while remaining > 0:  # water-filling: ends because n < len(labels)
        open_classes = np.flatnonzero(take < counts)
        share = remaining // len(open_classes)
        if share == 0:
            take[rng.choice(open_classes, remaining, replace=False)] += 1
            break
        add = np.minimum(share, counts[open_classes] - take[open_classes])
        take[open_classes] += add
        remaining -= int(add.sum())
    chosen = [rng.choice(np.flatnonzero(inverse == c), take[c], replace=False) for c in range(len(counts)) if take[c]]
    return np.sort(np.concatenate(chosen)).astype(np.int64)


# --------------------------------------------------------------------------- projection


def _as_features(features: np.ndarray) -> np.ndarray:
    x = np.asarray(features)
    if x.ndim != 2:
        raise ValueError(f"features must be a 2-D array (points, dims), got shape {x.shape}.")
    x = x.astype(np.float64, copy=False)
    if not np.isfinite(x).all():
        raise ValueError("features contain NaN or infinite values (did the run diverge?); "
                         "there is nothing meaningful to project.")
    return x


def _standardise(x: np.ndarray) -> np.ndarray:
    """Centre and divide by one global scale (RMS distance to the centroid)."""
    x = x - x.mean(axis=0)
    scale = float(np.sqrt((x * x).sum(axis=1).mean())) if len(x) else 0.0
    return x / scale if scale > 0 else x


def _check_previous(previous: np.ndarray | None, n: int) -> np.ndarray | None:
    if previous is None:
        return None
    prev = np.asarray(previous, dtype=np.float64)
    if prev.shape != (n, 2):
        raise ValueError(f"previous must have shape ({n}, 2) to match the features, got {prev.shape}.")
    if not np.isfinite(prev).all():
        raise ValueError("previous coordinates contain NaN or infinite values.")
    return prev


def _pca(x: np.ndarray, seed: int) -> np.ndarray:
    from sklearn.decomposition import PCA

    k = min(2, x.shape[0], x.shape[1])
    out = np.zeros((x.shape[0], 2))
    if k > 0 and x.shape[0] > 1:
        out[:, :k] = PCA(n_components=k, svd_solver="full", random_state=seed).fit_transform(x)
    return out


def _umap_init(previous: np.ndarray | None) -> np.ndarray | str:
    """The previous picture, turned so that its x and y ranges are equal, or "spectral".

    UMAP min-max rescales an init to [0, 10] on each axis separately, which would squash a
    non-square picture; a shape whose two ranges are equal is only scaled uniformly. Some
    angle in [0, 90) degrees always gives equal ranges (they swap over a quarter turn).
    """
    if previous is None:
        return "spectral"
    centred = previous - previous.mean(axis=0)
    angles = np.linspace(0.0, np.pi / 2, 360, endpoint=False)
    directions = np.stack([np.cos(angles), np.sin(angles)])  # (2, A): x axis at each angle
    along_x = centred @ directions
    along_y = centred @ np.stack([-directions[1], directions[0]])
    range_x = along_x.max(axis=0) - along_x.min(axis=0)
    range_y = along_y.max(axis=0) - along_y.min(axis=0)
    best = int(np.argmin(np.abs(range_x - range_y)))
    if min(range_x[best], range_y[best]) <= 1e-9 * max(1.0, float(range_x[best])):
        return "spectral"  # degenerate (a point): UMAP's per-axis rescale would divide by 0
    return np.stack([along_x[:, best], along_y[:, best]], axis=1).astype(np.float32)


def _umap_fit(x: np.ndarray, init: np.ndarray | str, seed: int) -> np.ndarray:
    umap = _load_umap()
    if x.shape[0] < UMAP_EXACT_LIMIT:
        # umap-learn 0.5 computes exact small-data distances by calling its numba metric
        # once per pair from Python (about 1 s per million pairs); BLAS does it in
        # milliseconds, and UMAP then finds the very same neighbours.
        from sklearn.metrics import pairwise_distances

        data, metric = pairwise_distances(x, metric="euclidean").astype(np.float32), "precomputed"
        warnings.filterwarnings("ignore", message="using precomputed metric", category=UserWarning)
    else:
        data, metric = x.astype(np.float32), "euclidean"  # approximate neighbours (NN-descent)
    reducer = umap.UMAP(
        n_neighbors=min(UMAP_NEIGHBORS, x.shape[0] - 1),
        min_dist=UMAP_MIN_DIST,
        n_components=2,
        metric=metric,
        init=init,
        n_epochs=None if isinstance(init, str) else UMAP_EPOCHS_FROM_PREVIOUS,
        learning_rate=1.0 if isinstance(init, str) else UMAP_LEARNING_RATE_FROM_PREVIOUS,
        random_state=seed,
        n_jobs=1,  # what random_state forces anyway; saying so avoids umap's warning
    )
    with _UMAP_LOCK:
        return np.asarray(reducer.fit_transform(data), dtype=np.float64)


@_blas1
def project(features: np.ndarray, method: str = "umap", previous: np.ndarray | None = None,
            seed: int = 0) -> np.ndarray:
    """2-D coordinates of feature vectors, aligned to the previous snapshot's picture.

    Args:
        features: one feature vector per point (any float dtype; float16 snapshots are fine).
        method: "umap" or "pca".
        previous: the coordinates this function returned for the previous snapshot of the
            *same* points, or None for the first snapshot. The result is Procrustes-aligned
            onto it (and UMAP starts from it), so points move smoothly between snapshots.
        seed: random seed; UMAP with a given seed is deterministic.

    Returns:
        float32 coordinates. Without ``previous`` they are centred on 0 with the method's
        own scale (UMAP: a box about 10-20 wide); with it, in ``previous``'s frame.

    Raises:
        ValueError: unknown method, wrong shapes, or non-finite features.

    Shape:
        features (N, D), previous (N, 2) -> (N, 2)
    """
    if method not in METHODS:
        raise ValueError(f"Unknown projection method {method!r}; choose one of {', '.join(METHODS)}.")
    x = _as_features(features)
    n = x.shape[0]
    prev = _check_previous(previous, n)
    if n == 0:
        return np.zeros((0, 2), dtype=np.float32)
    x = _standardise(x)
    if method == "umap" and n >= MIN_POINTS_FOR_UMAP:
        coords = _umap_fit(x, _umap_init(prev), seed)
    else:
        coords = _pca(x, seed)
    if prev is not None:
        coords = align_to(prev, coords)
    else:
        coords = coords - coords.mean(axis=0)
    return coords.astype(np.float32)


def align_to(reference: np.ndarray, coords: np.ndarray) -> np.ndarray:
    """Map ``coords`` onto ``reference`` by the best similarity transform (Procrustes).

    Finds the rotation or reflection ``R``, uniform scale ``s`` and shift ``t`` minimising
    ``||s * coords @ R + t - reference||`` (Frobenius) and returns ``s * coords @ R + t``.
    A rotated, scaled and shifted copy of ``reference`` comes back as ``reference``.

    Shape:
        reference (N, 2), coords (N, 2) -> (N, 2) float32
    """
    from scipy.linalg import orthogonal_procrustes

    ref = np.asarray(reference, dtype=np.float64)
    cur = np.asarray(coords, dtype=np.float64)
    if ref.shape != cur.shape or ref.ndim != 2:
        raise ValueError(f"reference and coords must have the same (N, d) shape, got {ref.shape} and {cur.shape}.")
    ref_mean, cur_mean = ref.mean(axis=0), cur.mean(axis=0)
    a, b = ref - ref_mean, cur - cur_mean
    norm_b = float((b * b).sum())
    if norm_b == 0 or float((a * a).sum()) == 0:
        return (b + ref_mean).astype(np.float32)  # nothing to rotate by: just move it over
    rotation, singular_sum = orthogonal_procrustes(b, a)
    return (singular_sum / norm_b * (b @ rotation) + ref_mean).astype(np.float32)


def project_series(features: Sequence[np.ndarray], method: str = "umap", seed: int = 0) -> list[np.ndarray]:
    """Project snapshots of the same points in order, each aligned to the one before.

    Shape:
        [(N, D)] * T -> [(N, 2)] * T
    """
    out: list[np.ndarray] = []
    for feats in features:
        out.append(project(feats, method, previous=out[-1] if out else None, seed=seed))
    return out


# --------------------------------------------------------------------------- domain distance


def _subsample(x: np.ndarray, k: int, seed: int) -> np.ndarray:
    if len(x) <= k:
        return x
    return x[np.sort(np.random.default_rng(seed).choice(len(x), k, replace=False))]


@_blas1
def proxy_a_distance(source_feats: np.ndarray, target_feats: np.ndarray, seed: int = 0) -> float:
    """Proxy A-distance ``2 (1 - 2 err)`` of a linear source-vs-target classifier.

    A logistic regression with a strong L2 penalty (:data:`A_DISTANCE_C`) on per-feature
    standardised inputs (scaler fitted inside each fold) is scored by 5-fold stratified
    cross-validation. ``err`` is the *balanced* error
    (mean of the two per-domain error rates), so chance is 0.5 even when the domains differ
    in size. The result is clipped to [0, 2]: about 2 when the domains are linearly
    separable, about 0 when they come from one distribution. At most 2,000 points per
    domain are used.

    Shape:
        source_feats (Ns, D), target_feats (Nt, D) -> scalar
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    xs = _subsample(_as_features(source_feats), A_DISTANCE_MAX_POINTS, seed)
    xt = _subsample(_as_features(target_feats), A_DISTANCE_MAX_POINTS, seed + 1)
    if xs.shape[1] != xt.shape[1]:
        raise ValueError(f"source and target features differ in width: {xs.shape[1]} vs {xt.shape[1]}.")
    folds = min(5, len(xs), len(xt))
    if folds < 2:
        raise ValueError("the proxy A-distance needs at least 2 points from each domain.")
    x = np.vstack([xs, xt])
    y = np.r_[np.zeros(len(xs), dtype=int), np.ones(len(xt), dtype=int)]
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=A_DISTANCE_C, class_weight="balanced", max_iter=2000))
    pred = cross_val_predict(clf, x, y, cv=StratifiedKFold(folds, shuffle=True, random_state=seed))
    err = 1.0 - balanced_accuracy_score(y, pred)
    return float(np.clip(2.0 * (1.0 - 2.0 * err), 0.0, 2.0))


def _sq_dists(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return np.maximum(d, 0.0)


@_blas1
def mmd_rbf(x: np.ndarray, y: np.ndarray, bandwidth: float | None = None, *,
            max_points: int = MMD_MAX_POINTS, seed: int = 0) -> float:
    """Squared maximum mean discrepancy with a Gaussian kernel (biased V-statistic).

    ``k(a, b) = exp(-||a - b||^2 / (2 bandwidth^2))``. With ``bandwidth=None`` it is the
    median pairwise distance of the pooled points (median heuristic). The biased estimator
    ``mean K_xx + mean K_yy - 2 mean K_xy`` is never negative and is exactly 0 (up to
    rounding) for identical sets, which the unbiased one is not. Each side is subsampled
    to ``max_points`` with the same seed, so identical sets still give 0.

    Shape:
        x (Nx, D), y (Ny, D) -> scalar
    """
    a = _subsample(_as_features(x), max_points, seed)
    b = _subsample(_as_features(y), max_points, seed)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"x and y differ in width: {a.shape[1]} vs {b.shape[1]}.")
    if len(a) == 0 or len(b) == 0:
        raise ValueError("MMD needs at least one point on each side.")
    z = np.vstack([a, b])
    d2 = _sq_dists(z, z)
    if bandwidth is None:
        off = d2[~np.eye(len(z), dtype=bool)]
        sigma2 = float(np.median(off)) if off.size else 0.0
        if sigma2 <= 0:
            sigma2 = float(off.mean()) if off.size and off.mean() > 0 else 1.0
    else:
        if bandwidth <= 0:
            raise ValueError(f"bandwidth must be positive, got {bandwidth}.")
        sigma2 = float(bandwidth) ** 2
    k = np.exp(-d2 / (2.0 * sigma2))
    w = np.r_[np.full(len(a), 1.0 / len(a)), np.full(len(b), -1.0 / len(b))]
    return float(max(w @ k @ w, 0.0))


def domain_metrics(feats: np.ndarray, domains: np.ndarray, seed: int = 0) -> dict[str, float]:
    """Proxy A-distance and squared MMD between the source and target rows of a snapshot.

    Args:
        feats: the snapshot's features.
        domains: 0 for a source row, 1 for a target row.
        seed: seed for the cross-validation folds and subsampling.

    Returns:
        ``{"a_distance": float, "mmd": float}``; see :data:`METRIC_HELP`.

    Shape:
        feats (N, D), domains (N,) -> dict
    """
    x = _as_features(feats)
    d = np.asarray(domains).reshape(-1)
    if d.shape[0] != x.shape[0]:
        raise ValueError(f"domains has {d.shape[0]} entries for {x.shape[0]} feature rows.")
    src, tgt = x[d == 0], x[d == 1]
    return {"a_distance": proxy_a_distance(src, tgt, seed=seed), "mmd": mmd_rbf(src, tgt, seed=seed)}
