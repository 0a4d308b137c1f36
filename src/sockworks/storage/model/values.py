"""The typed values a key holds, their sizes for ``used_memory``, and the
encodings OBJECT ENCODING reports.

A string is plain ``bytes`` (so the GET/SET hot path is unchanged); the
aggregates are small subclasses carrying ``nbytes``: their share of
``used_memory``, kept up to date by every command that changes them
(O(1) per element added or removed, never a scan). Each element costs its
bytes plus a per-element overhead, CPython's approximate real cost:

* hash field: ``HASH_FIELD_OVERHEAD`` (two bytes objects' headers and a dict entry);
* list element: ``LIST_ELEMENT_OVERHEAD`` (a bytes header and a deque slot);
* set member: ``SET_MEMBER_OVERHEAD`` (a bytes header and a set entry);
* sorted-set member: ``ZSET_MEMBER_OVERHEAD`` (bytes header, float, dict
  entry, the (score, member) tuple in the sorted list).

Encodings approximate Redis 7.0's by its thresholds (:class:`Encodings`,
one per store, set with CONFIG SET under Redis's names; defaults, those
compiled into redis-server, which its sample redis.conf lowers for hashes:
a hash is ``listpack`` up to 512 entries, a sorted set up to 128, of at most
64 bytes, then
``hashtable`` / ``skiplist`` for good (Redis never converts back); a set of
integers up to 512 members is ``intset``, else ``hashtable``; a list is
``quicklist``; a string is ``int``, ``embstr`` (up to 44 bytes) or ``raw``,
and ``raw`` whatever its content once changed in place (SETRANGE, APPEND,
SETBIT, BITFIELD, BITOP: the store's ``mark_raw``) until it is replaced.
The thresholds change what OBJECT ENCODING reports and nothing else: the
Python structures are the same whatever Redis would have chosen.
"""

from __future__ import annotations

import collections
import dataclasses
import re
from typing import Final

from sortedcontainers import SortedList  # type: ignore[import-untyped]

from sockworks.storage.model.streamvalue import StreamValue

__all__ = [
    "HASH_FIELD_OVERHEAD", "LIST_ELEMENT_OVERHEAD", "SET_MEMBER_OVERHEAD",
    "ZSET_MEMBER_OVERHEAD", "Encodings", "HashValue", "ListValue", "SetValue", "Value",
    "StreamValue", "ZSetValue",
    "encoding_of", "type_name", "value_size",
]

HASH_FIELD_OVERHEAD: Final = 100
LIST_ELEMENT_OVERHEAD: Final = 48
SET_MEMBER_OVERHEAD: Final = 64
ZSET_MEMBER_OVERHEAD: Final = 160



@dataclasses.dataclass(slots=True)
class Encodings:
    """Redis 7.0's encoding thresholds, named as its CONFIG parameters with
    underscores, with its defaults (the ``*-ziplist-*`` names are aliases)."""

    hash_max_listpack_entries: int = 512
    hash_max_listpack_value: int = 64
    zset_max_listpack_entries: int = 128
    zset_max_listpack_value: int = 64
    set_max_intset_entries: int = 512
    list_max_listpack_size: int = -2
    list_compress_depth: int = 0
    #: A stream's node size (what ``MAXLEN ~`` / ``MINID ~`` trim by).
    stream_node_max_bytes: int = 4096
    stream_node_max_entries: int = 100


_INT: Final = re.compile(rb"-?(?:0|[1-9][0-9]{0,18})")


def is_int_string(value: bytes) -> bool:
    """Whether Redis would store ``value`` as an integer (string2ll)."""
    if _INT.fullmatch(value) is None or value == b"-0":
        return False
    return -(1 << 63) <= int(value) < (1 << 63)


class HashValue(dict[bytes, bytes]):
    """A hash: field -> value."""

    __slots__ = ("big", "nbytes")

    def __init__(self) -> None:
        super().__init__()
        self.nbytes = 0
        self.big = False


class ListValue(collections.deque[bytes]):
    """A list (a deque: O(1) at both ends)."""

    def __init__(self) -> None:
        super().__init__()
        self.nbytes = 0


class SetValue(set[bytes]):
    """A set."""

    __slots__ = ("big", "nbytes")

    def __init__(self) -> None:
        super().__init__()
        self.nbytes = 0
        self.big = False


class ZSetValue:
    """A sorted set: ``scores`` member -> score, and ``order``, a
    SortedList of (score, member): O(log n) insert, delete, rank and
    range (members of equal score sort by their bytes, as Redis's)."""

    __slots__ = ("big", "nbytes", "order", "scores")

    def __init__(self) -> None:
        self.scores: dict[bytes, float] = {}
        self.order: SortedList = SortedList()
        self.nbytes = 0
        self.big = False

    def __len__(self) -> int:
        return len(self.scores)

    def add(self, member: bytes, score: float, enc: Encodings) -> int:
        """Set ``member``'s score; the change in size (the caller passes it
        to ``Keyspace.grow``, which updates ``nbytes``)."""
        old = self.scores.get(member)
        if old is not None:
            if old == score:
                return 0
            self.order.remove((old, member))
            self.scores[member] = score
            self.order.add((score, member))
            return 0
        self.scores[member] = score
        self.order.add((score, member))
        grown = len(member) + ZSET_MEMBER_OVERHEAD
        if (len(member) > enc.zset_max_listpack_value
                or len(self.scores) > enc.zset_max_listpack_entries):
            self.big = True
        return grown

    def remove(self, member: bytes) -> int:
        """Remove ``member`` (present); the change in size (negative)."""
        score = self.scores.pop(member)
        self.order.remove((score, member))
        return -(len(member) + ZSET_MEMBER_OVERHEAD)

    def copy(self) -> ZSetValue:
        other = ZSetValue()
        other.scores = dict(self.scores)
        other.order = SortedList(self.order)
        other.nbytes, other.big = self.nbytes, self.big
        return other


Value = bytes | HashValue | ListValue | SetValue | ZSetValue | StreamValue

_TYPE_NAMES: Final = {bytes: "string", HashValue: "hash", ListValue: "list", SetValue: "set",
                      ZSetValue: "zset", StreamValue: "stream"}


def type_name(value: Value) -> str:
    return _TYPE_NAMES[type(value)]


def value_size(value: Value) -> int:
    """A value's bytes for used_memory (its key and entry overhead apart)."""
    return len(value) if type(value) is bytes else value.nbytes  # type: ignore[union-attr]


def copy_value(value: Value) -> Value:
    """An independent copy (COPY, and the snapshot a log rewrite writes)."""
    if type(value) is bytes:
        return value
    if isinstance(value, HashValue):
        h = HashValue()
        h.update(value)
        h.nbytes, h.big = value.nbytes, value.big
        return h
    if isinstance(value, ListValue):
        lst = ListValue()
        lst.extend(value)
        lst.nbytes = value.nbytes
        return lst
    if isinstance(value, SetValue):
        s = SetValue()
        s.update(value)
        s.nbytes, s.big = value.nbytes, value.big
        return s
    assert isinstance(value, ZSetValue | StreamValue)
    return value.copy()


def encoding_of(value: Value, enc: Encodings, raw: bool = False) -> str:
    """OBJECT ENCODING's answer (see the module docstring); ``raw``: a
    string changed in place (Keyspace.mark_raw)."""
    if type(value) is bytes:
        if raw:
            return "raw"
        if len(value) <= 20 and is_int_string(value):
            return "int"
        return "embstr" if len(value) <= 44 else "raw"
    if isinstance(value, HashValue):
        return "hashtable" if value.big else "listpack"
    if isinstance(value, ListValue):
        return "quicklist"
    if isinstance(value, SetValue):
        if (not value.big and len(value) <= enc.set_max_intset_entries
                and all(map(is_int_string, value))):
            return "intset"
        value.big = True
        return "hashtable"
    if isinstance(value, StreamValue):
        return "stream"
    return "skiplist" if value.big else "listpack"  # type: ignore[union-attr]
