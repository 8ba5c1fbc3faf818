"""The run report from the dashboard, and the classification report on the Monitor.

"Build report" runs ``python -m tl_core report`` in a child process (as :mod:`tl_ui.predict_view` runs
``export``): the server never loads a network for Grad-CAM, pages stay torch-free, and a slow report cannot
stall the page's other sessions. A progress bar follows the child's ``report: …`` lines; then a download
button hands over the HTML. The classification report is computed by :mod:`tl_core.classification`, the
same function the HTML report uses.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

import pandas as pd
import streamlit as st

from tl_core.classification import classification_report, report_rows
from tl_ui import keys

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT_S = 600


def report_file(run_ids: Sequence[str], on_progress: Any = lambda frac, text: None) -> tuple[bytes, str]:
    """The report of ``run_ids`` as (HTML bytes, file name), built by the command line in a child process.

    Image-folder targets are read from the dashboard's data folder only (``--data-root``).

    Raises:
        RuntimeError: the child failed or took longer than TIMEOUT_S; the message is the command line's.
    """
    from tl_core.data.folder import dashboard_data_root

    ids = list(dict.fromkeys(run_ids))
    name = f"{ids[0]}-report.html" if len(ids) == 1 else f"report-{len(ids)}-runs.html"
    with tempfile.TemporaryDirectory(prefix="tl-report-") as tmp:
        out = Path(tmp) / name
        cmd = [sys.executable, "-m", "tl_core", "report", *ids, "--out", str(out),
               "--data-root", str(dashboard_data_root())]
        proc = subprocess.Popen(cmd, cwd=str(ROOT), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
        errors: list[str] = []
        deadline = time.monotonic() + TIMEOUT_S
        try:
            assert proc.stderr is not None
            for line in proc.stderr:  # "report: run 2 of 3: …" lines while it works
                line = line.rstrip("\n")
                if line.startswith("report: "):
                    text = line[len("report: "):]
                    done = 0.1
                    if text.startswith("run ") and " of " in text:
                        try:
                            i, n = text[4:].split(":", 1)[0].split(" of ")
                            done = 0.1 + 0.9 * (int(i) - 1) / max(1, int(n))
                        except ValueError:
                            pass
                    on_progress(done, text)
                elif line.startswith("error: "):
                    errors.append(line[len("error: "):])
                if time.monotonic() > deadline:
                    proc.kill()
                    raise RuntimeError(f"the report took longer than {TIMEOUT_S} s")
            proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired as e:
            proc.kill()
            raise RuntimeError(f"the report took longer than {TIMEOUT_S} s") from e
        finally:
            if proc.stdout is not None:
                proc.stdout.close()
        if proc.returncode != 0 or not out.is_file():
            raise RuntimeError(" ".join(errors) or f"the report command ended with status {proc.returncode}")
        return out.read_bytes(), name


def report_controls(recs: Sequence[Any], where: str) -> None:
    """'Build report' for the runs shown (Monitor) or selected (Runs), then 'Download report'. Building changes
    no run: read-only viewers may too."""
    from tl_ui import runinfo, widgets

    ids = tuple(r.id for r in recs)
    if not ids:
        return
    what = f"'{runinfo.run_title(recs[0])}'" if len(ids) == 1 else f"{len(ids)} runs compared"
    active = [r for r in recs if r.active]
    help_text = ("One HTML file that opens anywhere with no network: settings, curves, the feature space and its "
                 "replay, domain distances, confusion matrix, classification report, misclassified images and "
                 "Grad-CAM heat maps. Same as python -m tl_core report." +
                 (" Active runs are reported as far as they got (Grad-CAM needs a finished run)." if active else ""))
    state_key = f"{keys.REPORT_FILE}.{where}"
    row = st.container(horizontal=True, vertical_alignment="center")
    if row.button("Build report" if len(ids) == 1 else f"Build report ({len(ids)} runs)", key=f"{keys.REPORT_BUTTON}.{where}", icon=":material/summarize:", help=help_text):
        bar = st.progress(0.0, text=f"Building the report of {widgets.plain(what)} (a separate process)…")
        try:
            data, name = report_file(ids, lambda frac, text: bar.progress(
                min(1.0, frac), text=f"Report: {widgets.plain(text)}"))
            st.session_state[state_key] = (ids, data, name)
        except (RuntimeError, OSError) as e:
            st.session_state[state_key] = (ids, None, f"Could not build the report: {e}")
        bar.empty()
    done = st.session_state.get(state_key)
    if done and done[0] == ids:
        if done[1] is None:
            st.error(widgets.plain(done[2]), icon=":material/error:")
        else:
            row.download_button(f"Download report ({len(done[1]) / 2**20:.1f} MB)", done[1], file_name=done[2],
                                mime="text/html", icon=":material/download:", on_click="ignore",
                                key=f"{where}.dl.report.{'.'.join(ids)}")


def classification_table(confusion: Sequence[Sequence[int]], classes: Sequence[str]) -> pd.DataFrame:
    """Precision, recall, F1 and support per class, then accuracy and the macro and weighted averages, as the
    text a reader sees ('94.4 %'; accuracy has only its F1 column, as scikit-learn prints it), indexed by class."""
    rows = report_rows(classification_report(confusion, classes))
    table = pd.DataFrame([{"Class": r["class"], **{k: "" if r[k] is None else f"{r[k]:.1f} %"
                                                   for k in ("precision", "recall", "F1")},
                           "Images": str(r["support"])} for r in rows])
    return table.rename(columns={"precision": "Precision", "recall": "Recall"}).set_index("Class")


def render_classification_report(confusion: Sequence[Sequence[int]], classes: Sequence[str], epoch: int) -> None:
    """The Monitor's classification report of the epoch its per-class section shows (every row visible: a
    static table, not a scrolling grid)."""
    st.markdown(f"**Classification report, epoch {epoch}** (target test set)")
    st.table(classification_table(confusion, classes))
    st.caption("Precision: of the images predicted as a class, the share that are. Recall: of a class's images, "
               "the share found. F1: their harmonic mean. Macro average: the mean over classes; weighted: each "
               "class by its number of images.")
