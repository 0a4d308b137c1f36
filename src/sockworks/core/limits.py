"""Client limits in Redis's terms: memory units, output buffer limits, client memory.

* :func:`memtoull` reads a byte count as Redis's configuration does
  (``100mb``, ``1g``; 1k = 1000 and 1kb = 1024, and so on up to g/gb).
* :class:`OutputLimits` is ``client-output-buffer-limit``: per client class a
  hard limit, a soft limit and how long a client may stay over the soft one
  (``normal 256mb 0 0``), written and read in Redis's own format.
* :func:`default_maxmemory_clients` is the rule for ``--maxmemory-clients``
  when it is not given: a quarter of ``--maxmemory`` when that is set, else
  1 GiB.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

__all__ = ["memtoull", "MemoryOverflow", "OutputLimit", "OutputLimits", "default_maxmemory_clients",
           "DEFAULT_CLIENT_MEMORY", "parse_maxmemory_clients"]

_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1024, "m": 1000 ** 2, "mb": 1024 ** 2,
          "g": 1000 ** 3, "gb": 1024 ** 3}

#: --maxmemory-clients when neither it nor --maxmemory is given.
DEFAULT_CLIENT_MEMORY = 1024 ** 3


#: Redis's memtoull refuses what does not fit in an unsigned 64-bit integer.
_U64_MAX = 2**64 - 1


class MemoryOverflow(ValueError):
    """A well-formed byte count past 2**64 - 1 (Redis's strtoull clamps it,
    so its range checks, not its syntax check, report it)."""


def memtoull(text: str) -> int:
    """Bytes from ``text`` as Redis's memtoull reads them: ASCII digits and an
    optional unit (b, k=1000, kb=1024, m, mb, g, gb; any case), nothing else.
    ValueError for anything else (``1.5k``, ``-1``, ``1 mb``, ``1tb``)."""
    digits, unit = text, ""
    for i, char in enumerate(text):
        if not (char.isascii() and char.isdigit()):
            digits, unit = text[:i], text[i:].lower()
            break
    if not digits or unit not in _UNITS:
        raise ValueError(f"must be a byte count like 100mb or 1gb, got {text!r}")
    value = int(digits) * _UNITS[unit]
    if value > _U64_MAX:
        raise MemoryOverflow(f"byte count {text!r} is out of range")
    return value


def default_maxmemory_clients(maxmemory: int) -> int:
    """The client-memory cap when --maxmemory-clients is not given."""
    return maxmemory // 4 if maxmemory else DEFAULT_CLIENT_MEMORY


def parse_maxmemory_clients(text: str) -> int:
    """``--maxmemory-clients``: a byte count (0 means "the default rule")."""
    return memtoull(text)


@dataclass(frozen=True, slots=True)
class OutputLimit:
    """One class's limits; 0 disables a limit."""

    hard: int
    soft: int
    soft_seconds: int


#: Redis's class names in its CONFIG GET order ("slave" is what Redis 7 prints).
_CLASSES = ("normal", "slave", "pubsub")
_ALIASES = {"replica": "slave"}


def _defaults() -> dict[str, OutputLimit]:
    return {"normal": OutputLimit(256 * 1024 ** 2, 0, 0),
            "slave": OutputLimit(256 * 1024 ** 2, 64 * 1024 ** 2, 60),
            "pubsub": OutputLimit(32 * 1024 ** 2, 8 * 1024 ** 2, 60)}


@dataclass(frozen=True, slots=True)
class OutputLimits:
    """``client-output-buffer-limit`` for every class. The models apply
    ``normal``; the RESP port's pub/sub applies ``pubsub`` to subscribers
    (services/pubsub.py); ``slave`` is kept and reported so CONFIG GET
    answers as Redis does (no replicas)."""

    classes: dict[str, OutputLimit] = field(default_factory=_defaults)

    @property
    def normal(self) -> OutputLimit:
        return self.classes["normal"]

    @classmethod
    def parse(cls, text: str) -> OutputLimits:
        """``CLASS HARD SOFT SECONDS`` triples, repeated; classes not named
        keep their defaults. ValueError with Redis's reason otherwise."""
        words = text.split()
        if not words or len(words) % 4:
            raise ValueError("wrong number of arguments in buffer limit configuration "
                             f"(CLASS HARD SOFT SOFT-SECONDS), got {text!r}")
        classes = _defaults()
        for i in range(0, len(words), 4):
            name = _ALIASES.get(words[i].lower(), words[i].lower())
            if name not in classes:
                raise ValueError(f"invalid client class {words[i]!r} "
                                 "(normal, replica or pubsub)")
            try:
                hard, soft = memtoull(words[i + 1]), memtoull(words[i + 2])
                seconds = int(words[i + 3])
                if seconds < 0:
                    raise ValueError
            except ValueError:
                raise ValueError("error in hard, soft or soft_seconds setting in buffer "
                                 f"limit configuration: {text!r}") from None
            classes[name] = OutputLimit(hard, soft, seconds)
        return cls(classes)

    def with_normal(self, limit: OutputLimit) -> OutputLimits:
        return replace(self, classes={**self.classes, "normal": limit})

    def redis_format(self) -> str:
        """As Redis 7's CONFIG GET prints it."""
        return " ".join(f"{name} {lim.hard} {lim.soft} {lim.soft_seconds}"
                        for name in _CLASSES for lim in (self.classes[name],))

    def __str__(self) -> str:
        return self.redis_format()
