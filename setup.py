"""The optional C extension: the compiled hot path (everything else is in pyproject.toml).

``src/sockworks/services/_fastpath.pyx`` is compiled by Cython into a C
extension when it can be: Cython is a build requirement
(pyproject.toml), and a C compiler must be there. Without a compiler -- or
with ``SOCKWORKS_NO_EXTENSIONS=1`` at build time -- the build goes on without
it (``optional=True``, as aiohttp and yarl do) and sockworks runs its
pure-Python reference path; ``sockworks --version`` says which one a given
install uses. The generated C goes to ``build/`` and is not committed: the
build always regenerates it from the Python source.
"""

from __future__ import annotations

import os

from setuptools import Extension, setup

#: The compiled modules (each has a pure-Python counterpart that is the reference).
COMPILED = ["sockworks.services._fastpath"]


def extensions() -> list[Extension]:
    if os.environ.get("SOCKWORKS_NO_EXTENSIONS", "") not in ("", "0"):
        return []
    try:
        from Cython.Build import cythonize
    except ImportError:  # building without build isolation and without Cython
        return []
    modules = [
        Extension(name, ["src/" + name.replace(".", "/") + ".pyx"], optional=True)
        for name in COMPILED
    ]
    return cythonize(modules, build_dir="build/cython", quiet=True)


setup(ext_modules=extensions())
