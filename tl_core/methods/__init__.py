"""Training methods: one module per method, and the registry that is the only list of them.

Importing this package does not import torch (the pages read method facts through it). A
method is a :class:`Method` subclass decorated with :func:`register`; see ``_base`` for the
contract and docs/ARCHITECTURE.md for how to add one.
"""

from tl_core.methods._base import (
    DOMAINS,
    Batch,
    Method,
    MethodContext,
    NoParams,
    ParamSpec,
    RunContext,
    StepChart,
    all_methods,
    create_method,
    get_method,
    list_methods,
    make_params,
    param,
    param_specs,
    register,
    unregister,
    validate_params,
)
from tl_core.methods import finetune as _finetune  # noqa: F401,E402  (registers "finetune")
from tl_core.methods import dann as _dann  # noqa: F401,E402  (registers "dann")

__all__ = ["DOMAINS", "Batch", "Method", "MethodContext", "NoParams", "ParamSpec", "RunContext", "StepChart",
           "all_methods", "create_method", "get_method", "list_methods", "make_params", "param", "param_specs",
           "register", "unregister", "validate_params"]
