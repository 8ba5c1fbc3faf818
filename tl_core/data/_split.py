"""Seeded, stratified index helpers: train/test splits and class-balanced subsets."""

from __future__ import annotations

import numpy as np


def stratified_split(labels: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split indices into train and test, keeping class proportions.

    Args:
        labels: int labels (N,).
        test_fraction: share of each class that goes to the test split (rounded per class).
        seed: random seed; the same seed gives the same split.

    Returns:
        (train_idx, test_idx), each shuffled with the seed; together they cover every index once.
    """
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        idx = idx[rng.permutation(len(idx))]
        n_test = int(round(len(idx) * test_fraction))
        if len(idx) >= 2:
            n_test = min(max(n_test, 1), len(idx) - 1)
        test.append(idx[:n_test])
        train.append(idx[n_test:])
    train_idx = np.concatenate(train) if train else np.zeros(0, np.int64)
    test_idx = np.concatenate(test) if test else np.zeros(0, np.int64)
    return (train_idx[rng.permutation(len(train_idx))].astype(np.int64),
            test_idx[rng.permutation(len(test_idx))].astype(np.int64))


def stratified_subset(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Pick ``n`` indices at random, each class in proportion to its share (largest remainder).

    Every class that has images keeps at least one when ``n`` is at least the number of
    classes. The result is sorted, so the original order of the set is kept.

    Args:
        labels: int labels (N,).
        n: how many to keep; ``n >= N`` keeps all.
        seed: random seed; the same seed gives the same subset.

    Returns:
        Sorted int64 indices.
    """
    total = len(labels)
    if n >= total:
        return np.arange(total, dtype=np.int64)
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    exact = counts * (n / total)
    take = np.floor(exact).astype(np.int64)
    if n >= len(classes):
        take = np.maximum(take, 1)
    # Hand out what is left by largest remainder, then trim any excess from the largest classes.
    order = np.argsort(-(exact - np.floor(exact)), kind="stable")
    i = 0
    while take.sum() < n:
        c = order[i % len(order)]
        if take[c] < counts[c]:
            take[c] += 1
        i += 1
    while take.sum() > n:
        take[int(np.argmax(take))] -= 1
    chosen = []
    for c, k in zip(classes, take):
        idx = np.flatnonzero(labels == c)
        chosen.append(rng.choice(idx, size=int(k), replace=False))
    return np.sort(np.concatenate(chosen)).astype(np.int64)


def per_class_subset(labels: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Pick ``k`` indices of every class at random (all of a class that has fewer than ``k``).

    What a run's ``data.labels_per_class`` keeps of its labelled training split: with ten
    classes and ``k = 10``, exactly 100 labelled images.

    Args:
        labels: int labels (N,).
        k: images kept per class, at least 1.
        seed: random seed; the same seed gives the same subset.

    Returns:
        Sorted int64 indices.
    """
    rng = np.random.default_rng(seed)
    chosen = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        chosen.append(idx if len(idx) <= k else rng.choice(idx, size=int(k), replace=False))
    if not chosen:
        return np.zeros(0, np.int64)
    return np.sort(np.concatenate(chosen)).astype(np.int64)
