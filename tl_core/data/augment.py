"""Augmentation per image: random resized crop, horizontal flip, colour jitter, TrivialAugment.

The settings are ``optim.augment`` (on/off) and ``optim.augment_crop``, ``augment_flip``,
``augment_jitter``, ``augment_trivial`` (:class:`AugmentSpec`). Each image of a batch gets its own
random draw: the loop calls the run's ``modality.augment(x)`` on a compact uint8 batch
(N, 3, S, S), and :class:`ImageAugment` changes every image differently:

- random resized crop (``torchvision.transforms.v2.RandomResizedCrop``'s sampling: an area share
  in [crop, 1], an aspect ratio in [3/4, 4/3], ten tries then the whole image), resized back to S
  with bilinear interpolation, all boxes of a batch in one ``grid_sample`` call;
- horizontal flip, each image with probability 1/2 (``flip = "auto"``: on, except for digit sets
  — a data set whose classes are the ten digits — where a mirrored 2, 3 or 7 is no digit);
- colour jitter of strength j (as ``v2.ColorJitter(brightness=j, contrast=j, saturation=j,
  hue=j/4)``): one factor per image for each, on the whole batch at once (hue: a rotation of the
  chroma plane in YIQ space);
- TrivialAugment (``v2.TrivialAugmentWide``, Müller & Hutter, ICCV 2021): one random operation at a
  random strength per image, image by image (the slowest of the four: about 0.4 ms per 28-px image).

They run in that order on the run's device. Crop, flip and jitter draw their random numbers from
torch's global generator on the CPU, so a seeded run (and a resumed one) augments identically.
torch is imported only when an augmenter is built; :func:`preview` makes the Setup page's grid
with the same code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from tl_core.data._types import DIGIT_CLASSES

FLIP_CHOICES = {"auto": "Auto (off for digits)", "on": "On", "off": "Off"}
#: Aspect ratios a random resized crop may take (torchvision's default).
CROP_RATIO = (3 / 4, 4 / 3)
#: ``optim.augment`` on from a config written before the finer settings: a mild random resized crop
#: (about the old random shift of up to 10 %), flips by ``auto``, no jitter, no TrivialAugment.
DEFAULT_CROP = 0.8


@dataclass(frozen=True)
class AugmentSpec:
    """What augmentation a run applies (resolved: ``flip`` is a bool here)."""

    crop: float = 1.0       # smallest area share a random resized crop keeps; 1: no crop
    flip: bool = False
    jitter: float = 0.0     # colour jitter strength; 0: none
    trivial: bool = False   # TrivialAugment (wide)

    @property
    def active(self) -> bool:
        return self.crop < 1.0 or self.flip or self.jitter > 0 or self.trivial

    def describe(self) -> str:
        """'random resized crop (80–100 % of the area), flip, colour jitter 0.3, TrivialAugment' or 'none'."""
        parts = []
        if self.crop < 1.0:
            parts.append(f"random resized crop ({100 * self.crop:.0f}–100 % of the area)")
        if self.flip:
            parts.append("horizontal flip")
        if self.jitter > 0:
            parts.append(f"colour jitter {self.jitter:g}")
        if self.trivial:
            parts.append("TrivialAugment")
        return ", ".join(parts) or "none"


def is_digits(classes: list[str] | tuple[str, ...] | None) -> bool:
    """True for a data set whose classes are the ten digits (flipping them makes no digit)."""
    return classes is not None and [str(c) for c in classes] == DIGIT_CLASSES


def spec_for(optim: Any, classes: list[str] | tuple[str, ...] | None) -> AugmentSpec | None:
    """The run's augmentation from its ``optim`` settings and the source's classes; None when off."""
    if not getattr(optim, "augment", False):
        return None
    flip = getattr(optim, "augment_flip", "auto")
    spec = AugmentSpec(crop=float(getattr(optim, "augment_crop", DEFAULT_CROP)),
                       flip=(not is_digits(classes)) if flip == "auto" else flip == "on",
                       jitter=float(getattr(optim, "augment_jitter", 0.0)),
                       trivial=bool(getattr(optim, "augment_trivial", False)))
    return spec if spec.active else None


def problems(optim: Any) -> list[str]:
    """Validation of the augmentation settings (``RunConfig.validate`` adds them), each with its field path."""
    errs = []
    if not isinstance(optim.augment, bool):
        errs.append(f"optim.augment: must be true or false, got {optim.augment!r}.")
    crop = optim.augment_crop
    if isinstance(crop, bool) or not isinstance(crop, (int, float)) or not math.isfinite(crop) or not 0 < crop <= 1:
        errs.append(f"optim.augment_crop: the smallest share of the image area a random crop keeps must be above 0 "
                    f"and at most 1, got {crop!r}; 1 turns cropping off, 0.8 is mild, 0.08 is ImageNet's usual.")
    if optim.augment_flip not in FLIP_CHOICES:
        errs.append(f"optim.augment_flip: '{optim.augment_flip}' is not one of {', '.join(FLIP_CHOICES)} "
                    "(auto: flip, except digits).")
    jit = optim.augment_jitter
    if isinstance(jit, bool) or not isinstance(jit, (int, float)) or not math.isfinite(jit) or not 0 <= jit <= 1:
        errs.append(f"optim.augment_jitter: the colour jitter strength must be between 0 (off) and 1, got {jit!r}; "
                    "0.2–0.4 is common.")
    if not isinstance(optim.augment_trivial, bool):
        errs.append(f"optim.augment_trivial: must be true or false, got {optim.augment_trivial!r}.")
    return errs


class ImageAugment:
    """Per-image augmentation of compact uint8 batches (N, 3, S, S) on any device (see the module doc)."""

    def __init__(self, spec: AugmentSpec) -> None:
        self.spec = spec
        self._trivial = None
        if spec.trivial:
            from torchvision.transforms import v2

            self._trivial = v2.TrivialAugmentWide()

    def __call__(self, x: Any) -> Any:
        import torch

        if x.shape[0] == 0 or not self.spec.active:
            return x
        s = self.spec
        y = x
        if s.crop < 1.0 or s.flip or s.jitter > 0:
            y = x.float()
            if s.crop < 1.0:
                y = self._crop(y)
            if s.flip:
                flip = (torch.rand(y.shape[0]) < 0.5).to(y.device).view(-1, 1, 1, 1)
                y = torch.where(flip, y.flip(-1), y)
            if s.jitter > 0:
                y = self._jitter(y)
            y = y.round_().clamp_(0, 255).to(torch.uint8)
        if self._trivial is not None:
            y = torch.stack([self._trivial(im) for im in y])
        return y

    def _crop(self, y: Any) -> Any:
        """RandomResizedCrop's box per image (area share and log-ratio uniform, ten tries, else the whole
        image), each resized back to the batch's side: one affine grid per image, one bilinear
        ``grid_sample`` for the batch (a crop is never larger than the image, so this only enlarges)."""
        import torch
        import torch.nn.functional as F

        n, _, h, w = y.shape
        tries = 10
        area = torch.empty(n, tries).uniform_(self.spec.crop, 1.0) * (h * w)
        logr = torch.empty(n, tries).uniform_(math.log(CROP_RATIO[0]), math.log(CROP_RATIO[1]))
        r = torch.exp(logr)
        cw, ch = torch.sqrt(area * r).round(), torch.sqrt(area / r).round()
        ok = (cw > 0) & (ch > 0) & (cw <= w) & (ch <= h)
        first = torch.where(ok.any(1), ok.float().argmax(1), torch.full((n,), -1))
        pick = first.clamp(min=0).view(-1, 1)
        cw = torch.where(first >= 0, cw.gather(1, pick).squeeze(1), torch.full((n,), float(w)))
        ch = torch.where(first >= 0, ch.gather(1, pick).squeeze(1), torch.full((n,), float(h)))
        x0 = torch.floor(torch.rand(n) * (w - cw + 1))
        y0 = torch.floor(torch.rand(n) * (h - ch + 1))
        theta = torch.zeros(n, 2, 3)  # output [-1, 1] -> the box, in input coordinates of [-1, 1]
        theta[:, 0, 0], theta[:, 1, 1] = cw / w, ch / h
        theta[:, 0, 2] = (2 * x0 + cw) / w - 1
        theta[:, 1, 2] = (2 * y0 + ch) / h - 1
        grid = F.affine_grid(theta.to(y.device), [n, 1, h, w], align_corners=False)
        return F.grid_sample(y, grid, mode="bilinear", padding_mode="border", align_corners=False)

    def _jitter(self, y: Any) -> Any:
        """Brightness, contrast, saturation (factors in [1-j, 1+j]) and hue (a shift in [-j/4, j/4] of a turn),
        one draw per image each."""
        import torch

        j, n, dev = self.spec.jitter, y.shape[0], y.device

        def factor() -> Any:
            return torch.empty(n).uniform_(max(0.0, 1 - j), 1 + j).to(dev).view(-1, 1, 1, 1)

        grey_w = torch.tensor([0.299, 0.587, 0.114], device=dev).view(1, 3, 1, 1)
        y = (y * factor()).clamp_(0, 255)  # brightness
        mean = (y * grey_w).sum(1, keepdim=True).mean((2, 3), keepdim=True)
        y = ((y - mean) * factor() + mean).clamp_(0, 255)  # contrast
        grey = (y * grey_w).sum(1, keepdim=True)
        y = ((y - grey) * factor() + grey).clamp_(0, 255)  # saturation
        hue = min(0.5, j / 4)
        if hue > 0:
            theta = torch.empty(n).uniform_(-hue, hue).to(dev) * 2 * math.pi
            to_yiq = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]],
                                  device=dev)
            cos, sin = torch.cos(theta), torch.sin(theta)
            rot = torch.zeros(n, 3, 3, device=dev)
            rot[:, 0, 0] = 1
            rot[:, 1, 1], rot[:, 1, 2], rot[:, 2, 1], rot[:, 2, 2] = cos, -sin, sin, cos
            m = torch.linalg.inv(to_yiq) @ rot @ to_yiq  # (n, 3, 3)
            y = torch.bmm(m, y.reshape(n, 3, -1)).view_as(y).clamp_(0, 255)
        return y


def preview(images: np.ndarray, spec: AugmentSpec, per_image: int = 5, seed: int = 0, gap: int = 3) -> np.ndarray:
    """A grid for people: one row per image, the image as the run holds it, then ``per_image`` augmented
    copies (the very augmenter a run uses). ``images``: uint8 (N, S, S, 3). Returns uint8 (H, W, 3)."""
    import torch

    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)
    aug = ImageAugment(spec)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        copies = [aug(x) for _ in range(per_image)]
    n, _, h, w = x.shape
    cols = 1 + per_image
    grid = np.full((n * (h + gap) - gap, cols * (w + gap) - gap + gap * 2, 3), 255, np.uint8)
    for i in range(n):
        row = [x[i]] + [c[i] for c in copies]
        for k, im in enumerate(row):
            x0 = k * (w + gap) + (gap * 2 if k else 0)  # a wider gap after the original
            grid[i * (h + gap):i * (h + gap) + h, x0:x0 + w] = im.permute(1, 2, 0).numpy()
    return grid


def source_samples(name: str, path: str | None, data_root: str | None, size: int, n: int = 4,
                   ) -> tuple[np.ndarray, list[str]]:
    """``n`` training images of a data set at ``size`` px (uint8 (n, size, size, 3)), one per class where it
    can, and its class names. An image folder reads only those few files (no decoding of the whole folder).

    Raises:
        DataError: the data set cannot be read (the message says why).
    """
    from pathlib import Path

    from tl_core.data import folder as fo
    from tl_core.data.registry import load_split
    from tl_core.data.transforms import to_tensor

    if str(name).strip().lower() == "folder":
        root = fo.resolve_folder(path, data_root)
        layout = fo.folder_layout(root)
        base = layout.splits.get("train", root)
        tree, labelled = fo._tree_of(Path(base))
        groups = list(tree.values())
        files = [groups[i % len(groups)][i // len(groups)] for i in range(sum(map(len, groups)))
                 if i // len(groups) < len(groups[i % len(groups)])][:n * 3]
        images = []
        for rel in files:
            try:
                images.append(fo.read_image(Path(base) / rel, size))
            except Exception:  # noqa: BLE001 - an unreadable file is skipped here as in a run
                continue
            if len(images) == n:
                break
        if not images:
            raise fo.DataError(f"None of the first image files in '{base}' could be read.")
        return np.stack(images), list(tree) if labelled else []
    imgs = load_split(name, "train", path=path, data_root=data_root)
    picks = []
    for c in range(n):
        idx = np.nonzero(imgs.labels == (c % max(1, imgs.num_classes)))[0]
        picks.append(int(idx[c // max(1, imgs.num_classes)]) if len(idx) > c // max(1, imgs.num_classes) else c)
    sub = imgs.subset(np.asarray(picks) % len(imgs))
    t = to_tensor(sub, size, scale=1.0).round_().clamp_(0, 255).to(dtype=__import__("torch").uint8)
    return t.permute(0, 2, 3, 1).numpy(), list(imgs.classes)
