"""Image folders in three layouts, decoded at the run's image size.

Layouts (:func:`folder_layout` recognises them without decoding; anything else is refused with a
message naming the folder and the layouts expected):

- ``root/<class>/*.png|jpg|...``: split 80/20 per class with a fixed seed (after decoding, so the
  split covers readable images only);
- ``root/train/<class>/...`` with ``root/test/...`` or ``root/val/...`` beside it: the given split
  is used (the held-out split is ``test/``, or ``val/`` when there is no ``test/``); ``train/``
  alone is split 80/20;
- images directly in ``root`` (no class sub-folders): an **unlabelled** set (every label -1,
  ``ImageSet.labelled`` False, no classes), split 80/20; only a target of an adaptation method
  may be one (``tl_core.preflight``). The same goes for split folders that hold loose images.

Every image becomes RGB uint8 at ``size`` x ``size`` (the run's ``data.image_size``: shorter side
resized, centre crop), whatever its mode: grey, grey+alpha, RGBA and palette images (alpha composited
over white), 1-bit, CMYK, and 16-bit or float images (stretched from 0..max to 0..255).
JPEGs are decoded at a reduced scale when they are large, so huge photos stay cheap.
Unreadable files (corrupt, truncated, not an image) are skipped and counted. Before decoding,
a folder whose pixels would not fit the memory budget (:func:`check_memory`) is refused.
Decoded folders are cached in memory, keyed by the folder, the names, sizes and times of its
files, and the size.
"""

from __future__ import annotations

import contextvars
import functools
import hashlib
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from tl_core.data._split import stratified_split
from tl_core.data._types import DataError, ImageSet

#: Side of the square a folder image is decoded to when no size is given (a run gives its image size).
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


# ------------------------------------------------------------------ layouts
#: Folder names (lower case) read as splits in ``root/<split>/<class>/...``, and the split each gives.
SPLIT_FOLDERS = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}
_LAYOUTS = ("<folder>/<class>/<image> (one sub-folder per class), <folder>/train/<class>/<image> with "
            "<folder>/val/ or <folder>/test/ beside it, or images directly in <folder> (an unlabelled target)")


@dataclass(frozen=True)
class FolderLayout:
    """How an image folder is laid out (see :func:`folder_layout`).

    Attributes:
        root: the folder, resolved.
        kind: "classes" (``root/<class>/...``), "splits" (``root/{train,val,test}/...``) or "flat"
            (images directly in ``root``: no labels).
        labelled: False when the images have no class folders (an unlabelled target).
        splits: for "splits", split name ("train", "val", "test") -> its folder.
        classes: the class names (empty when unlabelled).
        files: image files per split folder ("" for the root), before decoding.
    """

    root: Path
    kind: str
    labelled: bool
    splits: dict[str, Path] = field(default_factory=dict)
    classes: tuple[str, ...] = ()
    files: dict[str, int] = field(default_factory=dict)

    def describe(self) -> str:
        """One line for people, e.g. 'train/ and test/ folders, 2 classes (cats, dogs), 120 + 30 images'."""
        counts = " + ".join(f"{n:,}" for n in self.files.values())
        what = (f"{len(self.classes)} classes ({', '.join(self.classes[:6])}{', …' if len(self.classes) > 6 else ''})"
                if self.labelled else "no class sub-folders: unlabelled images (a target for adaptation methods)")
        if self.kind == "splits":
            names = " and ".join(f"{p.name}/" for p in self.splits.values())
            return f"{names} folders, {what}, {counts} image files"
        return f"{what}, {counts} image files"


def _direct_images(folder: Path) -> list[str]:
    try:
        return sorted(e.name for e in os.scandir(folder) if e.is_file() and _is_image_name(e.name))
    except OSError as e:
        raise DataError(f"Folder '{folder}' cannot be read: {e}.") from e


def _subfolders(folder: Path) -> list[os.DirEntry]:
    try:
        return sorted((e for e in os.scandir(folder) if e.is_dir() and not e.name.startswith(".")),
                      key=lambda e: e.name)
    except OSError as e:
        raise DataError(f"Folder '{folder}' cannot be read: {e}.") from e


def _tree_of(folder: Path) -> tuple[dict[str, list[str]], bool]:
    """({class: files} , labelled) of one folder: its class sub-folders, or its loose images as one
    unlabelled group (key ""); empty when it holds neither."""
    tree = scan_tree(folder)
    if tree:
        return tree, True
    loose = _direct_images(folder)
    return ({"": loose} if loose else {}), False


def _no_images(folder: Path) -> DataError:
    return DataError(f"Folder '{folder}' holds no class sub-folders with images ({', '.join(IMAGE_EXTENSIONS)}). "
                     f"Expected {_LAYOUTS.replace('<folder>', str(folder))}; {_EXAMPLE}.")


def folder_layout(root: Path) -> FolderLayout:
    """Recognise the layout of a resolved folder without decoding anything.

    Raises:
        DataError: a layout that is not one of the three, naming the folder and the layouts expected:
            split folders mixed with class folders, val/test without train, a split without images,
            split folders of which some have class folders and some loose images, no images at all.
    """
    subs = _subfolders(root)
    split_dirs = {SPLIT_FOLDERS[e.name.lower()]: Path(e.path) for e in subs if e.name.lower() in SPLIT_FOLDERS}
    if not split_dirs:
        tree, labelled = _tree_of(root)
        if not tree:
            raise _no_images(root)
        return FolderLayout(root=root, kind="classes" if labelled else "flat", labelled=labelled,
                            classes=tuple(tree) if labelled else (), files={"": sum(map(len, tree.values()))})
    split_names = {e.name for e in subs if e.name.lower() in SPLIT_FOLDERS}
    others = [e.name for e in subs if e.name not in split_names and _tree_of(Path(e.path))[0]]
    shown = ", ".join(f"{n}/" for n in sorted(split_names))
    if others:
        raise DataError(f"Folder '{root}' mixes split folders ({shown}) with other folders of images "
                        f"({', '.join(others[:5])}). Expected either {root}/<class>/<image> (one sub-folder per "
                        f"class) or {root}/train/<class>/<image> with val/ or test/ beside it; move the class "
                        "folders into the split folders.")
    if "train" not in split_dirs:
        raise DataError(f"Folder '{root}' has {shown} but no train/ folder. Expected {root}/train/<class>/<image> "
                        f"beside {shown} (or give a folder with one sub-folder per class).")
    trees, files, kinds = {}, {}, set()
    for split, path in split_dirs.items():
        tree, labelled = _tree_of(path)
        if not tree:
            raise DataError(f"Split folder '{path}' holds no images. Expected {path}/<class>/<image> "
                            "(or its images directly in it, for an unlabelled target).")
        trees[split], files[path.name] = tree, sum(map(len, tree.values()))
        kinds.add(labelled)
    if len(kinds) > 1:
        raise DataError(f"In folder '{root}', some split folders have class sub-folders and others hold loose "
                        f"images. Expected {root}/<split>/<class>/<image> in every split folder (labelled) or "
                        "images directly in every split folder (unlabelled).")
    labelled = kinds.pop()
    classes = tuple(sorted(set().union(*(t.keys() for t in trees.values())))) if labelled else ()
    return FolderLayout(root=root, kind="splits", labelled=labelled, splits=split_dirs, classes=classes,
                        files=files)


# ------------------------------------------------------------------ memory
#: Environment variable: how many GB of decoded pixels the in-memory data path may hold (default: half of
#: the memory available when the folder is loaded).
MEMORY_BUDGET_ENV = "TL_DATA_MEMORY_GB"
#: Copies of the decoded pixels a run holds at once: the decode cache, the split's own array, the compact
#: tensor the loop indexes (on the CPU, or on the GPU with CUDA).
COPIES = 3


def _available_bytes() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def memory_budget() -> tuple[int | None, str]:
    """(bytes the decoded images of a run may take, where that number comes from); None: no limit known."""
    raw = os.environ.get(MEMORY_BUDGET_ENV, "").strip()
    if raw:
        try:
            gb = float(raw)
        except ValueError:
            gb = -1.0
        if gb > 0:
            return int(gb * 1024**3), f"{MEMORY_BUDGET_ENV}={raw}"
    avail = _available_bytes()
    return (None, "") if avail is None else (avail // 2, "half of the memory available now")


def _gb(n: float) -> str:
    return f"{n / 1024**3:.1f} GB" if n >= 0.1 * 1024**3 else f"{n / 1024**2:.0f} MB"


def memory_problem(folder: Path, n_images: int, size: int) -> str | None:
    """Why a folder's images at ``size`` px would not fit the memory budget, or None when they fit."""
    budget, why = memory_budget()
    one = n_images * size * size * 3
    if budget is None or one * COPIES <= budget:
        return None
    return (f"Folder '{folder}': {n_images:,} images at {size}×{size} px take {_gb(one)} as pixels, and a run holds "
            f"about {COPIES} copies while it trains ({_gb(one * COPIES)}), over the memory budget of {_gb(budget)} "
            f"({why})")


def check_memory(folder: Path, n_images: int, size: int) -> None:
    """Refuse, before decoding, a folder whose images at ``size`` px would not fit the memory budget (a run
    streams such a folder instead: :mod:`tl_core.data.stream`).

    Raises:
        DataError: saying how much it would take, the budget, and what to change.
    """
    problem = memory_problem(folder, n_images, size)
    if problem:
        raise DataError(f"{problem}. Choose a smaller image size (data.image_size), use fewer images, or raise the "
                        f"budget with {MEMORY_BUDGET_ENV}=<GB> (the frozen-stage cache, when used, comes on top: "
                        "at most 3 GB).")


# ------------------------------------------------------------------ decoding
def _list_tree(root: Path, allowed_root: str | None,
               ) -> tuple[tuple[str, ...], list[str], list[tuple[int, str]], list[str]]:
    """A folder's image files in decode order: (classes (empty when unlabelled), absolute paths, their
    (label, relative path) — label -1 when unlabelled — and the files skipped as links outside the data folder)."""
    tree, labelled = _tree_of(root)
    classes = tuple(tree) if labelled else ()
    paths, owners, skipped = [], [], []
    for ci, files in enumerate(tree.values()):
        for rel in files:
            full = root / rel
            if allowed_root is not None and Path(allowed_root) not in full.resolve().parents:
                skipped.append(f"{rel}: links outside the data folder")
                continue
            paths.append(str(full))
            owners.append((ci if labelled else -1, rel))
    return classes, paths, owners, skipped


def _map_reporting(fn: Callable[[Any], Any], jobs: list[Any], failed: Callable[[Any], bool], name: str,
                   chunksize: int, every: int) -> list[Any]:
    """``fn`` over ``jobs`` in a thread pool (Pillow works without holding the GIL), in order; tells
    ``DECODE_PROGRESS`` how far it got every ``every`` results and at the end, with the failures counted."""
    report = DECODE_PROGRESS.get()
    results: list[Any] = []
    bad = 0
    with ThreadPoolExecutor(max_workers=max(1, min(8, os.cpu_count() or 1))) as pool:
        for result in pool.map(fn, jobs, chunksize=chunksize):
            results.append(result)
            bad += failed(result)
            if report is not None and (len(results) % every == 0 or len(results) == len(jobs)):
                report(len(results), len(jobs), name + (f" ({bad:,} unreadable, skipped)" if bad else ""))
    return results


@functools.lru_cache(maxsize=4)
def _decode_tree(root_str: str, fingerprint: str, size: int, allowed_root: str | None,
                 ) -> tuple[np.ndarray, np.ndarray, tuple[str, ...], tuple[str, ...]]:
    """Decode every image of a folder: its class sub-folders, or (none) its loose images with label -1.

    Cached by folder, fingerprint of its files and ``size``: a run at another image size decodes afresh.

    Returns:
        (images uint8 (N, size, size, 3), labels int64 into the class tuple (-1 unlabelled), classes
        (empty when unlabelled), skipped "path: why").
    """
    root = Path(root_str)
    classes, paths, owners, skipped = _list_tree(root, allowed_root)
    results = _map_reporting(_try_read, [(path, size) for path in paths], lambda r: r[0] is None, root.name,
                             chunksize=16, every=64)
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


def _probe(path: str) -> str:
    """Why an image file's header does not read ("" when it does; no pixels decoded)."""
    try:
        with Image.open(path) as im:
            im.size  # noqa: B018 - the header only
        return ""
    except Exception as e:  # noqa: BLE001 - unreadable: skipped
        return (str(e) or type(e).__name__).splitlines()[0][:200]


@functools.lru_cache(maxsize=4)
def _probe_tree(root_str: str, fingerprint: str, allowed_root: str | None,
                ) -> tuple[tuple[str, ...], np.ndarray, tuple[str, ...], tuple[str, ...]]:
    """List a folder for streaming: every image whose header reads (no pixels decoded).

    Returns (absolute paths, labels (-1 unlabelled), classes, skipped "path: why"); cached by fingerprint.
    """
    root = Path(root_str)
    classes, jobs, owners, skipped = _list_tree(root, allowed_root)
    results = _map_reporting(_probe, jobs, bool, root.name, chunksize=64, every=256)
    paths, labels = [], []
    for path, why, (ci, rel) in zip(jobs, results, owners):
        if why:
            skipped.append(f"{rel}: {why}")
        else:
            paths.append(path)
            labels.append(ci)
    return tuple(paths), np.asarray(labels, dtype=np.int64), classes, tuple(skipped)


def _load_tree(root: Path, data_root: Path | None, size: int, need_two: bool = True, stream: bool = False,
               ) -> tuple[Any, np.ndarray, list[str], list[str], int, str]:
    """Decode one folder (class sub-folders, or loose images: unlabelled, label -1); with ``stream``, a
    folder over the memory budget is only listed (its readable files, for :mod:`tl_core.data.stream`).

    Returns (images, or a list of file paths when streamed; labels; classes; skipped; number of image
    files; why it streams, or "").
    """
    tree, labelled = _tree_of(root)
    if not tree:
        raise _no_images(root)
    if need_two and labelled:
        _need_two_classes(root, list(tree))
    n_files = sum(len(v) for v in tree.values())
    too_big = memory_problem(root, n_files, size) if stream else None
    if not stream:
        check_memory(root, n_files, size)
    fingerprint = _fingerprint(root, tree)
    allowed = str(data_root) if data_root is not None else None
    if too_big:
        paths, labs, classes, skipped = _probe_tree(str(root), fingerprint, allowed)
        imgs: Any = list(paths)
    else:
        imgs, labs, classes, skipped = _decode_tree(str(root), fingerprint, int(size), allowed)
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
    return imgs, labs, list(classes), list(skipped), n_files, too_big or ""


def _need_two_classes(root: Path, classes: list[str]) -> None:
    if len(classes) < 2:
        only = classes[0] if classes else "none"
        nested = ""
        if classes and scan_tree(root / only):
            nested = f" It holds sub-folders of images itself: did you mean the folder '{root / only}'?"
        raise DataError(f"Folder '{root}' has only one class ('{only}'); a classifier needs at least two. "
                        f"Add one sub-folder per class ({_EXAMPLE}).{nested}")


def load_folder(path: str | os.PathLike | None, split: str, data_root: str | os.PathLike | None = None,
                size: int = WORK_SIZE, stream: bool = False) -> Any:
    """Load the train or test split of an image folder, decoded at ``size`` px.

    Args:
        path: root folder in one of three layouts (see :func:`folder_layout`): ``root/<class>/...``
            (split 80/20 per class with a fixed seed); ``root/train/<class>/...`` with ``root/test/``
            (or ``root/val/`` when there is no ``test/``) used as given (``train/`` alone: split 80/20);
            images directly in ``root`` (unlabelled: label -1, ``labelled`` False, split 80/20).
        split: "train" or "test".
        data_root: when given, ``path`` must lie inside it.
        size: the side every image is decoded to (shorter side resized, centre crop): the run's image size.
        stream: a folder over the memory budget gives a :class:`tl_core.data.stream.FolderFiles` (its
            readable files, decoded later) instead of a DataError.

    Returns:
        ImageSet with RGB images (N, size, size, 3); ``skipped`` counts the unreadable files of the
        folder (of the split's folder in the split layout).

    Raises:
        DataError: missing or empty folder, a refused layout, a single class, no readable image,
            outside data_root, over the memory budget.
    """
    root = resolve_folder(path, data_root)
    allowed = Path(os.path.expanduser(str(data_root))).resolve() if data_root is not None else None
    name = f"folder:{root}"
    layout = folder_layout(root)
    if layout.kind == "splits":
        held_out = layout.splits.get("test", layout.splits.get("val"))
        train_dir = layout.splits["train"]
        if layout.labelled:
            _need_two_classes(train_dir, list(scan_tree(train_dir)))
        if held_out is not None:
            sub = train_dir if split == "train" else held_out
            imgs, labs, local, skipped, _, why = _load_tree(sub, allowed, size, need_two=split == "train",
                                                            stream=stream)
            classes = list(layout.classes)
            labels = (np.array([classes.index(c) for c in local], dtype=np.int64)[labs] if layout.labelled
                      else labs)
            idx = np.random.default_rng(SPLIT_SEED).permutation(len(labs))  # mix the classes, as in the 80/20 case
            return _split_set(imgs, labels, idx, classes, name, skipped, layout.labelled, size, why)
        root = train_dir  # train/ alone: split it 80/20 like a class folder
    imgs, labs, classes, skipped, _, why = _load_tree(root, allowed, size, stream=stream)
    train_idx, test_idx = stratified_split(labs, TEST_FRACTION, SPLIT_SEED)
    idx = train_idx if split == "train" else test_idx
    return _split_set(imgs, labs, idx, classes, name, skipped, bool(classes), size, why)


def _split_set(imgs: Any, labels: np.ndarray, idx: np.ndarray, classes: list[str], name: str, skipped: list[str],
               labelled: bool, size: int, why: str) -> Any:
    """The split's ImageSet, or its FolderFiles when ``imgs`` is a list of paths (streamed)."""
    if isinstance(imgs, list):
        from tl_core.data.stream import FolderFiles

        return FolderFiles([imgs[i] for i in idx], labels[idx], classes, name, size, len(skipped), skipped,
                           labelled, why)
    return ImageSet(images=imgs[idx], labels=labels[idx], classes=classes, name=name, skipped=len(skipped),
                    skipped_files=skipped, labelled=labelled)
