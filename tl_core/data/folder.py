"""Image folders: ``root/<class>/*.png|jpg|...``, or ``root/train/<class>/...`` plus ``root/test/<class>/...``.

Every image becomes RGB uint8 at ``WORK_SIZE`` x ``WORK_SIZE`` (centre square crop, then
resize), whatever its mode: grey, grey+alpha, RGBA and palette images (alpha composited
over white), 1-bit, CMYK, and 16-bit or float images (stretched from 0..max to 0..255).
JPEGs are decoded at a reduced scale when they are large, so huge photos stay cheap.
Unreadable files (corrupt, truncated, not an image) are skipped and counted.

Without ``train``/``test`` sub-folders the images are split 80/20 per class with a fixed
seed (after decoding, so the split covers readable images only). Decoded folders are
cached in memory, keyed by the folder and the names, sizes and times of its files.
"""

from __future__ import annotations

import contextvars
import functools
import hashlib
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from tl_core.data._split import stratified_split
from tl_core.data._types import DataError, ImageSet

#: Side of the square every folder image is resized to.
WORK_SIZE = 64
#: File name endings read as images (case-insensitive).
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
#: Seed of the fixed 80/20 split (independent of a run's seed, so test sets stay comparable).
SPLIT_SEED = 2016
TEST_FRACTION = 0.2
_HIGH_DEPTH_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")
_EXAMPLE = "e.g. <folder>/cats/001.jpg and <folder>/dogs/001.jpg"


#: Environment variable that sets the dashboard's one data folder (``make run DATA_ROOT=...`` sets it).
DATA_ROOT_ENV = "TL_DATA_ROOT"


#: Who hears how far decoding a folder has got: ``report(done, total, folder name)`` (see prepare.py).
DECODE_PROGRESS: contextvars.ContextVar[Callable[[int, int, str], None] | None] = contextvars.ContextVar(
    "decode_progress", default=None)


def dashboard_data_root() -> Path:
    """The one folder the dashboard reads image folders (and torchvision sets) from, created if missing.

    ``$TL_DATA_ROOT`` when set, else ``$TL_DATA`` (the older name of the data folder), else
    ``data`` under ``TL_HOME`` (``tl_core.store.default_home()``: ``$TL_HOME`` or
    ``~/.transfer-lab``). Returned absolute with symlinks resolved. It is set by whoever starts
    the server, never from a page; every folder given on a page must lie inside it. The command
    line is confined only when ``--data-root`` is given.
    """
    raw = os.environ.get(DATA_ROOT_ENV)
    if raw:
        root = Path(os.path.expanduser(raw))
    else:
        from tl_core.data.tvsets import default_data_root  # the data folder's one default ($TL_DATA, TL_HOME)

        root = default_data_root()
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError:
        pass  # unwritable or odd: resolve_folder will say the folders inside it do not exist
    return root.resolve()


def resolve_folder(path: str | os.PathLike | None, data_root: str | os.PathLike | None = None) -> Path:
    """Check a user-given folder and return it resolved (symlinks followed).

    Args:
        path: the folder the user gave.
        data_root: when given, the folder must lie inside it (after resolving symlinks).

    Raises:
        DataError: no path, missing, not a folder, or outside ``data_root``.
    """
    if path is None or str(path).strip() == "":
        raise DataError(f"No folder given: give the folder that holds one sub-folder per class ({_EXAMPLE}).")
    p = Path(os.path.expanduser(str(path)))
    real = p.resolve()
    if data_root is not None:
        root = Path(os.path.expanduser(str(data_root))).resolve()
        if real != root and root not in real.parents:
            shown = f"Folder '{path}'" + ("" if str(real) == str(path) else f" (really '{real}')")
            raise DataError(f"{shown} is outside the data folder '{root}' (symbolic links are followed). Copy "
                            "the images into it, or ask whoever starts the server to change it (TL_DATA_ROOT, "
                            "make run DATA_ROOT=...; --data-root on the command line).")
    if not real.exists():
        raise DataError(f"Folder '{path}' does not exist. Check the spelling, or give the folder that holds "
                        f"one sub-folder per class ({_EXAMPLE}).")
    if not real.is_dir():
        raise DataError(f"'{path}' is a file, not a folder. Give the folder that holds one sub-folder per "
                        f"class ({_EXAMPLE}).")
    return real


def _is_image_name(name: str) -> bool:
    return not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)


def scan_tree(root: Path) -> dict[str, list[str]]:
    """Image files per class under ``root``: {class name: sorted paths relative to root}.

    Classes are the non-hidden sub-folders that hold at least one image file (searched
    recursively); files directly in ``root`` are ignored.
    """
    out: dict[str, list[str]] = {}
    try:
        entries = sorted(os.scandir(root), key=lambda e: e.name)
    except OSError as e:
        raise DataError(f"Folder '{root}' cannot be read: {e}.") from e
    for entry in entries:
        if entry.name.startswith(".") or not entry.is_dir():
            continue
        files = []
        for dirpath, dirnames, filenames in os.walk(entry.path):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            files.extend(os.path.relpath(os.path.join(dirpath, f), root) for f in sorted(filenames)
                         if _is_image_name(f))
        if files:
            out[entry.name] = files
    return out


def _fingerprint(root: Path, tree: dict[str, list[str]]) -> str:
    h = hashlib.sha1()
    for cls, files in tree.items():
        for rel in files:
            try:
                st = os.stat(root / rel)
                h.update(f"{cls}\0{rel}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
            except OSError:
                h.update(f"{cls}\0{rel}\0missing\n".encode())
    return h.hexdigest()


def _to_rgb(im: Image.Image) -> Image.Image:
    """Convert any PIL mode to RGB (alpha over white, high bit depth stretched to 0..255)."""
    mode = im.mode
    if mode in _HIGH_DEPTH_MODES:
        a = np.asarray(im, dtype=np.float32)
        lo, hi = min(float(a.min()), 0.0), float(a.max())
        if mode == "F" and hi <= 1.0:
            a = a * 255.0
        elif hi > 255.0:
            a = (a - lo) * (255.0 / (hi - lo))
        return Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8)).convert("RGB")
    if mode == "P" and "transparency" in im.info or mode == "PA":
        im, mode = im.convert("RGBA"), "RGBA"
    if mode in ("RGBA", "LA", "La", "RGBa"):
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return im.convert("RGB")


def read_image(path: str | os.PathLike, size: int = WORK_SIZE) -> np.ndarray:
    """Read one image file as RGB uint8 (size, size, 3): centre square crop, then resize.

    Raises:
        OSError, ValueError, SyntaxError, Image.DecompressionBombError: when the file is unreadable.
    """
    with Image.open(path) as im:
        im.draft(None, (2 * size, 2 * size))  # JPEG: decode at 1/2, 1/4 or 1/8 scale when large
        im = ImageOps.exif_transpose(im) or im
        im.load()
        rgb = _to_rgb(im)
    w, h = rgb.size
    s = min(w, h)
    box = ((w - s) / 2, (h - s) / 2, (w + s) / 2, (h + s) / 2)
    rgb = rgb.resize((size, size), Image.Resampling.BILINEAR, box=box, reducing_gap=2.0)
    return np.asarray(rgb, dtype=np.uint8)


def _try_read(args: tuple[str, int]) -> tuple[np.ndarray | None, str]:
    path, size = args
    try:
        return read_image(path, size), ""
    except Exception as e:  # noqa: BLE001 - any failure to decode means "skip this file"
        return None, (str(e) or type(e).__name__).splitlines()[0][:200]


@functools.lru_cache(maxsize=4)
def _decode_tree(root_str: str, fingerprint: str, size: int,
                 allowed_root: str | None) -> tuple[np.ndarray, np.ndarray, tuple[str, ...], tuple[str, ...]]:
    """Decode every image of a class tree (cached by fingerprint).

    Returns:
        (images uint8 (N, size, size, 3), labels int64 into the class tuple, classes, skipped "path: why").
    """
    root = Path(root_str)
    tree = scan_tree(root)
    classes = tuple(tree)
    jobs, owners, skipped = [], [], []
    for ci, cls in enumerate(classes):
        for rel in tree[cls]:
            full = root / rel
            if allowed_root is not None:
                real = full.resolve()
                if Path(allowed_root) not in real.parents:
                    skipped.append(f"{rel}: links outside the data folder")
                    continue
            jobs.append((str(full), size))
            owners.append((ci, rel))
    workers = max(1, min(8, os.cpu_count() or 1))
    report = DECODE_PROGRESS.get()
    results = []
    with ThreadPoolExecutor(max_workers=workers) as pool:  # Pillow decodes without holding the GIL
        for result in pool.map(_try_read, jobs, chunksize=16):
            results.append(result)
            if report is not None and (len(results) % 64 == 0 or len(results) == len(jobs)):
                report(len(results), len(jobs), root.name)
    images, labels = [], []
    for (arr, why), (ci, rel) in zip(results, owners):
        if arr is None:
            skipped.append(f"{rel}: {why}")
        else:
            images.append(arr)
            labels.append(ci)
    imgs = np.stack(images) if images else np.zeros((0, size, size, 3), np.uint8)
    labs = np.asarray(labels, dtype=np.int64)
    imgs.setflags(write=False)
    labs.setflags(write=False)
    return imgs, labs, classes, tuple(skipped)


def _load_tree(root: Path, data_root: Path | None, need_two: bool = True,
               ) -> tuple[np.ndarray, np.ndarray, list[str], list[str], int]:
    """Decode a class tree; returns (images, labels, classes, skipped, number of image files)."""
    tree = scan_tree(root)
    if not tree:
        raise DataError(f"Folder '{root}' holds no class sub-folders with images "
                        f"({', '.join(IMAGE_EXTENSIONS)}). Put the images in one sub-folder per class "
                        f"({_EXAMPLE}).")
    if need_two:
        _need_two_classes(root, list(tree))
    n_files = sum(len(v) for v in tree.values())
    imgs, labs, classes, skipped = _decode_tree(str(root), _fingerprint(root, tree), WORK_SIZE,
                                                str(data_root) if data_root is not None else None)
    if len(labs) == 0:
        examples = "; ".join(skipped[:3])
        raise DataError(f"None of the {n_files} image files in '{root}' could be read ({examples}). "
                        "Check that they are valid PNG, JPEG or BMP images.")
    empty = [c for i, c in enumerate(classes) if not np.any(labs == i)]
    if empty:  # a class the model never sees would still be scored, and a run would "complete" without it
        names = ", ".join(f"'{c}'" for c in empty)
        examples = "; ".join(s for s in skipped if s.split("/", 1)[0] in empty)[:300]
        raise DataError(f"Class folder{'s' if len(empty) > 1 else ''} {names} in '{root}' "
                        f"{'hold' if len(empty) > 1 else 'holds'} no readable image ({examples}). Replace the "
                        "unreadable files with valid PNG, JPEG or BMP images, or remove the folder.")
    return imgs, labs, list(classes), list(skipped), n_files


def _need_two_classes(root: Path, classes: list[str]) -> None:
    if len(classes) < 2:
        only = classes[0] if classes else "none"
        raise DataError(f"Folder '{root}' has only one class ('{only}'); a classifier needs at least two. "
                        f"Add one sub-folder per class ({_EXAMPLE}).")


def load_folder(path: str | os.PathLike | None, split: str, data_root: str | os.PathLike | None = None,
                ) -> ImageSet:
    """Load the train or test split of an image folder.

    Args:
        path: root folder; ``root/<class>/...`` (split 80/20 with a fixed seed) or
            ``root/train/<class>/...`` and ``root/test/<class>/...`` (used as given).
        split: "train" or "test".
        data_root: when given, ``path`` must lie inside it.

    Returns:
        ImageSet with RGB images (N, WORK_SIZE, WORK_SIZE, 3); ``skipped`` counts the
        unreadable files of the folder (of ``root/<split>`` in the train/test layout).

    Raises:
        DataError: missing or empty folder, a single class, no readable image, outside data_root.
    """
    root = resolve_folder(path, data_root)
    allowed = Path(os.path.expanduser(str(data_root))).resolve() if data_root is not None else None
    name = f"folder:{root}"
    train_dir, test_dir = root / "train", root / "test"
    if train_dir.is_dir() and test_dir.is_dir():
        tr_names, te_names = list(scan_tree(train_dir)), list(scan_tree(test_dir))
        classes = sorted(set(tr_names) | set(te_names))
        _need_two_classes(train_dir, tr_names)
        sub = train_dir if split == "train" else test_dir
        imgs, labs, local, skipped, _ = _load_tree(sub, allowed, need_two=split == "train")
        remap = np.array([classes.index(c) for c in local], dtype=np.int64)
        idx = np.random.default_rng(SPLIT_SEED).permutation(len(labs))  # mix the classes, as in the 80/20 case
        return ImageSet(images=imgs[idx], labels=remap[labs[idx]], classes=classes, name=name,
                        skipped=len(skipped), skipped_files=skipped)
    imgs, labs, classes, skipped, _ = _load_tree(root, allowed)
    train_idx, test_idx = stratified_split(labs, TEST_FRACTION, SPLIT_SEED)
    idx = train_idx if split == "train" else test_idx
    return ImageSet(images=imgs[idx], labels=labs[idx], classes=classes, name=name,
                    skipped=len(skipped), skipped_files=skipped)
