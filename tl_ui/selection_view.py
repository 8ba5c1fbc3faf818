"""Choosing the checkpoint without target labels, on the pages: Setup's criterion and patience, the Monitor's
and the Runs table's chosen epoch beside the oracle (the criteria: ``tl_core/selection.py``)."""

from __future__ import annotations

from typing import Any, Callable

import streamlit as st

from tl_core.config import RunConfig
from tl_core.selection import CRITERIA, DEFAULT_CRITERION, summarise
from tl_ui.runinfo import NO_TARGET_LABELS, fmt_pct

#: How the oracle is labelled wherever it is shown: it is not a choice a user could make without target labels.
ORACLE = "oracle: uses target labels"


def criterion_label(name: str) -> str:
    """'Source validation accuracy (default)' for the default, the registry's label otherwise."""
    c = CRITERIA.get(name)
    label = c.label if c is not None else name
    return f"{label} (default)" if name == DEFAULT_CRITERION else label


def _criteria_help() -> str:
    return ("Each epoch's checkpoint is scored without target labels; the best epoch's is kept beside the last and "
            "is what export and prediction use. " + " ".join(
                f"**{c.label}** ({'higher' if c.higher_is_better else 'lower'} is better): {c.meaning}; {c.citation}."
                for c in CRITERIA.values()))


def render_setup(slots: dict[str, Any], key: Callable[[str], str], persist: dict[str, Any]) -> None:
    """Setup's two fields: the criterion (the default named) and early stopping's patience (0 = off)."""
    ss = st.session_state
    defaults = RunConfig().selection
    ss.setdefault(key("selection.criterion"), defaults.criterion)  # a form filled before the setting existed
    ss.setdefault(key("selection.patience"), defaults.patience)
    c1, c2 = st.columns(2)
    c1.selectbox("Choose the checkpoint by", list(CRITERIA), key=key("selection.criterion"),
                 format_func=criterion_label, help=_criteria_help(), **persist)
    slots["selection.criterion"] = c1.empty()
    c2.number_input("Early stopping patience (epochs)", min_value=0, step=1, key=key("selection.patience"),
                    help="End the run when the criterion has not improved for this many epochs. 0: off, every "
                         "epoch runs.", **persist)
    slots["selection.patience"] = c2.empty()


def _selection(rec: Any, epochs: Any = None) -> dict[str, Any] | None:
    """The run's chosen and oracle epochs: from its summary when finished, else from the epochs so far."""
    s = rec.summary or {}
    if "chosen" in s:
        return {"chosen": s["chosen"], "oracle": s.get("oracle") or {}}
    if epochs is None or getattr(epochs, "empty", True):
        return None
    criterion = (rec.config.get("selection") or {}).get("criterion", DEFAULT_CRITERION)
    return summarise(epochs, criterion) if criterion in CRITERIA else None


def lines(rec: Any, epochs: Any = None) -> list[str]:
    """What the Monitor says: the chosen epoch with its criterion, the oracle beside it, and an early stop.

    E.g. ['Chosen by SND: epoch 3, target accuracy 61.2 %', 'Best epoch 5, 64.0 % (oracle: uses target labels)'].
    """
    sel = _selection(rec, epochs)
    out: list[str] = []
    if sel is not None and sel["chosen"].get("epoch") is not None:
        c = sel["chosen"]
        label = CRITERIA[c["criterion"]].label if c["criterion"] in CRITERIA else c["criterion"]
        so_far = "" if "chosen" in (rec.summary or {}) else " so far"
        acc = (f"target accuracy {fmt_pct(c['target_test_acc'])}" if c.get("target_test_acc") is not None
               else NO_TARGET_LABELS)
        out.append(f"Chosen by {label}{so_far}: epoch {c['epoch']}, {acc} (score {c['score']:.4g})")
        o = sel["oracle"]
        if o.get("epoch") is not None:
            out.append(f"Best epoch {o['epoch']}, target accuracy {fmt_pct(o['target_test_acc'])} ({ORACLE})")
    note = (rec.summary or {}).get("note")
    if note:
        out.append(note[:1].upper() + note[1:] + ".")
    return out


def render_run(rec: Any, epochs: Any = None) -> None:
    """The Monitor card's lines (plain text: nothing here is user input, but it stays unformatted)."""
    for text in lines(rec, epochs):
        st.caption(text)


def table_columns(rec: Any) -> dict[str, Any]:
    """The Runs table's first column of the choice: the chosen epoch's target accuracy (beside Final and Best)."""
    acc = ((rec.summary or {}).get("chosen") or {}).get("target_test_acc")
    return {"Chosen target acc": None if acc is None else 100 * acc}


def detail_columns(rec: Any) -> dict[str, Any]:
    """The Runs table's detail column of the choice (after the columns that fit a 1280-px window): by what
    criterion, at which epoch."""
    c = (rec.summary or {}).get("chosen") or {}
    return {"Chosen by": f"{c['criterion']} · epoch {c['epoch']}" if c.get("epoch") is not None else None}


def column_config() -> dict[str, Any]:
    return {
        "Chosen target acc": st.column_config.NumberColumn(
            "Chosen %", format="%.1f", width=68,
            help="Target test accuracy of the epoch the run's label-free criterion chose (the checkpoint export "
                 "and prediction use); 'Chosen by' names the criterion and the epoch."),
        "Chosen by": st.column_config.TextColumn(width=130, help="The run's label-free criterion and the epoch "
                                                                 "it chose (Setup: 'Choose the checkpoint by')"),
    }


#: The Runs table's help for its best-accuracy column: that number is the oracle's.
BEST_HELP = f"Best target test accuracy over the epochs ({ORACLE}: no run can choose it without them)"
