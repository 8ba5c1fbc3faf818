"""Run configuration: dataclasses that fully describe a run and round-trip through JSON.

A run is fully described by its :class:`RunConfig`; the same config from the command line
or the dashboard gives the same run. :meth:`RunConfig.validate` returns one message per
invalid value, each prefixed by the field path and saying how to fix it.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from tl_core.selection import DEFAULT_CRITERION

HEADS = ("linear", "mlp")
OPTIMIZERS = ("sgd", "adam", "adamw")
LR_SCHEDULES = ("anneal", "constant", "cosine")
DEVICES = ("auto", "cpu", "cuda", "mps")
PROJECTIONS = ("umap", "pca")
SNAPSHOT_PRIORITIES = ("background", "live")
MAX_LR = 10.0


@dataclass
class DataConfig:
    """Which images a run trains and evaluates on."""

    source: str = "mnist"
    target: str = "mnist-m"
    image_size: int = 28
    max_train: int | None = None
    max_test: int | None = None
    labels_per_class: int | None = None  # keep this many labelled training images of each class (None: all)
    source_path: str | None = None
    target_path: str | None = None
    data_root: str | None = None
    allow_download: bool = False


@dataclass
class ModelConfig:
    """Backbone, how much of it stays frozen, and the new head."""

    backbone: str = "lenet"
    pretrained: bool = True
    freeze: int = 0
    head: str = "linear"
    head_hidden: int = 256
    dropout: float = 0.5


@dataclass
class MethodConfig:
    """Training method, whose labels it trains on, and its own settings.

    ``params`` holds the settings of the method named by ``name`` (its ``Params`` dataclass in
    ``tl_core/methods/``); a setting left out takes the method's default. ``train_on`` is the
    domain whose labels the loss uses: 'source', or 'target' where the method allows it (a
    supervised fine-tune on the target, chosen explicitly). ``extras`` lists the regularisers and
    fine-tuning schedules that compose with the method, each ``{"name": ..., "params": {...}}``
    (see ``tl_core.methods.Extra``).
    """

    name: str = "dann"
    train_on: str = "source"
    params: dict[str, Any] = field(default_factory=dict)
    extras: list[dict[str, Any]] = field(default_factory=list)

    def resolved_params(self) -> dict[str, Any]:
        """Every setting of the method: the given ones over its defaults (unknown method: as given)."""
        from tl_core.methods import all_methods

        cls = all_methods().get(self.name)
        if cls is None or not isinstance(self.params, dict):
            return self.params
        defaults = asdict(cls.Params())
        return {**defaults, **self.params}

    def resolved_extras(self) -> list[dict[str, Any]]:
        """The extras with every setting: the given ones over each extra's defaults (unknown: as given)."""
        from tl_core.methods import all_extras

        known = all_extras()
        out = []
        for entry in self.extras if isinstance(self.extras, list) else []:
            cls = known.get(entry.get("name")) if isinstance(entry, dict) else None
            if cls is None or not isinstance(entry.get("params", {}), dict):
                out.append(entry)
                continue
            out.append({"name": cls.name, "params": {**asdict(cls.Params()), **entry.get("params", {})}})
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "MethodConfig":
        """From JSON; configs written before methods had ``params`` (DANN's settings beside the name)
        are read too: keys the method's parameters know move into ``params``."""
        d = dict(d)
        name, train_on = d.pop("name", cls.name), d.pop("train_on", cls.train_on)
        params, extras = d.pop("params", {}), d.pop("extras", [])
        if not isinstance(params, dict):
            raise ValueError(f"method.params: must be an object of settings, got {type(params).__name__}")
        if d:  # before params: every run stored DANN's settings flat, whatever its method
            from tl_core.methods import all_methods
            from tl_core.methods.dann import DANNParams

            flat = {f.name for f in fields(DANNParams)}
            unknown = set(d) - flat
            if unknown:
                raise ValueError(f"method: unknown settings {sorted(unknown)}; known: name, train_on, params")
            method = all_methods().get(name)
            own = {f.name for f in fields(method.Params)} if method is not None else set()
            params = {**{k: v for k, v in d.items() if k in own}, **params}
        return cls(name=name, train_on=train_on, params=dict(params), extras=extras)


@dataclass
class OptimConfig:
    """Optimiser and schedule."""

    optimizer: str = "sgd"
    lr: float = 0.01
    backbone_lr_mult: float = 1.0
    lr_decay: float = 1.0  # discriminative rates: each backbone stage below the top trains at the one above's × this
    weight_decay: float = 5e-4
    momentum: float = 0.9
    batch_size: int = 64
    epochs: int = 10
    lr_schedule: str = "anneal"
    augment: bool = False           # augment training images, each image its own draw (tl_core/data/augment.py)
    augment_crop: float = 0.8       # random resized crop: smallest share of the area kept (1: no crop)
    augment_flip: str = "auto"      # horizontal flip: auto (off for digits), on, off
    augment_jitter: float = 0.0     # colour jitter strength (brightness, contrast, saturation; hue a quarter)
    augment_trivial: bool = False   # TrivialAugment (wide): one random operation per image


@dataclass
class SnapshotConfig:
    """Feature snapshots for the feature-space view."""

    enabled: bool = True
    per_domain: int = 500
    every_epochs: int = 1
    every_steps: int = 0
    projection: str = "umap"
    priority: str = "background"  # training first (projector at SCHED_IDLE) or "live": pictures keep up


@dataclass
class SelectionConfig:
    """How a run chooses its checkpoint without target labels (criteria: ``tl_core/selection.py``)."""

    criterion: str = DEFAULT_CRITERION
    patience: int = 0  # early stopping: epochs without improvement of the criterion; 0 = off


_SECTIONS = {
    "data": DataConfig,
    "model": ModelConfig,
    "method": MethodConfig,
    "optim": OptimConfig,
    "snapshot": SnapshotConfig,
    "selection": SelectionConfig,
}


@dataclass
class RunConfig:
    """Everything a run needs. Serialises to JSON and back without loss."""

    name: str = ""
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    snapshot: SnapshotConfig = field(default_factory=SnapshotConfig)
    selection: SelectionConfig = field(default_factory=SelectionConfig)
    seed: int = 0
    device: str = "auto"
    amp: bool = True

    # ----------------------------------------------------------------- JSON
    def to_dict(self) -> dict[str, Any]:
        """Every setting, the method's parameters included with their defaults (a full description)."""
        d = asdict(self)
        d["method"]["params"] = self.method.resolved_params()
        d["method"]["extras"] = self.method.resolved_extras()
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RunConfig":
        """Build from a dict; unknown keys or a section that is not a mapping raise ValueError naming them.

        Values are taken as data, never evaluated; :meth:`validate` checks them.
        """
        if not isinstance(d, dict):
            raise ValueError(f"a run configuration must be a JSON object, got {type(d).__name__}")
        d = dict(d)
        kwargs: dict[str, Any] = {}
        for name, section_cls in _SECTIONS.items():
            sub = d.pop(name, None) or {}
            if not isinstance(sub, dict):
                raise ValueError(f"{name}: must be an object of settings, got {type(sub).__name__}")
            if section_cls is MethodConfig:
                kwargs[name] = MethodConfig.from_dict(sub)
                continue
            known = {f.name for f in fields(section_cls)}
            unknown = set(sub) - known
            if unknown:
                raise ValueError(f"{name}: unknown settings {sorted(unknown)}; known: {sorted(known)}")
            kwargs[name] = section_cls(**sub)
        known_top = {f.name for f in fields(cls)} - set(_SECTIONS)
        unknown = set(d) - known_top
        if unknown:
            raise ValueError(f"unknown settings {sorted(unknown)}; known: {sorted(known_top | set(_SECTIONS))}")
        kwargs.update(d)
        return cls(**kwargs)

    @classmethod
    def from_json(cls, text: str) -> "RunConfig":
        return cls.from_dict(json.loads(text))

    # ----------------------------------------------------------- describing
    def label(self) -> str:
        """A short human name when the user gave none, e.g. 'DANN · lenet · mnist→mnist-m'."""
        if self.name:
            return self.name
        return f"{method_label(self.to_dict())} · {self.model.backbone} · {self.data.source}→{self.data.target}"

    def labelled_domain(self) -> str:
        """The domain whose labels training uses: 'source', or 'target' for a supervised target fine-tune."""
        return self.method.train_on

    # ----------------------------------------------------------- validation
    def validate(self) -> list[str]:
        """Return a list of problems; empty when the config can run."""
        errs: list[str] = []
        o, m, me, d, s = self.optim, self.model, self.method, self.data, self.snapshot

        def choice(path: str, value: Any, options: tuple[str, ...]) -> None:
            if value not in options:
                errs.append(f"{path}: '{value}' is not one of {', '.join(options)}.")

        def positive_int(path: str, value: Any, hint: str = "") -> None:
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                errs.append(f"{path}: must be a whole number of at least 1, got {value!r}.{hint}")

        def finite(path: str, value: Any) -> bool:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            if not ok:
                errs.append(f"{path}: must be a finite number, got {value!r}.")
            return ok

        if finite("optim.lr", o.lr):
            if o.lr <= 0:
                errs.append(f"optim.lr: the learning rate must be above 0, got {o.lr}; try 0.01 for SGD or 0.001 for Adam.")
            elif o.lr > MAX_LR:
                errs.append(f"optim.lr: {o.lr} is far too large (at most {MAX_LR}); try 0.01 for SGD or 0.001 for Adam.")
        if finite("optim.backbone_lr_mult", o.backbone_lr_mult) and not 0 <= o.backbone_lr_mult <= 100:
            errs.append("optim.backbone_lr_mult: must be between 0 and 100 (0 keeps the backbone fixed, 0.1 is common for pretrained ones).")
        if finite("optim.lr_decay", o.lr_decay) and not 0 < o.lr_decay <= 1:
            errs.append(f"optim.lr_decay: must be above 0 and at most 1, got {o.lr_decay!r}. The top backbone stage "
                        "trains at lr × backbone multiplier and each stage below it at the rate of the one above × "
                        "this: 1 gives every stage the same rate, ULMFiT uses 1/2.6 ≈ 0.38.")
        if finite("optim.weight_decay", o.weight_decay) and not 0 <= o.weight_decay <= 1:
            errs.append("optim.weight_decay: must be between 0 and 1; 5e-4 is a common value.")
        if finite("optim.momentum", o.momentum) and not 0 <= o.momentum < 1:
            errs.append("optim.momentum: must be at least 0 and below 1; 0.9 is common.")
        positive_int("optim.batch_size", o.batch_size, " Try 64.")
        positive_int("optim.epochs", o.epochs, " A run needs at least one epoch.")
        choice("optim.optimizer", o.optimizer, OPTIMIZERS)
        choice("optim.lr_schedule", o.lr_schedule, LR_SCHEDULES)
        from tl_core.data.augment import problems as augment_problems  # no torch: the settings' checks only

        errs += augment_problems(o)

        if not isinstance(m.freeze, int) or isinstance(m.freeze, bool) or m.freeze < 0:
            errs.append(f"model.freeze: the number of frozen stages must be 0 or more, got {m.freeze!r}.")
        choice("model.head", m.head, HEADS)
        positive_int("model.head_hidden", m.head_hidden)
        if finite("model.dropout", m.dropout) and not 0 <= m.dropout < 1:
            errs.append("model.dropout: must be at least 0 and below 1.")

        errs += _method_problems(me)

        positive_int("data.image_size", d.image_size)
        if isinstance(d.image_size, int) and d.image_size > 1024:
            errs.append(f"data.image_size: {d.image_size} is too large (at most 1024).")
        for path, v in (("data.max_train", d.max_train), ("data.max_test", d.max_test),
                        ("data.labels_per_class", d.labels_per_class)):
            if v is not None:
                positive_int(path, v)
        if (isinstance(d.max_train, int) and isinstance(o.batch_size, int) and 0 < d.max_train < o.batch_size):
            errs.append(f"optim.batch_size: {o.batch_size} is larger than the training set (data.max_train is "
                        f"{d.max_train} images); choose a batch size of at most {d.max_train}.")
        if not d.source:
            errs.append("data.source: choose a source data set.")
        if not d.target:
            errs.append("data.target: choose a target data set.")
        for role in ("source", "target"):
            if getattr(d, role) == "folder" and not getattr(d, f"{role}_path"):
                errs.append(f"data.{role}_path: give the folder that holds one sub-folder per class.")

        choice("device", self.device, DEVICES)
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or self.seed < 0:
            errs.append(f"seed: must be a whole number of 0 or more, got {self.seed!r}.")
        choice("snapshot.projection", s.projection, PROJECTIONS)
        choice("snapshot.priority", s.priority, SNAPSHOT_PRIORITIES)
        if s.enabled:
            positive_int("snapshot.per_domain", s.per_domain)
            if not isinstance(s.every_epochs, int) or s.every_epochs < 0:
                errs.append("snapshot.every_epochs: must be 0 (off) or more.")
            if not isinstance(s.every_steps, int) or s.every_steps < 0:
                errs.append("snapshot.every_steps: must be 0 (off) or more.")
        from tl_core.selection import problems as selection_problems

        errs += selection_problems(self.selection.criterion, self.selection.patience)
        return errs


def _method_problems(me: MethodConfig) -> list[str]:
    """The method exists, may train on the chosen labels, and its parameters are valid (asks the registry)."""
    from tl_core.methods import DOMAINS, all_methods, validate_params

    methods = all_methods()
    if me.name not in methods:
        return [f"method.name: '{me.name}' is not one of {', '.join(methods)}."]
    cls = methods[me.name]
    if me.train_on not in DOMAINS:
        return [f"method.train_on: '{me.train_on}' is not one of {', '.join(DOMAINS)}."]
    errs = []
    if me.train_on not in cls.trains_on:
        others = [n for n, c in methods.items() if me.train_on in c.trains_on]
        errs.append(f"method.train_on: {cls.title} trains on {' or '.join(cls.trains_on)} labels only"
                    + (f"; choose {' or '.join(others)} to train on {me.train_on} labels." if others else "."))
    if not isinstance(me.params, dict):
        return errs + [f"method.params: must be an object of settings, got {type(me.params).__name__}."]
    return errs + validate_params(me.name, me.params) + _extras_problems(me.extras)


def _extras_problems(extras: Any) -> list[str]:
    """Each extra is known, listed once, and its settings are valid (asks the registry)."""
    from tl_core.methods import all_extras, validate_extra

    if not isinstance(extras, list):
        return [f"method.extras: must be a list of {{name, params}} objects, got {type(extras).__name__}."]
    known, seen, errs = all_extras(), set(), []
    for entry in extras:
        if not isinstance(entry, dict) or set(entry) - {"name", "params"} or "name" not in entry:
            errs.append(f"method.extras: each entry is {{\"name\": ..., \"params\": {{...}}}}, got {entry!r}.")
        elif entry["name"] not in known:
            errs.append(f"method.extras: '{entry['name']}' is not one of {', '.join(known) or 'none registered'}.")
        elif entry["name"] in seen:
            errs.append(f"method.extras: '{entry['name']}' is listed twice.")
        elif not isinstance(entry.get("params", {}), dict):
            errs.append(f"method.extras.{entry['name']}: params must be an object of settings.")
        else:
            seen.add(entry["name"])
            errs += validate_extra(entry["name"], entry.get("params", {}))
    return errs


def method_key(config: dict[str, Any]) -> str:
    """The method choice a run's config dict makes: the method's name, with '@target' when it trains on
    target labels (e.g. 'finetune', 'finetune@target', 'dann'). The Setup page's choices use these keys."""
    method = config.get("method", {}) or {}
    name = str(method.get("name", "?"))
    return name if method.get("train_on", "source") == "source" else f"{name}@{method.get('train_on')}"


def split_method_key(key: str) -> tuple[str, str]:
    """'finetune@target' -> ('finetune', 'target'); 'dann' -> ('dann', 'source')."""
    name, _, domain = key.partition("@")
    return name, domain or "source"


def method_choices() -> dict[str, str]:
    """Every method choice (see :func:`method_key`) -> the sentence that describes it, from the registry."""
    from tl_core.methods import all_methods

    out = {}
    for name, cls in all_methods().items():
        for domain, label in cls.trains_on.items():
            key = name if domain == "source" else f"{name}@{domain}"
            out[key] = cls.choice_help.get(domain) or f"{label}: {cls.description}"
    return out


def method_label(config: dict[str, Any]) -> str:
    """The label of a run's method, e.g. 'Source only', 'Target supervised', 'DANN', 'DANN + L2-SP' (asks the
    registry).

    The one owner of this rule: run names, the pages and bench tables all call it.
    """
    from tl_core.methods import all_methods

    from tl_core.methods import all_extras

    method = config.get("method", {}) or {}
    cls = all_methods().get(str(method.get("name")))
    label = cls.label(str(method.get("train_on", "source"))) if cls is not None else str(method.get("name", "?"))
    extras = all_extras()
    for entry in method.get("extras") or []:
        name = entry.get("name") if isinstance(entry, dict) else entry
        label += f" + {extras[name].title if name in extras else name}"
    return label


def demo_config(preset: str, method: str, *, seed: int = 0) -> RunConfig:
    """Defaults for the one-click teaching demo: about a minute on a laptop CPU.

    ``method`` is a method choice key (see :func:`method_key`), e.g. 'finetune' or 'dann'.
    """
    from tl_core.data import PRESETS  # local import: data pulls in heavier modules

    p = PRESETS[preset]
    cfg = RunConfig()
    cfg.data.source, cfg.data.target = p.source, p.target
    cfg.method.name, cfg.method.train_on = split_method_key(method)
    cfg.optim.epochs = 10
    cfg.seed = seed
    cfg.name = f"{method_label(cfg.to_dict())} · {p.title}"
    return cfg


def label_in_sentence(label: str) -> str:
    """A run label inside a sentence or a table: 'Source only' -> 'source only'; a label with an acronym
    ('DANN', 'Deep CORAL', 'CDAN+E') stays as it is."""
    if any(w.isupper() for w in label.split()):
        return label
    return label[:1].lower() + label[1:]
