"""The method seam: what a training method is, and the registry that is the only list of them.

Importing this module does not import torch: the dashboard, the config validation and the
command line's ``--help`` read a method's facts (name, label, parameters, citation) from the
class attributes; the training process alone instantiates it, and only then does a method
build its torch parts (inside ``__init__``, importing torch there).

A method is one file in ``tl_core/methods/`` (or a module named in ``TL_PLUGINS``) holding a
subclass of :class:`Method` decorated with :func:`register`. The contract, with the order in
which the training loop calls the hooks, is written down in ``docs/ARCHITECTURE.md``.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
import os
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

DOMAINS = ("source", "target")


# ------------------------------------------------------------- parameters
def param(default: Any, label: str, help: str = "", *, min: float | None = None, max: float | None = None,
          min_open: bool = False, max_open: bool = False, step: float | None = None,
          choices: dict[str, str] | None = None) -> Any:
    """A method parameter: its default plus what a form, a flag and a validator need.

    Args:
        default: the value a run gets when the user sets nothing (the paper's, where it fits).
        label: the widget label and the CLI help's first words.
        help: one or two sentences for the widget's tooltip and the CLI help.
        min, max: allowed range (inclusive unless ``min_open``/``max_open``).
        step: the widget's step.
        choices: allowed values -> label shown for each.
    """
    meta = {"label": label, "help": help, "min": min, "max": max, "min_open": min_open, "max_open": max_open,
            "step": step, "choices": choices}
    return field(default=default, metadata=meta)


@dataclass
class NoParams:
    """A method without settings of its own."""


@dataclass(frozen=True)
class ParamSpec:
    """One parameter as forms and flags see it."""

    name: str
    type: type
    default: Any
    label: str
    help: str
    min: float | None
    max: float | None
    min_open: bool
    max_open: bool
    step: float | None
    choices: dict[str, str] | None


def param_specs(params_cls: type) -> list[ParamSpec]:
    """The parameters of a method's ``Params`` dataclass, in declaration order."""
    out = []
    hints = {f.name: f.type for f in dataclasses.fields(params_cls)}
    for f in dataclasses.fields(params_cls):
        m = f.metadata
        t = hints[f.name]
        typ = {"float": float, "int": int, "bool": bool, "str": str}.get(t, t) if isinstance(t, str) else t
        out.append(ParamSpec(f.name, typ, f.default, m.get("label", f.name), m.get("help", ""), m.get("min"),
                             m.get("max"), bool(m.get("min_open")), bool(m.get("max_open")), m.get("step"),
                             m.get("choices")))
    return out


def _check_param(path: str, spec: ParamSpec, value: Any) -> str | None:
    """The message for a value that breaks the spec's type, range or choices; None when it is fine."""
    if spec.choices is not None:
        if value not in spec.choices:
            return f"{path}: '{value}' is not one of {', '.join(spec.choices)}."
        return None
    if spec.type is bool:
        return None if isinstance(value, bool) else f"{path}: must be true or false, got {value!r}."
    if spec.type is int:
        if not isinstance(value, int) or isinstance(value, bool):
            return f"{path}: must be a whole number, got {value!r}."
    elif spec.type is float:
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
            return f"{path}: must be a finite number, got {value!r}."
    else:
        return None
    lo, hi = spec.min, spec.max
    too_low = lo is not None and (value <= lo if spec.min_open else value < lo)
    too_high = hi is not None and (value >= hi if spec.max_open else value > hi)
    if too_low or too_high:
        lo_s = "" if lo is None else f"{'above' if spec.min_open else 'at least'} {lo:g}"
        hi_s = "" if hi is None else f"{'below' if spec.max_open else 'at most'} {hi:g}"
        rng = " and ".join(s for s in (lo_s, hi_s) if s)
        return f"{path}: must be {rng}, got {value!r}; the default is {spec.default!r}."
    return None


# ----------------------------------------------------------------- methods
@dataclass
class Batch:
    """One training step's data (tensors on the run's device).

    Attributes:
        x_src: labelled inputs (source, or target for a supervised target fine-tune), compact
            form as the loop hands it out: pass them through ``model.features``.
        y_src: their labels, shape (B,).
        x_tgt: unlabelled target inputs, or None when the method does not use them.
        w_src: per-sample weights of the labelled inputs, shape (B,), or None (all 1).
        idx_src: indices of the labelled inputs in the training set.
    """

    x_src: Any
    y_src: Any
    x_tgt: Any | None = None
    w_src: Any | None = None
    idx_src: Any | None = None


@dataclass
class StepChart:
    """A per-step metric a method logs that the Monitor plots: the metric name and its chart's kind."""

    metric: str
    kind: str  # "domain_accuracy" | "schedule" | "line"
    title: str = ""


class Component:
    """What methods and extras share: facts as class attributes, torch parts, and the hooks an extra may use.

    Facts (read without torch by config validation, the CLI, the pages and bench):
        name: the registry key, used in configs and on the command line.
        title: the short label, e.g. "DANN".
        description: one line for lists and the Setup page.
        citation: the paper the implementation follows.
        Params: a dataclass of its settings, each declared with :func:`param`.
        changes_freezing: it changes the frozen stages during the run (the frozen-stage cache is off).

    Hooks (see docs/ARCHITECTURE.md for the order the loop calls them):
        ``__init__(ctx)`` build torch parts (import torch here); ``ctx`` is a :class:`MethodContext`.
        :meth:`start` once before the first step (a pre-pass over the data, start weights).
        :meth:`param_groups` extra parameters for the run's optimiser.
        :meth:`frozen_stages` at each epoch start: change how many backbone stages are frozen.
        :meth:`penalty` a regulariser on weights added to every step's loss.
        ``state_dict``/``load_state_dict`` what a checkpoint keeps.
    """

    name: ClassVar[str] = ""
    title: ClassVar[str] = ""
    description: ClassVar[str] = ""
    citation: ClassVar[str] = ""
    Params: ClassVar[type] = NoParams
    changes_freezing: ClassVar[bool] = False

    def __init__(self, ctx: "MethodContext") -> None:
        self.ctx = ctx
        self.params = ctx.params
        self._modules: dict[str, Any] = {}

    # ------------------------------------------------------------ facts
    @classmethod
    def validate(cls, params: Any) -> list[str]:
        """Messages for combinations of parameters the per-field checks cannot see (override)."""
        return []

    # ------------------------------------------------------------ parts
    def add_module(self, name: str, module: Any) -> Any:
        """Register a torch module of the method: moved to the device, trained, checkpointed."""
        self._modules[name] = module
        return module

    def modules(self) -> dict[str, Any]:
        return dict(self._modules)

    def to(self, device: Any) -> "Component":
        for m in self._modules.values():
            m.to(device)
        return self

    def train(self, mode: bool = True) -> "Component":
        for m in self._modules.values():
            m.train(mode)
        return self

    def parameters(self) -> list[Any]:
        return [p for m in self._modules.values() for p in m.parameters() if p.requires_grad]

    def state_dict(self) -> dict[str, Any]:
        return {f"{name}.{k}": v for name, m in self._modules.items() for k, v in m.state_dict().items()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name, m in self._modules.items():
            prefix = f"{name}."
            m.load_state_dict({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)})
        extra = [k for k in state if k.split(".", 1)[0] not in self._modules]
        if extra:
            raise KeyError(f"the checkpoint has method parts this method does not: {extra[:3]}")

    # ------------------------------------------------------------ hooks
    def param_groups(self, lr: float) -> list[dict[str, Any]]:
        """Parameter groups it adds to the run's optimiser (default: all its modules at ``lr``)."""
        params = self.parameters()
        return [{"params": params, "lr": lr, "base_lr": lr}] if params else []

    def start(self, run: "RunContext") -> None:
        """Once before training (and again on resume): a pre-pass, e.g. ``run.set_sample_weights(w)``."""

    def frozen_stages(self, epoch: int, current: int) -> int:
        """How many backbone stages are frozen from ``epoch`` on (default: unchanged)."""
        return current

    def penalty(self, model: Any) -> Any | None:
        """A regulariser on weights added to the loss (None: none)."""
        return None


class Method(Component):
    """A training method: the objective of each step, whose labels it uses, how each domain is evaluated.

    Facts besides :class:`Component`'s:
        trains_on: labelled domain -> the run label for it. Most methods train on source labels
            only; a supervised fine-tune may also train on target labels (chosen explicitly).
        choice_help: labelled domain -> the Setup page's sentence for that choice.
        uses_target: it needs unlabelled target training images in each batch.
        step_charts: per-step metrics the Monitor plots for its runs.
        phases: names of the stages a method trains in, in order (e.g. ADDA's source encoder, then target
            encoder vs discriminator); such a method logs the step metric ``phase`` (1 = the first), and the
            Monitor's run card says "Phase 2 of 2: ...". Empty: one phase (say nothing).

    Hooks besides :class:`Component`'s (all optional but :meth:`loss` or :meth:`train_step`):
        :meth:`train_step` one step; the default calls :meth:`loss` and :meth:`penalty` and steps
            the run's optimiser. Override it for methods with their own alternation/optimisers.
        :meth:`encoder` which feature extractor evaluates (and snapshots) each domain.
    """

    trains_on: ClassVar[dict[str, str]] = {}
    choice_help: ClassVar[dict[str, str]] = {}
    uses_target: ClassVar[bool] = False
    step_charts: ClassVar[tuple[StepChart, ...]] = ()
    phases: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def label(cls, train_on: str = "source") -> str:
        return cls.trains_on.get(train_on, cls.title)

    def loss(self, batch: Any, model: Any, progress: float) -> tuple[Any, dict[str, float]]:
        """The step's loss and float metrics; ``batch.w_src`` holds per-sample weights (or None)."""
        raise NotImplementedError(f"method {self.name!r} defines neither loss() nor train_step()")

    def train_step(self, batch: Any, model: Any, progress: float, opt: Any) -> dict[str, float]:
        """One training step: loss + penalty, backward, optimiser step. Returns the step metrics.

        ``opt`` is the run's :class:`tl_core.optim.Optimisation` (optimiser, AMP scaler, autocast);
        ``opt.step(loss)`` adds the extras' penalties and raises ``Diverged`` on a non-finite loss.
        """
        with opt.autocast():
            loss, metrics = self.loss(batch, model, progress)
            extra = self.penalty(model)
            if extra is not None:
                loss = loss + extra
                metrics["penalty"] = float(extra.detach())
        metrics["loss"] = opt.step(loss)
        return metrics

    def encoder(self, domain: str, model: Any) -> Callable[[Any], Any]:
        """The feature extractor that evaluates ``domain`` ('source' or 'target'): default the backbone."""
        return model.features_eval


class Extra(Component):
    """Composes with any method: a regulariser on weights (:meth:`penalty`, e.g. L2-SP), a fine-tuning
    schedule (:meth:`frozen_stages`, e.g. gradual unfreezing), or both. A run lists its extras in
    ``method.extras``; their penalties join every step's loss, whatever the method's step does."""

    kind: ClassVar[str] = "regulariser"  # or "schedule": how the Setup page groups it


@dataclass
class MethodContext:
    """What a method or an extra is built with (in the training process)."""

    config: Any               # the RunConfig
    params: Any               # its Params instance
    feature_dim: int
    num_classes: int
    device: Any = None


@dataclass
class RunContext:
    """What :meth:`Method.start` may read and set before training."""

    model: Any                                  # tl_core.model.Model
    labelled_x: Any                             # the labelled training inputs (uint8 or cached)
    labelled_y: Any
    target_x: Any | None                        # unlabelled target training inputs (or None)
    device: Any
    seed: int
    report: Callable[[str], None] = lambda message: None   # a warning shown with the run
    sample_weights: Any | None = None

    def set_sample_weights(self, weights: Any) -> None:
        """Per-sample weights for the labelled loss, one per labelled training image (mean 1 advised)."""
        self.sample_weights = weights


# ---------------------------------------------------------------- registry
_REGISTRY: dict[str, type[Method]] = {}
_EXTRAS: dict[str, type[Extra]] = {}
_PLUGINS_LOADED = False


def register(cls: type[Component]) -> type[Component]:
    """Class decorator: add a method (a :class:`Method`) or an extra (an :class:`Extra`) to its registry.

    Its ``name`` must be new there (or be the same class again).
    """
    kind = "an extra" if issubclass(cls, Extra) else "a method"
    if not cls.name or not cls.title or not cls.description:
        raise ValueError(f"{cls.__name__}: {kind} needs name, title and description")
    if not dataclasses.is_dataclass(cls.Params):
        raise TypeError(f"{cls.__name__}.Params must be a dataclass")
    registry: dict[str, Any] = _EXTRAS if issubclass(cls, Extra) else _REGISTRY
    if registry is _REGISTRY:
        # Labels and choice sentences are a method's own: a subclass of another method does not inherit
        # them (two choices with the same words could not be told apart).
        if not cls.__dict__.get("trains_on"):
            cls.trains_on = {"source": cls.title}
        if "choice_help" not in cls.__dict__:
            cls.choice_help = {}
        unknown = set(cls.trains_on) - set(DOMAINS)
        if unknown:
            raise ValueError(f"{cls.__name__}.trains_on: unknown domains {sorted(unknown)}")
    old = registry.get(cls.name)
    if old is not None and old.__qualname__ != cls.__qualname__:
        raise ValueError(f"{kind} named {cls.name!r} is registered already ({old.__module__}.{old.__qualname__})")
    registry[cls.name] = cls
    return cls


def unregister(name: str) -> None:
    """Remove a method or an extra (tests that register a toy one clean up with this)."""
    _REGISTRY.pop(name, None)
    _EXTRAS.pop(name, None)


def load_plugins() -> None:
    """Import the modules named in ``TL_PLUGINS`` (comma-separated), once: methods and extras of one's own.

    The training process and the command line read the same variable, so a method defined
    outside ``tl_core`` works in the dashboard, in its training process and on the command line.
    """
    global _PLUGINS_LOADED
    if _PLUGINS_LOADED:
        return
    _PLUGINS_LOADED = True
    for name in filter(None, (s.strip() for s in os.environ.get("TL_PLUGINS", "").split(","))):
        importlib.import_module(name)


def all_methods() -> dict[str, type[Method]]:
    """Every registered method by name, in registration order (built-ins first)."""
    load_plugins()
    return dict(_REGISTRY)


def all_extras() -> dict[str, type[Extra]]:
    """Every registered extra (regulariser, fine-tuning schedule) by name, in registration order."""
    load_plugins()
    return dict(_EXTRAS)


def get_method(name: str) -> type[Method]:
    """The method class registered as ``name``; KeyError naming the known ones."""
    methods = all_methods()
    if name not in methods:
        raise KeyError(f"unknown method '{name}'; known: {', '.join(methods)}")
    return methods[name]


def get_extra(name: str) -> type[Extra]:
    """The extra registered as ``name``; KeyError naming the known ones."""
    extras = all_extras()
    if name not in extras:
        raise KeyError(f"unknown extra '{name}'; known: {', '.join(extras) or 'none'}")
    return extras[name]


def list_methods() -> dict[str, str]:
    """Method names and one-line descriptions."""
    return {name: cls.description for name, cls in all_methods().items()}


def _make_params(cls: type[Component], values: dict[str, Any] | None, path: str) -> Any:
    values = dict(values or {})
    known = {f.name for f in dataclasses.fields(cls.Params)}
    unknown = set(values) - known
    if unknown:
        raise ValueError(f"{path}: unknown settings {sorted(unknown)} for '{cls.name}'; "
                         f"known: {sorted(known) or 'none'}")
    return cls.Params(**values)


def _validate(cls: type[Component], values: dict[str, Any], path: str) -> list[str]:
    try:
        params = _make_params(cls, values, path)
    except (TypeError, ValueError) as e:
        return [str(e.args[0])]
    errs = [msg for spec in param_specs(cls.Params)
            if (msg := _check_param(f"{path}.{spec.name}", spec, getattr(params, spec.name)))]
    return errs or list(cls.validate(params))


def make_params(name: str, values: dict[str, Any] | None) -> Any:
    """The method's Params filled with ``values`` (unknown keys raise ValueError naming them)."""
    return _make_params(get_method(name), values, "method.params")


def validate_params(name: str, values: dict[str, Any]) -> list[str]:
    """Every problem of a method's parameters, prefixed by ``method.params.<name>``."""
    return _validate(get_method(name), values, "method.params")


def validate_extra(name: str, values: dict[str, Any]) -> list[str]:
    """Every problem of an extra's parameters, prefixed by ``method.extras.<extra>.<name>``."""
    return _validate(get_extra(name), values, f"method.extras.{name}")


def create_method(config: Any, feature_dim: int, num_classes: int, device: Any = None) -> Method:
    """Instantiate the config's method in the training process."""
    cls = get_method(config.method.name)
    ctx = MethodContext(config, make_params(config.method.name, config.method.params), feature_dim, num_classes,
                        device)
    return cls(ctx)


def create_extras(config: Any, feature_dim: int, num_classes: int, device: Any = None) -> list[Extra]:
    """Instantiate the config's extras, in their order, in the training process."""
    out = []
    for entry in config.method.extras:
        cls = get_extra(entry["name"])
        params = _make_params(cls, entry.get("params"), f"method.extras.{cls.name}")
        out.append(cls(MethodContext(config, params, feature_dim, num_classes, device)))
    return out
