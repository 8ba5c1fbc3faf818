"""Training methods behind a small registry: one module per method.

A method is an ``nn.Module`` holding its own extra parts (a domain discriminator, say)
whose ``forward(batch, features, head, progress)`` returns ``(loss, metrics)``. Adding
ADDA, MMD or CORAL is a new file that calls :func:`register_method`.
"""

from tl_core.methods._base import Batch, Method, create_method, list_methods, register_method
from tl_core.methods import dann as _dann  # noqa: F401  (registers "dann")
from tl_core.methods import finetune as _finetune  # noqa: F401  (registers "finetune")

__all__ = ["Batch", "Method", "create_method", "list_methods", "register_method"]
