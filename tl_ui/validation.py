"""What stops a Setup form from starting, and where each message goes.

The checks are the engine's own (``tl_core.preflight.check``: the settings, then the
backbone, weights, device and data sets of this machine), the very ones the job manager
applies on submit; the form adds one it can answer cheaply for built-in data sets: a batch
larger than the training set. Each message is prefixed by its field path and is shown
under the widget that edits that field.
"""

from __future__ import annotations

import re

from tl_core.config import RunConfig
from tl_core.preflight import check
from tl_ui import resources

_SENTENCE_STARTS = {"the", "must", "choose", "give", "a", "an", "there", "this", "it", "at", "use"}
_PATH_RE = re.compile(r"^([a-z_]+(?:\.[a-z0-9_-]+)*): (.*)$", re.S)  # extras' names may hold - and digits


def problems(cfg: RunConfig) -> list[str]:
    """Every reason the config cannot start here, each prefixed by its field path."""
    out = check(cfg)
    if any(p.startswith("optim.batch_size") for p in out):
        return out
    d, o = cfg.data, cfg.optim
    labelled = getattr(d, cfg.labelled_domain())
    size = resources.train_size(labelled)
    if size is not None and d.max_train:
        size = min(size, d.max_train)
    elif size is None and d.max_train:
        size = d.max_train
    if size is not None and isinstance(d.labels_per_class, int) and d.labels_per_class > 0:
        from tl_core.data import DIGIT_CLASSES  # built-in sets (the only ones with a known size) hold the digits

        size = min(size, d.labels_per_class * len(DIGIT_CLASSES))
    if size is not None and isinstance(o.batch_size, int) and o.batch_size > size:
        out.append(f"optim.batch_size: {o.batch_size} is larger than the training set ({size:,} images of "
                   f"{labelled}); choose at most {size:,} (64 is a good start).")
    return out


def split(message: str) -> tuple[str, str]:
    """('optim.lr', 'The learning rate must be ...') from 'optim.lr: the learning rate must be ...'."""
    m = _PATH_RE.match(message)
    if not m:
        return "", message
    text = m.group(2)
    if text.split(" ", 1)[0] in _SENTENCE_STARTS:  # a sentence gets its capital; "lenet has ..." keeps its name
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
