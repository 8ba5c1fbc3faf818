"""Store reads the Monitor repeats on every refresh, cached until the data changes.

A run's epoch rows carry a confusion matrix and the misclassified images of each epoch, so reading
them all costs about 3 ms an epoch (0.3 s for a 100-epoch run): too much to repeat every two seconds
for each open tab, in the process whose machine trains. ``RunStore.data_version`` counts the rows
instead; the rows are read again only when that changes (a new or rewritten epoch), and every
session shares the result. Callers must not modify the returned frame.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from tl_ui import resources


@st.cache_resource(show_spinner=False, max_entries=64)
def _epoch_metrics(home: str, run_id: str, n: int, last_t: float) -> pd.DataFrame:
    return resources.get_store().epoch_metrics(run_id)


def epoch_metrics(run_id: str) -> pd.DataFrame:
    """The run's epoch rows (as ``RunStore.epoch_metrics``), read again only when an epoch row was added
    or rewritten."""
    store = resources.get_store()
    n, last_t, _ = store.data_version(run_id)
    return _epoch_metrics(str(store.home), run_id, n, last_t)


def version(run_ids: list[str]) -> tuple[tuple[str, int, float, int], ...]:
    """Per run: evaluated epochs, the latest epoch row's time and projected snapshots. What the Monitor
    shows per epoch or per snapshot changes only when this does."""
    store = resources.get_store()
    return tuple((run_id, *store.data_version(run_id)) for run_id in run_ids)
