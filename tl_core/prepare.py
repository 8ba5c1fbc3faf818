"""Data preparation: load both domains, check they share classes, build backbone, head and method.

Everything here happens before the first step; :func:`prepare` returns a :class:`Prepared`
with the data on the device and the network built.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from tl_core import backbones as bb
from tl_core import data as tld
from tl_core.config import RunConfig
from tl_core.data.folder import DECODE_PROGRESS
from tl_core.failures import RunError
from tl_core.methods import Extra, Method, create_extras, create_method
from tl_core.modality import Modality, modality_for
from tl_core.model import Model


@dataclass
class Prepared:
    """Everything a run needs, on the device."""

    device: torch.device
    classes: list[str]
    train_x: torch.Tensor          # compact labelled training inputs
    train_y: torch.Tensor
    tgt_x: torch.Tensor | None     # unlabelled target training inputs (methods that use them)
    src_val: tuple[torch.Tensor, torch.Tensor]
    tgt_test: tuple[torch.Tensor, torch.Tensor]
    model: Model
    method: Method
    extras: list[Extra]            # regularisers and schedules composed with the method
    modality: Modality
    skipped: dict[str, list[str]] = field(default_factory=dict)  # role -> unreadable files skipped
    target_labelled: bool = True   # False: an image folder without class folders (tgt_test labels are -1)

    @property
    def backbone(self) -> bb.Backbone:
        return self.model.backbone

    @property
    def head(self) -> torch.nn.Module:
        return self.model.head

    @property
    def components(self) -> list[Any]:
        """The method, then its extras: what the loop calls each shared hook on."""
        return [self.method, *self.extras]


def prepare(config: RunConfig, device: torch.device,
            phase: Callable[[str], None] = lambda text: None) -> Prepared:
    """Load data (checking the domains share classes), build backbone, head and method.

    ``phase`` hears what it is doing, for the run's card ("loading and decoding the data", ...).
    """
    d, m = config.data, config.model
    modality = modality_for(config)
    phase("loading and decoding the data")
    token = DECODE_PROGRESS.set(_decode_progress(phase, "loading and decoding the data"))
    try:
        src_train = modality.load(config, "source", "train", d.max_train)
        src_test = modality.load(config, "source", "test", d.max_test)
        tgt_train = modality.load(config, "target", "train", d.max_train)
        tgt_test = modality.load(config, "target", "test", d.max_test)
    finally:
        DECODE_PROGRESS.reset(token)
    tld.check_pair(src_train, tgt_train)
    modality = modality.for_run(config, list(src_train.classes))  # its augment: the run's, per image
    for role, s in (("source", src_train), ("target", tgt_train)):
        if getattr(s, "reason", ""):  # a folder over the memory budget: decoded while training (tl_core/data/stream.py)
            phase(f"streaming the {role} images from disk: {s.reason}")
    if not tgt_train.labelled:
        from tl_core.preflight import unlabelled_problem

        problem = unlabelled_problem(config, "target", tgt_train.name.removeprefix("folder:"))
        if problem:
            raise RunError(problem.split(": ", 1)[1], hint="Choose an adaptation method, or give class folders.")
    skipped = {role: _skipped_files(train, test)
               for role, train, test in (("source", src_train, src_test), ("target", tgt_train, tgt_test))}

    phase(f"building {m.backbone} and putting the data on {device.type}")
    backbone = bb.create_backbone(m.backbone, pretrained=m.pretrained, allow_download=d.allow_download)
    try:
        bb.freeze_stages(backbone, m.freeze)
    except ValueError as e:
        raise RunError(f"model.freeze: {e}") from e

    labelled = tgt_train if config.labelled_domain() == "target" else src_train
    if d.labels_per_class:  # few labels: k labelled images of each class, drawn with the run's seed
        labelled = labelled.subset(tld.per_class_subset(labelled.labels, d.labels_per_class, config.seed))
    if config.optim.batch_size > len(labelled.labels):
        raise RunError(f"optim.batch_size: {config.optim.batch_size} is larger than the training set "
                       f"({len(labelled.labels)} images).", hint="Choose a smaller batch size.")
    backbone.to(device)
    with torch.no_grad():
        try:
            feat_dim = backbone.eval()(modality.probe(config, device)).shape[1]
        except RuntimeError as e:
            size = d.image_size
            raise RunError(f"data.image_size: {size}×{size} images do not fit {m.backbone} ({e}).",
                           hint=f"Use image size {bb.default_image_size(m.backbone)}.") from e
    backbone.train()
    head = bb.make_head(feat_dim, len(src_train.classes), m.head, m.head_hidden, m.dropout).to(device)
    model = Model(backbone, head, modality.normaliser(backbone.info, device))
    method = create_method(config, feat_dim, len(src_train.classes), device).to(device)
    extras = [e.to(device) for e in create_extras(config, feat_dim, len(src_train.classes), device)]

    def on_device(s: Any) -> tuple[torch.Tensor, torch.Tensor]:
        return modality.to_device(s, config, device), torch.as_tensor(s.labels, dtype=torch.long, device=device)

    # a streamed folder's images are decoded once here, into a file on disk (tl_core/data/stream.py)
    token = DECODE_PROGRESS.set(_decode_progress(phase, "decoding the streamed images once, to disk"))
    try:
        train_x, train_y = on_device(labelled)
        tgt_x = modality.to_device(tgt_train, config, device) if method.uses_target else None
        src_val, tgt_eval = on_device(src_test), on_device(tgt_test)
    finally:
        DECODE_PROGRESS.reset(token)
    return Prepared(device=device, classes=list(src_train.classes), train_x=train_x, train_y=train_y,
                    tgt_x=tgt_x, src_val=src_val, tgt_test=tgt_eval, model=model,
                    method=method, extras=extras, modality=modality, skipped=skipped,
                    target_labelled=bool(tgt_test.labelled))


def _decode_progress(phase: Callable[[str], None], what: str) -> Callable[[int, int, str], None]:
    """A ``DECODE_PROGRESS`` listener that tells ``phase`` "<what>: 1,200 of 4,000 images of pets, about 12 s
    left" (the time left at the pace since this folder's first report), at most twice a second."""
    began: dict[tuple[str, int], list[float]] = {}  # (folder, total) -> [time, done] of its first report, done now

    def report(done: int, total: int, name: str) -> None:
        key, now = (name.split(" (", 1)[0], total), time.monotonic()  # the unreadable count grows, not the folder
        if key not in began or done < began[key][2]:  # a new pass over the same folder
            began[key] = [now, done, done]
        t0, d0, _ = began[key]
        began[key][2] = done
        rate = (done - d0) / max(now - t0, 1e-9)
        secs = (total - done) / rate if done < total and rate > 0 else 0.0
        left = f", about {secs:,.0f} s left" if secs >= 1 else ""  # not "0 s" while the last few decode
        phase(f"{what}: {done:,} of {total:,} images of {name}{left}")
    return throttled(report, last=lambda done, total, name: done == total)


def throttled(report: Callable[..., None], last: Callable[..., bool], every_s: float = 0.5) -> Callable[..., None]:
    """``report``, passed on at most every ``every_s`` seconds, and always when ``last(*args)`` holds."""
    seen = {"t": 0.0}

    def call(*args: Any) -> None:
        now = time.monotonic()
        if now - seen["t"] >= every_s or last(*args):
            seen["t"] = now
            report(*args)
    return call


def _skipped_files(train: Any, test: Any) -> list[str]:
    """Unreadable files of one domain: the 80/20 layout reports its folder's list in both splits."""
    if list(train.skipped_files) == list(test.skipped_files):
        return list(train.skipped_files)
    return [f"train/{f}" for f in train.skipped_files] + [f"test/{f}" for f in test.skipped_files]


def skipped_warning(role: str, files: list[str]) -> str:
    """'3 unreadable image files in the source folder were skipped: a.png (why); ...'."""
    n = len(files)
    shown = "; ".join(files[:3]) + ("; ..." if n > 3 else "")
    return (f"{n} unreadable image file{'s' if n != 1 else ''} in the {role} folder "
            f"{'were' if n != 1 else 'was'} skipped: {shown}")
