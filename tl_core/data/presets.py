"""Ready-made source/target pairs and the check that two sets share their classes."""

from __future__ import annotations

import numpy as np

from tl_core.data._types import DataError, ImageSet, Preset

PRESETS: dict[str, Preset] = {p.key: p for p in (
    Preset("mnist-mnist-m", "MNIST → MNIST-M", "mnist", "mnist-m",
           "The classic DANN demo: learn from grey handwritten digits, test on the same digits blended into "
           "colour photographs."),
    Preset("mnist-uci-digits", "MNIST → UCI digits", "mnist", "uci-digits",
           "Learn from 28x28 MNIST digits, test on the tiny 8x8 UCI handwritten digits."),
    Preset("uci-digits-mnist", "UCI digits → MNIST", "uci-digits", "mnist",
           "Learn from the tiny 8x8 UCI digits, test on sharper 28x28 MNIST digits."),
    Preset("syn-digits-mnist", "Synthetic digits → MNIST", "syn-digits", "mnist",
           "Learn from printed digits in many fonts and colours, test on real handwriting. A hard case: "
           "source only already lines the two domains up, and DANN ends a few points below it here, a "
           "limit worth seeing."),
    Preset("mnist-mix-mnist-m", "MNIST with a few MNIST-M digits → MNIST-M (covariate shift)", "mnist-with-mnist-m",
           "mnist-m",
           "The source is MNIST plus 10 % MNIST-M images with their labels; the target is MNIST-M. The source "
           "already holds images like the target, only too few: re-weighting (KMM, KLIEP) gives those images "
           "more weight in the loss and should beat plain source-only training."),
)}


def check_pair(src: ImageSet, tgt: ImageSet) -> None:
    """Check that a source and a target set have the same classes, in the same order.

    An unlabelled target (``tgt.labelled`` False: a folder without class sub-folders) passes: its
    images take the source's classes. An unlabelled source does not.

    Args:
        src: the source set.
        tgt: the target set.

    Raises:
        DataError: naming the classes only in the source and only in the target, or saying
            that the order differs (labels are indices, so the order must match).
    """
    if not src.labelled:
        raise DataError(f"The source ({src.name}) has no labels (no class sub-folders): the source is what the "
                        "model learns the classes from. Put its images in one sub-folder per class.")
    s, t = list(src.classes), list(tgt.classes)
    if s == t or not tgt.labelled:  # an unlabelled target takes the source's classes
        return
    only_s = [c for c in s if c not in set(t)]
    only_t = [c for c in t if c not in set(s)]
    if only_s or only_t:
        parts = []
        if only_s:
            parts.append(f"only in the source ({src.name}): {', '.join(only_s)}")
        if only_t:
            parts.append(f"only in the target ({tgt.name}): {', '.join(only_t)}")
        raise DataError(f"Source and target must have the same classes; {'; '.join(parts)}. Rename or remove "
                        "class folders so both sides have the same class names.")
    raise DataError(f"Source ({src.name}) and target ({tgt.name}) have the same classes in a different order "
                    f"({', '.join(s)} vs {', '.join(t)}); align them with align_classes(target, source.classes).")


def align_classes(imgset: ImageSet, classes: list[str]) -> ImageSet:
    """Return ``imgset`` relabelled to follow the class order ``classes`` (same names, any order).

    Raises:
        DataError: when the class names differ.
    """
    if sorted(imgset.classes) != sorted(classes):
        raise DataError(f"{imgset.name}: classes {imgset.classes} cannot be aligned to {classes}.")
    remap = np.array([classes.index(c) for c in imgset.classes], dtype=np.int64)
    return ImageSet(images=imgset.images, labels=remap[imgset.labels], classes=list(classes), name=imgset.name,
                    skipped=imgset.skipped, skipped_files=list(imgset.skipped_files))
