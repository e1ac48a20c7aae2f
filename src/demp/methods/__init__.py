"""Training methods: DemP, the dense reference and the structured baselines, in a registry.

Importing this package registers the built-in methods (one file each, or one file per
family): ``dense``, ``demp``, ``snap`` / ``cropit-s`` (:mod:`.at_init`), ``earlysnap`` /
``earlycrop-s`` (:mod:`.early_pruning`), ``slimming``, then the unstructured ones
(``magnitude``, ``snip``, ``set``, ``rigl``: masks, :mod:`.unstructured`), in that order,
then imports every
other module of the package, so that a new method is one new file and nothing else. See
:mod:`.registry` for how to write one, and docs/extending.md.
"""

import importlib
import pkgutil

from .base import Method, MethodContext
from .registry import (
    MethodSpec,
    get_method,
    method_names,
    option_fields,
    register_method,
    unregistered_after,
)

# the built-in methods first (their order is the order of the --method choices), then any
# other module of this package: a new method file registers itself when imported here
_BUILTIN = ("dense", "demon", "at_init", "early_pruning", "slimming", "magnitude", "snip",
            "set", "rigl")  # fmt: skip
for _name in (*_BUILTIN, *(m.name for m in pkgutil.iter_modules(__path__))):
    importlib.import_module(f"{__name__}.{_name}")

__all__ = [
    "Method", "MethodContext", "MethodSpec", "get_method", "method_names",
    "option_fields", "register_method", "unregistered_after",
]  # fmt: skip
