"""The checkpoint: its file name, its format, writing it atomically, reading it safely, resuming.

Checkpoints load with ``torch.load(..., weights_only=True)``: a pickled object is refused.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

from tl_core.config import RunConfig
from tl_core.failures import RunError

CHECKPOINT_NAME = "checkpoint.pt"
#: The checkpoint of the epoch the run's label-free criterion chose (``tl_core.selection``): written, in the
#: same format, each time the criterion improves; export and predict use it, resume uses the last one.
SELECTED_NAME = "selected.pt"
WHERE_NAME = "checkpoint.json"  # where the last checkpoint is (step, epoch, time), for pages that load no torch
FORMAT = "transfer-lab-checkpoint/1"
#: A checkpoint is written at the end of each epoch and, inside an epoch, this often (a long epoch on a CPU
#: takes an hour: a stop, a crash or a killed server then loses minutes, not the epoch).
EVERY_S = 300.0
WHEN_WRITTEN = f"at the end of each epoch and every {EVERY_S / 60:g} minutes inside one"
_KEYS = ("step", "epoch", "backbone", "head", "method", "optimizer", "scaler", "config")


def checkpoint_path(run_dir: str | os.PathLike) -> Path:
    """Where a run keeps its last checkpoint."""
    return Path(run_dir) / CHECKPOINT_NAME


def selected_path(run_dir: str | os.PathLike) -> Path:
    """Where a run keeps the checkpoint of the epoch its criterion chose."""
    return Path(run_dir) / SELECTED_NAME


def weights_path(run_dir: str | os.PathLike) -> Path:
    """The checkpoint whose weights stand for the run (export, predict): the selected one when the run wrote
    one (its criterion had a finite score at some epoch), else the last."""
    chosen = selected_path(run_dir)
    return chosen if chosen.exists() else checkpoint_path(run_dir)


def write_selected(state: dict[str, Any], run_dir: str | os.PathLike) -> None:
    """Write the checkpoint of the epoch the criterion just chose (atomically)."""
    save_atomic(state, selected_path(run_dir))


def save_atomic(state: dict[str, Any], path: Path) -> None:
    """Write to a temporary file, then rename: a crash never leaves half a checkpoint."""
    import torch

    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    try:
        torch.save(state, tmp)
        os.replace(tmp, path)
    except RuntimeError as e:  # torch reports a short write as "[enforce fail ...] unexpected pos ..."
        if tmp.exists():
            tmp.unlink()
        need = _tensor_bytes(state)
        if shutil.disk_usage(path.parent).free < need:
            raise OSError(errno.ENOSPC, f"No space left on device to write {path.name} (about "
                                        f"{need / 2**20:.1f} MB)") from e
        raise
    finally:
        if tmp.exists():
            tmp.unlink()


def _tensor_bytes(obj: Any) -> int:
    """The bytes of every tensor in a nested state (what a checkpoint needs on disk, roughly)."""
    if isinstance(obj, dict):
        return sum(_tensor_bytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(_tensor_bytes(v) for v in obj)
    nbytes = getattr(obj, "nbytes", None)
    return int(nbytes) if isinstance(nbytes, int) else 0


def write(state: dict[str, Any], run_dir: str | os.PathLike) -> None:
    """Write a run's checkpoint (atomically), then the small note of where it is (``checkpoint.json``)."""
    save_atomic(state, checkpoint_path(run_dir))
    note = {"step": int(state["step"]), "epoch": int(state["epoch"]), "in_epoch": int(state.get("in_epoch", 0)),
            "t": time.time()}
    tmp = Path(run_dir) / (WHERE_NAME + ".tmp")
    tmp.write_text(json.dumps(note))
    os.replace(tmp, Path(run_dir) / WHERE_NAME)


def last_saved(run_dir: str | os.PathLike) -> dict[str, Any] | None:
    """Where the run's last checkpoint is ({step, epoch, in_epoch, t}); None when it has none (no torch)."""
    if not checkpoint_path(run_dir).exists():
        return None
    try:
        return json.loads((Path(run_dir) / WHERE_NAME).read_text())
    except (OSError, ValueError):
        return {}  # a checkpoint written before the note existed: whereabouts unknown


def make_state(config: RunConfig, model: Any, method: Any, opt: Any, step: int, epoch: int,
               extras: list[Any] = (), in_epoch: int = 0, selection: dict[str, Any] | None = None,
               ) -> dict[str, Any]:
    """What a checkpoint holds: the config, where training is, and every state needed to go on.

    ``selection``: the criterion tracker's state (``tl_core.selection.Tracker.state``), so a resumed run
    goes on counting epochs without improvement from where it was.

    ``epoch``: epochs completed; ``in_epoch``: steps done in the next one (a checkpoint written inside an
    epoch, by time), with the random state then, so a resumed run goes on exactly as it would have.
    """
    import torch

    return {"format": FORMAT, "config": config.to_json(), "step": step, "epoch": epoch, "in_epoch": in_epoch,
            "rng": torch.get_rng_state(),
            "backbone": model.backbone.state_dict(), "head": model.head.state_dict(), "method": method.state_dict(),
            "extras": {e.name: e.state_dict() for e in extras},
            "optimizer": opt.state_dict(), "scaler": opt.scaler_state_dict(),
            **({} if selection is None else {"selection": selection})}


def load_checkpoint_file(path: str | os.PathLike, expect_config: RunConfig | None = None) -> dict[str, Any]:
    """Load one of our checkpoints safely (weights_only); a foreign or corrupt file raises RunError.

    With ``expect_config``, a checkpoint written by a run of another configuration is refused too.
    """
    import torch

    path = Path(path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError as e:
        raise RunError(f"No checkpoint at {path}.", hint=f"A run saves one {WHEN_WRITTEN}.") from e
    except Exception as e:  # pickle errors, truncated zip, unsafe globals
        raise RunError(f"{path.name} is not a readable Transfer Lab checkpoint ({type(e).__name__}: "
                       f"{str(e).splitlines()[0][:200] if str(e) else 'no detail'}).",
                       hint=f"Use a {CHECKPOINT_NAME} written by Transfer Lab; it may be corrupt.") from e
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise RunError(f"{path.name} is not a Transfer Lab checkpoint.",
                       hint=f"Use a {CHECKPOINT_NAME} written by Transfer Lab.")
    for key in _KEYS:
        if key not in ckpt:
            raise RunError(f"{path.name} is an incomplete Transfer Lab checkpoint (no '{key}').",
                           hint="It may be corrupt; start the run again.")
    if expect_config is not None:
        try:
            same = RunConfig.from_json(ckpt["config"]).to_json() == expect_config.to_json()
        except (ValueError, TypeError):
            same = False
        if not same:
            raise RunError(f"{path.name} was written by a run with other settings than this one.",
                           hint="Resume a run only from its own checkpoint.")
    return ckpt


def restore(ckpt: dict[str, Any], model: Any, method: Any, opt: Any, path: Path,
            extras: list[Any] = ()) -> tuple[int, int]:
    """Put a checkpoint read by :func:`load_checkpoint_file` into the run's parts; returns (step, epoch)
    to continue from. ``path`` names the file in messages."""
    try:
        model.backbone.load_state_dict(ckpt["backbone"])
        model.head.load_state_dict(ckpt["head"])
        method.load_state_dict(ckpt["method"])
        for extra in extras:
            extra.load_state_dict(ckpt.get("extras", {}).get(extra.name, {}))
        opt.load_state_dict(ckpt["optimizer"])
        opt.load_scaler_state_dict(ckpt["scaler"])
    except (RuntimeError, ValueError, KeyError, TypeError) as e:
        raise RunError(f"{Path(path).name} does not fit this run's model ({str(e).splitlines()[0][:200]}).",
                       hint="Resume a run only from its own checkpoint; it may be corrupt.") from e
    return int(ckpt["step"]), int(ckpt["epoch"])


def prepare_resume(store: Any, run_id: str) -> tuple[RunConfig, Path]:
    """Check that a run can resume and get its store ready: the one resume check (dashboard and CLI).

    Claims the run for this process and drops the metrics logged after the checkpoint.

    Returns:
        The run's config and its checkpoint path.

    Raises:
        KeyError: no such run.
        ValueError: the run is active or completed, or its checkpoint is missing, corrupt,
            foreign or of another configuration; the message says which and what to do.
    """
    rec = store.get_run(run_id)
    if rec is None:
        raise KeyError(f"no run with id {run_id}")
    if rec.active:
        raise ValueError(f"run {run_id} is still {rec.status}; stop it first")
    if rec.status == "completed":
        raise ValueError(f"run {run_id} has already completed; start a new run to train longer")
    ckpt = checkpoint_path(store.run_dir(run_id))
    if not ckpt.exists():
        raise ValueError(f"run {run_id} has no checkpoint yet (one is written {WHEN_WRITTEN}); "
                         "start it again instead")
    cfg = RunConfig.from_dict(rec.config)
    try:
        meta = load_checkpoint_file(ckpt, expect_config=cfg)
    except RunError as e:
        raise ValueError(f"cannot resume {run_id}: {e}" + (f" {e.hint}" if e.hint else "")) from e
    store.keep_reserve()  # a full disk gave it up to record the failure; space is back now
    store.claim(run_id)  # before it looks active, so no other process takes it for dead
    store.truncate_after(run_id, int(meta["step"]), int(meta["epoch"]))
    return cfg, ckpt
