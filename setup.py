"""The optional C extensions: the compiled hot paths (everything else is in pyproject.toml).

``src/sockworks/services/_fastpath.pyx`` (the services' hot path) and
``src/sockworks/storage/_clock.pyx`` (allkeys-lru's eviction run) are
compiled by Cython into C extensions when they can be: Cython is a build requirement
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
from setuptools.command.build_ext import build_ext

#: The compiled modules (each has a pure-Python counterpart that is the reference).
COMPILED = [
    "sockworks.services._fastpath",
    "sockworks.storage._clock",
    "sockworks.protocols._crc64",
]


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


class OptionalBuildExt(build_ext):
    """Build the extensions that can be built; warn about, and skip, the rest.

    ``Extension(optional=True)`` says the same, but Extension objects made
    by ``cythonize`` lose that flag, and a compiler that is missing or fails
    must never fail the install (the pure-Python path is complete)."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # noqa: BLE001 - any build failure means "pure Python"
            self._skip("the C extensions", exc)

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except Exception as exc:  # noqa: BLE001 - as above
            self._skip(ext.name, exc)

    def _skip(self, what: str, exc: Exception) -> None:
        self.warn(f"could not compile {what} ({exc}); sockworks will run its pure-Python "
                  "hot path (sockworks --version says which one is in use)")


setup(ext_modules=extensions(), cmdclass={"build_ext": OptionalBuildExt})
