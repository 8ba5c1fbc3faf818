"""Training methods: one module per method, and the registry that is the only list of them.

Importing this package does not import torch (the pages read method facts through it). A
method is a :class:`Method` subclass decorated with :func:`register`; a regulariser or a
fine-tuning schedule that composes with any method is an :class:`Extra`, registered the same
way. See ``_base`` for the contract and docs/ARCHITECTURE.md for how to add one.
"""

from tl_core.methods._base import (
    DOMAINS,
    Batch,
    Component,
    Extra,
    Method,
    MethodContext,
    NoParams,
    ParamSpec,
    RunContext,
    StepChart,
    all_extras,
    all_methods,
    create_extras,
    create_method,
    get_extra,
    get_method,
    list_methods,
    make_params,
    param,
    param_specs,
    register,
    unregister,
    validate_extra,
    validate_params,
)

def _load_builtins() -> None:
    """Import every module of this package (each registers its method or extra): adding a method is adding
    a file. Fine-tuning first (the baseline), then DANN, then the rest in alphabetical order; modules whose
    name starts with '_' and the shared torch parts (parts, grl, losses) are not methods."""
    import importlib
    import pkgutil

    shared = {"parts", "grl", "losses", "reweight"}
    names = sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_")
                   and m.name not in shared)
    for name in ["finetune", "dann"] + [n for n in names if n not in ("finetune", "dann")]:
        importlib.import_module(f"{__name__}.{name}")


_load_builtins()

__all__ = ["DOMAINS", "Batch", "Component", "Extra", "Method", "MethodContext", "NoParams", "ParamSpec", "RunContext",
           "StepChart", "all_extras", "all_methods", "create_extras", "create_method", "get_extra", "get_method",
           "list_methods", "make_params", "param", "param_specs", "register", "unregister", "validate_extra",
           "validate_params"]
