"""The stream value: entries ordered by ID, consumer groups, and the
arithmetic of stream IDs (parsing, formatting, successor, predecessor).

An ID ``ms-seq`` is held as one int, ``ms << 64 | seq``, so IDs compare,
sort and bisect as ints. Entries live in a SortedList of IDs (O(log n)
append, delete, seek; a range of COUNT entries costs O(log n + COUNT))
plus a dict ID -> (fields, node).

Nodes: Redis keeps entries in listpacks of at most
``stream-node-max-entries`` entries (and ``stream-node-max-bytes``
bytes), and its approximate trimming (``MAXLEN ~``, ``MINID ~``) removes
only whole nodes. A :class:`Node` here records what that needs (live
entries, entries ever inserted, its last ID, its approximate bytes), so
``~`` trims the same entries Redis would. Every trim removes the oldest
entries, so a trim is "remove the first k" and its effect logs as
``XTRIM key MAXLEN = <length left>``.

A consumer group (:class:`Group`) holds its last delivered ID, its
``entries_read`` counter, its pending entries list (PEL: a SortedDict
ID -> :class:`Nack`) and its consumers by name, each with its own PEL
sharing the Nack objects. Groups and consumers list in name order (Redis
keeps them in radix trees).
"""

from __future__ import annotations

import collections
import re
from collections.abc import Iterator
from typing import Final

from sortedcontainers import SortedDict, SortedList  # type: ignore[import-untyped]

from sockworks.storage.model.common import CommandError

__all__ = [
    "INVALID_ID", "MAX_ID", "STREAM_ENTRY_OVERHEAD", "Consumer", "Group", "Nack", "Node",
    "StreamValue", "format_id", "parse_id",
]

#: Redis's error for any ID it cannot parse.
INVALID_ID: Final = "Invalid stream ID specified as stream command argument"
MAX_SEQ: Final = (1 << 64) - 1
MAX_ID: Final = (1 << 128) - 1
#: used_memory per entry: the dict slot, the SortedList slot, the fields
#: tuple and an ID int (CPython's approximate cost), plus each field's bytes.
STREAM_ENTRY_OVERHEAD: Final = 160
#: Per pending entry (two SortedDict slots and a Nack) and per consumer or
#: group (its object and dicts).
NACK_OVERHEAD: Final = 200
CONSUMER_OVERHEAD: Final = 300
#: A listpack's header and master entry (Redis's t_stream.c layout),
#: and what each entry adds besides its strings (flags, ID deltas,
#: lp-count and per-string headers, about two bytes each).
_NODE_BASE_BYTES: Final = 30
_ENTRY_BASE_BYTES: Final = 8


def parse_id(arg: bytes, missing_seq: int = 0, *, strict: bool = False) -> int:
    """A client's ID: ``ms-seq``, ``ms`` (seq = ``missing_seq``), and unless
    ``strict`` ``-`` / ``+`` (the least and greatest IDs); Redis's error."""
    if len(arg) > 127:
        raise CommandError(INVALID_ID)
    if arg in (b"-", b"+"):
        if strict:
            raise CommandError(INVALID_ID)
        return 0 if arg == b"-" else MAX_ID
    ms_text, dash, seq_text = arg.partition(b"-")
    ms = _u64(ms_text)
    seq = _u64(seq_text) if dash else missing_seq
    return ms << 64 | seq


def parse_add_id(arg: bytes) -> tuple[int, bool]:
    """XADD's explicit ID: (id, seq given); ``ms-*`` leaves seq to the server."""
    if len(arg) > 127 or arg in (b"-", b"+"):
        raise CommandError(INVALID_ID)
    ms_text, dash, seq_text = arg.partition(b"-")
    ms = _u64(ms_text)
    if dash and seq_text == b"*":
        return ms << 64, False
    return ms << 64 | (_u64(seq_text) if dash else 0), True


_CANONICAL: Final = re.compile(rb"-?[1-9][0-9]*|0")
_STRTOULL: Final = re.compile(rb"[ \t\n\v\f\r]*([+-]?)([0-9]+)")


def _u64(text: bytes) -> int:
    """Redis's string2ull: a canonical integer (negative ones refused),
    else whatever strtoull takes whole (blanks, a sign, leading zeros;
    a '-' negates modulo 2**64, as strtoull does)."""
    if len(text) <= 20 and _CANONICAL.fullmatch(text) and -(1 << 63) <= int(text) < 1 << 63:
        if text[:1] == b"-":
            raise CommandError(INVALID_ID)
        return int(text)
    match = _STRTOULL.fullmatch(text)
    if match is None:
        raise CommandError(INVALID_ID)
    value = int(match.group(2))
    if value > MAX_SEQ:
        raise CommandError(INVALID_ID)
    return (-value) % (1 << 64) if match.group(1) == b"-" else value


def format_id(sid: int) -> bytes:
    return b"%d-%d" % (sid >> 64, sid & MAX_SEQ)


class Node:
    """What Redis's listpack node of a stream needs to be emulated."""

    __slots__ = ("inserted", "last", "live", "nbytes")

    def __init__(self) -> None:
        self.live = 0
        self.inserted = 0
        self.last = 0
        self.nbytes = _NODE_BASE_BYTES


class Nack:
    """A pending entry: its owner, last delivery (ms) and delivery count."""

    __slots__ = ("consumer", "count", "time")

    def __init__(self, consumer: Consumer, time: int, count: int = 1) -> None:
        self.consumer = consumer
        self.time = time
        self.count = count


class Consumer:
    __slots__ = ("name", "pel", "seen")

    def __init__(self, name: bytes, seen: int) -> None:
        self.name = name
        self.seen = seen
        self.pel: SortedDict = SortedDict()


class Group:
    __slots__ = ("consumers", "entries_read", "last_id", "pel")

    def __init__(self, last_id: int, entries_read: int) -> None:
        self.last_id = last_id
        #: -1: unknown (Redis's SCG_INVALID_ENTRIES_READ).
        self.entries_read = entries_read
        self.pel: SortedDict = SortedDict()
        self.consumers: dict[bytes, Consumer] = {}


Entry = tuple[int, tuple[bytes, ...]]


class StreamValue:
    """A stream (module docstring)."""

    __slots__ = ("data", "entries_added", "first_id", "groups", "ids", "last_id",
                 "max_deleted", "nbytes", "nodes")

    def __init__(self) -> None:
        self.ids: SortedList = SortedList()
        self.data: dict[int, tuple[tuple[bytes, ...], Node]] = {}
        self.nodes: collections.deque[Node] = collections.deque()
        self.last_id = 0
        self.first_id = 0
        self.max_deleted = 0
        self.entries_added = 0
        self.groups: dict[bytes, Group] = {}
        self.nbytes = 0

    def __len__(self) -> int:
        return len(self.data)

    # -- entries ----------------------------------------------------------------
    def _fits(self, tail: Node, size: int, max_bytes: int, max_entries: int) -> bool:
        if max_bytes == 0 or max_bytes > 1 << 30:
            max_bytes = 1 << 30
        if tail.nbytes + size >= max_bytes:
            return False
        return not (max_entries and tail.inserted >= max_entries)

    def append(self, sid: int, fields: tuple[bytes, ...], max_bytes: int,
               max_entries: int) -> int:
        """Add an entry (``sid`` above ``last_id``); the change in size."""
        size = sum(map(len, fields))
        tail = self.nodes[-1] if self.nodes else None
        if tail is None or not self._fits(tail, size, max_bytes, max_entries):
            tail = Node()
            self.nodes.append(tail)
        tail.live += 1
        tail.inserted += 1
        tail.last = sid
        tail.nbytes += size + _ENTRY_BASE_BYTES + 2 * len(fields)
        self.ids.add(sid)
        self.data[sid] = (fields, tail)
        self.entries_added += 1
        self.last_id = sid
        if len(self.data) == 1:
            self.first_id = sid
        return size + STREAM_ENTRY_OVERHEAD

    def delete(self, sid: int) -> int:
        """XDEL one entry (present); the change in size (negative)."""
        fields, node = self.data.pop(sid)
        self.ids.remove(sid)
        node.live -= 1
        if not node.live:
            self.nodes.remove(node)
        if sid > self.max_deleted:
            self.max_deleted = sid
        return -(sum(map(len, fields)) + STREAM_ENTRY_OVERHEAD)

    def fix_first(self) -> None:
        self.first_id = self.ids[0] if self.ids else 0

    def trim_count(self, maxlen: int | None, minid: int, approx: bool, limit: int) -> int:
        """How many of the oldest entries Redis's streamTrim removes (MAXLEN
        ``maxlen``, else MINID ``minid``; ``limit`` 0: none), changing nothing."""
        length = len(self.data)
        deleted = 0
        ids = self.ids
        for node in self.nodes:
            if maxlen is not None and length <= maxlen:
                break
            entries = node.live
            if limit and deleted + entries > limit:
                break
            remove_node = (length - entries >= maxlen if maxlen is not None
                           else node.last < minid)
            if remove_node:
                length -= entries
                deleted += entries
                continue
            if approx:
                break
            if maxlen is not None:
                deleted += length - maxlen
            else:
                deleted += ids.bisect_left(minid) - deleted
            break
        return deleted

    def pop_head(self, count: int) -> int:
        """Remove the ``count`` oldest entries (a trim); the change in size."""
        grown = 0
        for sid in list(self.ids.islice(0, count)):
            fields, node = self.data.pop(sid)
            node.live -= 1
            if not node.live:
                self.nodes.remove(node)
            grown -= sum(map(len, fields)) + STREAM_ENTRY_OVERHEAD
        del self.ids[:count]
        self.fix_first()
        return grown

    def range(self, start: int, end: int, count: int = 0, rev: bool = False) -> list[Entry]:
        """Entries with start <= id <= end (newest first if ``rev``), at most
        ``count`` (0: all)."""
        if start > end:
            return []
        it: Iterator[int] = self.ids.irange(start, end, reverse=rev)
        out: list[Entry] = []
        data = self.data
        for sid in it:
            out.append((sid, data[sid][0]))
            if count and len(out) >= count:
                break
        return out

    def last_valid(self) -> int:
        """The greatest live ID (0 when empty)."""
        return self.ids[-1] if self.ids else 0

    def has_tombstones(self, start: int) -> bool:
        """Redis's streamRangeHasTombstones(start, +)."""
        if not self.data or not self.max_deleted:
            return False
        if self.first_id > self.max_deleted:
            return False
        return start <= self.max_deleted

    def estimate_read(self, sid: int) -> int:
        """Redis's streamEstimateDistanceFromFirstEverEntry; -1: unknown."""
        if not self.entries_added:
            return 0
        if not self.data and sid <= self.last_id:
            return self.entries_added
        if sid == self.last_id:
            return self.entries_added
        if sid > self.last_id:
            return -1
        if not self.max_deleted or self.max_deleted < self.first_id:
            if sid < self.first_id:
                return self.entries_added - len(self.data)
            if sid == self.first_id:
                return self.entries_added - len(self.data) + 1
        return -1

    def lag(self, group: Group) -> int | None:
        """XINFO's lag of a group (None: unknown), as streamReplyWithCGLag."""
        if not self.entries_added:
            return 0
        if group.entries_read != -1 and not self.has_tombstones(group.last_id):
            return self.entries_added - group.entries_read
        read = self.estimate_read(group.last_id)
        return None if read == -1 else self.entries_added - read

    def copy(self) -> StreamValue:
        """An independent copy (COPY, and a log rewrite's snapshot)."""
        other = StreamValue()
        nodes: dict[int, Node] = {}
        for node in self.nodes:
            twin = Node()
            twin.live, twin.inserted, twin.last, twin.nbytes = (
                node.live, node.inserted, node.last, node.nbytes)
            nodes[id(node)] = twin
            other.nodes.append(twin)
        other.ids = SortedList(self.ids)
        other.data = {sid: (fields, nodes[id(node)])
                      for sid, (fields, node) in self.data.items()}
        other.last_id, other.first_id = self.last_id, self.first_id
        other.max_deleted, other.entries_added = self.max_deleted, self.entries_added
        other.nbytes = self.nbytes
        for name, group in self.groups.items():
            twin_group = Group(group.last_id, group.entries_read)
            for cname, consumer in group.consumers.items():
                twin_group.consumers[cname] = Consumer(cname, consumer.seen)
            for sid, nack in group.pel.items():
                owner = twin_group.consumers[nack.consumer.name]
                twin_nack = Nack(owner, nack.time, nack.count)
                twin_group.pel[sid] = twin_nack
                owner.pel[sid] = twin_nack
            other.groups[name] = twin_group
        return other
