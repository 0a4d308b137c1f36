"""The protocols layer's compiled parts: which ones are in use.

``CRC64`` is the compiled :mod:`sockworks.protocols._crc64` module, or None
when the pure-Python reference (``rdb.crc64_pure``) runs: when
``SOCKWORKS_NO_EXTENSIONS=1`` (any value but empty or ``0``) asks for that,
or the build had no C compiler (the extensions are optional, setup.py).
The variable is defined here, the lowest layer, and read by
:mod:`sockworks.services.accel` for the services' fast path.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

__all__ = ["CRC64", "DISABLE_VARIABLE", "compiled", "disabled"]

#: The environment variable that selects the pure-Python paths.
DISABLE_VARIABLE = "SOCKWORKS_NO_EXTENSIONS"


def disabled() -> bool:
    """Whether the environment asks for the pure-Python paths."""
    return os.environ.get(DISABLE_VARIABLE, "") not in ("", "0")


def compiled(name: str) -> ModuleType | None:
    """The compiled module ``name``, or None when the build did not make it."""
    try:
        # By name: the module exists only where the build compiled it.
        return importlib.import_module(name)
    except ImportError:
        return None


CRC64: ModuleType | None = None if disabled() else compiled("sockworks.protocols._crc64")
