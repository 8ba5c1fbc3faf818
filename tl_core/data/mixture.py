"""MNIST with a small share of MNIST-M digits: a biased source for sample re-weighting.

Re-weighting (KMM, KLIEP) can only help where the source covers the target: it up-weights the
source images that look like the target. Here the source is the 4,000 MNIST training digits
plus 400 MNIST-M training images (10 %, 40 per digit, labels kept), so a few source images look
like the MNIST-M target and a re-weighted loss can lean on them (covariate shift: p(x) differs,
p(y|x) is the same digit rule).

The MNIST-M images come from the MNIST-M *train* split only, so none of them is in the target's
test split (MNIST-M test is made from the MNIST test digits). The test split of this set is the
1,000 MNIST test digits plus 100 further MNIST-M training images, disjoint from the 400 above.
MNIST's grey digits get three equal channels so that both kinds share one shape.
"""

from __future__ import annotations

import functools

import numpy as np

from tl_core.data import builtin, mnistm

#: MNIST-M images per digit in the training and the test split of the mixture.
MNIST_M_PER_CLASS = {"train": 40, "test": 10}
#: Seed of the (fixed) choice of MNIST-M images; independent of a run's seed.
PICK_SEED = 2006


@functools.lru_cache(maxsize=1)
def _mnist_m_picks() -> dict[str, np.ndarray]:
    """Indices into MNIST-M train for each split of the mixture, disjoint, per digit."""
    _, labels = mnistm.mnist_m("train")
    rng = np.random.default_rng(PICK_SEED)
    train, test = [], []
    n_tr, n_te = MNIST_M_PER_CLASS["train"], MNIST_M_PER_CLASS["test"]
    for c in range(10):
        idx = rng.permutation(np.flatnonzero(labels == c))
        train.append(idx[:n_tr])
        test.append(idx[n_tr:n_tr + n_te])
    return {"train": np.sort(np.concatenate(train)), "test": np.sort(np.concatenate(test))}


@functools.lru_cache(maxsize=2)
def mnist_with_mnist_m(split: str) -> tuple[np.ndarray, np.ndarray]:
    """The mixture's split: images uint8 (N, 28, 28, 3), labels int64.

    Train: 4,000 MNIST + 400 MNIST-M (N = 4,400); test: 1,000 MNIST + 100 MNIST-M (N = 1,100).
    MNIST first, then MNIST-M (see :func:`is_mnist_m`).
    """
    grey, grey_labels = builtin.mnist(split)
    colour, colour_labels = mnistm.mnist_m("train")
    pick = _mnist_m_picks()[split]
    images = np.concatenate([np.repeat(grey, 3, axis=-1), colour[pick]])
    labels = np.concatenate([grey_labels, colour_labels[pick]]).astype(np.int64)
    return builtin.readonly(images, labels)  # type: ignore[return-value]


def is_mnist_m(images: np.ndarray) -> np.ndarray:
    """True for each image that is an MNIST-M one (its colour channels differ), shape (N,).

    Works on any subset of the mixture (a run's ``max_train`` sample, say): MNIST digits have three
    equal channels, every MNIST-M image has colour.
    """
    x = np.asarray(images)
    return (x[..., 0] != x[..., 1]).any(axis=(1, 2)) | (x[..., 1] != x[..., 2]).any(axis=(1, 2))


def mnist_m_train_indices(split: str) -> np.ndarray:
    """Which MNIST-M training images the mixture's split holds (indices into MNIST-M train)."""
    return _mnist_m_picks()[split].copy()
