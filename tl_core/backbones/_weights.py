"""torchvision's ImageNet weights through the torch hub cache, offline first.

The file a weights enum points to lives at ``<torch.hub.get_dir()>/checkpoints/<basename
of weights.url>``, where torchvision itself would put it. When it is there it is loaded
with ``torch.load(weights_only=True)``. When it is not: with ``allow_download`` it is
fetched with a short socket timeout (an offline machine fails in seconds, not minutes),
its SHA-256 prefix from the file name checked, and moved into place atomically; without,
the error names the exact file to place and the URL to get it from.
"""

from __future__ import annotations

import hashlib
import os
import re
import urllib.request
from pathlib import Path
from typing import Any

import torch

from tl_core.backbones._base import BackboneError

DOWNLOAD_TIMEOUT_S = 15.0
_HASH_RE = re.compile(r"-([a-f0-9]+)\.")  # the same convention as torch.hub


def _weights_enum(arch: str) -> Any:
    from torchvision.models import get_model_weights

    return get_model_weights(arch).DEFAULT


def weights_url(arch: str) -> str:
    """URL of the default ImageNet weights of a torchvision architecture."""
    return str(_weights_enum(arch).url)


def weights_path(arch: str) -> Path:
    """Where the torch hub cache keeps (or would keep) those weights."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(weights_url(arch))


def weights_status(arch: str) -> tuple[bool, str]:
    """(file present, explanation or what to place where)."""
    path = weights_path(arch)
    if path.is_file():
        return True, f"ImageNet weights found at {path}"
    return False, (f"ImageNet weights not in the torch hub cache: place {path.name} (from {weights_url(arch)}) "
                   f"at {path}, or allow downloads")


def download(url: str, dest: Path, timeout: float = DOWNLOAD_TIMEOUT_S) -> None:
    """Fetch ``url`` to ``dest`` through a temporary file, checking the hash prefix in its name.

    Raises:
        BackboneError: unreachable, too slow to answer, or the content does not match its name.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f"{dest.name}.{os.getpid()}.partial")
    try:
        sha = hashlib.sha256()
        with urllib.request.urlopen(url, timeout=timeout) as response, open(tmp, "wb") as out:
            while chunk := response.read(1 << 20):
                sha.update(chunk)
                out.write(chunk)
        m = _HASH_RE.search(os.path.basename(dest))
        if m and not sha.hexdigest().startswith(m.group(1)):
            raise BackboneError(f"Downloaded {url} but its SHA-256 does not start with {m.group(1)}: "
                                f"the download was damaged. Try again, or place the file at {dest} yourself.")
        os.replace(tmp, dest)
    except BackboneError:
        raise
    except (OSError, ValueError) as e:  # URLError, timeouts and refused connections are OSErrors
        raise BackboneError(f"Could not download {url} ({e}). Without internet, place that file at {dest}.") from e
    finally:
        if tmp.exists():
            tmp.unlink()


def load_state_dict(arch: str, allow_download: bool) -> dict[str, torch.Tensor]:
    """The ImageNet state dict of a torchvision architecture, from the hub cache (or the network).

    Raises:
        BackboneError: missing offline (names file and URL), download failed, or file unreadable.
    """
    path = weights_path(arch)
    if not path.is_file():
        if not allow_download:
            raise BackboneError(f"{arch}: pretrained ImageNet weights are not available offline. Place "
                                f"{path.name} (download it from {weights_url(arch)}) at {path}, "
                                "allow downloads, or untick 'pretrained' to train from scratch.")
        download(weights_url(arch), path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated zip, pickle that is not a plain state dict
        raise BackboneError(f"{arch}: cannot read the weights file {path} ({e}). Delete it and place an "
                            f"intact copy from {weights_url(arch)}.") from e

