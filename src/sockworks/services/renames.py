"""Renaming and disabling commands, as Redis's ``rename-command``, on both KV ports.

An operator exposes a server with ``--rename-command KEYS ""`` (KEYS is gone)
or ``--rename-command CONFIG c0nf1g-7f3a`` (only those who know the new name
may run it). A rename applies to every port that has the command: the RESP
port's table and the text protocol's words alike. The old name then answers
as an unknown command would; errors about a renamed command's arguments keep
its real name, as in Redis.

Also here: the spellings of GET and SET that both sessions answer on their
fast paths (commands are case-insensitive; a set lookup is cheaper than
``upper()`` per request), which a rename changes.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

__all__ = ["CommandRenames", "NO_RENAMES", "spellings"]

T = TypeVar("T")


def spellings(word: bytes) -> frozenset[bytes]:
    """Every upper/lower-case spelling of an ASCII ``word``."""
    choices = [{bytes([c]).lower(), bytes([c]).upper()} for c in word]
    return frozenset(b"".join(letters) for letters in itertools.product(*choices))


@dataclass(frozen=True)
class CommandRenames:
    """``(name, new_name)`` pairs; an empty new name disables the command.

    Names are case-insensitive. :meth:`check` validates them against the
    commands the server has, with Redis's reasons.
    """

    pairs: tuple[tuple[str, str], ...] = ()
    #: upper-case original -> upper-case new name ("" = disabled)
    _map: dict[str, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_map", {old.upper(): new.upper() for old, new in self.pairs})

    @classmethod
    def of(cls, pairs: Iterable[Sequence[str]] | None) -> CommandRenames:
        return cls(tuple((str(old), str(new)) for old, new in (pairs or ())))

    def __bool__(self) -> bool:
        return bool(self._map)

    def check(self, known: Iterable[str]) -> None:
        """ValueError naming the first rename Redis would refuse."""
        names = {name.upper() for name in known}
        seen_old: set[str] = set()
        targets: set[str] = set()
        for old, new in self._map.items():
            if old not in names:
                raise ValueError(f"no such command in rename-command: {old.lower()!r}")
            if old in seen_old:
                raise ValueError(f"command renamed twice: {old.lower()!r}")
            seen_old.add(old)
            if not new:
                continue
            if any(c.isspace() for c in new):
                raise ValueError(f"a command name cannot contain spaces: {new!r}")
            if new in targets or (new in names and new not in self._map):
                raise ValueError(f"target command name already exists: {new.lower()!r}")
            targets.add(new)

    def name_of(self, command: str) -> str:
        """The name ``command`` now goes by (upper case; "" when disabled)."""
        upper = command.upper()
        return self._map.get(upper, upper)

    def fast_words(self, command: str) -> frozenset[bytes]:
        """The spellings a session's fast path answers for ``command``."""
        name = self.name_of(command)
        return spellings(name.encode()) if name else frozenset()

    def table(self, commands: Mapping[bytes, T]) -> dict[bytes, T]:
        """A RESP command table (lower-case names) with the renames applied."""
        if not self:
            return dict(commands)
        renamed: dict[bytes, T] = {}
        for name, spec in commands.items():
            new = self.name_of(name.decode())
            if new:
                renamed[new.lower().encode()] = spec
        return renamed

    def text_words(self, commands: Iterable[bytes]) -> dict[bytes, bytes | None]:
        """For the text port: upper-case word a client sends -> the command it
        runs (None: unknown). Only words that differ from the plain protocol."""
        words: dict[bytes, bytes | None] = {}
        for name in commands:
            new = self.name_of(name.decode()).encode()
            if new != name:
                words.setdefault(name, None)  # the old name is gone...
                if new:
                    words[new] = name          # ...and the new one runs it
        return words


NO_RENAMES = CommandRenames()
