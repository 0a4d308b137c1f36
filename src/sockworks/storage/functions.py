"""The FUNCTION libraries a store keeps: library name -> code, logged.

The store owns the *source* of the loaded libraries (Redis keeps them in its
RDB/AOF too); services/resp_functions.py compiles them in its Lua engine.
Every change is written to the store's log as a command op (records.py 'C')
before it is applied, under the store's lock:

* ``FUNCTION.LOAD <name> <code>``: add or replace a library;
* ``FUNCTION.DELETE <name>``: remove one;
* ``FUNCTION.FLUSH``: remove every library.

Replay applies them in log order, so the libraries are back before the
records after them (an FCALL's effects are logged as the data commands it
ran, so a replay never needs a library to run; a restarted server compiles
the libraries again on first use). A compacted log starts with one
``FUNCTION.LOAD`` per library (:meth:`FunctionLibraries.snapshot`).
Their size counts in the store's used memory (maxmemory), as in Redis.
``version`` counts changes: a service recompiles when it differs from the
one it compiled.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

from sockworks.storage import records

__all__ = ["LOG_PREFIX", "FunctionLibraries"]

#: Log command names start with this (never a data-model command).
LOG_PREFIX = b"function."


class FunctionLibraries:
    """Library name -> code, changed under the store's lock and logged."""

    def __init__(self, lock: threading.RLock, log: Callable[[bytes], None],
                 account: Callable[[int], None] = lambda delta: None) -> None:
        self._lock = lock
        self._log = log
        self._account = account
        self._libraries: dict[bytes, bytes] = {}
        #: Incremented on every change.
        self.version = 0
        #: Bytes of names and code: counted in the store's used memory.
        self.size = 0

    def _set(self, name: bytes, code: bytes | None) -> None:
        old = self._libraries.pop(name, None)
        delta = -(len(name) + len(old)) if old is not None else 0
        if code is not None:
            self._libraries[name] = code
            delta += len(name) + len(code)
        self.size += delta
        self._account(delta)
        self.version += 1

    def _clear(self) -> None:
        self._account(-self.size)
        self.size = 0
        self._libraries.clear()
        self.version += 1

    def current(self) -> tuple[int, dict[bytes, bytes]]:
        """(version, a copy of name -> code)."""
        with self._lock:
            return self.version, dict(self._libraries)

    def load(self, name: bytes, code: bytes) -> None:
        with self._lock:
            self._log(records.encode_command((b"FUNCTION.LOAD", name, code)))
            self._set(name, code)

    def delete(self, name: bytes) -> None:
        with self._lock:
            self._log(records.encode_command((b"FUNCTION.DELETE", name)))
            self._set(name, None)

    def flush(self) -> None:
        with self._lock:
            self._log(records.encode_command((b"FUNCTION.FLUSH",)))
            self._clear()

    def replay(self, argv: Sequence[bytes]) -> None:
        """One logged change (lock held by the replaying store)."""
        what = argv[0].lower()
        if what == b"function.load" and len(argv) == 3:
            self._set(argv[1], argv[2])
        elif what == b"function.delete" and len(argv) == 2:
            self._set(argv[1], None)
        elif what == b"function.flush" and len(argv) == 1:
            self._clear()
        else:
            raise records.RecordError(f"malformed {argv[0]!r} in the log")

    def snapshot(self) -> list[bytes]:
        """The payloads a compacted log starts with (lock held)."""
        return [records.encode_command((b"FUNCTION.LOAD", name, code))
                for name, code in self._libraries.items()]
