"""What stops a Setup form from starting: RunConfig.validate() plus the checks that need
to know this machine (backbone stages, weights on disk, devices, data set sizes), and
the routing of each message to the widget it belongs to."""

from __future__ import annotations

import os
import re

from tl_core.config import RunConfig
from tl_ui import resources

_SENTENCE_STARTS = {"the", "must", "choose", "give", "a", "an", "there", "this", "it", "at", "use"}
_PATH_RE = re.compile(r"^([a-z_]+(?:\.[a-z_]+)*): (.*)$", re.S)


def problems(cfg: RunConfig) -> list[str]:
    """Every reason the config cannot start here, each prefixed by its field path."""
    out = list(cfg.validate())
    d, m, o = cfg.data, cfg.model, cfg.optim

    info = next((b for b in resources.backbones() if b["name"] == m.backbone), None)
    if info is None:
        out.append(f"model.backbone: '{m.backbone}' is not a known backbone.")
    else:
        n = len(info["stage_names"])
        if isinstance(m.freeze, int) and m.freeze > n:
            out.append(f"model.freeze: {m.backbone} has {n} stages; you asked to freeze {m.freeze}. "
                       f"Choose a number from 0 to {n}.")
        if m.pretrained and not d.allow_download:
            ok, why = resources.weights_available(m.backbone)
            if not ok:
                out.append(f"model.pretrained: the pretrained weights of {m.backbone} are not on this machine "
                           f"({why}). Untick 'pretrained' to train from scratch, allow downloads, or place the file.")

    avail = resources.devices()
    if cfg.device in avail and not avail[cfg.device][0]:
        out.append(f"device: {cfg.device} is not available here ({avail[cfg.device][1]}); choose auto or cpu.")

    for role in ("source", "target"):
        path = getattr(d, f"{role}_path")
        if getattr(d, role) == "folder" and path and not os.path.isdir(os.path.expanduser(path)):
            out.append(f"data.{role}_path: there is no folder '{path}' on the machine running the dashboard.")

    labelled = d.target if (cfg.method.name == "finetune" and cfg.method.train_on == "target") else d.source
    size = resources.train_size(labelled)
    if size is not None and d.max_train:
        size = min(size, d.max_train)
    elif size is None and d.max_train:
        size = d.max_train
    if size is not None and isinstance(o.batch_size, int) and o.batch_size > size:
        out.append(f"optim.batch_size: {o.batch_size} is larger than the training set ({size:,} images of "
                   f"{labelled}); choose at most {size:,} (64 is a good start).")
    return out


def split(message: str) -> tuple[str, str]:
    """('optim.lr', 'the learning rate must be ...') from 'optim.lr: the learning rate must be ...'."""
    m = _PATH_RE.match(message)
    if not m:
        return "", message
    text = m.group(2)
    first = text.split(" ", 1)[0]
    if first in _SENTENCE_STARTS:  # "the learning rate ..." reads as a sentence; "lenet has ..." keeps its name
        text = text[:1].upper() + text[1:]
    return m.group(1), text


def route(messages: list[str], slots: list[str]) -> tuple[dict[str, list[str]], list[str]]:
    """Give each message to the slot whose path is the longest prefix of the message's path.

    Returns:
        ({slot path: [texts]}, [messages no slot took, unchanged]).
    """
    routed: dict[str, list[str]] = {}
    rest: list[str] = []
    for msg in messages:
        path, text = split(msg)
        best = max((s for s in slots if path == s or path.startswith(s + ".")), key=len, default=None)
        if best is None:
            rest.append(msg)
        else:
            routed.setdefault(best, []).append(text)
    return routed, rest
