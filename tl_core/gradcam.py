"""Grad-CAM: where in an image the network looks for the class it predicts.

Selvaraju, Cogswell, Das, Vedantam, Parikh, Batra, "Grad-CAM: Visual Explanations from Deep Networks via
Gradient-based Localization", ICCV 2017. For class c with score y^c (the logit, before the softmax) and the
feature maps A^k of a convolutional layer, the weight of map k is the global average of its gradient,
α_k^c = 1/Z Σ_ij ∂y^c/∂A^k_ij (eq. 1), and the map is L^c = ReLU(Σ_k α_k^c A^k) (eq. 2): the ReLU keeps
what raises the class score. Here the layer is the output of the backbone's last convolutional stage (the
last stage whose output still has height and width), as the paper uses the last convolutional layer; the
map is upsampled bilinearly to the input size and scaled to [0, 1] per image.

Works on :class:`tl_core.export.Network` (``net.backbone`` a staged :class:`~tl_core.backbones.Backbone`,
``net.head``, the normalisation inside ``net``): the run's chosen checkpoint (else its last), loaded with
``weights_only=True`` by :func:`tl_core.export.load_run`.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def last_conv_stage(backbone: Any, size: int) -> int:
    """Index of the backbone's last stage whose output is a feature map (N, C, H, W) for a ``size`` input.

    Raises:
        ValueError: no stage outputs a feature map.
    """
    import torch

    h = torch.zeros(1, 3, size, size)
    last = -1
    with torch.no_grad():
        for i, stage in enumerate(backbone.stages):
            h = stage(h)
            if h.ndim == 4 and h.shape[-1] > 0 and h.shape[-2] > 0:
                last = i
    if last < 0:
        raise ValueError(f"{backbone.info.name}: no stage outputs a feature map, so there is no Grad-CAM layer")
    return last


def grad_cam(net: Any, pixels: Any, classes: Any = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Grad-CAM maps of images for a class each (default: the predicted one).

    Args:
        net: an ExportNet (``tl_core.export``): ``backbone`` (staged), ``head``, ``mean``, ``std``, ``scale``.
        pixels: float tensor of RGB values 0..255, the model's input.
        classes: class index per image, or None for the network's top-1.

    Returns:
        (maps in [0, 1], the classes explained, softmax probabilities).

    Shape:
        pixels (N, 3, S, S) -> maps (N, S, S), classes (N,), probabilities (N, K)
    """
    import torch
    import torch.nn.functional as F

    backbone = net.backbone
    size = int(pixels.shape[-1])
    k = last_conv_stage(backbone, size)
    was = net.training
    net.eval()
    try:
        x = (pixels.float() / net.scale - net.mean) / net.std
        with torch.enable_grad():
            a = backbone.forward_until(x, k + 1).detach().requires_grad_(True)
            logits = net.head(backbone.forward_from(a, k + 1))
            chosen = logits.argmax(1) if classes is None else torch.as_tensor(classes, dtype=torch.long)
            score = logits.gather(1, chosen.view(-1, 1)).sum()  # each image's y^c; images do not interact
            (grads,) = torch.autograd.grad(score, a)
        alpha = grads.mean(dim=(2, 3), keepdim=True)              # eq. 1
        cam = F.relu((alpha * a.detach()).sum(1, keepdim=True))   # eq. 2
        cam = F.interpolate(cam, size=pixels.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
        lo = cam.amin(dim=(1, 2), keepdim=True)
        hi = cam.amax(dim=(1, 2), keepdim=True)
        cam = torch.where(hi - lo > 1e-12, (cam - lo) / (hi - lo).clamp_min(1e-12), torch.zeros_like(cam))
        probs = torch.softmax(logits.detach().float(), 1)
    finally:
        net.train(was)
    return cam.numpy(), chosen.numpy(), probs.numpy()


def overlay(image: np.ndarray, cam: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """The heat map over the image as uint8 RGB (jet-like colours: blue cold, red hot).

    Shape:
        image (S, S, 3) uint8, cam (S, S) in [0, 1] -> (S, S, 3) uint8
    """
    c = np.clip(np.asarray(cam, dtype=np.float64), 0, 1)
    heat = np.stack([np.clip(1.5 - np.abs(4 * c - 3), 0, 1), np.clip(1.5 - np.abs(4 * c - 2), 0, 1),
                     np.clip(1.5 - np.abs(4 * c - 1), 0, 1)], axis=-1) * 255
    img = np.asarray(image, dtype=np.float64)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=-1)
    return np.clip((1 - alpha) * img[..., :3] + alpha * heat, 0, 255).astype(np.uint8)
