"""Plotly charts that the Monitor updates in place while runs train (issue 18).

``st.plotly_chart`` folds a chart's spec into the element's id, so a chart whose data changed is a
new element in the browser: its old ``<div>`` is thrown away and plotly draws the new one from
nothing (``newPlot``), then lays it out again once Streamlit sets its width. On a laptop that also
trains, that is CPU taken from training at every new epoch and every step-chart refresh. A
:func:`live_chart` keeps one element per ``key`` (a ``st.components.v2`` component, whose id is
its key) and hands each new spec to ``Plotly.react`` on the same ``<div>``; a spec equal to the one
drawn costs nothing. The Monitor draws its training charts and each run's feature-space animation
this way (docs/BENCHMARK_HISTORY.md, section 4, has what it saves a CPU-only Chromium).

plotly.js comes from the installed ``plotly`` package (never a CDN: the dashboard works offline),
copied by :func:`ensure_plotly_js` into ``static/`` beside ``app.py``, which Streamlit serves at
``app/static/`` (``server.enableStaticServing`` in ``.streamlit/config.toml``).
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import plotly.io as pio
import streamlit as st

_LOG = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parents[1]
STATIC_DIR = ROOT / "static"  # served by Streamlit at app/static/ (server.enableStaticServing)
PLOTLY_JS = "plotly.min.js"
FONT = '"Source Sans", sans-serif'  # Streamlit's own, and bold titles: as its plotly charts look

_JS = r"""
const SRC = "app/static/%(plotly_js)s";

function loadPlotly() {
  if (window.Plotly) return Promise.resolve(window.Plotly);
  if (!window.__tlPlotly) {
    window.__tlPlotly = new Promise((resolve, reject) => {
      const s = document.createElement("script");
      s.src = new URL(SRC, document.baseURI).href;
      s.onload = () => resolve(window.Plotly);
      s.onerror = () => { window.__tlPlotly = null; reject(new Error("plotly.js did not load from " + s.src)); };
      document.head.appendChild(s);
    });
  }
  return window.__tlPlotly;
}

const EXPAND = {width: 512, height: 512,
  path: "M32 32h160v64H96v96H32V32zm288 0h160v160h-64V96h-96V32zM32 320h64v96h96v64H32V320zm416 0h64v160H320v-64h128V320z"};

function fullscreenButton(box) {
  return {name: "Full screen", title: "Full screen", icon: EXPAND, click: () => {
    if (document.fullscreenElement === box) document.exitFullscreen();
    else if (box.requestFullscreen) box.requestFullscreen();
  }};
}

export default function ({ data, parentElement }) {
  let box = parentElement.querySelector(".tl-live-chart");
  if (!box) {
    box = document.createElement("div");
    box.className = "tl-live-chart";
    box.style.background = "white";
    parentElement.appendChild(box);
  }
  let gd = box.firstElementChild;
  if (!gd) { gd = document.createElement("div"); box.appendChild(gd); }
  if (box.__tlSpec === data.spec) return;  // drawn already: nothing to do
  box.__tlSpec = data.spec;
  loadPlotly().then((Plotly) => {
    if (box.__tlSpec !== data.spec) return;  // a newer spec arrived meanwhile
    const fig = JSON.parse(data.spec);
    const layout = Object.assign({}, fig.layout || {});
    layout.font = Object.assign({family: %(font)s}, layout.font || {});
    if (layout.title && layout.title.text) {  // a left-aligned bold title starts 2 px in: its first glyph stays whole
      layout.title = Object.assign({pad: {l: 2}}, layout.title, {text: "<b>" + layout.title.text + "</b>"});
    }
    layout.autosize = true;
    delete layout.width;
    box.__tlHeight = layout.height;
    if (document.fullscreenElement === box) layout.height = window.innerHeight;
    // the same button object every time: plotly compares configs, and a changed one means a full newPlot
    box.__tlButton = box.__tlButton || fullscreenButton(box);
    const config = Object.assign({responsive: false}, data.config || {});
    config.modeBarButtonsToAdd = [box.__tlButton, ...(config.modeBarButtonsToAdd || [])];
    // frames (the feature-space animation): react replaces them with the new ones
    Plotly.react(gd, {data: fig.data || [], layout: layout, config: config, frames: fig.frames || []});
    if (!box.__tlWatch) {
      box.__tlWatch = new ResizeObserver(() => { if (gd._fullLayout) Plotly.Plots.resize(gd); });
      box.__tlWatch.observe(box);
      box.addEventListener("fullscreenchange", () => {
        Plotly.relayout(gd, {height: document.fullscreenElement === box ? window.innerHeight : box.__tlHeight});
      });
    }
  }).catch((err) => {
    box.textContent = "This chart could not be drawn: " + err.message + ".";
  });
}
""" % {"plotly_js": PLOTLY_JS, "font": repr(FONT)}

_component = st.components.v2.component("tl_live_chart", js=_JS, isolate_styles=False)


@st.cache_resource(show_spinner=False)
def ensure_plotly_js() -> Path | None:
    """``static/plotly.min.js``: the installed plotly package's own copy of plotly.js, copied once per
    server (again when the package's copy differs, e.g. after an upgrade). None when it cannot be
    written (a read-only checkout): the pages still work, and each live chart says that plotly.js did
    not load, and from where."""
    source = Path(pio.__file__).resolve().parents[1] / "package_data" / PLOTLY_JS
    target = STATIC_DIR / PLOTLY_JS
    try:
        if not target.exists() or target.stat().st_size != source.stat().st_size:
            STATIC_DIR.mkdir(exist_ok=True)
            tmp = target.with_suffix(".tmp")
            shutil.copyfile(source, tmp)
            tmp.replace(target)  # whole or not at all, even with two servers starting at once
    except OSError as exc:
        _LOG.warning("The Monitor's live charts need %s; it could not be written: %s", target, exc)
        return None
    return target


def chart_spec(fig: Any) -> str:
    """The figure's JSON, exactly as ``st.plotly_chart`` would send it."""
    return pio.to_json(fig, validate=False)


def live_chart(fig: Any, key: str, config: dict[str, Any] | None = None) -> None:
    """Draw ``fig`` in the element named ``key``, updating the chart already there in place."""
    _component(data={"spec": chart_spec(fig), "config": config or {}}, key=key)
