"""Transfer Lab dashboard: the entry point of `streamlit run app.py`.

Builds the navigation over the pages and the shared sidebar; everything else lives in
pages/ (one file per page) and tl_ui/ (shared widgets, charts, cached resources).
"""

import streamlit as st

from tl_core.store import StoreError
from tl_ui import entry, keys, live_chart, resources, widgets

with entry.app_run():
    st.set_page_config(layout="wide", page_title="Transfer Lab", page_icon=":material/model_training:")
    navigation = st.navigation([
        st.Page(keys.PAGE_HOME, title="Home", icon=":material/home:", default=True),
        st.Page(keys.PAGE_SETUP, title="Setup", icon=":material/tune:"),
        st.Page(keys.PAGE_MONITOR, title="Monitor", icon=":material/monitoring:"),
        st.Page(keys.PAGE_PRESENT, title="Present", icon=":material/co_present:"),
        st.Page(keys.PAGE_RUNS, title="Runs", icon=":material/table_rows:"),
        st.Page(keys.PAGE_SWEEP, title="Sweep", icon=":material/grid_view:"),
        st.Page(keys.PAGE_PREDICT, title="Predict", icon=":material/image_search:"),
    ], expanded=True)
    widgets.page_style()
    live_chart.ensure_plotly_js()  # the Monitor's live charts load plotly.js from app/static/
    try:
        resources.get_manager()  # starts the snapshot projector (and its UMAP warm-up) with the server
    except StoreError as exc:  # a damaged runs.db or an unwritable TL_HOME: say so on every page, serve on
        st.title("Transfer Lab cannot open its run store")
        st.error(widgets.plain(exc), icon=":material/database:")
        st.caption("Fix it as the message says, then reload this page. The store's file was left as it is.")
        st.stop()
    resources.owner_id()
    widgets.render_sidebar(navigation.url_path)
    navigation.run()
