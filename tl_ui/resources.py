"""Long-lived objects and cached queries shared by the pages.

The job manager is process-wide (one per server, shared by every browser session); it
comes from ``st.cache_resource`` wrapping :func:`tl_core.jobs.get_manager`. Queries that
are slow or never change (backbones, data sets, parameter counts) go through
``st.cache_data``.
"""

from __future__ import annotations

import logging
import re
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import streamlit as st

from tl_core import jobs
from tl_core.store import RunStore
from tl_ui import keys

_OWNER_RE = re.compile(r"^[0-9a-f]{8,32}$")
log = logging.getLogger(__name__)


# ------------------------------------------------------------------ manager
@st.cache_resource(show_spinner=False)
def get_manager() -> jobs.JobManager:
    """The process-wide job manager (its worker threads never call Streamlit).

    Created by the first page view of a server: its snapshot projector starts a low-priority
    worker process that pays UMAP's JIT warm-up at once, so the first snapshot of the first
    run is projected at full speed.
    """
    return jobs.get_manager()


def get_store() -> RunStore:
    """The run store every page reads (the manager's)."""
    return get_manager().store


def owner_id() -> str:
    """This browser session's owner id; a reload keeps it through the URL's query string."""
    ss = st.session_state
    if keys.OWNER not in ss:
        from_url = st.query_params.get(keys.OWNER_QUERY_PARAM, "")
        ss[keys.OWNER] = from_url if _OWNER_RE.match(from_url or "") else uuid.uuid4().hex[:12]
    if st.query_params.get(keys.OWNER_QUERY_PARAM) != ss[keys.OWNER]:
        st.query_params[keys.OWNER_QUERY_PARAM] = ss[keys.OWNER]
    return ss[keys.OWNER]


def remember_started(run_ids: list[str]) -> None:
    """Note runs this session started and ask the Monitor to show them."""
    ss = st.session_state
    ss[keys.STARTED] = list(ss.get(keys.STARTED, [])) + list(run_ids)
    ss[keys.MONITOR_REQUEST] = list(run_ids)


# ------------------------------------------------------------ tl_core facts
def data_root() -> Path:
    """The dashboard's one data folder (``TL_DATA_ROOT``, set by whoever starts the server; never from a page).

    Not cached: it is a cheap look at the environment, and tests change it.
    """
    from tl_core.data.folder import dashboard_data_root

    return dashboard_data_root()


@st.cache_data(show_spinner=False, ttl=600)
def datasets() -> list[dict[str, Any]]:
    """tl_core.data.list_datasets() as plain dicts."""
    from dataclasses import asdict

    from tl_core import data

    return [asdict(d) for d in data.list_datasets()]


def methods() -> dict[str, dict[str, Any]]:
    """Every training method the registry holds: name -> title, description, citation, charts, phases.

    Not cached: the registry is a dict lookup, and a method registered later (a plugin) shows at once.
    """
    from tl_core.methods import all_methods

    return {name: {"title": cls.title, "description": cls.description, "citation": cls.citation,
                   "trains_on": dict(cls.trains_on),
                   "step_charts": [(c.metric, c.kind, c.title) for c in cls.step_charts],
                   "phases": list(cls.phases)}
            for name, cls in all_methods().items()}


def extras() -> dict[str, dict[str, Any]]:
    """Every extra (regulariser, fine-tuning schedule) the registry holds: name -> title, kind, description,
    citation. Not cached, as :func:`methods`."""
    from tl_core.methods import all_extras

    return {name: {"title": cls.title, "kind": cls.kind, "description": cls.description, "citation": cls.citation}
            for name, cls in all_extras().items()}


def extra_params(name: str) -> list[Any]:
    """The parameter declarations of one extra, in order."""
    from tl_core.methods import get_extra, param_specs

    return param_specs(get_extra(name).Params)


def method_params(name: str) -> list[Any]:
    """The parameter declarations (``tl_core.methods.ParamSpec``) of one method, in order."""
    from tl_core.methods import get_method, param_specs

    return param_specs(get_method(name).Params)


@st.cache_data(show_spinner=False)
def presets() -> dict[str, dict[str, str]]:
    from dataclasses import asdict

    from tl_core import data

    return {k: asdict(p) for k, p in data.PRESETS.items()}


@st.cache_data(show_spinner=False, ttl=600)
def _registered_backbones() -> list[dict[str, Any]]:
    from dataclasses import asdict

    from tl_core import backbones as bb

    return [asdict(b) for b in bb.list_backbones()]


@st.cache_data(show_spinner=False, ttl=15)
def _saved_backbones(home: str) -> list[dict[str, Any]]:
    from dataclasses import asdict

    from tl_core import backbones as bb

    return [asdict(b) for b in bb.list_saved_backbones(home)]


def backbones() -> list[dict[str, Any]]:
    """Registered backbones (tl_core.backbones.list_backbones()), then those saved by earlier runs."""
    return _registered_backbones() + _saved_backbones(str(get_store().home))


def default_image_size(name: str) -> int:
    """The image size a run of this backbone gets by default: the size its weights were trained at
    (tl_core.backbones.default_image_size, the one owner of that rule)."""
    from tl_core import backbones as bb

    return int(bb.default_image_size(name, get_store().home))


@st.cache_data(show_spinner=False, ttl=30)
def weights_available(name: str) -> tuple[bool, str]:
    """Whether a backbone's pretrained weights are here (re-checked every 30 s: a user may place the file)."""
    from tl_core import backbones as bb

    ok, why = bb.weights_available(name)
    return bool(ok), str(why)


@st.cache_data(show_spinner=False)
def param_counts(name: str, k: int) -> tuple[int, int]:
    """(trainable, frozen) backbone parameters when the first k stages are frozen."""
    from tl_core import backbones as bb

    trainable, frozen = bb.param_counts(name, k)
    return int(trainable), int(frozen)


def stage_params(name: str, n_stages: int) -> list[int]:
    """Parameters of each stage, from the cached frozen counts for k = 0..n."""
    frozen = [param_counts(name, k)[1] for k in range(n_stages + 1)]
    return [max(0, frozen[i + 1] - frozen[i]) for i in range(n_stages)]


@st.cache_data(show_spinner=False, ttl=600)
def devices() -> dict[str, tuple[bool, str]]:
    """Which devices this machine offers: name -> (available, reason)."""
    from tl_core.device import device_availability

    return {k: (bool(v[0]), str(v[1])) for k, v in device_availability().items()}


@st.cache_data(show_spinner=False, ttl=600)
def train_size(name: str) -> int | None:
    """Training images in a built-in data set (None for folders and downloads: unknown until loaded)."""
    from tl_core import data

    info = next((d for d in datasets() if d["name"] == name), None)
    if info is None or info["kind"] != "builtin":
        return None
    try:
        return len(data.load_split(name, "train"))
    except data.DataError:
        return None


@st.cache_data(show_spinner=False)
def sample_strip(name: str, n: int = 8, size: int = 40) -> np.ndarray | None:
    """A row of n test images of a built-in data set, one per class where possible."""
    from tl_core import data

    try:
        imgs = data.load_split(name, "test")
    except data.DataError:
        return None
    picks = []
    for c in range(n):
        idx = np.nonzero(imgs.labels == (c % max(1, len(imgs.classes))))[0]
        picks.append(int(idx[c // max(1, len(imgs.classes))]) if len(idx) else c)
    tiles = [data.thumbnail(imgs, i, size=size) for i in picks]
    gap = np.full((size, 3, 3), 255, np.uint8)
    row: list[np.ndarray] = []
    for t in tiles:
        row += [t, gap]
    return np.concatenate(row[:-1], axis=1)


@st.cache_data(show_spinner=False, ttl=10, max_entries=32)
def folder_description(typed: str, root: str) -> str | None:
    """How a folder typed on Setup is laid out, in words ('train/ and val/ folders, 2 classes (cats, dogs), ...');
    None when it is not usable (the Setup form shows the engine's message under the field)."""
    import os

    from tl_core.data import DataError
    from tl_core.data.folder import folder_layout, resolve_folder

    if not typed:
        return None
    try:
        return folder_layout(resolve_folder(os.path.join(root, typed), root)).describe()
    except (DataError, OSError):
        return None


@st.cache_data(show_spinner=False, ttl=600, max_entries=32)
def augment_preview(name: str, path: str | None, data_root: str | None, image_size: int,
                    settings: tuple[float, str, float, bool], seed: int = 0) -> tuple[np.ndarray | None, str]:
    """(grid, what it applies): a few source images as the run holds them, each followed by augmented copies
    from the run's own augmenter (``tl_core.data.augment``; it loads torch in this process when first
    called, as backbone facts do); (None, why) when there is nothing to show."""
    from tl_core.config import OptimConfig
    from tl_core.data import DataError
    from tl_core.data import augment as aug

    crop, flip, jitter, trivial = settings
    size = int(min(max(8, int(image_size or 28)), 160))  # the run's size, bounded for the page
    try:
        images, classes = aug.source_samples(name, path, data_root, size)
    except (DataError, OSError) as exc:
        return None, f"No preview: {exc}"
    optim = OptimConfig(augment=True, augment_crop=float(crop), augment_flip=str(flip), augment_jitter=float(jitter),
                        augment_trivial=bool(trivial))
    if aug.problems(optim):
        return None, "No preview until the augmentation settings above are valid."
    spec = aug.spec_for(optim, classes)
    if spec is None:
        return None, "Every augmentation is off: the model sees the images as they are."
    grid = aug.preview(images, spec, seed=seed)
    scale = max(1, 320 // grid.shape[0])  # small digits: enlarged with crisp pixels
    return grid.repeat(scale, 0).repeat(scale, 1), spec.describe()
