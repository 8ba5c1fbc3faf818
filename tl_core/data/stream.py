"""Image folders larger than memory: the files are listed (and their headers read) up front, and the
pixels are decoded on the fly at the run's image size.

When a folder's pixels would pass the memory budget (:func:`tl_core.data.folder.check_memory`:
``TL_DATA_MEMORY_GB``, else half of the memory available), a run's ``load_split(..., stream=True)``
returns a :class:`FolderFiles` (the file list, labels and classes; no pixels) instead of refusing, and
``ImageModality.to_device`` turns it into a :class:`StreamImages`, which stands where the compact
uint8 tensor stands: ``x.shape``, ``len(x)``, ``x[slice]``, ``x[index tensor]`` give uint8 (n, 3, S, S)
batches on the run's device. The loop tells it each epoch's batch order (``plan``), and a
``torch.utils.data.DataLoader`` with worker processes decodes the coming batches ahead of the steps
(pinned memory on CUDA); anything else (evaluation, snapshots, the frozen-stage cache, a method's
start hook) is decoded when asked, in a thread pool. The same files at the same size give the same
pixels as the in-memory path, so a run reaches the same numbers either way. A file whose header
reads but whose pixels do not (a truncated JPEG) becomes a black image, counted in ``failed``.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: Worker processes that decode ahead of the steps (at most; fewer on small machines).
MAX_WORKERS = 4
#: Batches each worker decodes ahead.
PREFETCH = 4


@dataclass
class FolderFiles:
    """An image folder's split without its pixels: what a streamed run reads from (see the module doc)."""

    files: list[str]
    labels: np.ndarray
    classes: list[str]
    name: str
    size: int
    skipped: int = 0
    skipped_files: list[str] = field(default_factory=list)
    labelled: bool = True
    reason: str = ""  # why it streams (the memory it would take, the budget)

    def __post_init__(self) -> None:
        self.labels = np.asarray(self.labels, dtype=np.int64).copy()

    def __len__(self) -> int:
        return len(self.files)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def subset(self, indices: np.ndarray) -> "FolderFiles":
        idx = np.asarray(indices, dtype=np.int64)
        return FolderFiles([self.files[i] for i in idx], self.labels[idx], list(self.classes), self.name, self.size,
                           self.skipped, list(self.skipped_files), self.labelled, self.reason)


def _decode(path: str, size: int) -> tuple[np.ndarray, bool]:
    """(uint8 (3, size, size), ok); a file that cannot be decoded gives black pixels and ok False."""
    from tl_core.data.folder import read_image

    try:
        return np.ascontiguousarray(read_image(path, size).transpose(2, 0, 1)), True
    except Exception:  # noqa: BLE001 - the header was readable; the pixels are not
        return np.zeros((3, size, size), np.uint8), False


class _Files:
    """torch Dataset over file paths (picklable for worker processes)."""

    def __init__(self, files: list[str], size: int) -> None:
        self.files, self.size = files, size

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> Any:
        import torch

        arr, ok = _decode(self.files[i], self.size)
        return torch.from_numpy(arr), ok


class StreamImages:
    """Decoded-on-demand images of a :class:`FolderFiles`, indexed like the loop's compact uint8 tensor."""

    def __init__(self, files: list[str], size: int, device: Any, workers: int | None = None) -> None:
        import torch

        self.files, self.size, self.device = list(files), int(size), torch.device(device)
        self.dtype = torch.uint8
        self.workers = max(0, min(MAX_WORKERS, (os.cpu_count() or 1) - 1)) if workers is None else workers
        self.failed: set[int] = set()
        self._plan: list[np.ndarray] = []
        self._next = 0
        self._iter: Any = None
        self._pool: ThreadPoolExecutor | None = None

    # ------------------------------------------------------------------ tensor-like
    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (len(self.files), 3, self.size, self.size)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, key: Any) -> Any:
        import torch

        idx = self._indices(key)
        planned = self._take_planned(idx)
        if planned is not None:
            return planned
        out = self._decode_now(idx)
        return out[0] if isinstance(key, (int, np.integer)) else out

    def _indices(self, key: Any) -> np.ndarray:
        if isinstance(key, slice):
            return np.arange(len(self.files))[key]
        if isinstance(key, (int, np.integer)):
            return np.asarray([int(key)])
        if hasattr(key, "detach"):
            key = key.detach().cpu().numpy()
        idx = np.asarray(key, dtype=np.int64).reshape(-1)
        return np.where(idx < 0, idx + len(self.files), idx)

    def _decode_now(self, idx: np.ndarray) -> Any:
        import torch

        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=max(1, min(8, os.cpu_count() or 1)))
        results = list(self._pool.map(lambda i: _decode(self.files[i], self.size), idx.tolist()))
        for i, (_, ok) in zip(idx.tolist(), results):
            if not ok:
                self.failed.add(i)
        arr = np.stack([a for a, _ in results]) if results else np.zeros((0, 3, self.size, self.size), np.uint8)
        return torch.from_numpy(arr).to(self.device)

    # ------------------------------------------------------------------ planned batches
    def plan(self, order: Any, batch_size: int, start: int = 0) -> None:
        """The batches the loop will ask for this epoch, from its ``start``-th: ``order`` cut every
        ``batch_size``. Worker processes decode them ahead; a request that is not the next planned batch
        (or a prefix of it) is decoded on the spot instead."""
        import torch
        from torch.utils.data import DataLoader

        self._close_iter()
        order = order.detach().cpu().numpy() if hasattr(order, "detach") else np.asarray(order)
        self._plan = [order[i:i + batch_size] for i in range(start * batch_size, len(order), batch_size)]
        self._next = 0
        if not self._plan:
            return
        loader = DataLoader(_Files(self.files, self.size), batch_sampler=[b.tolist() for b in self._plan],
                            num_workers=self.workers, pin_memory=self.device.type == "cuda",
                            prefetch_factor=PREFETCH if self.workers else None,
                            generator=torch.Generator().manual_seed(0))  # the run's random state is left alone
        self._iter = iter(loader)

    def _take_planned(self, idx: np.ndarray) -> Any:
        if self._iter is None or self._next >= len(self._plan):
            return None
        want = self._plan[self._next]
        if len(idx) > len(want) or not np.array_equal(want[:len(idx)], idx):
            return None
        x, ok = next(self._iter)
        self._next += 1
        for i, good in zip(want.tolist(), ok.tolist()):
            if not good:
                self.failed.add(i)
        if self._next >= len(self._plan):
            self._close_iter()
        return x[:len(idx)].to(self.device, non_blocking=True)

    def _close_iter(self) -> None:
        it, self._iter = self._iter, None
        shutdown = getattr(it, "_shutdown_workers", None)
        if shutdown is not None:
            shutdown()

    def close(self) -> None:
        self._close_iter()
        if self._pool is not None:
            self._pool.shutdown(wait=False)
            self._pool = None

    def __del__(self) -> None:  # worker processes and threads go with it
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass
