"""torchvision data sets (MNIST, USPS, SVHN, CIFAR-10, STL-10) read from a data folder.

They are read from ``data_root`` (default: ``$TL_DATA``, else ``$TL_HOME/data``, else
``~/.transfer-lab/data``) in torchvision's own layout, so a folder that torchvision filled
before works as is. They download only when the caller allows it; offline, a missing
set gives a DataError that names the set, the folder and how to allow the download.
Before a download, the host is probed with a short timeout so that an unreachable
network fails in seconds instead of hanging.
"""

from __future__ import annotations

import functools
import os
import socket
import threading
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tl_core.data._types import DIGIT_CLASSES, DataError

#: Seconds to wait for the download host (or proxy) to accept a connection.
PROBE_TIMEOUT_S = 5.0
_LOCK = threading.Lock()  # one download/read at a time: two threads must not write the same files


@dataclass(frozen=True)
class TvSpec:
    """How to find one torchvision set: a title, a sentence, what it needs on disk."""

    title: str
    description: str
    files: str


TV_SETS: dict[str, TvSpec] = {
    "tv-mnist": TvSpec("MNIST (full, torchvision)", "The full MNIST handwritten digits: 60,000 train and "
                       "10,000 test images, 28x28 grey.", "MNIST/raw/*-ubyte"),
    "usps": TvSpec("USPS", "US Postal Service handwritten digits: 7,291 train and 2,007 test images, 16x16 grey.",
                   "usps.bz2, usps.t.bz2"),
    "svhn": TvSpec("SVHN", "Street View House Numbers: 73,257 train and 26,032 test digit crops, 32x32 colour.",
                   "train_32x32.mat, test_32x32.mat"),
    "cifar10": TvSpec("CIFAR-10", "Ten classes of small photos (airplane ... truck): 50,000 train and 10,000 "
                      "test images, 32x32 colour.", "cifar-10-batches-py/"),
    "stl10": TvSpec("STL-10", "Ten classes of photos (airplane ... truck): 5,000 train and 8,000 test images, "
                    "96x96 colour.", "stl10_binary/"),
}


def default_data_root() -> Path:
    """The data folder: ``$TL_DATA``, else ``$TL_HOME/data``, else ``~/.transfer-lab/data``."""
    if os.environ.get("TL_DATA"):
        return Path(os.path.expanduser(os.environ["TL_DATA"]))
    if os.environ.get("TL_HOME"):
        return Path(os.path.expanduser(os.environ["TL_HOME"])) / "data"
    return Path.home() / ".transfer-lab" / "data"


def _dataset_class(name: str):  # noqa: ANN202 - a torchvision dataset class
    import torchvision.datasets as tvd

    return {"tv-mnist": tvd.MNIST, "usps": tvd.USPS, "svhn": tvd.SVHN, "cifar10": tvd.CIFAR10,
            "stl10": tvd.STL10}[name]


def _urls(name: str) -> list[str]:
    cls = _dataset_class(name)
    if name == "tv-mnist":
        return list(cls.mirrors)
    if name in ("usps", "svhn"):
        return [v[0] for v in cls.split_list.values()]
    return [cls.url]


def _build(name: str, split: str, root: Path, download: bool):  # noqa: ANN202 - a torchvision dataset
    cls = _dataset_class(name)
    train = split == "train"
    if name in ("svhn", "stl10"):
        return cls(str(root), split=split, download=download)
    return cls(str(root), train=train, download=download)


def _arrays(name: str, ds) -> tuple[np.ndarray, np.ndarray, list[str]]:  # noqa: ANN001
    """(images uint8 NHWC, labels int64, classes) from a torchvision dataset object."""
    if name == "tv-mnist":
        images = np.asarray(ds.data.numpy(), dtype=np.uint8)[..., None]
        labels = np.asarray(ds.targets.numpy())
    elif name == "usps":
        images = np.asarray(ds.data, dtype=np.uint8)[..., None]
        labels = np.asarray(ds.targets)
    elif name in ("svhn", "stl10"):
        images = np.ascontiguousarray(np.asarray(ds.data, dtype=np.uint8).transpose(0, 2, 3, 1))
        labels = np.asarray(ds.labels)
    else:  # cifar10
        images = np.asarray(ds.data, dtype=np.uint8)
        labels = np.asarray(ds.targets)
    classes = DIGIT_CLASSES if name in ("tv-mnist", "usps", "svhn") else [str(c) for c in ds.classes]
    return images, labels.astype(np.int64), list(classes)


@functools.lru_cache(maxsize=4)
def _read(name: str, split: str, root_str: str) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    images, labels, classes = _arrays(name, _build(name, split, Path(root_str), download=False))
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels, tuple(classes)


def _probe(url: str) -> None:
    """Raise DataError unless the host of ``url`` (or its proxy) accepts a connection quickly."""
    parts = urllib.parse.urlsplit(url)
    host, port = parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)
    proxy = None if urllib.request.proxy_bypass(host) else urllib.request.getproxies().get(parts.scheme)
    if proxy:
        pp = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        host, port = pp.hostname or "", pp.port or 80
    try:
        socket.create_connection((host, port), timeout=PROBE_TIMEOUT_S).close()
    except OSError as e:
        via = " (through the proxy)" if proxy else ""
        raise DataError(f"cannot reach {host}:{port}{via} within {PROBE_TIMEOUT_S:.0f} s ({e})") from e


def _not_found(name: str, root: Path, detail: str) -> DataError:
    spec = TV_SETS[name]
    return DataError(
        f"Data set '{name}' ({spec.title}) is not in the data folder '{root}' (looked for {spec.files}; "
        f"{detail}). To fetch it, allow the download: tick 'Allow download' in the dashboard, pass "
        f"--allow-download on the command line, or set allow_download=True (data.allow_download in the "
        f"run config). Or place the files there yourself, or choose another data folder (data_root / TL_DATA).")


def load_tv(name: str, split: str, data_root: str | os.PathLike | None = None,
            allow_download: bool = False) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Read a torchvision set split, downloading it only when allowed.

    Args:
        name: one of ``TV_SETS``.
        split: "train" or "test".
        data_root: the data folder; ``default_data_root()`` when None.
        allow_download: let torchvision download missing files into the data folder.

    Returns:
        (images uint8 (N, H, W, C) read-only, labels int64 read-only, classes).

    Raises:
        DataError: missing offline, or the download failed (with the reason and what to do).
    """
    root = Path(os.path.expanduser(str(data_root))) if data_root is not None else default_data_root()
    root = root.resolve()
    with _LOCK:
        try:
            images, labels, classes = _read(name, split, str(root))
            return images, labels, list(classes)
        except (RuntimeError, OSError, ValueError) as e:
            if not allow_download:
                raise _not_found(name, root, f"torchvision says: {e}") from e
        try:
            root.mkdir(parents=True, exist_ok=True)
            _probe(_urls(name)[0])
            _build(name, split, root, download=True)
        except DataError as e:
            raise DataError(f"Downloading '{name}' into '{root}' failed: {e}. Check the internet connection "
                            "(or the proxy settings), or place the files there yourself.") from e
        except Exception as e:  # noqa: BLE001 - urllib, tarfile, md5 checks: all mean "download failed"
            raise DataError(f"Downloading '{name}' into '{root}' failed: {type(e).__name__}: {e}. Check the "
                            "internet connection and the free disk space, or place the files there "
                            "yourself.") from e
        try:
            images, labels, classes = _read(name, split, str(root))
        except (RuntimeError, OSError, ValueError) as e:
            raise _not_found(name, root, f"still missing after the download: {e}") from e
        return images, labels, list(classes)
