"""Home: what Transfer Lab does, and one-click demos (a source-only run and a DANN run)."""

from __future__ import annotations

import logging

import streamlit as st

from tl_core.config import demo_config
from tl_core.jobs import ConfigError
from tl_ui import access, entry, keys, resources, widgets

log = logging.getLogger(__name__)
#: The preset cards, in order; "folder" opens Setup instead of starting runs.
CARDS = ("mnist-mnist-m", "mnist-uci-digits", "syn-digits-mnist", "folder")

INTRO = (
    "Transfer Lab trains an image classifier on a **source** data set whose labels you have and measures how "
    "well it works on a **target** data set that looks different. "
    "You choose a pretrained backbone, how many of its stages stay frozen, and whether to fine-tune plainly or "
    "with domain-adversarial training (DANN), which learns features that cannot tell the two domains apart. "
    "Runs train in the background while you watch loss, accuracy and the features of both domains move together."
)


def start_demo(preset: str) -> list[str]:
    """Submit the preset's pair of runs: source-only fine-tuning, then DANN. Returns their ids."""
    manager = resources.get_manager()
    owner = resources.owner_id()
    return [manager.submit(demo_config(preset, method), owner=owner) for method in ("finetune", "dann")]


def render_card(key: str, presets: dict[str, dict[str, str]]) -> None:
    with st.container(border=True, height="stretch"):
        if key == "folder":
            st.subheader("Your own image folders")
            st.markdown("Point at two folders of images with one sub-folder per class, pick a pretrained "
                        "backbone and train. Every setting is on the Setup page.")
            if st.button("Set up a run", key=keys.HOME_FOLDER, icon=":material/folder_open:",
                         width="stretch"):
                st.session_state[keys.SETUP_REQUEST_PRESET] = "folder"
                widgets.switch_to(keys.PAGE_SETUP)
            return
        p = presets[key]
        st.subheader(p["title"])
        st.markdown(p["description"])
        for role in ("source", "target"):
            strip = resources.sample_strip(p[role])
            if strip is not None:
                st.image(strip, caption=f"{role}: {p[role]}", width="stretch")
        if st.button("Run demo: source only vs DANN", key=keys.HOME_RUN_PREFIX + key, type="primary",
                     icon=":material/play_arrow:", width="stretch", disabled=not access.may_act(),
                     help=None if access.may_act() else access.why_read_only()) and access.may_act():
            try:
                ids = start_demo(key)
            except ConfigError as exc:
                st.session_state[keys.HOME_ERROR] = ("error", "Could not start the demo: " + " ".join(exc.problems))
                st.rerun()
            except Exception as exc:  # say what went wrong, never a traceback
                log.exception("starting the %s demo failed", key)
                st.session_state[keys.HOME_ERROR] = ("error", f"Could not start the demo ({type(exc).__name__}: {exc}).")
                st.rerun()
            resources.remember_started(ids)
            widgets.switch_to(keys.PAGE_MONITOR)


def main() -> None:
    st.title("Transfer Lab")
    st.markdown(INTRO)
    widgets.show_once(keys.HOME_ERROR)
    st.markdown("### One-click demos")
    st.caption("Each demo trains two small models one after the other — a source-only baseline and DANN — "
               "about a minute each on a laptop CPU, and opens the Monitor to compare them.")
    presets = resources.presets()
    cols = st.columns(len(CARDS))
    for col, key in zip(cols, CARDS):
        with col:
            render_card(key, presets)


entry.require_app()
main()
