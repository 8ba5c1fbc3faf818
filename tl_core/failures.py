"""How a run ends badly, in words a user can act on: the error types and the one wording of failures.

:func:`describe_exception` turns any exception a run raised into (message, hint); every
place that records a failure (the worker thread, the training process, the command line)
goes through :func:`tl_core.execute.record_failure`, which uses it.
"""

from __future__ import annotations

import errno
import os
import sqlite3
import sysconfig
import traceback


class RunError(Exception):
    """A run ended with a reason the user can act on (``status`` says how it ended)."""

    status = "failed"

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


class Diverged(RunError):
    status = "diverged"


def expected_errors() -> tuple[type[BaseException], ...]:
    """Errors whose message already says what was wrong and what to do (no traceback needed)."""
    from tl_core.data import DataError

    out: tuple[type[BaseException], ...] = (RunError, DataError)
    import sys

    if "tl_core.backbones" in sys.modules:  # BackboneError lives beside torch: only when loaded
        from tl_core.backbones import BackboneError

        out += (BackboneError,)
    return out


def is_out_of_memory(exc: BaseException) -> bool:
    import sys

    torch = sys.modules.get("torch")
    if torch is not None and isinstance(exc, torch.cuda.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()  # MPS, cuDNN, cuBLAS


def is_disk_full(exc: BaseException) -> bool:
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", -1)):
        return True
    return isinstance(exc, sqlite3.OperationalError) and "full" in str(exc).lower()


_STDLIB = sysconfig.get_paths()["stdlib"]


def _library_file(filename: str) -> bool:
    return ("site-packages" in filename or "dist-packages" in filename
            or os.path.abspath(filename).startswith(_STDLIB))


def describe_exception(exc: BaseException, free_mb: float | None = None) -> tuple[str, str | None]:
    """A one-line message with where it happened, and a hint, for a failed run.

    Where: the deepest frame of the traceback outside installed libraries (our code or a
    user's method), plus what the run was doing (``tl_phase``, set by the training loop).
    ``free_mb``: free space under TL_HOME, said when the disk is full.
    """
    if isinstance(exc, RunError):
        return str(exc), exc.hint
    if isinstance(exc, expected_errors()):  # their messages already say what to do
        return str(exc), None
    phase = getattr(exc, "tl_phase", None)
    during = f" {phase}" if phase else ""
    if is_out_of_memory(exc):
        return (f"The GPU ran out of memory{during}: try a smaller batch or image size.",
                "Use a smaller batch size or image size, or freeze more stages (frozen stages keep no gradients).")
    if is_disk_full(exc):
        free = f" ({free_mb:.0f} MB free under TL_HOME)" if free_mb is not None else ""
        return (f"The disk is full{during}: {exc}{free}", "Free some space under TL_HOME, then resume the run "
                "from its last checkpoint.")
    frames = traceback.extract_tb(exc.__traceback__)
    where = ""
    if frames:
        ours = [f for f in frames if not _library_file(f.filename)]
        f = (ours or frames)[-1]
        where = f" (in {os.path.basename(f.filename)}:{f.lineno}, {f.name}{';' + during if phase else ''})"
    text = str(exc).splitlines()[0][:300] if str(exc) else ""
    return f"{type(exc).__name__}: {text}{where}", "This looks like a bug or a data problem; the message says where."
