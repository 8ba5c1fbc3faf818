"""Home: what Transfer Lab does, and one-click demos (``tl_core.demos``): a comparison of adaptation methods,
and per preset a source-only run and a DANN run."""

from __future__ import annotations

import logging

import streamlit as st

from tl_core import demos
from tl_core.config import label_in_sentence
from tl_core.jobs import ConfigError
from tl_ui import access, entry, keys, pretraining_view, resources, widgets

log = logging.getLogger(__name__)
#: The preset cards, in order; "folder" opens Setup instead of starting runs.
CARDS = ("mnist-mnist-m", "mnist-uci-digits", "syn-digits-mnist", "mnist-mix-mnist-m", "folder")

INTRO = (
    "Transfer Lab trains an image classifier on a **source** data set whose labels you have and measures how "
    "well it works on a **target** data set that looks different. "
    "You choose a pretrained backbone, how many of its stages stay frozen, and how to transfer: fine-tune "
    "plainly, align the two domains' features with a domain-adaptation method, or re-weight the source images "
    "to look like the target; Setup lists every method with its paper. "
    "Runs train in the background while you watch loss, accuracy and the features of both domains move together."
)


def start_demo(demo: demos.Demo) -> list[str]:
    """Submit the demo's runs, in its order (they train one after the other). Returns their ids."""
    manager = resources.get_manager()
    owner = resources.owner_id()
    return [manager.submit(cfg, owner=owner) for cfg in demos.configs(demo)]


def demo_button(demo: demos.Demo, label: str, key: str, about: str | None = None) -> None:
    """The button that starts ``demo`` and opens the Monitor on its runs (a message, never a traceback)."""
    if st.button(label, key=key, type="primary", icon=":material/play_arrow:", width="stretch",
                 disabled=not access.may_act(), help=about if access.may_act() else access.why_read_only()) \
            and access.may_act():
        try:
            ids = start_demo(demo)
        except ConfigError as exc:
            st.session_state[keys.HOME_ERROR] = ("error", "Could not start the demo: " + " ".join(exc.problems))
            st.rerun()
        except Exception as exc:  # say what went wrong, never a traceback
            log.exception("starting the %s demo failed", demo.key)
            st.session_state[keys.HOME_ERROR] = ("error", f"Could not start the demo ({type(exc).__name__}: {exc}).")
            st.rerun()
        resources.remember_started(ids)
        if st.session_state.get(keys.HOME_PRESENT):  # the projector view of just these runs
            widgets.open_in_present(ids)
        else:
            widgets.switch_to(keys.PAGE_MONITOR)


def render_comparison(presets: dict[str, dict[str, str]]) -> None:
    """The comparison demo: several methods on one pair, side by side on the Monitor."""
    demo = demos.COMPARISON
    methods = resources.methods()
    names = [label_in_sentence(methods[m]["trains_on"].get("source", methods[m]["title"]))
             for m in demo.methods if m in methods]
    with st.container(border=True):  # compact: the preset cards and their buttons stay in a 720-px-high window
        text, act = st.columns([3, 1], vertical_alignment="center")
        with text:
            st.markdown(f"**{demo.title}** {demo.description}")
        with act:
            # a short label: the button is about 210 px wide at 1280 px; the description names the pair
            demo_button(demo, f"Compare {len(demo.methods)} methods", keys.HOME_COMPARE,
                        about=f"Queues {', '.join(names)} on {presets[demo.preset]['title']} and opens the Monitor.")
            st.caption("About 6 minutes on a 2-core laptop CPU.")


def render_card(key: str, presets: dict[str, dict[str, str]]) -> None:
    """A preset's card: its title and button first (above the fold at 720 px high), then sample images
    and the description."""
    with st.container(border=True):
        if key == "folder":
            st.markdown("**Your own image folders**")
            if st.button("Set up a run", key=keys.HOME_FOLDER, icon=":material/folder_open:",
                         width="stretch"):
                st.session_state[keys.SETUP_REQUEST_PRESET] = "folder"
                widgets.switch_to(keys.PAGE_SETUP)
            st.caption("Point at two folders of images — one sub-folder per class, or train/ and val/ folders "
                       "of those; the target may be plain images without labels — pick a pretrained backbone "
                       "and train at its full resolution. Every setting is on the Setup page.")
            return
        p = presets[key]
        st.markdown(f"**{p['title']}**")
        demo = demos.pair_demo(key)
        methods = resources.methods()
        names = [label_in_sentence(methods[m]["trains_on"].get("source", methods[m]["title"]))
                 for m in demo.methods if m in methods]
        # "Run demo" fits the card's width on one line at 1280 px; what it trains is in its help
        demo_button(demo, "Run demo", keys.HOME_RUN_PREFIX + key,
                    about=f"Trains {' then '.join(names)} — about a minute each on a laptop CPU — and opens the "
                          "Monitor to compare them.")
        for role in ("source", "target"):
            strip = resources.sample_strip(p[role])
            if strip is not None:
                st.image(strip, caption=f"{role}: {p[role]}", width="stretch")
        st.caption(p["description"])


def main() -> None:
    st.title("Transfer Lab")
    st.markdown(INTRO)
    widgets.show_once(keys.HOME_ERROR)
    heading, present = st.columns([4, 1], vertical_alignment="bottom")
    present.toggle("Open in Present", key=keys.HOME_PRESENT, help="A demo button then opens the Present page: its "
                   "runs on one projector screen (1280×720), accuracy and features before/now in large type.")
    heading.markdown("### One-click demos", help="Each preset's demo trains two small models one after the other — "
                     "a source-only baseline and DANN — about a minute each on a laptop CPU, and opens the "
                     "Monitor to compare them.")
    presets = resources.presets()
    render_comparison(presets)
    cols = st.columns(len(CARDS))
    for col, key in zip(cols, CARDS):
        with col:
            render_card(key, presets)
    pretraining_view.render()  # "What is pretraining worth?": its progress and figure stay here, on Home


entry.require_app()
main()
