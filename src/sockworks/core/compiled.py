"""The optional compiled modules: whether to use them, and loading one.

Each compiled module (setup.py's ``COMPILED``) has a pure-Python reference
it must match. ``SOCKWORKS_NO_EXTENSIONS=1`` (any value but empty or ``0``)
asks for the references everywhere; a machine without a C compiler gets
them because the build skipped the extensions. The services' hot path
(services/accel.py) and the store's eviction run (storage/clock.py) both
decide here, so one variable switches every one of them.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

__all__ = ["DISABLE_VARIABLE", "disabled", "load"]

#: The environment variable that selects the pure-Python references.
DISABLE_VARIABLE = "SOCKWORKS_NO_EXTENSIONS"


def disabled() -> bool:
    """True when the environment asks for the pure-Python references."""
    return os.environ.get(DISABLE_VARIABLE, "") not in ("", "0")


def load(name: str) -> ModuleType | None:
    """The compiled module ``name``, or None when the build did not make it."""
    try:
        # By name: the module exists only where the build compiled it.
        return importlib.import_module(name)
    except ImportError:
        return None
