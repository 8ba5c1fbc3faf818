"""MNIST-M recreated offline, as Ganin et al. (2016, "Domain-Adversarial Training of
Neural Networks") built it: each binarised MNIST digit is blended as |patch - digit| with
a random 28x28 crop of a colour photograph.

The paper cropped BSDS500 photos; here the colour photographs shipped by scikit-image
stand in for them. A fixed seed per split makes the set deterministic; the train split
uses the MNIST train digits and the test split the MNIST test digits, with other crops.
"""

from __future__ import annotations

import functools

import numpy as np

from tl_core.data import builtin
from tl_core.data._types import DataError

#: scikit-image colour photographs used as backgrounds (those that fail to load are left out).
PHOTO_NAMES: tuple[str, ...] = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry",
                                "hubble_deep_field", "retina")
#: Seeds of the crops, per split.
SEEDS = {"train": 1_000_003, "test": 2_000_003}
#: A crop whose pixel standard deviation is below this is redrawn (a few times), so that
#: the mostly black sky of hubble_deep_field or border of retina rarely gives a flat patch.
MIN_PATCH_STD = 12.0
PATCH = 28


@functools.lru_cache(maxsize=1)
def photos() -> tuple[np.ndarray, ...]:
    """The RGB uint8 photographs that load offline from scikit-image.

    Raises:
        DataError: when none can be loaded.
    """
    try:
        import skimage.data as skd
    except ImportError as e:  # pragma: no cover - scikit-image is a requirement
        raise DataError("MNIST-M needs the package scikit-image (pip install scikit-image).") from e
    out = []
    for name in PHOTO_NAMES:
        try:
            img = np.asarray(getattr(skd, name)())
        except Exception:  # noqa: BLE001 - a photo that needs a download (pooch) is simply left out
            continue
        if img.ndim == 3 and img.shape[2] == 3 and img.dtype == np.uint8 and min(img.shape[:2]) > PATCH:
            out.append(img)
    if not out:
        raise DataError("MNIST-M: none of the scikit-image photographs "
                        f"({', '.join(PHOTO_NAMES)}) could be loaded; reinstall scikit-image.")
    return tuple(out)


def blend(digits: np.ndarray, patches: np.ndarray) -> np.ndarray:
    """Blend binarised digits into colour patches as |patch - digit|.

    Args:
        digits: uint8 (N, 28, 28) grey digits; pixels above 127 count as stroke (255).
        patches: uint8 (N, 28, 28, 3) colour patches.

    Returns:
        uint8 (N, 28, 28, 3): the patch where there is no stroke, 255 - patch on the stroke.
    """
    stroke = (digits > 127)[..., None]
    return np.where(stroke, 255 - patches, patches).astype(np.uint8)


def random_patches(n: int, seed: int) -> np.ndarray:
    """``n`` random 28x28 crops of the photographs, uint8 (n, 28, 28, 3), deterministic per seed."""
    pics = photos()
    rng = np.random.default_rng(seed)
    out = np.empty((n, PATCH, PATCH, 3), dtype=np.uint8)
    for i in range(n):
        for _attempt in range(6):
            pic = pics[int(rng.integers(len(pics)))]
            y = int(rng.integers(pic.shape[0] - PATCH + 1))
            x = int(rng.integers(pic.shape[1] - PATCH + 1))
            crop = pic[y:y + PATCH, x:x + PATCH]
            if crop.std() >= MIN_PATCH_STD:
                break
        out[i] = crop
    return out


@functools.lru_cache(maxsize=2)
def mnist_m(split: str) -> tuple[np.ndarray, np.ndarray]:
    """MNIST-M split: images uint8 (N, 28, 28, 3) and the labels of the MNIST split it comes from."""
    digits, labels = builtin.mnist(split)
    images = blend(digits[..., 0], random_patches(len(labels), SEEDS[split]))
    return builtin.readonly(images, labels)  # type: ignore[return-value]
