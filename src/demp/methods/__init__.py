"""Training methods: DemP, the dense reference and the structured baselines, in a registry.

Importing this package registers the built-in methods (one file each, or one file per
family): ``dense``, ``demp``, ``snap`` / ``cropit-s`` (:mod:`.at_init`), ``earlysnap`` /
``earlycrop-s`` (:mod:`.early_pruning`), ``slimming``. See :mod:`.registry` for how to add
one, and docs/extending.md.
"""

# registration order is the order of the CLI's --method choices
from . import dense  # noqa: F401, I001
from . import demon  # noqa: F401
from . import at_init  # noqa: F401
from . import early_pruning  # noqa: F401
from . import slimming  # noqa: F401
from .base import Method, MethodContext
from .registry import (
    MethodSpec,
    get_method,
    method_names,
    option_defaults,
    option_fields,
    register_method,
    unregistered_after,
)

__all__ = [
    "Method", "MethodContext", "MethodSpec", "get_method", "method_names", "option_defaults",
    "option_fields", "register_method", "unregistered_after",
]  # fmt: skip
