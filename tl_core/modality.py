"""What the training loop assumes about its inputs, behind one interface: images today.

The loop, the evaluation and the snapshots handle inputs only through a :class:`Modality`:
load a split, put it on the device in its compact form, normalise a batch for the backbone,
augment a batch (each item its own random draw; ``for_run`` binds the run's settings), and make a
probe input to measure the backbone's feature width. A second
kind of input (text with a small pretrained encoder, say) is a new class here and a
``modality`` choice, not an edit across the loop.
"""

from __future__ import annotations

from pathlib import Path
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

    def for_run(self, config: Any, classes: list[str]) -> "Modality":
        """This modality bound to a run's augmentation settings (``classes``: the source's, e.g. for
        choices that depend on the data); ``prepare`` calls it once the data is loaded."""
        return self

    def augment(self, x: torch.Tensor) -> torch.Tensor:
        """A randomly changed copy of a compact batch, each item changed on its own (training only)."""
        return x

    def probe(self, config: Any, device: torch.device) -> torch.Tensor:
        """Two inputs of the run's shape, to measure the backbone's output width."""
        raise NotImplementedError


class ImageModality(Modality):
    """Images as uint8 (N, 3, S, S) tensors on the device, normalised per batch."""

    name = "image"

    def __init__(self, augmenter: Callable[[torch.Tensor], torch.Tensor] | None = None,
                 augment_text: str = "none") -> None:
        self._augmenter = augmenter
        self.augment_text = augment_text  # what augmentation the run applies, in words

    def for_run(self, config: Any, classes: list[str]) -> "ImageModality":
        """With ``optim.augment``, an ImageModality whose ``augment`` applies the run's per-image
        augmentation (:mod:`tl_core.data.augment`); else this one (no augmentation)."""
        from tl_core.data.augment import ImageAugment, spec_for

        spec = spec_for(config.optim, classes)
        return self if spec is None else ImageModality(ImageAugment(spec), spec.describe())

    def load(self, config: Any, role: str, split: str, max_samples: int | None) -> tld.ImageSet:
        d = config.data
        return tld.load_split(getattr(d, role), split, path=getattr(d, f"{role}_path"), data_root=d.data_root,
                              allow_download=d.allow_download, max_samples=max_samples, seed=config.seed,
                              image_size=d.image_size, stream=True)

    def to_device(self, dataset: tld.ImageSet, config: Any, device: torch.device) -> torch.Tensor:
        """Resize to size×size, 3 channels, kept as uint8 on the device (a folder over the memory budget: a
        :class:`tl_core.data.stream.StreamImages` that decodes its files when indexed)."""
        size = config.data.image_size
        from tl_core.data.stream import FolderFiles, StreamImages

        if isinstance(dataset, FolderFiles):  # decoded once, now, into a file on disk; the steps read it back
            images = StreamImages(dataset.files, size, device)
            images.fill(Path(dataset.name.removeprefix("folder:")).name)
            return images  # type: ignore[return-value]
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
        """Each image of the uint8 batch (N, 3, S, S) augmented on its own draw: random resized crop, flip,
        colour jitter, TrivialAugment as the run's settings say (unchanged without ``for_run`` or when off)."""
        return x if self._augmenter is None else self._augmenter(x)

    def probe(self, config: Any, device: torch.device) -> torch.Tensor:
        size = config.data.image_size
        return torch.zeros(2, 3, size, size, device=device)


MODALITIES: dict[str, Modality] = {"image": ImageModality()}


def modality_for(config: Any) -> Modality:
    """The modality of a run (images; the config has no other choice yet)."""
    return MODALITIES["image"]
