"""Setup: every setting of a run, filled from a preset; Start submits it and opens the Monitor.

Each widget's key is built from the RunConfig field path it edits (see tl_ui.keys), so a
validation message prefixed by a field path ("optim.lr: ...") is shown under its widget.
"""

from __future__ import annotations

import logging
import os
from dataclasses import fields, is_dataclass
from typing import Any

import streamlit as st

from tl_core.config import (LR_SCHEDULES, OPTIMIZERS, PROJECTIONS, SNAPSHOT_PRIORITIES, RunConfig, demo_config,
                            method_choices, method_key, split_method_key)
from tl_core.jobs import ConfigError
from tl_ui import access, entry, gain_view, keys, lr_finder_view, resources, runinfo, validation, widgets
from tl_ui.freezing_view import stage_diagram
from tl_ui.selection_view import render_setup as render_selection

log = logging.getLogger(__name__)
DEFAULT_PRESET = "mnist-mnist-m"
FOLDER = "folder"
RUN_BACKBONE = "run:"          # a backbone saved by an earlier run (tl_core.backbones.RUN_PREFIX)
SAVED_PREFIX = "saved-from:"   # the backbone choice that opens the earlier runs' backbones of one architecture
#: Every RunConfig field lives in session state under setup_key(path); most have a widget,
#: the others keep the preset's value, except data_root: always the dashboard's data folder.
OPTIONAL_INT = {"data.max_train", "data.max_test", "data.labels_per_class"}   # widget 0 means None ("all")
OPTIONAL_STR = {"data.source_path", "data.target_path"}  # widget "" means None
HEAD_LABELS = {"linear": "Linear", "mlp": "MLP (one hidden layer)"}
OPTIMIZER_LABELS = {"sgd": "SGD with momentum", "adam": "Adam", "adamw": "AdamW"}
SCHEDULE_LABELS = {"anneal": "DANN annealing: lr / (1 + 10p)^0.75", "constant": "Constant", "cosine": "Cosine"}
PRIORITY_LABELS = {"background": "Training first (pictures may trail)", "live": "Keep up (training slows)"}

k = keys.setup_key
PERSIST = {"persist_state": "session"}


# ------------------------------------------------------------------ state
def flatten(cfg: RunConfig) -> dict[str, Any]:
    """{'optim.lr': 0.01, 'seed': 0, ...} for every field of the config but the method's
    (which :func:`method_state` spreads over every method's widgets)."""
    out: dict[str, Any] = {}
    for f in fields(cfg):
        value = getattr(cfg, f.name)
        if f.name == "method":
            continue
        if is_dataclass(value):
            for g in fields(value):
                out[f"{f.name}.{g.name}"] = getattr(value, g.name)
        else:
            out[f.name] = value
    return out


def param_key(method: str, name: str) -> str:
    """Session-state key of one method parameter's widget (each method keeps its own values)."""
    return k(f"method.{method}.{name}")


def extra_key(name: str) -> str:
    """Session-state key of the checkbox that adds one extra (regulariser or schedule) to the run."""
    return k(f"extra.{name}")


def extra_param_key(extra: str, name: str) -> str:
    return k(f"method.extras.{extra}.{name}")


def method_state(cfg: RunConfig) -> dict[str, Any]:
    """Widget values for every parameter of every method and extra: the config's where it has them,
    defaults elsewhere; an extra's checkbox is ticked when the config lists it."""
    out: dict[str, Any] = {}

    def fill(specs: list[Any], given: dict[str, Any], key_of: Any) -> None:
        for spec in specs:
            value = given.get(spec.name, spec.default)
            out[key_of(spec.name)] = float(value) if spec.type is float else value

    for name in resources.methods():
        fill(resources.method_params(name), cfg.method.params if name == cfg.method.name else {},
             lambda p, n=name: param_key(n, p))
    chosen = {e["name"]: e.get("params", {}) for e in cfg.method.extras}
    for name in resources.extras():
        out[extra_key(name)] = name in chosen
        fill(resources.extra_params(name), chosen.get(name, {}), lambda p, n=name: extra_param_key(n, p))
    return out


def _field_types() -> dict[str, type]:
    types = {path: type(v) for path, v in flatten(RunConfig()).items()}
    types.update({p: int for p in OPTIONAL_INT} | {p: str for p in OPTIONAL_STR})
    return types


FIELD_TYPES = _field_types()


def preset_config(preset: str) -> RunConfig:
    """A preset's defaults: the one-click demo's DANN config, or a start for own folders."""
    if preset != FOLDER:
        return demo_config(preset, "dann")
    cfg = RunConfig()
    cfg.data.source = cfg.data.target = FOLDER
    cfg.method.name, cfg.method.train_on = "finetune", "source"
    names = [b["name"] for b in resources.backbones()]
    for candidate in ("efficientnet_lite0", "resnet18", "mobilenet_v3_small"):
        if candidate in names and resources.weights_available(candidate)[0]:
            info = next(b for b in resources.backbones() if b["name"] == candidate)
            cfg.model.backbone = candidate
            cfg.data.image_size = int(info["input_size"])
            cfg.model.freeze = max(0, len(info["stage_names"]) - 2)
            cfg.optim.backbone_lr_mult = 0.1
            break
    cfg.optim.batch_size, cfg.optim.epochs = 32, 5
    return cfg


def load_preset(preset: str) -> None:
    """Fill every widget of the form from a preset's defaults."""
    cfg = preset_config(preset)
    cfg.name = ""  # the placeholder shows a name that follows the settings (the preset's would say "DANN")
    ss = st.session_state
    for path, value in flatten(cfg).items():
        if path in OPTIONAL_INT:
            value = int(value or 0)
        elif path in OPTIONAL_STR:
            value = value or ""
        elif FIELD_TYPES[path] is float:
            value = float(value)
        ss[k(path)] = value
    ss.update(method_state(cfg))
    ss[keys.SETUP_METHOD] = method_key(cfg.to_dict())
    ss[keys.SETUP_PRESET] = preset
    ss.pop(keys.SETUP_BACKBONE_NOTE, None)


def _on_preset_change() -> None:
    load_preset(st.session_state[keys.SETUP_PRESET])


def init_state() -> None:
    ss = st.session_state
    requested = ss.pop(keys.SETUP_REQUEST_PRESET, None)
    if requested:
        load_preset(requested)
    elif k("data.source") not in ss:
        load_preset(ss.get(keys.SETUP_PRESET) or DEFAULT_PRESET)


def build_config() -> RunConfig:
    """The RunConfig the form describes now."""
    ss = st.session_state
    d: dict[str, Any] = preset_config(ss.get(keys.SETUP_PRESET) or DEFAULT_PRESET).to_dict()
    for path in FIELD_TYPES:
        key = k(path)
        if key not in ss:
            continue
        value = ss[key]
        if path in OPTIONAL_INT:
            value = int(value) if value else None
        elif path in OPTIONAL_STR:
            value = str(value).strip() or None
        if "." in path:
            section, name = path.split(".", 1)
            d[section][name] = value
        else:
            d[path] = value
    # The dashboard reads folders only inside its one data folder, set by whoever starts the server
    # (TL_DATA_ROOT), never by the page: data_root is always that folder, whatever a preset or
    # session state held, and a relative folder name is taken inside it. The engine's checks
    # (preflight, run on submit and again by the trainer) refuse anything that resolves outside it.
    root = str(resources.data_root())
    d["data"]["data_root"] = root
    for role in ("source", "target"):
        typed = d["data"].get(f"{role}_path")
        if isinstance(typed, str) and typed:
            d["data"][f"{role}_path"] = os.path.join(root, typed)  # an absolute path stays as typed
    if str(d["model"]["backbone"]).startswith(SAVED_PREFIX):  # a group of earlier runs: the run picked in it
        d["model"]["backbone"] = ss.get(keys.SETUP_SAVED_BACKBONE) or d["model"]["backbone"]
    name, train_on = split_method_key(ss.get(keys.SETUP_METHOD) or method_key(d))
    params = {spec.name: ss[param_key(name, spec.name)] for spec in resources.method_params(name)
              if param_key(name, spec.name) in ss}
    extras = [{"name": extra, "params": {spec.name: ss[extra_param_key(extra, spec.name)]
                                         for spec in resources.extra_params(extra)
                                         if extra_param_key(extra, spec.name) in ss}}
              for extra in resources.extras() if ss.get(extra_key(extra))]
    d["method"] = {"name": name, "train_on": train_on, "params": params, "extras": extras}
    return RunConfig.from_dict(d)


# --------------------------------------------------------------- sections
def render_data(slots: dict[str, Any]) -> None:
    st.subheader("Data")
    st.caption(f"Image folders are read only from: {widgets.plain(resources.data_root())} (set by whoever starts "
               "the server: `make run DATA_ROOT=…`). A folder name typed below is taken inside it.")
    infos = {d["name"]: d for d in resources.datasets()}

    def label(name: str) -> str:
        info = infos[name]
        return info["title"] + ("" if info["offline"] else " (downloads)")

    cols = st.columns(2)
    for col, role, title in ((cols[0], "source", "Source (labelled, trained on)"),
                             (cols[1], "target", "Target (tested on)")):
        with col:
            name = st.selectbox(title, list(infos), key=k(f"data.{role}"), format_func=label, **PERSIST)
            slots[f"data.{role}"] = st.empty()
            if name == FOLDER:
                st.text_input(f"{role.capitalize()} folder", key=k(f"data.{role}_path"),
                              placeholder="a folder inside the data folder, e.g. my-images (one sub-folder "
                                          "per class)", **PERSIST)
                slots[f"data.{role}_path"] = st.empty()
                layout = resources.folder_description(str(st.session_state.get(k(f"data.{role}_path")) or "").strip(),
                                                      str(resources.data_root()))
                if layout:
                    st.caption(widgets.plain(f"Found: {layout}."))
            st.caption(infos[name]["description"] if name in infos else "")
    c1, c2, c3 = st.columns(3)
    c1.number_input("Image size (pixels)", min_value=1, step=1, key=k("data.image_size"),
                    help="Images are resized to this square size before the backbone.", **PERSIST)
    c2.number_input("Max training images per domain (0 = all)", min_value=0, step=500, key=k("data.max_train"),
                    help="0 uses all of them. Fewer images train faster.", **PERSIST)
    c3.number_input("Max test images per domain (0 = all)", min_value=0, step=500, key=k("data.max_test"),
                    help="0 uses all of them.", **PERSIST)
    slots["data.image_size"] = c1.empty()
    slots["data.max_train"] = c2.empty()
    slots["data.max_test"] = c3.empty()
    c1.number_input("Labelled images per class (0 = all)", min_value=0, step=10, key=k("data.labels_per_class"),
                    help="Few labels: train on this many labelled images of each class, drawn at random with the "
                         "run's seed (10 with ten classes: 100 images). 0 uses every labelled image.", **PERSIST)
    slots["data.labels_per_class"] = c1.empty()
    st.checkbox("Allow downloads (torchvision data sets and weights)", key=k("data.allow_download"),
                help="Off by default: everything built in works offline.", **PERSIST)
    slots["data"] = st.empty()


def _backbone_table(bbs: list[dict[str, Any]]) -> None:
    rows = []
    for b in bbs:
        ok, why = resources.weights_available(b["name"])
        rows.append({"Backbone": b["title"], "Parameters": runinfo.fmt_count(b["params"]),
                     "Feature dim": b["feature_dim"], "Stages": len(b["stage_names"]),
                     "Input size": b["input_size"],
                     "Pretrained weights": ("✅ here" if ok else "❌ not here") + f" — {why}"})
    st.dataframe(rows, hide_index=True, width="stretch",
                 column_config={"Pretrained weights": st.column_config.TextColumn(width="large")})


def saved_groups(bbs: list[dict[str, Any]]) -> dict[str, list[str]]:
    """Backbones saved by earlier runs, grouped by architecture: SAVED_PREFIX + arch -> names, newest first."""
    groups: dict[str, list[str]] = {}
    for b in bbs:
        if b["name"].startswith(RUN_BACKBONE):
            groups.setdefault(SAVED_PREFIX + b["arch"], []).append(b["name"])
    return groups


def _on_backbone_change() -> None:
    """A new backbone brings its own defaults: the image size its weights were trained at, and the
    backbone learning-rate multiplier of 0.1 for pretrained weights (1 for one trained from scratch);
    the caption under the backbone says what was set and why."""
    ss = st.session_state
    name = ss.get(k("model.backbone"))
    bbs = resources.backbones()
    if isinstance(name, str) and name.startswith(SAVED_PREFIX):  # a group of earlier runs: its newest run
        name = (saved_groups(bbs).get(name) or [name])[0]
    info = next((b for b in bbs if b["name"] == name), None)
    if info is None:
        return
    try:
        size = resources.default_image_size(str(name))
    except Exception:  # a backbone whose info cannot be read here: its listed size
        size = int(info["input_size"])
    pretrained = not str(info.get("weights", "")).startswith("none")
    mult = 0.1 if pretrained and ss.get(k("model.pretrained"), True) else 1.0
    ss[k("data.image_size")] = int(size)
    ss[k("optim.backbone_lr_mult")] = mult
    title = info["title"].split(" from run ")[0]
    why = (f"Image size set to {size} px, the size {title}'s weights were trained at"
           if pretrained else f"Image size set to {size} px, the size {title} was built for")
    why += ("; backbone learning-rate multiplier set to 0.1, so training nudges the pretrained weights "
            "rather than overwriting them." if mult != 1.0 else "; backbone learning-rate multiplier set to 1.")
    ss[keys.SETUP_BACKBONE_NOTE] = why


def render_backbone(slots: dict[str, Any]) -> dict[str, Any] | None:
    """The backbone: the registered ones, then one entry per architecture that earlier runs fine-tuned
    (a second list picks the run), so the list stays short after a hundred runs."""
    st.subheader("Backbone")
    ss = st.session_state
    bbs = resources.backbones()
    by_name = {b["name"]: b for b in bbs}
    groups = saved_groups(bbs)
    options = [b["name"] for b in bbs if not b["name"].startswith(RUN_BACKBONE)] + list(groups)
    current = ss.get(k("model.backbone"))
    if isinstance(current, str) and current.startswith(RUN_BACKBONE) and current in by_name:
        ss[keys.SETUP_SAVED_BACKBONE] = current  # a loaded config names a run's backbone: open its group
        ss[k("model.backbone")] = SAVED_PREFIX + by_name[current]["arch"]
    elif current not in options and options:
        ss[k("model.backbone")] = options[0]

    def label(name: str) -> str:
        if name in groups:
            base = by_name[groups[name][0]]["title"].split(" from run ")[0]
            n = len(groups[name])
            return f"{base} fine-tuned by an earlier run ({n} run{'s' if n != 1 else ''})"
        b = by_name[name]
        ok, _ = resources.weights_available(name)
        # short enough to show whole in the select box at 1280 px; feature widths are in the table below
        return f"{b['title']} · {runinfo.fmt_count(b['params'])} params" + ("" if ok else " · no weights here")

    name = st.selectbox("Pretrained backbone", options, key=k("model.backbone"), format_func=label,
                        on_change=_on_backbone_change, **PERSIST)
    note = ss.get(keys.SETUP_BACKBONE_NOTE)
    if note:
        st.caption(widgets.plain(note))
    if name in groups:
        if ss.get(keys.SETUP_SAVED_BACKBONE) not in groups[name]:
            ss[keys.SETUP_SAVED_BACKBONE] = groups[name][0]
        name = st.selectbox("Which run's backbone (newest first)", groups[name], key=keys.SETUP_SAVED_BACKBONE,
                            format_func=saved_label, **PERSIST)
    slots["model.backbone"] = st.empty()
    info = by_name.get(name)
    size = st.session_state.get(k("data.image_size"))
    if info is not None and size != info["input_size"]:
        st.caption(f"{widgets.plain(info['title'])} was built for {info['input_size']}×{info['input_size']} "
                   f"images; this run resizes to {size}×{size} (see Image size).")
    st.checkbox("Start from pretrained weights (untick to train from scratch)", key=k("model.pretrained"),
                **PERSIST)
    slots["model.pretrained"] = st.empty()
    with st.expander("All backbones: size, feature width and whether their weights are here"):
        _backbone_table([b for b in bbs if not b["name"].startswith(RUN_BACKBONE)])
    return by_name.get(name)


def saved_label(name: str) -> str:
    """'run:<id>' as its run's name and date (plain text: a selectbox option)."""
    rec = resources.get_store().get_run(name[len(RUN_BACKBONE):])
    return f"{runinfo.run_title(rec)} · {runinfo.fmt_when(rec.created)}" if rec is not None else name


def render_freezing(slots: dict[str, Any], info: dict[str, Any] | None) -> None:
    st.subheader("Freezing")
    if info is None:
        st.caption("Choose a backbone first.")
        return
    stages = list(info["stage_names"])
    n = len(stages)
    key = k("model.freeze")
    current = int(st.session_state.get(key, 0) or 0)
    st.session_state[key] = max(0, current)
    # A value above the stage count (left over from a bigger backbone) stays visible, with its message.
    k_frozen = st.slider("Freeze the first k stages", 0, max(n, current), key=key,
                         help="Frozen stages keep their pretrained weights (gradients off, BatchNorm statistics "
                              "fixed). 0 fine-tunes everything; all stages frozen trains only the new head.",
                         **PERSIST)
    slots["model.freeze"] = st.empty()
    try:
        per_stage = resources.stage_params(info["name"], n)
        trainable, frozen = resources.param_counts(info["name"], min(k_frozen, n))
    except Exception as exc:  # a backbone that cannot be built here: say so, keep the page usable
        st.warning(widgets.plain(f"Could not count the parameters of {info['name']}: {exc}"))
        per_stage, trainable, frozen = [0] * n, None, None
    st.html(stage_diagram(stages, per_stage, k_frozen))
    c1, c2, c3 = st.columns(3)
    c1.metric("Trainable backbone parameters", runinfo.fmt_count(trainable))
    c2.metric("Frozen backbone parameters", runinfo.fmt_count(frozen))
    c3.metric("Backbone stages frozen", f"{min(k_frozen, n)} of {n}")


def render_method(slots: dict[str, Any]) -> None:
    st.subheader("Head and method")
    head = st.radio("New classification head", list(HEAD_LABELS), key=k("model.head"), horizontal=True,
                    format_func=HEAD_LABELS.get, **PERSIST)
    slots["model.head"] = st.empty()
    if head == "mlp":
        c1, c2 = st.columns(2)
        c1.number_input("Hidden width", min_value=1, step=64, key=k("model.head_hidden"), **PERSIST)
        c2.number_input("Dropout", min_value=0.0, max_value=0.99, step=0.05, key=k("model.dropout"), **PERSIST)
        slots["model.head_hidden"] = c1.empty()
        slots["model.dropout"] = c2.empty()
    slots["model"] = st.empty()
    choices = method_choices()
    if st.session_state.get(keys.SETUP_METHOD) not in choices:
        st.session_state[keys.SETUP_METHOD] = next(iter(choices))
    choice = st.radio("Method", list(choices), key=keys.SETUP_METHOD, format_func=choices.get, **PERSIST)
    slots["method"] = st.empty()
    name, _ = split_method_key(choice)
    render_method_params(slots, name)
    render_extras(slots)


def render_method_params(slots: dict[str, Any], name: str) -> None:
    """The chosen method's own settings, drawn from its parameter declarations."""
    info = resources.methods()[name]
    specs = resources.method_params(name)
    st.caption(f"{info['description']} — {info['citation']}" if info["citation"] else info["description"])
    if not specs:
        st.caption(f"{info['title']} has no settings of its own.")
        return
    st.markdown(f"**{info['title']} settings**")
    render_params(slots, specs, lambda p: param_key(name, p), "method.params")


def render_extras(slots: dict[str, Any]) -> None:
    """Regularisers and fine-tuning schedules that compose with any method: a checkbox each, and the
    settings of those ticked."""
    extras = resources.extras()
    if not extras:
        return
    st.markdown("**Add to any method**")
    for name, info in extras.items():
        label = f"{info['title']} ({info['kind']})"
        about = info["description"] + (f" — {info['citation']}" if info["citation"] else "")
        if st.checkbox(label, key=extra_key(name), help=about, **PERSIST):
            render_params(slots, resources.extra_params(name), lambda p, n=name: extra_param_key(n, p),
                          f"method.extras.{name}")
    slots["method.extras"] = st.empty()


def render_params(slots: dict[str, Any], specs: list[Any], key_of: Any, path: str) -> None:
    """One widget per declared parameter, three to a row; each with its slot for messages at ``path.<name>``."""
    for row in range(0, len(specs), 3):
        cols = st.columns(3)
        for col, spec in zip(cols, specs[row:row + 3]):
            key = key_of(spec.name)
            if spec.choices:
                col.selectbox(spec.label, list(spec.choices), key=key, help=spec.help or None,
                              format_func=lambda v, c=spec.choices: c.get(v, v), **PERSIST)
            elif spec.type is bool:
                col.checkbox(spec.label, key=key, help=spec.help or None, **PERSIST)
            elif spec.type is str:
                col.text_input(spec.label, key=key, help=spec.help or None, **PERSIST)
            elif spec.type is int:
                col.number_input(spec.label, step=int(spec.step or 1), key=key, help=spec.help or None, **PERSIST)
            else:
                col.number_input(spec.label, step=float(spec.step or 0.1), format="%g", key=key,
                                 help=spec.help or None, **PERSIST)
            slots[f"{path}.{spec.name}"] = col.empty()


def render_optim(slots: dict[str, Any]) -> None:
    st.subheader("Optimisation")
    c1, c2 = st.columns(2)
    optimizer = c1.selectbox("Optimiser", list(OPTIMIZERS), key=k("optim.optimizer"),
                             format_func=lambda o: OPTIMIZER_LABELS.get(o, o), **PERSIST)
    slots["optim.optimizer"] = c1.empty()
    c2.number_input("Learning rate", step=0.001, format="%g", key=k("optim.lr"),
                    help="Of the head (and the discriminator); try 0.01 for SGD, 0.001 for Adam.", **PERSIST)
    slots["optim.lr"] = c2.empty()
    lr_finder_view.render(build_config, k("optim.lr"))  # "Find a learning rate": the lr range test
    c1, c2, c3 = st.columns(3)
    c1.number_input("Backbone learning-rate multiplier", step=0.1, format="%g", key=k("optim.backbone_lr_mult"),
                    help="The backbone's top stage trains at lr × this; 0.1 is common for pretrained backbones.",
                    **PERSIST)
    slots["optim.backbone_lr_mult"] = c1.empty()
    st.session_state.setdefault(k("optim.lr_decay"), 1.0)  # a form filled before the setting existed
    c2.number_input("Per-stage factor (lower stages)", min_value=0.0, max_value=1.0, step=0.05, format="%g",
                    key=k("optim.lr_decay"), help="Discriminative learning rates (Howard & Ruder, ACL 2018): each "
                    "backbone stage below the top trains at the rate of the one above × this. 1 gives every stage the "
                    "same rate; ULMFiT uses 1/2.6 ≈ 0.38.", **PERSIST)
    slots["optim.lr_decay"] = c2.empty()
    c3.number_input("Weight decay", step=1e-4, format="%g", key=k("optim.weight_decay"), **PERSIST)
    slots["optim.weight_decay"] = c3.empty()
    c1, c2 = st.columns(2)
    c1.selectbox("Learning-rate schedule", list(LR_SCHEDULES), key=k("optim.lr_schedule"),
                 format_func=lambda s: SCHEDULE_LABELS.get(s, s), **PERSIST)
    slots["optim.lr_schedule"] = c1.empty()
    if optimizer == "sgd":
        c2.number_input("Momentum", step=0.05, format="%g", key=k("optim.momentum"), **PERSIST)
        slots["optim.momentum"] = c2.empty()
    c1, c2 = st.columns(2)
    c1.number_input("Batch size", step=16, key=k("optim.batch_size"), **PERSIST)
    slots["optim.batch_size"] = c1.empty()
    c2.number_input("Epochs", step=1, key=k("optim.epochs"), **PERSIST)
    slots["optim.epochs"] = c2.empty()
    render_augment(slots)
    slots["optim"] = st.empty()


def render_augment(slots: dict[str, Any]) -> None:
    """Augmentation settings (optim.augment*) and a grid of augmented source images: what the model sees."""
    from tl_core.data.augment import FLIP_CHOICES

    if not st.checkbox("Augment training images", key=k("optim.augment"),
                       help="Each image its own random change: random resized crop, horizontal flip, colour jitter "
                            "and TrivialAugment, drawn anew for every image of every batch. Turns the frozen-stage "
                            "cache off.", **PERSIST):
        return
    c1, c2 = st.columns(2)
    c1.number_input("Random crop: smallest share of the area kept", step=0.05, format="%g",
                    key=k("optim.augment_crop"), help="1: no cropping; 0.8 is mild; 0.08 is ImageNet's usual. The "
                    "crop (aspect 3:4 to 4:3) is resized back to the image size.", **PERSIST)
    slots["optim.augment_crop"] = c1.empty()
    c2.selectbox("Horizontal flip", list(FLIP_CHOICES), key=k("optim.augment_flip"), format_func=FLIP_CHOICES.get,
                 help="Auto flips half the images, except digits (a mirrored 2 is no digit).", **PERSIST)
    slots["optim.augment_flip"] = c2.empty()
    c1, c2 = st.columns(2)
    c1.number_input("Colour jitter strength", step=0.05, format="%g", key=k("optim.augment_jitter"),
                    help="0: off. Brightness, contrast and saturation change by up to ± this, hue by a quarter of "
                         "it; 0.2–0.4 is common.", **PERSIST)
    slots["optim.augment_jitter"] = c1.empty()
    c2.checkbox("TrivialAugment", key=k("optim.augment_trivial"),
                help="One random operation (rotate, shear, posterize, …) at a random strength per image "
                     "(Müller & Hutter, 2021). The slowest of the four on a CPU.", **PERSIST)
    ss = st.session_state
    typed = str(ss.get(k("data.source_path")) or "").strip()
    root = str(resources.data_root())
    grid, words = resources.augment_preview(
        str(ss.get(k("data.source"), "")), os.path.join(root, typed) if typed else None, root,
        int(ss.get(k("data.image_size")) or 28),
        (ss.get(k("optim.augment_crop"), 0.8), ss.get(k("optim.augment_flip"), "auto"),
         ss.get(k("optim.augment_jitter"), 0.0), bool(ss.get(k("optim.augment_trivial"), False))))
    if grid is None:
        st.caption(widgets.plain(words))
    else:
        st.image(grid, caption=widgets.plain(f"What the model sees: source images as the run holds them (left), "
                                             f"then five augmented copies of each ({words})."))


def render_runtime(slots: dict[str, Any]) -> None:
    st.subheader("Run")
    avail = resources.devices()
    c1, c2, c3 = st.columns(3)
    c1.number_input("Seed", min_value=0, step=1, key=k("seed"), **PERSIST)
    slots["seed"] = c1.empty()
    with c2:
        options = [d for d in ("auto", "cpu", "cuda") if avail.get(d, (d != "cuda",))[0]]
        if st.session_state.get(k("device")) not in options:
            st.session_state[k("device")] = "auto"
        st.radio("Device", options, key=k("device"), horizontal=True,
                 help=f"auto {avail.get('auto', (True, ''))[1]}.", **PERSIST)
        if "cuda" not in options:
            st.caption(f":gray[cuda — not available: {avail.get('cuda', (False, 'unknown'))[1]}]")
        slots["device"] = st.empty()
    with c3:
        st.checkbox("Mixed precision", key=k("amp"), help="Used on CUDA only; ignored on the CPU.", **PERSIST)
    c1, c2, c3 = st.columns(3)
    with c1:
        snap = st.checkbox("Feature snapshots", key=k("snapshot.enabled"),
                           help="Features of a fixed sample of both domains, every epoch, for the feature-space "
                                "picture on the Monitor.", **PERSIST)
    if snap:
        c2.number_input("Images per domain in a snapshot", min_value=1, step=100, key=k("snapshot.per_domain"),
                        **PERSIST)
        c3.selectbox("Projection", list(PROJECTIONS), key=k("snapshot.projection"), format_func=str.upper,
                     **PERSIST)
        slots["snapshot.per_domain"] = c2.empty()
        c1, c2, c3 = st.columns(3)
        c3.selectbox("Pictures during training", list(SNAPSHOT_PRIORITIES), key=k("snapshot.priority"),
                     format_func=PRIORITY_LABELS.get,
                     help="Projecting a snapshot takes CPU. 'Training first' lets the projector use only idle "
                          "CPU: training is not slowed, but on a CPU that training keeps busy the pictures appear "
                          "when it ends (with a GPU or spare cores they follow training). 'Keep up' shares the CPU: "
                          "pictures follow training, which slows while a snapshot is projected.",
                     **PERSIST)
        slots["snapshot.priority"] = c3.empty()
        c1.number_input("Snapshot every N epochs", min_value=0, step=1, key=k("snapshot.every_epochs"),
                        help="0: no end-of-epoch snapshots. A snapshot right after an evaluation reuses its "
                             "features, so it costs training almost nothing.", **PERSIST)
        c2.number_input("…and every N steps", min_value=0, step=50, key=k("snapshot.every_steps"),
                        help="0: off. For long epochs: a picture between evaluations (a forward pass over the "
                             "sample on the training thread, each time).", **PERSIST)
        slots["snapshot.every_epochs"] = c1.empty()
        slots["snapshot.every_steps"] = c2.empty()
    slots["snapshot"] = st.empty()


def render_start(cfg: RunConfig, problems: list[str], unplaced: list[str]) -> None:
    st.divider()
    name = st.text_input("Run name", key=k("name"), placeholder=cfg.label(),
                         help="Leave empty for a name made from the method, backbone and data.", **PERSIST)
    slots_name = st.empty()
    if problems:
        reason = (f"Start is disabled: {len(problems)} setting{'s' if len(problems) != 1 else ''} "
                  "to fix (see the red messages above).")
        for msg in unplaced:
            path, text = validation.split(msg)
            slots_name.error(widgets.plain(f"{path}: {text}" if path else text))
        st.warning(reason, icon=":material/block:")
    else:
        reason = ""
    widgets.show_once(keys.SETUP_ERROR)
    if not access.may_act():
        reason = access.why_read_only()
        st.info(reason, icon=":material/lock:")
    also_baseline = gain_view.baseline_checkbox(cfg, keys.SETUP_BASELINE)
    if st.button("Start run", key=keys.SETUP_START, type="primary", icon=":material/play_arrow:",
                 disabled=bool(problems) or not access.may_act(),
                 help=reason or f"Train '{widgets.plain(name or cfg.label())}' in the background.") \
            and access.may_act():
        try:
            ids = gain_view.submit_with_baseline(resources.get_manager(), cfg, resources.owner_id(), also_baseline)
        except ConfigError as exc:
            st.session_state[keys.SETUP_ERROR] = ("error", "Could not start: " + " ".join(exc.problems))
            st.rerun()
        except Exception as exc:  # say what went wrong, never a traceback
            log.exception("starting a run failed")
            st.session_state[keys.SETUP_ERROR] = ("error", f"Could not start ({type(exc).__name__}: {exc}).")
            st.rerun()
        resources.remember_started(ids)
        widgets.switch_to(keys.PAGE_MONITOR)
    with st.expander("This run's configuration (JSON, also what the command line takes)"):
        st.code(cfg.to_json(), language="json", wrap_lines=True)


def main() -> None:
    st.title("Set up a run")
    init_state()
    presets = resources.presets()
    options = list(presets) + [FOLDER]
    if st.session_state.get(keys.SETUP_PRESET) not in options:
        st.session_state[keys.SETUP_PRESET] = DEFAULT_PRESET
    st.selectbox("Start from", options, key=keys.SETUP_PRESET, on_change=_on_preset_change,
                 format_func=lambda p: "Your own image folders" if p == FOLDER else presets[p]["title"],
                 help="Changing this refills every setting below with that preset's defaults.", **PERSIST)
    slots: dict[str, Any] = {}
    left, right = st.columns(2, gap="large")
    with left:
        render_data(slots)
    with right:
        info = render_backbone(slots)
    render_freezing(slots, info)
    left, right = st.columns(2, gap="large")
    with left:
        render_method(slots)
    with right:
        render_optim(slots)
        render_selection(slots, k, PERSIST)  # the label-free checkpoint choice and early stopping
    render_runtime(slots)

    try:
        cfg = build_config()
    except (TypeError, ValueError) as exc:  # a value the form cannot turn into a config at all
        st.error(f"These settings do not make a run configuration: {widgets.plain(exc)}")
        return
    problems = validation.problems(cfg)
    routed, unplaced = validation.route(problems, list(slots))
    for path, texts in routed.items():
        # messages quote what was typed (folder names): plain text, not Markdown
        slots[path].error("  \n".join(widgets.plain(t) for t in texts), icon=":material/error:")
    render_start(cfg, problems, unplaced)


entry.require_app()
main()
