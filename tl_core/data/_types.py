"""Plain data types shared by the data package: ImageSet, DatasetInfo, Preset, DataError."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: Digit class names shared by every digit data set, so that pairs of them match.
DIGIT_CLASSES: list[str] = [str(d) for d in range(10)]


class DataError(ValueError):
    """A problem with data the user can fix; the message says what was wrong and how to fix it."""


@dataclass
class ImageSet:
    """A set of images held in memory, labelled (or not: ``labelled`` False, labels -1).

    The images of built-in and cached sets can be read-only views of a shared in-memory
    cache: copy them before changing them in place (labels are always a writable array).

    Attributes:
        images: uint8 array (N, H, W, C) with C in {1, 3}.
        labels: int64 array (N,), each an index into ``classes``.
        classes: class names; ``classes[label]`` names a label.
        name: the data set name (e.g. "mnist-m" or "folder:/path/to/images").
        skipped: number of unreadable files that were skipped while loading.
        skipped_files: paths (relative to the folder) of those files, for messages.
        labelled: False for an unlabelled set (an image folder without class sub-folders): every
            label is -1 and ``classes`` is empty; only a target of an adaptation method may be one.
    """

    images: np.ndarray
    labels: np.ndarray
    classes: list[str]
    name: str
    skipped: int = 0
    skipped_files: list[str] = field(default_factory=list)
    labelled: bool = True

    def __post_init__(self) -> None:
        imgs = self.images
        if not isinstance(imgs, np.ndarray) or imgs.ndim != 4 or imgs.shape[-1] not in (1, 3):
            shape = getattr(imgs, "shape", None)
            raise DataError(f"{self.name}: images must be an array (N, H, W, C) with C 1 or 3, got shape {shape}.")
        if imgs.dtype != np.uint8:
            raise DataError(f"{self.name}: images must be uint8, got {imgs.dtype}.")
        labels = np.asarray(self.labels)
        if labels.dtype != np.int64 or not labels.flags.writeable:
            labels = labels.astype(np.int64)  # a copy: labels are small, and torch warns on read-only arrays
        if labels.shape != (imgs.shape[0],):
            raise DataError(f"{self.name}: {imgs.shape[0]} images but labels of shape {labels.shape}.")
        self.labels = labels
        self.classes = [str(c) for c in self.classes]

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def num_classes(self) -> int:
        """Number of classes (length of ``classes``)."""
        return len(self.classes)

    def subset(self, indices: np.ndarray) -> "ImageSet":
        """Return a new ImageSet with the images at ``indices`` (copies the arrays)."""
        idx = np.asarray(indices, dtype=np.int64)
        return ImageSet(images=self.images[idx], labels=self.labels[idx], classes=list(self.classes),
                        name=self.name, skipped=self.skipped, skipped_files=list(self.skipped_files),
                        labelled=self.labelled)


@dataclass(frozen=True)
class DatasetInfo:
    """What ``list_datasets`` tells about one data set.

    Attributes:
        name: the name to pass to ``load_split``.
        title: a short human title.
        description: one sentence.
        offline: True when it loads without any download or user files.
        kind: "builtin", "folder" or "torchvision".
    """

    name: str
    title: str
    description: str
    offline: bool
    kind: str


@dataclass(frozen=True)
class Preset:
    """A ready-made source/target pair for demos.

    Attributes:
        key: the preset key (e.g. "mnist-mnist-m").
        title: a short title such as "MNIST → MNIST-M".
        source: source data set name.
        target: target data set name.
        description: one sentence.
    """

    key: str
    title: str
    source: str
    target: str
    description: str
