"""Which hot path runs: the compiled one (services/_fastpath.pyx) or pure Python.

``FASTPATH`` is the compiled :mod:`sockworks.services._fastpath` module, or
None when the pure-Python reference runs everything: ``SOCKWORKS_NO_EXTENSIONS=1``
(any value but empty or ``0``; protocols/accel.py) asks for that, and it is what a machine
without a C compiler got at install time (the extension is an optional
build, setup.py). ``DESCRIPTION`` is what ``sockworks --version`` prints.
"""

from __future__ import annotations

from types import ModuleType

from sockworks.protocols.accel import DISABLE_VARIABLE, compiled, disabled

__all__ = ["DESCRIPTION", "DISABLE_VARIABLE", "FASTPATH", "compiled_module"]


def compiled_module() -> ModuleType | None:
    """The compiled fast-path module, or None when it was not built."""
    return compiled("sockworks.services._fastpath")


def _select() -> tuple[ModuleType | None, str]:
    if disabled():
        return None, f"pure Python ({DISABLE_VARIABLE} is set)"
    module = compiled_module()
    if module is None:
        return None, "pure Python (the C extension was not built)"
    return module, "compiled (Cython C extension)"


FASTPATH, DESCRIPTION = _select()
