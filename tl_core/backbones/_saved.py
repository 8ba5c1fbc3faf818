"""Backbones saved by earlier runs, addressed as ``run:<run_id>``.

A run folder (``<home>/runs/<run_id>/``, home = ``TL_HOME`` or ``~/.transfer-lab``) holds
``backbone.safetensors`` (the backbone's state dict) and ``backbone.json`` (which
architecture it is, ``{"backbone": "resnet18", ...}``). Loading builds that architecture
without pretrained weights and loads the saved tensors strictly.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from pathlib import Path
from typing import Any

from tl_core.backbones._base import Backbone, BackboneError, BackboneInfo
from tl_core.backbones._registry import RUN_PREFIX, _entry, create_backbone, get_info

WEIGHTS_FILE = "backbone.safetensors"
META_FILE = "backbone.json"
FORMAT_VERSION = 1
_RUN_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def _home(home: str | Path | None) -> Path:
    if home is not None:
        return Path(home).expanduser()
    from tl_core.store import default_home  # one definition of TL_HOME

    return default_home()


def _run_dir(name: str, home: str | Path | None) -> tuple[str, Path]:
    run_id = name[len(RUN_PREFIX):]
    if not _RUN_ID_RE.match(run_id) or ".." in run_id:
        raise BackboneError(f"{name!r} is not a valid saved backbone: expected {RUN_PREFIX}<run_id> with letters, "
                            "digits, '-', '_' or '.'.")
    return run_id, _home(home) / "runs" / run_id


def _read_meta(name: str, home: str | Path | None) -> tuple[str, Path, dict[str, Any]]:
    run_id, d = _run_dir(name, home)
    meta_path = d / META_FILE
    if not meta_path.is_file() or not (d / WEIGHTS_FILE).is_file():
        raise BackboneError(f"{name}: no saved backbone in {d} (needs {META_FILE} and {WEIGHTS_FILE}). "
                            "A run saves its backbone when it finishes; pick a finished run.")
    try:
        meta = json.loads(meta_path.read_text())
        arch = meta["backbone"]
        _entry(arch)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise BackboneError(f"{name}: {meta_path} is unreadable or names no known backbone ({e}).") from e
    return run_id, d, meta


def saved_info(name: str, home: str | Path | None = None) -> BackboneInfo:
    """Facts about ``run:<id>``: its architecture's, under the saved name.

    Raises:
        BackboneError: no saved backbone there, or an unreadable one.
    """
    run_id, d, meta = _read_meta(name, home)
    base = get_info(meta["backbone"])
    return dataclasses.replace(base, name=name, title=f"{base.title} from run {run_id}",
                               weights=f"fine-tuned by run {run_id} ({d / WEIGHTS_FILE})")


def saved_status(name: str, home: str | Path | None = None) -> tuple[bool, str]:
    """(loadable, explanation) for ``run:<id>``."""
    try:
        return True, saved_info(name, home).weights
    except BackboneError as e:
        return False, str(e)


def pending_architecture(name: str, home: str | Path | None = None) -> str | None:
    """The architecture ``run:<id>`` will save when that run finishes, if it is still queued or running (runs
    train one after the other, so a run queued after it finds the backbone saved); None otherwise."""
    try:
        run_id, _ = _run_dir(name, home)
    except BackboneError:
        return None
    if not (_home(home) / "runs.db").is_file():
        return None
    from tl_core.store import ACTIVE, RunStore

    store = RunStore(_home(home))
    try:
        rec = store.get_run(run_id)
    finally:
        store.close()
    arch = ((rec.config or {}).get("model") or {}).get("backbone") if rec is not None else None
    if rec is None or rec.status not in ACTIVE or not isinstance(arch, str):
        return None
    if arch.startswith(RUN_PREFIX):
        try:
            return get_info(arch, home).arch
        except BackboneError:
            return pending_architecture(arch, home)
    return arch


def load_saved(name: str, pretrained: bool = True, home: str | Path | None = None) -> Backbone:
    """Build ``run:<id>``: its architecture, with the saved weights unless ``pretrained`` is False.

    Raises:
        BackboneError: nothing saved there, or tensors that do not fit the architecture.
    """
    from safetensors.torch import load_file

    info = saved_info(name, home)
    _, d, _ = _read_meta(name, home)
    backbone = create_backbone(info.arch, pretrained=False)
    if pretrained:
        try:
            backbone.load_state_dict(load_file(str(d / WEIGHTS_FILE)), strict=True)
        except Exception as e:  # safetensors header errors, missing or extra keys, shapes
            raise BackboneError(f"{name}: cannot load {d / WEIGHTS_FILE} into {info.arch} "
                                f"({str(e).splitlines()[0]}).") from e
    backbone.info = dataclasses.replace(info, params=backbone.info.params)
    return backbone


def save_backbone(backbone: Backbone, directory: str | Path) -> None:
    """Write ``backbone.safetensors`` and ``backbone.json`` into ``directory`` (atomically, JSON last)."""
    from safetensors.torch import save_file

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    info = backbone.info
    state = {k: v.detach().to("cpu").contiguous() for k, v in backbone.state_dict().items()}
    meta = {"format": FORMAT_VERSION, "backbone": info.arch, "saved_from": info.name, "title": info.title,
            "stage_names": list(info.stage_names), "feature_dim": info.feature_dim,
            "input_size": info.input_size, "mean": list(info.mean), "std": list(info.std), "scale": info.scale,
            "frozen_stages": backbone.frozen_stages, "params": info.params}
    tmp = d / (WEIGHTS_FILE + ".tmp")
    save_file(state, str(tmp), metadata={"backbone": info.arch})
    os.replace(tmp, d / WEIGHTS_FILE)
    tmp = d / (META_FILE + ".tmp")
    tmp.write_text(json.dumps(meta, indent=2))
    os.replace(tmp, d / META_FILE)


def list_saved_backbones(home: str | Path | None = None) -> list[BackboneInfo]:
    """Backbones saved under ``<home>/runs/*/``, newest first; unreadable ones are skipped."""
    runs = _home(home) / "runs"
    if not runs.is_dir():
        return []
    found = []
    for meta_path in runs.glob(f"*/{META_FILE}"):
        try:
            found.append((meta_path.stat().st_mtime, saved_info(RUN_PREFIX + meta_path.parent.name, home)))
        except (BackboneError, OSError):
            continue
    return [info for _, info in sorted(found, key=lambda t: -t[0])]
