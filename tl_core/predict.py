"""Predict with a finished run's model: image files in, top-3 classes and confidences out, as CSV.

    python -m tl_core predict --run RUN_ID PATH [PATH...] [--out preds.csv] [--data-root DIR]

A PATH is an image file or a folder (searched recursively for image files, as folder data sets are).
The network is the one :mod:`tl_core.export` exports (the run's chosen checkpoint, else its last; the target domain's
encoder), and each file is prepared as that module's ``preprocessing.json`` says, so the CSV's top-1
is the exported model's. Columns: ``path, top1, p1, top2, p2, top3, p3, error`` (fewer classes leave
cells empty; an unreadable file has only ``path`` and ``error``). Without ``--out`` the CSV goes to
stdout. With ``--data-root`` every path must lie inside that folder (the dashboard passes its own).
Exit status: 0 with at least one image predicted, 2 when nothing could be predicted (the message on
stderr, prefixed by ``error:``).
"""

from __future__ import annotations

import csv
import io
import os
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np

COLUMNS = ("path", "top1", "p1", "top2", "p2", "top3", "p3", "error")
TOP = 3


class PredictError(Exception):
    """Nothing to predict (bad paths, no images); the message says why."""


def image_files(paths: Sequence[str | os.PathLike], data_root: str | os.PathLike | None = None) -> list[Path]:
    """The files to predict: each file as given, each folder's image files (recursively, sorted).

    Raises:
        PredictError: a path that does not exist, or one outside ``data_root`` when it is given.
    """
    from tl_core.data import DataError
    from tl_core.data.folder import IMAGE_EXTENSIONS, resolve_folder

    files: list[Path] = []
    root = Path(os.path.expanduser(str(data_root))).resolve() if data_root is not None else None
    for raw in paths:
        p = Path(os.path.expanduser(str(raw)))
        if data_root is not None:
            try:  # the dashboard's confinement: the one check folder data sets use (symbolic links followed)
                resolve_folder(p if p.is_dir() else p.resolve().parent, data_root)
            except DataError as e:
                raise PredictError(str(e)) from e
        if p.is_dir():
            for dirpath, dirnames, names in os.walk(p):
                dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                files.extend(Path(dirpath) / n for n in sorted(names)
                             if not n.startswith(".") and n.lower().endswith(IMAGE_EXTENSIONS)
                             and (root is None or root in (Path(dirpath) / n).resolve().parents))
        elif p.is_file():
            files.append(p)
        else:
            raise PredictError(f"'{raw}' does not exist: give image files or folders of images.")
    if not files:
        raise PredictError("no image files in " + ", ".join(f"'{p}'" for p in paths)
                           + f" (read: {', '.join(IMAGE_EXTENSIONS)}).")
    return files


def read_images(files: Sequence[Path]) -> tuple[np.ndarray, list[int], dict[int, str]]:
    """Decode files as folder data sets do: (images uint8 (n, 64, 64, 3), indices of the readable files,
    {index: why} for the unreadable ones)."""
    from tl_core.data.folder import WORK_SIZE, read_image

    images, ok, bad = [], [], {}
    for i, f in enumerate(files):
        try:
            images.append(read_image(f, WORK_SIZE))
            ok.append(i)
        except Exception as e:  # noqa: BLE001 - any failure to decode: say which file and why
            bad[i] = f"not a readable image ({(str(e) or type(e).__name__).splitlines()[0][:160]})"
    arr = np.stack(images) if images else np.zeros((0, WORK_SIZE, WORK_SIZE, 3), np.uint8)
    return arr, ok, bad


def rows(predictor: Any, files: Sequence[Path]) -> list[dict[str, Any]]:
    """One CSV row per file (see :data:`COLUMNS`)."""
    images, ok, bad = read_images(files)
    probs = predictor.probabilities(images) if len(ok) else np.zeros((0, len(predictor.classes)))
    out: list[dict[str, Any]] = [{"path": str(f), "error": bad.get(i, "")} for i, f in enumerate(files)]
    for row_i, p in zip(ok, probs):
        order = np.argsort(-p, kind="stable")[:TOP]
        for rank, c in enumerate(order, 1):
            out[row_i][f"top{rank}"] = predictor.classes[int(c)]
            out[row_i][f"p{rank}"] = f"{float(p[c]):.6f}"
    return out


def to_csv(table: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COLUMNS, restval="", lineterminator="\n")
    w.writeheader()
    w.writerows(table)
    return buf.getvalue()


def predict_run(store: Any, run_id: str, paths: Sequence[str | os.PathLike],
                data_root: str | os.PathLike | None = None) -> list[dict[str, Any]]:
    """Rows for ``paths`` with the run's exported network.

    Raises:
        PredictError: bad paths or no images; tl_core.export.ExportError: no such run, unfinished, no checkpoint.
    """
    from tl_core.export import load_run, network_predictor

    files = image_files(paths, data_root)
    return rows(network_predictor(load_run(store, run_id)), files)


def cli(a: Any) -> int:
    from tl_core.export import ExportError
    from tl_core.store import RunStore

    try:
        table = predict_run(RunStore(), a.run, a.paths, a.data_root)
    except (PredictError, ExportError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    text = to_csv(table)
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(str(a.out) + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, a.out)
    else:
        sys.stdout.write(text)
    skipped = [r for r in table if r["error"]]
    for r in skipped:
        print(f"skipped: {r['path']}: {r['error']}", file=sys.stderr)
    if len(skipped) == len(table):
        print("error: none of the files is a readable image", file=sys.stderr)
        return 2
    return 0


def add_flags(p: Any) -> None:
    p.add_argument("--run", required=True, metavar="RUN_ID",
                   help="a finished run (its chosen checkpoint, else its last)")
    p.add_argument("paths", nargs="+", metavar="PATH", help="image files or folders of images")
    p.add_argument("--out", "--csv", dest="out", help="CSV file to write (default: stdout)")
    p.add_argument("--data-root", help="refuse paths outside this folder (the dashboard's data folder)")
