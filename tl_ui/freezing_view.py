"""The backbone's stages as boxes, frozen ones greyed, then the new head: Setup draws the run it is about to
start, the Monitor the stages each selected run trains at its current epoch.

The Monitor reads the frozen count of a run's last step (the step metric ``frozen_stages`` the loop logs);
before the first step it shows what the run starts with. A run whose schedule unfreezes stages (gradual
unfreezing) says when each frozen stage joins. No torch: stage names come from the backbone facts.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Any

import streamlit as st

from tl_core.store import RunRecord
from tl_ui import resources, runinfo, theme
from tl_ui.widgets import plain

SCHEDULE = "gradual_unfreezing"


def stage_diagram(stage_names: list[str], per_stage: list[int], frozen: int,
                  notes: list[str] | None = None) -> str:
    """HTML: the backbone's stages in order, the frozen ones greyed, then the new head.

    ``notes``: the small line of each stage (default: its parameters and 'frozen' or 'trained').
    """
    boxes = []
    for i, (stage, n) in enumerate(zip(stage_names, per_stage)):
        if i < frozen:
            style = (f"background:{theme.FROZEN_FILL};color:{theme.FROZEN_TEXT};"
                     f"border:2px dashed #9ca3af")
            state = "frozen"
        else:
            style = f"background:{theme.TRAINABLE_FILL};color:#14532d;border:2px solid {theme.TRAINABLE_BORDER}"
            state = "trained"
        note = notes[i] if notes is not None else f"{runinfo.fmt_count(n)} params · {state}"
        boxes.append(f'<div class="tl-stage" style="{style}"><b>{i + 1}. {html.escape(stage)}</b>'
                     f"<small>{html.escape(note)}</small></div>")
    boxes.append(f'<div class="tl-stage" style="background:{theme.HEAD_FILL};color:#78350f;'
                 f'border:2px solid {theme.HEAD_BORDER}"><b>new head</b><small>always trained</small></div>')
    arrow = '<div class="tl-arrow">→</div>'
    return '<div class="tl-stages">' + arrow.join(boxes) + "</div>"


@dataclass
class FreezingNow:
    """What one run trains at its current epoch."""

    stage_names: list[str]
    frozen: int            # leading stages frozen now
    epoch: int             # the epoch it is in (1-based; 0 before its first step)
    epochs: int
    notes: list[str]       # one line per stage


def _changes_freezing(config: dict[str, Any]) -> bool:
    from tl_core.methods import all_extras, all_methods

    method = all_methods().get(config.get("method", {}).get("name"))
    extras = all_extras()
    return bool(method is not None and method.changes_freezing) or any(
        isinstance(e, dict) and e.get("name") in extras and extras[e["name"]].changes_freezing
        for e in config.get("method", {}).get("extras") or [])


def _schedule_of(config: dict[str, Any], n: int, floor: int):
    """Frozen stages per epoch (0-based) of a gradual-unfreezing run; None for other runs."""
    from tl_core.methods.gradual_unfreezing import GradualUnfreezingParams, frozen_at

    entry = next((e for e in config.get("method", {}).get("extras") or []
                  if isinstance(e, dict) and e.get("name") == SCHEDULE), None)
    if entry is None:
        return None
    try:
        p = GradualUnfreezingParams(**(entry.get("params") or {}))
    except TypeError:
        return None
    return lambda epoch: frozen_at(epoch, n, floor, int(p.start_trainable), max(1, int(p.every_epochs)))


def freezing_now(config: dict[str, Any], stage_names: list[str], epoch: int, logged: int | None,
                 ) -> FreezingNow | None:
    """The stages a run trains now: ``logged`` is the frozen count of its last step (None before one).

    None for a run that freezes nothing and has no schedule that would (every stage trains throughout).
    """
    n = len(stage_names)
    floor = int(config.get("model", {}).get("freeze", 0) or 0)
    if floor == 0 and not _changes_freezing(config):
        return None
    epochs = int(config.get("optim", {}).get("epochs", 0) or 0)
    schedule = _schedule_of(config, n, floor)
    if logged is None:
        logged = schedule(0) if schedule is not None else floor
    frozen = min(max(int(logged), 0), n)
    notes = []
    for i in range(n):
        joins = None
        if schedule is not None and i >= floor:
            joins = next((e for e in range(epochs) if schedule(e) <= i), None)
        if i < floor:
            notes.append("frozen (your setting)")
        elif i < frozen:
            notes.append(f"frozen · trains from epoch {joins + 1}" if joins is not None else "frozen now")
        else:
            notes.append(f"trained since epoch {joins + 1}" if joins is not None and joins > 0 else "trained")
    return FreezingNow(list(stage_names), frozen, epoch, epochs, notes)


def _logged_frozen(rec: RunRecord) -> int | None:
    """The frozen count of the run's last step row (None before its first step, or a run from before the
    metric existed)."""
    if not rec.step:
        return None
    rows = resources.get_store().step_metrics(rec.id, since_step=rec.step - 1)
    if "frozen_stages" not in rows or rows["frozen_stages"].dropna().empty:
        return None
    return int(rows["frozen_stages"].dropna().iloc[-1])


def render_freezing_view(recs: list[RunRecord]) -> None:
    """The Monitor's freezing diagrams: for each selected run that freezes stages, which ones train now."""
    infos = {b["name"]: b for b in resources.backbones()}
    shown = []
    for rec in recs:
        info = infos.get(str(rec.config.get("model", {}).get("backbone")))
        if info is None:
            continue
        now = freezing_now(rec.config, list(info["stage_names"]), rec.epoch, _logged_frozen(rec))
        if now is not None:
            shown.append((rec, info, now))
    if not shown:
        return
    st.markdown("**Which backbone stages train now**")
    for rec, info, now in shown:
        n = len(now.stage_names)
        when = f"epoch {now.epoch} of {now.epochs}" if now.epoch else "before its first step"
        st.caption(plain(f"{runinfo.run_title(rec)} · {when}: {n - now.frozen} of {n} stages trained"))
        st.html(stage_diagram(now.stage_names, [0] * n, now.frozen, now.notes))
