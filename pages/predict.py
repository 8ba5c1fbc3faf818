"""Predict: a finished run's model on new images; each image with its top-3 classes and confidences.

The images come as uploads (a size cap per file and in all, each decoded with PIL first) or as a folder
inside the dashboard's data folder. The model runs in a child process (``python -m tl_core predict``,
through tl_ui.predict_view): this page loads no torch. Predicting changes no run, so read-only viewers
(tl_ui.access) may predict too.
"""

from __future__ import annotations

import math
import shutil

import streamlit as st

from tl_core.checkpoint import checkpoint_path
from tl_core.store import RunRecord
from tl_ui import entry, keys, predict_view, resources, runinfo, widgets

UPLOAD, FOLDER = "Upload images", "A folder in the data folder"
COLUMNS = 5


def finished_runs() -> list[RunRecord]:
    """Runs that have ended and have a checkpoint to predict with, newest first."""
    store = resources.get_store()
    return [r for r in store.list_runs() if not r.active and checkpoint_path(store.run_dir(r.id)).exists()]


def _pct(value: object) -> str:
    try:
        return f"{100 * float(value):.1f} %"
    except (TypeError, ValueError):
        return ""


def run_prediction(run_id: str, source: str) -> None:
    """Check the input, predict under a spinner, keep the result in the session."""
    ss = st.session_state
    root = resources.data_root()
    refused: list[str] = []
    tmp = None
    try:
        if source == UPLOAD:
            checked = predict_view.check_uploads(ss.get(keys.PREDICT_UPLOAD) or [])
            refused = checked.refused
            if not checked.accepted:
                ss[keys.PREDICT_RESULT] = {"run": run_id, "rows": [], "refused": refused,
                                           "error": None if refused else "Choose one or more images first."}
                return
            tmp, paths = predict_view.save_uploads(checked.accepted[:predict_view.MAX_IMAGES])
            names = [name for name, _ in checked.accepted[:predict_view.MAX_IMAGES]]
            confine = None  # the page wrote these files itself
        else:
            try:
                folder = predict_view.confined_folder(ss.get(keys.PREDICT_FOLDER, ""), root)
            except ValueError as e:
                ss[keys.PREDICT_RESULT] = {"run": run_id, "rows": [], "refused": [], "error": str(e)}
                return
            paths, names, confine = [folder], None, root
        with st.spinner("Predicting with the run's model (a separate process loads it; a few seconds)…"):
            try:
                table = predict_view.predict(run_id, paths, confine)
            except (RuntimeError, OSError) as e:
                ss[keys.PREDICT_RESULT] = {"run": run_id, "rows": [], "refused": refused,
                                           "error": f"Could not predict: {e}"}
                return
            rows = table.to_dict("records")
            more = max(0, len(rows) - predict_view.MAX_IMAGES)
            rows = rows[:predict_view.MAX_IMAGES]
            for i, row in enumerate(rows):
                row["name"] = names[i] if names else str(row["path"])
                row["thumb"] = predict_view.thumbnail(row["path"])
        ss[keys.PREDICT_RESULT] = {"run": run_id, "rows": rows, "refused": refused, "error": None, "more": more}
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def render_result(result: dict, by_id: dict[str, RunRecord]) -> None:
    for message in result.get("refused", []):
        st.error(widgets.plain(message), icon=":material/block:")
    if result.get("error"):
        st.error(widgets.plain(result["error"]), icon=":material/error:")
    rows = result.get("rows") or []
    if not rows:
        return
    rec = by_id.get(result["run"])
    title = runinfo.run_title(rec) if rec else result["run"]
    shown = f"{len(rows)} image{'s' if len(rows) != 1 else ''}"
    st.subheader(f"Top-3 classes of {shown}")
    st.caption(f"Model of run {widgets.plain(title)}. Confidences are the model's softmax: high confidence is not "
               "proof of a right answer, least of all on images unlike the run's data."
               + (f" {result['more']} more images were not shown." if result.get("more") else ""))
    for start in range(0, len(rows), COLUMNS):
        cols = st.columns(COLUMNS)
        for col, row in zip(cols, rows[start:start + COLUMNS]):
            with col.container(border=True):
                if row.get("thumb") is not None:
                    st.image(row["thumb"], width="stretch")
                st.caption(widgets.plain(row["name"]))
                if row.get("error"):
                    st.warning(widgets.plain(row["error"]))
                    continue
                lines = [f"**{widgets.plain(row['top1'])}** · {_pct(row['p1'])}"]
                lines += [f"{widgets.plain(row[f'top{k}'])} · {_pct(row[f'p{k}'])}" for k in (2, 3) if row.get(f"top{k}")]
                st.markdown("  \n".join(lines))
                st.progress(min(1.0, max(0.0, float(row["p1"] or 0))))


def main() -> None:
    st.title("Predict")
    st.caption("Try a finished run's model on new images: each image with the three classes it finds most likely. "
               "Anyone who can see this dashboard may predict (it changes no run).")
    runs = finished_runs()
    if not runs:
        st.info("No finished run with a checkpoint yet. Start a one-click demo on Home, or set up a run on Setup; "
                "its model can predict here once it has finished.")
        return
    by_id = {r.id: r for r in runs}
    ss = st.session_state
    if ss.get(keys.PREDICT_RUN) not in by_id:
        ss[keys.PREDICT_RUN] = runs[0].id
    run_id = st.selectbox("Run whose model predicts", list(by_id), key=keys.PREDICT_RUN,
                          format_func=lambda i: runinfo.option_label(by_id[i]))
    rec = by_id[run_id]
    size = rec.config.get("data", {}).get("image_size", "?")
    st.caption(f"{widgets.plain(runinfo.method_label(rec.config))} on {widgets.plain(runinfo.data_pair(rec.config))}"
               f" · {rec.status}. Each image is read as folder data sets are (RGB, centre square) and resized to "
               f"{size}×{size} px, as the run saw its images.")
    source = st.segmented_control("Images", [UPLOAD, FOLDER], key=keys.PREDICT_SOURCE, default=UPLOAD,
                                  required=True) or UPLOAD
    if source == UPLOAD:
        st.file_uploader(f"Images (up to {predict_view.MAX_FILE_MB} MB each, {predict_view.MAX_TOTAL_MB} MB in all)",
                         type=predict_view.UPLOAD_TYPES, accept_multiple_files=True, key=keys.PREDICT_UPLOAD,
                         max_upload_size=max(1, math.ceil(predict_view.MAX_FILE_MB)))
    else:
        st.text_input("Folder of images", key=keys.PREDICT_FOLDER,
                      placeholder=str(resources.data_root() / "my-images"),
                      help="Searched recursively for image files; the first "
                           f"{predict_view.MAX_IMAGES} are shown.")
        st.caption(f"Folders are read only inside the data folder: {widgets.plain(resources.data_root())} (set by "
                   "whoever starts the server).")
    if st.button("Predict", key=keys.PREDICT_BUTTON, icon=":material/image_search:", type="primary"):
        run_prediction(run_id, source)
    result = ss.get(keys.PREDICT_RESULT)
    if result and result.get("run") == run_id:
        render_result(result, by_id)


entry.require_app()
main()
