"""Image folders larger than memory: the files are listed (and their headers read) up front, and the
pixels are decoded at the run's image size into a file on disk, once per run, and read back from it.

When a folder's pixels would pass the memory budget (:func:`tl_core.data.folder.check_memory`:
``TL_DATA_MEMORY_GB``, else half of the memory available), a run's ``load_split(..., stream=True)``
returns a :class:`FolderFiles` (the file list, labels and classes; no pixels) instead of refusing, and
``ImageModality.to_device`` turns it into a :class:`StreamImages`, which stands where the compact
uint8 tensor stands: ``x.shape``, ``len(x)``, ``x[slice]``, ``x[index tensor]`` give uint8 (n, 3, S, S)
batches on the run's device. The same files at the same size give the same pixels as the in-memory path,
so a run reaches the same numbers either way. A file whose header reads but whose pixels do not (a
truncated JPEG) becomes a black image, counted in ``failed``.

Each image is decoded once per run. Before the first step (:meth:`StreamImages.fill`, called by
``to_device``) a thread pool decodes every image at the run's size, as the in-memory path decodes a
folder, with progress and a time left on the run's card, and writes its pixels (uint8, 3×S×S;
augmentation comes after, on the batch) to a file on disk, ``TL_HOME/cache/stream/``. The steps, every
evaluation and the snapshots then read them back from there in the loop's own thread (``preadv`` into the
batch, not a memory map, so they stay out of the process's resident memory; no worker process, no
copy between processes). The file goes when the run ends.

When the disk has not room for the file and 1 GB to spare, nothing is decoded ahead: the loop tells
``StreamImages`` each epoch's batch order (``plan``), and a ``torch.utils.data.DataLoader`` with worker
processes decodes the coming batches on the fly, every epoch (pinned memory on CUDA); anything else is
decoded when asked, in a thread pool. The worker processes run at a lower CPU priority (``WORKER_NICE``)
so that they decode in the gaps the training threads leave rather than take a core from them.
"""

from __future__ import annotations

import os
import shutil
import socket
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

#: Worker processes that decode ahead of the steps (at most; fewer on small machines).
MAX_WORKERS = 4
#: Batches each worker decodes ahead.
PREFETCH = 4
#: How much lower the decoding workers' CPU priority is than the training threads' (``os.nice`` increment).
WORKER_NICE = int(os.environ.get("TL_STREAM_NICE", "10"))


def _lower_priority(_worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: decode in the gaps the training threads leave."""
    if WORKER_NICE:
        try:
            os.nice(WORKER_NICE)
        except OSError:  # not allowed here: decode at the same priority
            pass


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


#: Disk space the decoded-pixel file must leave free.
CACHE_SPARE_BYTES = 1 << 30


def cache_dir() -> Path:
    from tl_core.store import default_home

    return default_home() / "cache" / "stream"


_HOST = socket.gethostname().replace("-", "_") or "host"


def _remove_stale(folder: Path) -> None:
    """Delete this machine's decoded-pixel files whose process has gone (a run killed before its end)."""
    for f in folder.glob(f"{_HOST}-*.u8"):
        try:
            os.kill(int(f.name.split("-")[1]), 0)
        except ProcessLookupError:
            f.unlink(missing_ok=True)
        except (ValueError, IndexError, OSError):
            pass


class _Decoded:
    """The run's decoded pixels on disk: image ``i`` at offset ``i × 3·S·S``; ``flags[i]`` once written.

    Readers and writers (the loop, its thread pool, the DataLoader's worker processes) each open the file
    themselves; images never share bytes, so positional reads and writes need no lock."""

    def __init__(self, n: int, size: int) -> None:
        import torch

        self.item = 3 * size * size
        self.size, self.n = size, n
        # in shared memory: the worker processes, which live as long as the run, see what is written since
        self.flags = torch.zeros(n, dtype=torch.bool).share_memory_()
        self.path: str | None = None
        self._fd: int | None = None
        self._pid, self._owner = -1, os.getpid()
        folder = cache_dir()
        try:
            folder.mkdir(parents=True, exist_ok=True)
            if shutil.disk_usage(folder).free >= n * self.item + CACHE_SPARE_BYTES:
                _remove_stale(folder)
                path = folder / f"{_HOST}-{os.getpid()}-{uuid.uuid4().hex[:12]}.u8"
                self.path = str(path)
                with open(path, "wb") as f:
                    f.truncate(n * self.item)  # sparse until written
                self._handle()  # opened here, before any thread of the pool asks
        except OSError:
            self.close()

    def __getstate__(self) -> dict[str, Any]:  # a worker process opens the file itself
        return {**self.__dict__, "_fd": None, "_pid": -1}

    def _handle(self) -> int:
        if self._fd is None or self._pid != os.getpid():
            self._fd, self._pid = os.open(self.path, os.O_RDWR), os.getpid()  # type: ignore[arg-type]
        return self._fd

    def get(self, i: int, file: str) -> tuple[np.ndarray, bool]:
        """(pixels, decoded fine) of image ``i``: read from the file when it was written, else decoded (and
        written, and flagged, when it decodes)."""
        if self.path is not None and bool(self.flags[i]):
            buf = os.pread(self._handle(), self.item, i * self.item)
            if len(buf) == self.item:
                return np.frombuffer(buf, dtype=np.uint8).reshape(3, self.size, self.size).copy(), True
        arr, ok = _decode(file, self.size)
        if ok and self.path is not None:
            try:
                if os.pwrite(self._handle(), arr.tobytes(), i * self.item) == self.item:
                    self.flags[i] = True  # after the bytes: a reader that sees the flag finds them
            except OSError:  # the disk filled up meanwhile: it is decoded again next time
                pass
        return arr, ok

    def write(self, i: int, file: str) -> bool:
        """Decode image ``i`` into the file unless it is there already; whether its pixels decoded."""
        return bool(self.flags[i]) or self.get(i, file)[1]

    def read(self, idx: np.ndarray, files: list[str]) -> tuple[np.ndarray, list[int]]:
        """uint8 (len(idx), 3, S, S) of images ``idx``, read from the file (one ``preadv`` each, into the batch);
        an image not written there (its file did not decode) is decoded again. Also: the images that failed."""
        out = np.empty((len(idx), 3, self.size, self.size), np.uint8)
        flat, fd, bad = out.reshape(len(idx), -1), self._handle(), []
        for j, i in enumerate(idx.tolist()):
            if not (self.flags[i] and os.preadv(fd, [flat[j]], i * self.item) == self.item):
                out[j], ok = self.get(i, files[i])
                if not ok:
                    bad.append(i)
        return out, bad

    def close(self) -> None:
        if self._fd is not None and self._pid == os.getpid():
            os.close(self._fd)
        self._fd = None
        if self.path is not None and self._owner == os.getpid():
            try:
                os.unlink(self.path)
            except OSError:
                pass
            self.path = None


class _Files:
    """torch Dataset over file paths (picklable for worker processes)."""

    def __init__(self, files: list[str], decoded: _Decoded) -> None:
        self.files, self.decoded = files, decoded

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> Any:
        import torch

        arr, ok = self.decoded.get(i, self.files[i])
        return torch.from_numpy(arr), ok


class _Plan:
    """The DataLoader's batch sampler: this epoch's batches, replaced by :meth:`StreamImages.plan`."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []

    def __iter__(self) -> Any:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


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
        self._loader: Any = None
        self._sampler = _Plan()
        self._pool: ThreadPoolExecutor | None = None
        self._decoded = _Decoded(len(self.files), self.size)
        self._filled = False  # every image decoded into the file (:meth:`fill`): batches are read back from it

    def fill(self, name: str) -> None:
        """Decode every image once, now, into the run's file on disk (a thread pool, as the in-memory path
        decodes a folder, telling ``DECODE_PROGRESS`` how far it got under ``name``), so that the steps only
        read pixels back; without a file (no room on disk) nothing happens and the worker processes decode
        each epoch's batches on the fly."""
        from tl_core.data.folder import _map_reporting

        if self._decoded.path is None:
            return
        ok = _map_reporting(lambda i: self._decoded.write(i, self.files[i]), list(range(len(self.files))),
                            failed=lambda good: not good, name=name, chunksize=16,
                            every=max(1, len(self.files) // 100))
        self.failed.update(i for i, good in enumerate(ok) if not good)
        self._filled = True

    @property
    def cached(self) -> int:
        """How many images are decoded on disk (read from there from now on)."""
        return int(self._decoded.flags.sum()) if self._decoded.path else 0

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

        if self._filled:  # read back from the file, in this thread
            arr, bad = self._decoded.read(idx, self.files)
        else:  # decoded (or read back, where written) in a thread pool
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=max(1, min(8, os.cpu_count() or 1)))
            results = list(self._pool.map(lambda i: self._decoded.get(i, self.files[i]), idx.tolist()))
            bad = [i for i, (_, ok) in zip(idx.tolist(), results) if not ok]
            arr = np.stack([a for a, _ in results]) if results else np.zeros((0, 3, self.size, self.size), np.uint8)
        self.failed.update(bad)
        if self.device.type == "cuda":  # pinned (torch caches the blocks): the copy to the GPU is asynchronous
            return torch.from_numpy(arr).pin_memory().to(self.device, non_blocking=True)
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
        if not self._plan or self._filled:  # filled: each batch is read back when asked, in this thread
            return
        self._sampler.batches = [b.tolist() for b in self._plan]
        if self._loader is None:  # its worker processes serve every epoch of the run: forked once
            self._loader = DataLoader(_Files(self.files, self._decoded), batch_sampler=self._sampler,
                                      num_workers=self.workers, persistent_workers=self.workers > 0,
                                      pin_memory=self.device.type == "cuda",
                                      prefetch_factor=PREFETCH if self.workers else None,
                                      worker_init_fn=_lower_priority,
                                      generator=torch.Generator().manual_seed(0))  # the run's random state alone
        self._iter = iter(self._loader)

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
        self._iter = None  # the worker processes stay for the next epoch's plan

    def close(self) -> None:
        self._close_iter()
        loader, self._loader = self._loader, None
        shutdown = getattr(getattr(loader, "_iterator", None), "_shutdown_workers", None)
        if shutdown is not None:
            shutdown()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        self._decoded.close()

    def __del__(self) -> None:  # worker processes and threads go with it
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass
