"""Request generators and reply parsers for each protocol ``sockworks bench`` drives.

Sans-IO, like :mod:`sockworks.protocols`: a *conversation* is one client
connection's side of the protocol. ``next_batch(depth)`` returns the bytes of
``depth`` pipelined requests and remembers what each reply must look like;
``feed(data)`` takes whatever the socket delivered and returns how many of
those replies it completed. Nothing here touches a socket or a clock, so the
tests push bytes in and check counts and errors out.

What a reply may be (the shapes ``lineload`` accepts too):

- ``echo``: the request line uppercased (or unchanged with ``expect="same"``).
- ``kv`` (the chapter's text protocol): a ``READY`` greeting on connect, then
  ``OK`` for ``SET``; the value or ``NOT_FOUND`` for ``GET``.
- ``resp``: ``+OK`` for ``SET``; ``$n`` bulk, ``$-1`` or RESP3 ``_`` for ``GET``.
- ``udp``: ``{"pong": true, "id": N}`` for ``{"type": "ping", "id": N}`` (the
  chapter's own service knows only ``time``: use ``request_type="time"``).

Problems are told apart because the bench reports errors by kind: an error
*reply* (``ERROR: ...``, ``-ERR ...``, ``{"error": ...}``) is counted and the
connection goes on; a "server busy" refusal raises :class:`ServerBusy`; bytes
that are not a reply to what was sent raise :class:`ProtocolMismatch` (the
stream cannot be trusted any more, so the runner reconnects).
"""

from __future__ import annotations

import json
import random
from abc import ABC, abstractmethod
from dataclasses import dataclass, field

__all__ = [
    "MAX_REPLY_BYTES",
    "RING_MAX",
    "RING_MIN",
    "WORKLOADS",
    "BenchError",
    "EchoConversation",
    "KvConversation",
    "ProtocolMismatch",
    "RequestRing",
    "RespConversation",
    "ServerBusy",
    "TcpConversation",
    "UdpConversation",
    "WorkloadSpec",
    "build_ring",
    "new_tcp_conversation",
    "ring_size",
]

#: Longest reply (or greeting) accepted while waiting for its end: values are
#: at most a few KiB in a benchmark, so 1 MiB without a terminator means the
#: peer is not speaking the protocol we think it is.
MAX_REPLY_BYTES = 1 << 20

#: Pre-encoded requests per client process (see :func:`ring_size`): a
#: 262,144-entry ring is a few MiB of small bytes objects per process.
RING_MIN = 4096
RING_MAX = 1 << 18

#: From this pipeline depth on, a batch whose replies arrive in one read is
#: checked whole (see ``_RingConversation._whole_batch``); below it the
#: per-reply loop is as cheap.
WHOLE_BATCH_MIN_DEPTH = 4

#: The workload names, as the CLI spells them.
WORKLOADS = ("echo", "kv", "resp", "udp")


class BenchError(Exception):
    """A reply stream the bench cannot go on with."""


class ProtocolMismatch(BenchError):
    """The bytes received are not a reply to the requests sent."""


class ServerBusy(BenchError):
    """The server refused the connection as over its limit (memcached and
    Redis answer it with an error line, sockworks with ``ERROR: server busy``)."""


def _is_busy(line: bytes) -> bool:
    lowered = line.lower()
    return b"busy" in lowered or b"max number of clients" in lowered


def _show(data: bytes, limit: int = 60) -> str:
    text = repr(data[:limit])
    return text + ("..." if len(data) > limit else "")


@dataclass(frozen=True, slots=True)
class WorkloadSpec:
    """What to send: the CLI flags that shape the requests."""

    name: str = "echo"
    keys: int = 10_000          # kv/resp: keys key:0 .. key:N-1, uniform random
    value_size: int = 16        # kv/resp: SET value bytes; echo: payload bytes
    set_ratio: float = 0.5      # kv/resp: fraction of SETs
    expect: str = "upper"       # echo: "upper" (the chapter's) or "same"
    request_type: str = "ping"  # udp: "ping" (sockworks) or "time" (the chapter's)
    seed: int | None = None     # request mix; None = a fresh random seed

    def __post_init__(self) -> None:
        if self.name not in WORKLOADS:
            raise ValueError(f"unknown workload {self.name!r} (one of {', '.join(WORKLOADS)})")
        if self.keys < 1:
            raise ValueError("keys must be >= 1")
        if self.value_size < 1:
            raise ValueError("value size must be >= 1")
        if not 0.0 <= self.set_ratio <= 1.0:
            raise ValueError("set ratio must be between 0 and 1")
        if self.expect not in ("upper", "same"):
            raise ValueError("echo expect must be 'upper' or 'same'")
        if self.request_type not in ("ping", "time"):
            raise ValueError("udp request type must be 'ping' or 'time'")


class TcpConversation(ABC):
    """One TCP connection's requests and the replies they must get."""

    #: True until the greeting (if the protocol has one) has been read.
    awaiting_greeting: bool = False

    def __init__(self) -> None:
        #: Error replies seen (the connection goes on after them).
        self.error_replies = 0

    @abstractmethod
    def next_batch(self, depth: int) -> bytes:
        """The bytes of ``depth`` requests; the previous batch must be complete."""

    @abstractmethod
    def feed(self, data: bytes) -> int:
        """Consume received bytes; return how many replies they completed.

        Raises :class:`ServerBusy` or :class:`ProtocolMismatch`.
        """

    @abstractmethod
    def outstanding(self) -> int:
        """Replies of the current batch still to come."""


def ring_size(spec: WorkloadSpec) -> int:
    """How many pre-encoded requests a :class:`RequestRing` holds.

    Four draws per key (so a run touches nearly every key of a keyspace of up
    to 65,536), at least :data:`RING_MIN`, at most :data:`RING_MAX`.
    """
    if spec.name == "echo":
        return RING_MIN
    return max(RING_MIN, min(4 * spec.keys, RING_MAX))


@dataclass(frozen=True, slots=True)
class RequestRing:
    """Requests encoded once, before the run, and shared by a process's
    connections, so sending a batch is a slice and a join, not a format per
    request. Each connection starts at a random offset and walks the ring.

    ``kinds[i]`` is True when request ``i`` is a SET, and ``codes[i]`` says
    the same as one byte (``S`` or ``G``), so a batch's expected reply
    pattern is a slice; ``replies[i]`` is the exact reply expected (echo only).

    Built for a pipeline ``depth`` > 1, the ring's length is a multiple of it
    and ``batches[j]`` (``batch_replies[j]`` for echo) holds requests
    ``j*depth .. (j+1)*depth`` already joined: a connection that starts on a
    batch boundary then sends a batch with one list lookup.
    """

    requests: list[bytes]
    kinds: list[bool]
    replies: list[bytes]
    codes: bytes = b""
    depth: int = 1
    batches: list[bytes] = field(default_factory=list)
    batch_replies: list[bytes] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.requests)


def build_ring(spec: WorkloadSpec, rng: random.Random, depth: int = 1) -> RequestRing:
    """Encode a TCP workload's requests (UDP ones carry a fresh id each),
    pre-joined into batches of ``depth`` when it is more than one."""
    if spec.name not in ("echo", "kv", "resp"):
        raise ValueError(f"{spec.name!r} is not a TCP workload")
    if not 1 <= depth <= RING_MIN:
        raise ValueError(f"pipeline depth must be 1..{RING_MIN}, got {depth}")
    ring = _encode(spec, rng, -(-ring_size(spec) // depth) * depth)
    if depth == 1:
        return ring
    size = len(ring.requests)
    batches = [b"".join(ring.requests[i:i + depth]) for i in range(0, size, depth)]
    batch_replies = ([b"".join(ring.replies[i:i + depth]) for i in range(0, size, depth)]
                     if ring.replies else [])
    return RequestRing(ring.requests, ring.kinds, ring.replies, ring.codes, depth,
                       batches, batch_replies)


def _encode(spec: WorkloadSpec, rng: random.Random, size: int) -> RequestRing:
    requests: list[bytes] = []
    kinds: list[bool] = []
    replies: list[bytes] = []
    if spec.name == "echo":
        for seq in range(size):
            line = (b"echo %08d " % seq).ljust(spec.value_size, b"x") + b"\n"
            requests.append(line)
            replies.append(line.upper() if spec.expect == "upper" else line)
            kinds.append(False)
        return RequestRing(requests, kinds, replies, b"E" * size)
    value = b"v" * spec.value_size
    for _ in range(size):
        is_set = rng.random() < spec.set_ratio
        name = b"key:%d" % rng.randrange(spec.keys)
        kinds.append(is_set)
        if spec.name == "kv":
            requests.append(b"SET %s %s\n" % (name, value) if is_set else b"GET %s\n" % name)
        elif is_set:
            requests.append(b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n"
                            % (len(name), name, len(value), value))
        else:
            requests.append(b"*2\r\n$3\r\nGET\r\n$%d\r\n%s\r\n" % (len(name), name))
    return RequestRing(requests, kinds, replies, bytes(b"S"[0] if k else b"G"[0] for k in kinds))


class _RingConversation(TcpConversation):
    """Walks a :class:`RequestRing` batch by batch."""

    def __init__(self, ring: RequestRing, rng: random.Random) -> None:
        super().__init__()
        self._ring = ring
        # On a batch boundary, so batches of the ring's depth are pre-joined.
        self._cursor = rng.randrange(len(ring) // ring.depth) * ring.depth
        self._buffer = b""
        self._kinds: list[bool] = []   # per request of the batch: True for a SET
        self._next = 0                 # index in _kinds of the next reply
        self._start = self._stop = 0   # the batch's slice of the ring

    def _take(self, depth: int) -> tuple[int, int]:
        """Advance the cursor by ``depth``; the slice bounds (may wrap)."""
        start = self._cursor
        size = len(self._ring)
        if depth > size:
            raise ValueError(f"pipeline depth {depth} exceeds the request ring ({size})")
        self._cursor = (start + depth) % size
        return start, start + depth

    def _slice(self, items: list[bytes], start: int, stop: int) -> list[bytes]:
        size = len(items)
        if stop <= size:
            return items[start:stop]
        return items[start:] + items[:stop - size]

    def next_batch(self, depth: int) -> bytes:
        ring = self._ring
        if depth == 1:
            # The common case, kept free of calls: it runs once per request.
            start = self._cursor
            following = start + 1
            self._cursor = following if following < len(ring.requests) else 0
            self._kinds = [ring.kinds[start]]
            self._next = 0
            self._buffer = b""
            self._prepared(start, following)
            return ring.requests[start]
        if depth == ring.depth and self._cursor % depth == 0:
            start = self._cursor
            stop = start + depth
            self._cursor = stop if stop < len(ring.requests) else 0
            self._kinds = ring.kinds[start:stop]
            self._next = 0
            self._buffer = b""
            self._prepared(start, stop)
            return ring.batches[start // depth]
        start, stop = self._take(depth)
        size = len(ring)
        if stop <= size:
            self._kinds = ring.kinds[start:stop]
        else:
            self._kinds = ring.kinds[start:] + ring.kinds[:stop - size]
        batch = b"".join(self._slice(ring.requests, start, stop))
        self._next = 0
        self._buffer = b""
        self._prepared(start, stop)
        return batch

    def _prepared(self, start: int, stop: int) -> None:
        """Hook: the batch [start, stop) of the ring was just sent."""
        self._start, self._stop = start, stop

    def _codes(self) -> bytes:
        """The current batch's ``S``/``G`` codes, in order."""
        codes = self._ring.codes
        start, stop = self._start, self._stop
        if stop <= len(codes):
            return codes[start:stop]
        return codes[start:] + codes[:stop - len(codes)]

    def _whole_batch(self, data: bytes, replacements: tuple[tuple[bytes, bytes], ...]) -> bool:
        """True if ``data`` is exactly every reply of a fresh batch, in order.

        Each exact reply is replaced by its code (C-speed ``bytes.replace``),
        and the result must equal the batch's codes: at pipeline 16 this is a
        handful of calls per batch instead of a loop per reply. Anything else
        (part of a batch, an error reply, a foreign value) goes the slow way.
        """
        if self._next or self._buffer or len(self._kinds) < WHOLE_BATCH_MIN_DEPTH:
            return False
        for reply, code in replacements:
            data = data.replace(reply, code)
        if data != self._codes():
            return False
        self._next = len(self._kinds)
        return True

    def outstanding(self) -> int:
        return len(self._kinds) - self._next


class EchoConversation(_RingConversation):
    """``echo NNNNNNNN xxx...`` lines; the reply is the line uppercased.

    The whole batch's expected reply is built when it is sent, so checking a
    reply is one comparison over the received bytes, not a parse.
    """

    def __init__(self, ring: RequestRing, rng: random.Random) -> None:
        super().__init__(ring, rng)
        self._expected = b""
        self._lines_done = 0

    def _prepared(self, start: int, stop: int) -> None:
        super()._prepared(start, stop)
        ring = self._ring
        if stop - start == 1:
            self._expected = ring.replies[start]
        elif stop - start == ring.depth and start % ring.depth == 0 and ring.batch_replies:
            self._expected = ring.batch_replies[start // ring.depth]
        else:
            self._expected = b"".join(self._slice(self._ring.replies, start, stop))
        self._lines_done = 0

    def feed(self, data: bytes) -> int:
        buffer = self._buffer + data if self._buffer else data
        expected = self._expected
        if len(buffer) >= len(expected):
            if buffer != expected:
                raise self._mismatch(buffer)
            done = len(self._kinds) - self._lines_done
            self._lines_done = self._next = len(self._kinds)
            self._buffer = b""
            return done
        if not expected.startswith(buffer):
            raise self._mismatch(buffer)
        self._buffer = buffer
        lines = buffer.count(b"\n")
        done = lines - self._lines_done
        self._lines_done = self._next = lines
        return done

    def _mismatch(self, buffer: bytes) -> BenchError:
        # Find the first reply line that differs, to say what came instead.
        offset = 0
        expected = self._expected
        for line in buffer.split(b"\n"):
            if _is_busy(line):
                # Also before any request: the refusal comes on connect.
                return ServerBusy(line.decode(errors="replace"))
            if offset >= len(expected):
                return ProtocolMismatch(f"unsolicited echo data {_show(buffer[offset:])}")
            if line != expected[offset:offset + len(line)]:
                return ProtocolMismatch(f"echo reply {_show(line)} does not match the request")
            offset += len(line) + 1
        return ProtocolMismatch(f"unsolicited echo data {_show(buffer[len(expected):])}")


class KvConversation(_RingConversation):
    """The chapter's text protocol: ``SET key:N value`` / ``GET key:N``.

    Values are all ``--value-size`` bytes of ``v``, so a reply is one of three
    exact byte strings (``OK``, the value, ``NOT_FOUND``) and is checked with
    ``startswith`` at its offset; anything else goes through the slow path,
    which tells error replies, "server busy" and garbage apart.
    """

    def __init__(self, ring: RequestRing, rng: random.Random, value_size: int) -> None:
        super().__init__(ring, rng)
        self.awaiting_greeting = True
        self._hit = b"v" * value_size + b"\n"
        # The value first: it is the only reply made of v's.
        self._replacements = ((self._hit, b"G"), (b"NOT_FOUND\n", b"G"), (b"OK\n", b"S"))

    def feed(self, data: bytes) -> int:
        if not self.awaiting_greeting and self._whole_batch(data, self._replacements):
            return len(self._kinds)
        buffer = self._buffer + data if self._buffer else data
        size = len(buffer)
        position = 0
        if self.awaiting_greeting:
            end = buffer.find(b"\n")
            if end < 0:
                if size > MAX_REPLY_BYTES:
                    raise ProtocolMismatch("no end of line in the greeting")
                self._buffer = buffer
                return 0
            self._check_greeting(buffer[:end])
            position = end + 1
        kinds = self._kinds
        count = len(kinds)
        index = self._next
        first = index
        hit = self._hit
        hit_size = len(hit)
        while position < size:
            if index >= count:
                raise ProtocolMismatch(f"unsolicited reply {_show(buffer[position:])}")
            if kinds[index]:
                if buffer.startswith(b"OK\n", position):
                    position += 3
                    index += 1
                    continue
            elif buffer.startswith(hit, position):
                position += hit_size
                index += 1
                continue
            elif buffer.startswith(b"NOT_FOUND\n", position):
                position += 10
                index += 1
                continue
            end = buffer.find(b"\n", position)
            if end < 0:
                break
            self._check(buffer[position:end], kinds[index])
            position = end + 1
            index += 1
        rest = buffer[position:]
        if len(rest) > MAX_REPLY_BYTES:
            raise ProtocolMismatch(f"no end of line in {len(rest)} bytes")
        self._buffer = rest
        self._next = index
        return index - first

    def _check_greeting(self, line: bytes) -> None:
        if line.rstrip(b"\r") == b"READY":
            self.awaiting_greeting = False
            return
        if _is_busy(line):
            raise ServerBusy(line.decode(errors="replace"))
        raise ProtocolMismatch(f"expected the READY greeting, got {_show(line)}")

    def _check(self, line: bytes, is_set: bool) -> None:
        """A reply that is not one of the expected exact strings."""
        line = line.rstrip(b"\r")
        if _is_busy(line):
            raise ServerBusy(line.decode(errors="replace"))
        if line.startswith(b"ERROR"):
            self.error_replies += 1
        elif is_set and line != b"OK":
            raise ProtocolMismatch(f"SET answered {_show(line)}")
        # Any other GET reply is a value (written by someone else, or a
        # previous run with another --value-size).


class RespConversation(_RingConversation):
    """RESP arrays ``SET key:N value`` / ``GET key:N`` (what redis-benchmark sends).

    As for :class:`KvConversation`, the common replies are exact strings
    (``+OK``, the value's bulk string, ``$-1``, RESP3's ``_``); the slow path
    parses one reply of any shape.
    """

    def __init__(self, ring: RequestRing, rng: random.Random, value_size: int) -> None:
        super().__init__(ring, rng)
        value = b"v" * value_size
        self._hit = b"$%d\r\n%s\r\n" % (len(value), value)
        self._replacements = ((self._hit, b"G"), (b"$-1\r\n", b"G"), (b"_\r\n", b"G"),
                              (b"+OK\r\n", b"S"))

    def feed(self, data: bytes) -> int:
        if self._whole_batch(data, self._replacements):
            return len(self._kinds)
        buffer = self._buffer + data if self._buffer else data
        size = len(buffer)
        position = 0
        kinds = self._kinds
        count = len(kinds)
        index = self._next
        first = index
        hit = self._hit
        hit_size = len(hit)
        while position < size:
            if index >= count:
                raise ProtocolMismatch(f"unsolicited reply {_show(buffer[position:])}")
            if kinds[index]:
                if buffer.startswith(b"+OK\r\n", position):
                    position += 5
                    index += 1
                    continue
            elif buffer.startswith(hit, position):
                position += hit_size
                index += 1
                continue
            elif buffer.startswith(b"$-1\r\n", position):
                position += 5
                index += 1
                continue
            elif buffer.startswith(b"_\r\n", position):
                position += 3
                index += 1
                continue
            end = self._parse_one(buffer, position, kinds[index])
            if end < 0:
                break
            position = end
            index += 1
        rest = buffer[position:]
        if len(rest) > MAX_REPLY_BYTES + 64:
            raise ProtocolMismatch(f"no complete reply in {len(rest)} bytes")
        self._buffer = rest
        self._next = index
        return index - first

    def _parse_one(self, buffer: bytes, start: int, is_set: bool) -> int:
        """Check one reply at ``start``; its end offset, or -1 if incomplete."""
        end = buffer.find(b"\r\n", start)
        if end < 0:
            return -1
        kind = buffer[start]
        header = buffer[start:end]
        if kind == 45:  # '-' error reply
            if _is_busy(header):
                raise ServerBusy(header[1:].decode(errors="replace"))
            self.error_replies += 1
            return end + 2
        if kind == 43:  # '+'
            if is_set and header == b"+OK":
                return end + 2
            raise ProtocolMismatch(f"{'SET' if is_set else 'GET'} answered {_show(header)}")
        if kind == 95 and header == b"_" and not is_set:  # RESP3 null
            return end + 2
        if kind != 36 or is_set:  # '$'
            raise ProtocolMismatch(f"{'SET' if is_set else 'GET'} answered {_show(header)}")
        try:
            length = int(buffer[start + 1:end])
        except ValueError:
            raise ProtocolMismatch(f"invalid bulk length {_show(header)}") from None
        if length < 0:
            return end + 2
        if length > MAX_REPLY_BYTES:
            raise ProtocolMismatch(f"bulk length {length} over the limit")
        stop = end + 2 + length
        if stop + 2 > len(buffer):
            return -1
        if buffer[stop:stop + 2] != b"\r\n":
            raise ProtocolMismatch("bulk string not terminated by CRLF")
        return stop + 2


def new_tcp_conversation(spec: WorkloadSpec, ring: RequestRing,
                         rng: random.Random) -> TcpConversation:
    """A conversation of ``spec``'s TCP workload over ``ring`` (from :func:`build_ring`)."""
    if spec.name == "echo":
        return EchoConversation(ring, rng)
    if spec.name == "kv":
        return KvConversation(ring, rng, spec.value_size)
    if spec.name == "resp":
        return RespConversation(ring, rng, spec.value_size)
    raise ValueError(f"{spec.name!r} is not a TCP workload")


class UdpConversation:
    """One UDP socket's JSON requests: one datagram per request.

    Replies are matched by ``id`` (sockworks copies it into every reply).
    The chapter's service does not, so ``time`` replies without an ``id``
    are matched in order. Late replies to a batch already given up on (a
    timeout) are ignored, not counted as errors: UDP may reorder and drop.
    """

    def __init__(self, spec: WorkloadSpec, rng: random.Random) -> None:
        self.error_replies = 0
        self._type = spec.request_type
        self._next_id = rng.randrange(1 << 30)
        self._waiting: dict[int, None] = {}   # ids of the current batch (ordered)

    def next_batch(self, depth: int) -> list[bytes]:
        first = self._next_id
        self._next_id += depth
        ids = range(first, first + depth)
        self._waiting = dict.fromkeys(ids)
        kind = self._type.encode()
        return [b'{"type":"%s","id":%d}' % (kind, i) for i in ids]

    def outstanding(self) -> int:
        return len(self._waiting)

    def feed(self, datagram: bytes) -> int:
        """1 if ``datagram`` answers a request of the current batch, else 0."""
        try:
            reply = json.loads(datagram)
        except (ValueError, UnicodeDecodeError):
            raise ProtocolMismatch(f"reply is not JSON: {_show(datagram)}") from None
        if not isinstance(reply, dict):
            raise ProtocolMismatch(f"reply is not a JSON object: {_show(datagram)}")
        ident = reply.get("id")
        if "error" in reply:
            message = str(reply["error"]).encode()
            if _is_busy(message):
                raise ServerBusy(str(reply["error"]))
            if ident is None or ident in self._waiting:
                self.error_replies += 1
                self._take(ident)
                return 1
            return 0
        if self._type == "ping":
            if reply.get("pong") is not True:
                raise ProtocolMismatch(f"ping answered {_show(datagram)}")
        elif "time" not in reply:
            raise ProtocolMismatch(f"time answered {_show(datagram)}")
        if ident is None and self._type == "time":
            return self._take(None)
        if not isinstance(ident, int) or isinstance(ident, bool):
            raise ProtocolMismatch(f"reply without the request's id: {_show(datagram)}")
        return self._take(ident)

    def _take(self, ident: object) -> int:
        if ident is None:
            if not self._waiting:
                return 0
            del self._waiting[next(iter(self._waiting))]
            return 1
        if isinstance(ident, int) and ident in self._waiting:
            del self._waiting[ident]
            return 1
        return 0
