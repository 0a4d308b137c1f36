"""The view of the store a data-model command gets: called with the store's
lock held, so each command is atomic. MemoryStore implements it.

Write-ahead rule: a command checks everything that can fail first, then
logs (``log``: the command's effects as one record of commands; a command
whose effects follow from its arguments logs its own argv), then changes
the data. ``put``/``drop`` only change memory; ``set_string`` and
``delete`` log themselves.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, TypeVar

from sockworks.storage.model.values import Encodings, Value

__all__ = ["Keyspace"]

V = TypeVar("V")


class Keyspace(Protocol):
    #: The encoding thresholds OBJECT ENCODING reports by (CONFIG SET).
    encodings: Encodings

    def now(self) -> int:
        """Wall-clock milliseconds."""

    def lookup(self, key: bytes) -> Value | None:
        """The live value of ``key`` (any type), None if none."""

    def typed(self, key: bytes, kind: type[V]) -> V | None:
        """The live value if it is a ``kind``; None if no key; WrongType otherwise."""

    def expire_at(self, key: bytes) -> int:
        """Absolute expiry in ms of a live key, 0 for none."""

    def put(self, key: bytes, value: Value, at: int = 0) -> None:
        """Store a new value (replacing any), with expiry ``at`` (0 none); not logged."""

    def drop(self, key: bytes) -> None:
        """Remove a key (an emptied aggregate); not logged."""

    def grow(self, value: Value, delta: int) -> None:
        """An aggregate changed size by ``delta`` bytes (used_memory)."""

    def log(self, *commands: Sequence[bytes]) -> None:
        """Log commands as one record, before applying them."""

    def set_string(self, key: bytes, value: bytes, at: int = 0) -> None:
        """Log and store a string value (replacing any value)."""

    def delete(self, keys: Sequence[bytes]) -> int:
        """Log and delete the live keys among ``keys``; how many."""

    def set_expiry(self, key: bytes, at: int) -> None:
        """Log and set an absolute expiry on a live key (0: persist)."""

    def scan_keys(self, cursor: int, match: bytes | None, count: int,
                  kind: str | None) -> tuple[int, list[bytes]]:
        """SCAN (``kind``: TYPE filter)."""

    def random_key(self) -> bytes | None:
        """A random live key."""

    def mark_raw(self, key: bytes) -> None:
        """The string under ``key`` was changed in place (SETBIT, BITFIELD,
        BITOP, SETRANGE, APPEND): OBJECT ENCODING says ``raw`` until the
        key is replaced or removed (Redis's dbUnshareStringValue)."""

    def is_raw(self, key: bytes) -> bool:
        """See :meth:`mark_raw`."""

    def signal(self, key: bytes) -> None:
        """A list or sorted set under ``key`` got elements (wakes blocked clients)."""

    def notify(self, event: str, key: bytes) -> None:
        """A keyspace event of class ``t`` (streams fire theirs from inside
        the command, where Redis does: ``xadd``, ``xgroup-createconsumer``...)."""
