"""Fewer points for a long line, keeping what the eye looks for: spikes and the ends.

The Monitor redraws its step curves while a run trains; a long run logs tens of thousands of
steps, and every point is JSON-encoded on the server and drawn as SVG in the browser on each
redraw (on a laptop, on the same cores that train). A line of a few hundred pixels cannot show
more than about a thousand points anyway. Taking every k-th point would hide a loss spike between
two kept points; keeping the smallest and the largest value of each bucket does not.
"""

from __future__ import annotations

import numpy as np

MAX_POINTS = 1000  #: points per line at most, on the Monitor's and the report's step charts


def minmax_indices(y: np.ndarray, max_points: int = MAX_POINTS) -> np.ndarray:
    """Indices (increasing) of at most ``max_points`` points of ``y`` that keep its shape.

    The first and the last point are always kept; the points between them are cut into equal
    buckets and each bucket keeps the index of its minimum and of its maximum (in their order
    along the line, one index when they coincide). NaN values are never chosen as a bucket's
    extreme unless the whole bucket is NaN.

    Args:
        y: the values along the line, in drawing order.
        max_points: the most indices returned (at least 4: both ends and one bucket's min and max).

    Returns:
        All indices when ``len(y) <= max_points``, else at most ``max_points`` of them.
    """
    y = np.asarray(y, dtype=float).ravel()
    n = len(y)
    if n <= max_points:
        return np.arange(n)
    if max_points < 4:
        raise ValueError(f"max_points must be at least 4 (both ends and a bucket's min and max), got {max_points}")
    inner = y[1:-1]
    buckets = (max_points - 2) // 2
    edges = np.linspace(0, len(inner), buckets + 1).astype(int)
    filled = np.where(np.isnan(inner), 0.0, inner)
    lo_fill = np.where(np.isnan(inner), np.inf, inner)
    hi_fill = np.where(np.isnan(inner), -np.inf, inner)
    picks = [np.array([0])]
    for a, b in zip(edges[:-1], edges[1:]):
        if b <= a:
            continue
        i_lo = a + int(np.argmin(lo_fill[a:b]))
        i_hi = a + int(np.argmax(hi_fill[a:b]))
        if not np.isfinite(filled[a:b]).any():  # an all-NaN bucket: keep its first point (a gap)
            i_lo = i_hi = a
        picks.append(np.unique([i_lo, i_hi]) + 1)
    picks.append(np.array([n - 1]))
    return np.concatenate(picks)


def minmax_downsample(x: np.ndarray, y: np.ndarray, max_points: int = MAX_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """``x`` and ``y`` thinned to at most ``max_points`` points by :func:`minmax_indices`."""
    idx = minmax_indices(y, max_points)
    return np.asarray(x)[idx], np.asarray(y)[idx]
