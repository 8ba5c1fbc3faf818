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
from tl_core.methods import finetune as _finetune  # noqa: F401,E402  (registers "finetune")
from tl_core.methods import dann as _dann  # noqa: F401,E402  (registers "dann")

__all__ = ["DOMAINS", "Batch", "Component", "Extra", "Method", "MethodContext", "NoParams", "ParamSpec", "RunContext",
           "StepChart", "all_extras", "all_methods", "create_extras", "create_method", "get_extra", "get_method",
           "list_methods", "make_params", "param", "param_specs", "register", "unregister", "validate_extra",
           "validate_params"]
