"""Transfer gain on the pages (``tl_core.gain``): the Runs table's column and the Monitor card's line."""

from __future__ import annotations

from typing import Any

import streamlit as st

from tl_core import gain
from tl_ui import widgets


def matcher(records: list[Any]) -> gain.Matcher:
    """One index of the store's completed runs, for every row or card of a page."""
    return gain.Matcher(records)


def cell(g: gain.Gain) -> str | None:
    """The Runs table's 'Gain' cell, short enough for the table to fit 1280 px: '+3.1', '−7.5 ⚠' (negative
    transfer), 'n/a' (no target labels), or empty; the column's help and the Monitor card say against what."""
    if g.points is not None:
        return f"−{abs(g.points):.1f} ⚠" if g.negative else f"+{g.points:.1f}"
    if g.reason == gain.NO_LABELS:
        return "n/a"
    return None


COLUMN_HELP = ("Transfer gain in points of target accuracy against the run's baseline: source only (same settings) "
               "for an adaptation method, training from scratch for a fine-tune of pretrained weights. "
               "⚠ marks negative transfer; n/a: the target has no labels. Empty: the run is a baseline, or no "
               "finished baseline yet. The Monitor's run card names the baseline run.")


def column_config() -> dict[str, Any]:
    return {"Gain": st.column_config.TextColumn("Gain", width=66, help=COLUMN_HELP)}


def render_card_line(rec: Any, m: gain.Matcher) -> None:
    """The Monitor card's gain: a warning for negative transfer, a caption otherwise (finished runs only)."""
    if rec.status != "completed":
        return
    g = m.gain(rec)
    if g.against is None:
        return
    if g.negative:
        st.warning(widgets.plain(g.text().capitalize() + f" (run {g.baseline_run})."), icon=":material/trending_down:")
    else:
        st.caption(widgets.plain(g.text()))


def baseline_checkbox(cfg: Any, key: str) -> bool:
    """Setup's 'Also run its baseline' (only for a run that has one); True when ticked."""
    try:
        kind = gain.baseline_kind(cfg)
    except Exception:  # a backbone that does not resolve: preflight says why elsewhere
        return False
    if kind is None:
        return False
    return st.checkbox(f"Also run its baseline ({kind})", key=key,
                       help="Queues the same run as " + ("source only (method 'Source only', same settings)"
                                                          if kind == gain.SOURCE_ONLY else
                                                          "training from scratch (the architecture without "
                                                          "pretrained weights, nothing frozen, no extras)")
                       + " before this one, unless a finished or queued one is stored; Runs and Monitor then show "
                         "the transfer gain in points, and flag negative transfer.")


def submit_with_baseline(manager: Any, cfg: Any, owner: str | None, also: bool) -> list[str]:
    """Submit ``cfg``, after its baseline when ``also`` and none is stored; the ids in queue order."""
    ids = []
    base = gain.baseline_to_queue(manager.store, cfg) if also else None
    if base is not None:
        ids.append(manager.submit(base, owner=owner))
    ids.append(manager.submit(cfg, owner=owner))
    return ids
