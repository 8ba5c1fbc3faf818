"""From ImageSet to model input (``to_tensor``) and to small pictures for the pages (``thumbnail``)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

from tl_core.data._types import DataError, ImageSet

#: Upper bound on the float memory one chunk of ``to_tensor`` works on.
CHUNK_BYTES = 64 * 2**20


def _per_channel(value: float | Sequence[float], what: str) -> list[float]:
    vals = [float(value)] * 3 if np.isscalar(value) else [float(v) for v in value]  # type: ignore[union-attr]
    if len(vals) == 1:
        vals = vals * 3
    if len(vals) != 3:
        raise DataError(f"{what} must have 1 or 3 values (one per channel), got {len(vals)}.")
    return vals


def to_tensor(imgset: ImageSet, image_size: int, mean: float | Sequence[float] = (0.0, 0.0, 0.0),
              std: float | Sequence[float] = (1.0, 1.0, 1.0), scale: float = 255.0):  # noqa: ANN201 - torch.Tensor
    """Turn images into a normalised float tensor for a model.

    Grey images get three equal channels; images are resized to ``image_size`` square with
    bilinear interpolation (antialiased when shrinking); pixels become ``x / scale`` and
    then ``(x - mean) / std`` per channel. Works in chunks so memory stays bounded.

    Args:
        imgset: the images (uint8, N x H x W x C).
        image_size: side S of the output.
        mean: per-channel mean (3 values, or one for all).
        std: per-channel standard deviation (3 values, or one for all).
        scale: divisor applied before normalising (255 gives 0..1; 1 keeps 0..255).

    Returns:
        torch.FloatTensor (N, 3, S, S).

    Raises:
        DataError: a bad size, std or scale.
    """
    import torch
    import torch.nn.functional as F

    size = int(image_size)
    if size < 1:
        raise DataError(f"image_size must be at least 1, got {image_size}.")
    m, s = _per_channel(mean, "mean"), _per_channel(std, "std")
    if any(v == 0 for v in s) or scale == 0:
        raise DataError("std values and scale must not be 0.")
    images = imgset.images
    n, h, w, c = images.shape
    out = torch.empty((n, 3, size, size), dtype=torch.float32)
    if n == 0:
        return out
    # Fold x / scale and (x - mean) / std into one multiply-add: x * a + b.
    a = torch.tensor([1.0 / (scale * v) for v in s], dtype=torch.float32).view(1, 3, 1, 1)
    b = torch.tensor([-mu / v for mu, v in zip(m, s)], dtype=torch.float32).view(1, 3, 1, 1)
    per_image = 4 * (3 * size * size + 3 * h * w)
    chunk = max(1, CHUNK_BYTES // per_image)
    shrink = size < h or size < w
    for i in range(0, n, chunk):
        x = torch.from_numpy(np.array(images[i:i + chunk], dtype=np.float32)).permute(0, 3, 1, 2)
        if (h, w) != (size, size):
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=shrink)
        if c == 1:
            x = x.expand(-1, 3, -1, -1)
        out[i:i + chunk] = x * a + b
    return out


def thumbnail(imgset: ImageSet, index: int, size: int = 64) -> np.ndarray:
    """One image as an RGB uint8 picture (size, size, 3) for display.

    Grey images get three channels; non-square images are centre-cropped to a square.
    Enlarging uses nearest neighbour (crisp pixels), shrinking uses Lanczos.

    Raises:
        IndexError: ``index`` out of range.
    """
    n = len(imgset.images)
    if not -n <= index < n:
        raise IndexError(f"{imgset.name}: image {index} does not exist (the set has {n} images).")
    img = np.asarray(imgset.images[index])
    if img.shape[-1] == 1:
        img = np.repeat(img, 3, axis=-1)
    h, w = img.shape[:2]
    side = min(h, w)
    y0, x0 = (h - side) // 2, (w - side) // 2
    pic = Image.fromarray(np.ascontiguousarray(img[y0:y0 + side, x0:x0 + side]))
    if side != size:
        resample = Image.Resampling.NEAREST if size > side else Image.Resampling.LANCZOS
        pic = pic.resize((size, size), resample)
    return np.asarray(pic, dtype=np.uint8).copy()
