"""Running one run and recording how it ended: the one place that does it.

The job manager's worker thread (in-process mode), the training process (``tl_core.runner``,
the dashboard's isolated mode) and the command line all call :func:`execute_run`: it builds
the recorder, calls the training loop, and records the end (completed, stopped, interrupted,
failed or diverged, with a message that says what and where, and a hint).
"""

from __future__ import annotations

import logging
import threading
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from tl_core.checkpoint import WHEN_WRITTEN
from tl_core.config import RunConfig
from tl_core.failures import describe_exception, expected_errors, is_disk_full
from tl_core.recorder import StoreRecorder
from tl_core.store import INTERRUPTED_ERROR, INTERRUPTED_HINT, RunStore

log = logging.getLogger(__name__)

STOPPED_HINT = ("Its metrics so far are kept; Resume goes on from its last checkpoint (written "
                f"{WHEN_WRITTEN}).")


@dataclass
class Outcome:
    """How a run ended. ``result``: the loop's final metrics when it returned; ``message``/``hint``
    when it failed; ``input_error``: it failed because of its input (settings, data, weights)."""

    status: str
    result: dict[str, Any] | None = None
    message: str | None = None
    hint: str | None = None
    input_error: bool = False


def execute_run(store: RunStore, run_id: str, config: RunConfig, stop: threading.Event,
                resume: Path | None = None, on_snapshot: Callable[[str, int], None] | None = None,
                orphaned: threading.Event | None = None,
                wrap: Callable[[Any], Any] | None = None,
                before_finish: Callable[[], None] | None = None) -> Outcome:
    """Train one run that is already marked running and record how it ended. Never raises for what
    the run does.

    Args:
        orphaned: (training process only) set when the parent went away; a run it stopped is
            recorded as interrupted, ready to resume.
        wrap: wraps the store recorder (the command line's progress bar).
        before_finish: called after training returned, before the end is recorded (the
            command line waits for its projector there).
    """
    from tl_core import trainer  # torch is imported only when a run starts

    recorder = StoreRecorder(store, run_id, on_snapshot=on_snapshot)
    try:
        result = trainer.run(config, wrap(recorder) if wrap else recorder, stop, resume=resume)
    except BaseException as exc:  # the caller must keep serving whatever a run does
        status, message, hint = record_failure(store, run_id, exc)
        return Outcome(status, None, message, hint,
                       input_error=isinstance(exc, expected_errors()) and status == "failed")
    if before_finish is not None:
        before_finish()
    status = finish_run(store, run_id, result, interrupted=orphaned is not None and orphaned.is_set(), config=config)
    return Outcome(status, result)


def finish_run(store: RunStore, run_id: str, result: dict[str, Any], interrupted: bool = False,
               config: RunConfig | None = None) -> str:
    """Summary (final and best target accuracy for reporting) and final status of a run that returned.

    The epoch the run's label-free criterion chose and the oracle epoch (best target accuracy, reporting
    only) go into the summary and into ``result`` (``chosen``, ``oracle``: the CLI's JSON line carries them).
    """
    from tl_core.selection import summarise

    epochs = store.epoch_metrics(run_id)
    if config is None:
        rec = store.get_run(run_id)
        config = RunConfig.from_dict(rec.config) if rec is not None else RunConfig()
    if not epochs.empty:
        result.update(summarise(epochs, config.selection.criterion))
    summary = {k: v for k, v in result.items() if k != "status"}
    if not epochs.empty and "target_test_acc" in epochs:
        summary["best_target_test_acc"] = float(epochs["target_test_acc"].max())
        summary["final_target_test_acc"] = float(epochs["target_test_acc"].iloc[-1])
        summary["final_source_val_acc"] = float(epochs["source_val_acc"].iloc[-1])
    if not epochs.empty and "target_entropy" in epochs:  # the label-free score (the only one without target labels)
        summary["final_target_entropy"] = float(epochs["target_entropy"].iloc[-1])
        if "target_test_acc" not in epochs:
            summary["final_source_val_acc"] = float(epochs["source_val_acc"].iloc[-1])
    store.set_summary(run_id, summary)
    if result["status"] == "stopped" and interrupted:
        store.set_status(run_id, "interrupted", error=INTERRUPTED_ERROR, hint=INTERRUPTED_HINT)
        return "interrupted"
    if result["status"] == "stopped":
        store.set_status(run_id, "stopped", error="Stopped by the user.", hint=STOPPED_HINT)
        return "stopped"
    store.set_status(run_id, "completed")
    try:  # transfer gain against its baseline, on it and on the runs it is the baseline of (tl_core/gain.py)
        from tl_core import gain

        gain.record(store, run_id)
    except Exception:  # a comparison never fails a run
        log.warning("transfer gain of run %s not recorded", run_id, exc_info=True)
    return "completed"


def _free_mb(store: RunStore) -> float | None:
    try:
        return store.free_mb()
    except OSError:
        return None


def record_failure(store: RunStore, run_id: str, exc: BaseException) -> tuple[str, str, str | None]:
    """Mark a run failed (or diverged) with a message saying what and where, and a hint.

    The full traceback goes to ``runs/<id>/traceback.txt`` beside the run. Never raises: when
    the store itself cannot be written (a full disk), the failure is only logged.

    Returns:
        (status, message, hint).
    """
    disk_full = is_disk_full(exc)
    message, hint = describe_exception(exc, free_mb=_free_mb(store) if disk_full else None)
    if disk_full:
        store.release_reserve()  # room to record how the run ended
    status = getattr(exc, "status", "failed")
    log.warning("run %s %s: %s", run_id, status, message)
    for attempt in range(2):
        try:
            store.set_status(run_id, status, error=message, hint=hint)
            break
        except Exception as e:  # the database itself failed: a full disk gets the reserve once
            if attempt == 0 and is_disk_full(e) and store.release_reserve():
                continue
            log.exception("could not record the failure of %s", run_id)
            break
    if not isinstance(exc, expected_errors()):
        try:
            (store.run_dir(run_id) / "traceback.txt").write_text(
                "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
        except Exception:  # noqa: BLE001 - best effort only
            pass
    return status, message, hint
