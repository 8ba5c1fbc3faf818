"""A run's model leaves the dashboard: export it (Runs page) and predict with it (Predict page).

Both run the command line in a child process (``python -m tl_core export|predict``), so the server never
loads the network: pages stay torch-free, and a slow or failing export cannot take the server down. The
uploads' checks (size caps, decoding with PIL) and the data-folder confinement happen here, before the
child starts.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import pandas as pd
import streamlit as st

ROOT = Path(__file__).resolve().parents[1]
#: Upload caps: per file and for all files of one prediction.
MAX_FILE_MB = 10
MAX_TOTAL_MB = 50
#: File types the uploader offers (each file is decoded with PIL all the same).
UPLOAD_TYPES = ["png", "jpg", "jpeg", "bmp", "gif", "tif", "tiff", "webp"]
#: Most images one prediction shows.
MAX_IMAGES = 200
TIMEOUT_S = 600
FORMAT_TITLES = {"bundle": "Bundle (.zip)",
                 "torchscript": "TorchScript (.pt)", "onnx": "ONNX (.onnx)"}
SUFFIX = {"bundle": ".zip", "torchscript": ".pt", "onnx": ".onnx"}


def _cli(args: Sequence[str]) -> subprocess.CompletedProcess:
    """``python -m tl_core ARGS`` in a child process, in the repository root, with this server's TL_HOME."""
    return subprocess.run([sys.executable, "-m", "tl_core", *args], cwd=str(ROOT), capture_output=True, text=True,
                          timeout=TIMEOUT_S, stdin=subprocess.DEVNULL, env={**os.environ, "PYTHONWARNINGS": "ignore"})


def _error_of(proc: subprocess.CompletedProcess) -> str:
    lines = [ln[len("error: "):] for ln in proc.stderr.splitlines() if ln.startswith("error: ")]
    return " ".join(lines) or (proc.stderr.strip().splitlines() or ["no message"])[-1]


# ------------------------------------------------------------------ export
def export_file(run_id: str, fmt: str) -> tuple[bytes, str]:
    """The run's model in ``fmt`` as (file bytes, file name).

    Raises:
        RuntimeError: the export failed; the message is the command line's.
    """
    if fmt not in SUFFIX:
        raise RuntimeError(f"unknown format {fmt!r}")
    name = f"{run_id}-model{SUFFIX[fmt]}"
    with tempfile.TemporaryDirectory(prefix="tl-export-") as tmp:
        out = Path(tmp) / name
        proc = _cli(["export", run_id, "--format", fmt, "--out", str(out)])
        if proc.returncode != 0 or not out.is_file():
            raise RuntimeError(_error_of(proc))
        return out.read_bytes(), name


def export_controls(rec: Any, has_checkpoint: bool) -> None:
    """The Runs page's model export: a format, an Export button (a spinner while the child process
    works), then the file's download button. Exporting changes no run: read-only viewers may too."""
    from tl_ui import keys, widgets

    ss = st.session_state
    finished = not rec.active and has_checkpoint
    why = None if finished else ("The run is still active: export its model when it has finished."
                                 if rec.active else "No checkpoint yet: the run has no model to export.")
    c1, c2 = st.columns([3, 2], vertical_alignment="bottom")
    fmt = c1.selectbox("Model export", list(FORMAT_TITLES), format_func=FORMAT_TITLES.get,
                       key=keys.RUNS_EXPORT_FORMAT, disabled=not finished, help=why or (
                           "The network the run's target domain meets (its last checkpoint), with its class names "
                           "and preprocessing. Bundle: a zip of safetensors weights, classes, preprocessing (JSON) "
                           "and the run's config; TorchScript and ONNX (opset 17) carry the same facts inside. "
                           "Same as python -m tl_core export."))
    if c2.button("Export model", key=keys.RUNS_EXPORT_BUTTON, icon=":material/deployed_code:", disabled=not finished,
                 help=why):
        with st.spinner(f"Exporting the model as {FORMAT_TITLES[fmt]} (a separate process loads it)…"):
            try:
                data, name = export_file(rec.id, fmt)
                ss[keys.RUNS_EXPORT_FILE] = (rec.id, fmt, data, name)
            except (RuntimeError, OSError, subprocess.TimeoutExpired) as e:
                ss[keys.RUNS_EXPORT_FILE] = (rec.id, fmt, None, f"Could not export the model: {e}")
    done = ss.get(keys.RUNS_EXPORT_FILE)
    if done and done[0] == rec.id and done[1] == fmt:
        if done[2] is None:
            st.error(widgets.plain(done[3]), icon=":material/error:")
        else:
            st.download_button(f"Download {done[3]} ({len(done[2]) / 2**20:.1f} MB)", done[2], file_name=done[3],
                               mime="application/octet-stream", icon=":material/download:", on_click="ignore",
                               key=f"runs.dl.model.{rec.id}.{fmt}")


# ------------------------------------------------------------------ predict
@dataclass
class Checked:
    """Uploads sorted into accepted (name, bytes) and refused messages naming each file."""

    accepted: list[tuple[str, bytes]] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)


def check_uploads(files: Sequence[Any]) -> Checked:
    """Size caps (each file, then all together, in order) and a decode with PIL; returns what may go on."""
    from PIL import Image, UnidentifiedImageError

    out, total = Checked(), 0
    for f in files:
        name = getattr(f, "name", "?")
        data = f.getvalue() if hasattr(f, "getvalue") else bytes(f)
        mb = len(data) / 2**20
        if mb > MAX_FILE_MB:
            out.refused.append(f"{name}: {mb:.1f} MB is over the limit of {MAX_FILE_MB} MB per image; refused.")
            continue
        if total + len(data) > MAX_TOTAL_MB * 2**20:
            out.refused.append(f"{name}: refused, the images together would pass {MAX_TOTAL_MB} MB; predict the "
                               "rest in another round.")
            continue
        try:
            with Image.open(io.BytesIO(data)) as im:
                im.load()  # a real decode: a renamed text file or a truncated image fails here
        except Exception as e:  # noqa: BLE001 - whatever PIL says, the file is not an image it can read
            why = "not a picture format PIL knows" if isinstance(e, UnidentifiedImageError) else \
                (str(e) or type(e).__name__)[:120]
            out.refused.append(f"{name}: not an image that can be read ({why}); refused.")
            continue
        total += len(data)
        out.accepted.append((name, data))
    return out


def save_uploads(accepted: Sequence[tuple[str, bytes]]) -> tuple[Path, list[Path]]:
    """Write accepted uploads into a new temporary folder (names made safe, order kept)."""
    folder = Path(tempfile.mkdtemp(prefix="tl-predict-"))
    paths = []
    for i, (name, data) in enumerate(accepted):
        safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in Path(name).name)[:80] or "image"
        p = folder / f"{i:03d}-{safe}"
        p.write_bytes(data)
        paths.append(p)
    return folder, paths


def confined_folder(path: str, data_root: Path) -> Path:
    """The folder, resolved, if it lies inside the data root.

    Raises:
        ValueError: no folder, missing, a file, or outside the data root (tl_core's message).
    """
    from tl_core.data import DataError
    from tl_core.data.folder import resolve_folder

    try:
        return resolve_folder(path, data_root)
    except DataError as e:
        raise ValueError(str(e)) from e


def predict(run_id: str, paths: Sequence[str | os.PathLike], data_root: Path | None = None) -> pd.DataFrame:
    """Top-3 of each image with the run's model (columns of tl_core.predict: path, top1, p1, ..., error).

    Raises:
        RuntimeError: the prediction failed; the message is the command line's.
    """
    with tempfile.TemporaryDirectory(prefix="tl-predict-csv-") as tmp:
        out = Path(tmp) / "preds.csv"
        args = ["predict", "--run", run_id, *[str(p) for p in paths], "--out", str(out)]
        if data_root is not None:
            args += ["--data-root", str(data_root)]
        proc = _cli(args)
        if proc.returncode != 0 or not out.is_file():
            raise RuntimeError(_error_of(proc))
        return pd.read_csv(out, dtype={"top1": str, "top2": str, "top3": str}, keep_default_na=False)


def thumbnail(path: str | os.PathLike, size: int = 160) -> Any:
    """An image file as a square RGB picture for the grid (None when unreadable)."""
    from tl_core.data.folder import read_image

    try:
        return read_image(path, size)
    except Exception:  # noqa: BLE001 - the row already says why
        return None
