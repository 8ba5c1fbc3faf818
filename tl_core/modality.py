"""What the training loop assumes about its inputs, behind one interface: images today.

The loop, the evaluation and the snapshots handle inputs only through a :class:`Modality`:
load a split, put it on the device in its compact form, normalise a batch for the backbone,
augment a batch, and make a probe input to measure the backbone's feature width. A second
kind of input (text with a small pretrained encoder, say) is a new class here and a
``modality`` choice, not an edit across the loop.
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from tl_core import data as tld


class Modality:
    """The contract (see docs/ARCHITECTURE.md). Subclasses implement every method."""

    name = ""

    def load(self, config: Any, role: str, split: str, max_samples: int | None) -> Any:
        """A labelled data set of one domain and split (has ``labels``, ``classes``, ``skipped_files``)."""
        raise NotImplementedError

    def to_device(self, dataset: Any, config: Any, device: torch.device) -> torch.Tensor:
        """The whole set as one compact tensor on the device (what batches index into)."""
        raise NotImplementedError

    def normaliser(self, backbone_info: Any, device: torch.device) -> Callable[[torch.Tensor], torch.Tensor]:
        """Compact batch -> the float input the backbone expects."""
        raise NotImplementedError

    def augment(self, x: torch.Tensor) -> torch.Tensor:
        """A randomly changed copy of a compact batch (training only)."""
        return x

    def probe(self, config: Any, device: torch.device) -> torch.Tensor:
        """Two inputs of the run's shape, to measure the backbone's output width."""
        raise NotImplementedError


class ImageModality(Modality):
    """Images as uint8 (N, 3, S, S) tensors on the device, normalised per batch."""

    name = "image"

    def load(self, config: Any, role: str, split: str, max_samples: int | None) -> tld.ImageSet:
        d = config.data
        return tld.load_split(getattr(d, role), split, path=getattr(d, f"{role}_path"), data_root=d.data_root,
                              allow_download=d.allow_download, max_samples=max_samples, seed=config.seed,
                              image_size=d.image_size)

    def to_device(self, dataset: tld.ImageSet, config: Any, device: torch.device) -> torch.Tensor:
        """Resize to size×size, 3 channels, kept as uint8 on the device."""
        size = config.data.image_size
        chunks = []
        for i in range(0, len(dataset.labels), 1024):
            part = tld.ImageSet(images=dataset.images[i:i + 1024], labels=dataset.labels[i:i + 1024],
                                classes=dataset.classes, name=dataset.name)
            t = tld.to_tensor(part, size, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), scale=1.0)
            chunks.append(t.round_().clamp_(0, 255).to(torch.uint8))
        return torch.cat(chunks).to(device)

    def normaliser(self, backbone_info: Any, device: torch.device) -> Callable[[torch.Tensor], torch.Tensor]:
        mean = torch.tensor(backbone_info.mean, device=device, dtype=torch.float32).view(1, 3, 1, 1)
        std = torch.tensor(backbone_info.std, device=device, dtype=torch.float32).view(1, 3, 1, 1)
        scale = float(backbone_info.scale)

        def normalise(x: torch.Tensor) -> torch.Tensor:
            return (x.float() / scale - mean) / std
        return normalise

    def augment(self, x: torch.Tensor) -> torch.Tensor:
        """Random translation of the whole batch by up to 10 % of its side."""
        shift = max(1, x.shape[-1] // 10)
        dx, dy = (int(v) for v in torch.randint(-shift, shift + 1, (2,)))
        return torch.roll(x, shifts=(dy, dx), dims=(2, 3))

    def probe(self, config: Any, device: torch.device) -> torch.Tensor:
        size = config.data.image_size
        return torch.zeros(2, 3, size, size, device=device)


MODALITIES: dict[str, Modality] = {"image": ImageModality()}


def modality_for(config: Any) -> Modality:
    """The modality of a run (images; the config has no other choice yet)."""
    return MODALITIES["image"]
