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
from dataclasses import dataclass

__all__ = [
    "BenchError", "ProtocolMismatch", "ServerBusy",
    "WorkloadSpec", "TcpConversation", "EchoConversation", "KvConversation",
    "RespConversation", "UdpConversation", "WORKLOADS", "MAX_REPLY_BYTES",
    "new_tcp_conversation",
]

#: Longest reply (or greeting) accepted while waiting for its end: values are
#: at most a few KiB in a benchmark, so 1 MiB without a terminator means the
#: peer is not speaking the protocol we think it is.
MAX_REPLY_BYTES = 1 << 20

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


class EchoConversation(TcpConversation):
    """``echo NNNNNNNN xxx...`` lines; the reply is the line uppercased.

    The whole batch's expected reply is built when it is sent, so checking a
    reply is one ``startswith`` over the received bytes, not a parse.
    """

    def __init__(self, spec: WorkloadSpec, rng: random.Random) -> None:
        super().__init__()
        self._upper = spec.expect == "upper"
        self._pad = spec.value_size
        self._seq = rng.randrange(100_000_000)
        self._expected = b""
        self._buffer = b""
        self._lines_done = 0
        self._depth = 0

    def _line(self) -> bytes:
        self._seq += 1
        return (b"echo %08d " % (self._seq % 100_000_000)).ljust(self._pad, b"x") + b"\n"

    def next_batch(self, depth: int) -> bytes:
        if depth == 1:
            batch = self._line()
        else:
            batch = b"".join([self._line() for _ in range(depth)])
        self._expected = batch.upper() if self._upper else batch
        self._buffer = b""
        self._lines_done = 0
        self._depth = depth
        return batch

    def feed(self, data: bytes) -> int:
        buffer = self._buffer + data if self._buffer else data
        expected = self._expected
        if len(buffer) >= len(expected):
            if len(buffer) > len(expected) or buffer != expected:
                raise self._mismatch(buffer)
            done = self._depth - self._lines_done
            self._lines_done = self._depth
            self._buffer = b""
            return done
        if not expected.startswith(buffer):
            raise self._mismatch(buffer)
        self._buffer = buffer
        lines = buffer.count(b"\n")
        done = lines - self._lines_done
        self._lines_done = lines
        return done

    def _mismatch(self, buffer: bytes) -> BenchError:
        # Find the first reply line that differs, to say what came instead.
        offset = 0
        for line in buffer.split(b"\n"):
            want = self._expected[offset:offset + len(line)]
            if line != want:
                if _is_busy(line):
                    return ServerBusy(line.decode(errors="replace"))
                return ProtocolMismatch(f"echo reply {_show(line)} does not match request")
            offset += len(line) + 1
        return ProtocolMismatch(f"unsolicited echo data {_show(buffer[len(self._expected):])}")

    def outstanding(self) -> int:
        return self._depth - self._lines_done


class _KeyValueConversation(TcpConversation):
    """The request mix shared by the text and RESP KV workloads."""

    def __init__(self, spec: WorkloadSpec, rng: random.Random) -> None:
        super().__init__()
        self._random = rng.random
        self._keys = spec.keys
        self._set_ratio = spec.set_ratio
        self._value = b"v" * spec.value_size
        self._buffer = b""
        self._kinds: list[bool] = []   # True for a SET, per request of the batch
        self._next = 0                 # index in _kinds of the next reply

    def _pick(self) -> tuple[bool, int]:
        random_ = self._random
        return random_() < self._set_ratio, int(random_() * self._keys)

    def outstanding(self) -> int:
        return len(self._kinds) - self._next


class KvConversation(_KeyValueConversation):
    """The chapter's text protocol: ``SET key:N value`` / ``GET key:N``."""

    def __init__(self, spec: WorkloadSpec, rng: random.Random) -> None:
        super().__init__(spec, rng)
        self.awaiting_greeting = True

    def next_batch(self, depth: int) -> bytes:
        kinds = []
        parts = []
        value = self._value
        for _ in range(depth):
            is_set, key = self._pick()
            kinds.append(is_set)
            if is_set:
                parts.append(b"SET key:%d %s\n" % (key, value))
            else:
                parts.append(b"GET key:%d\n" % key)
        self._kinds = kinds
        self._next = 0
        return parts[0] if depth == 1 else b"".join(parts)

    def feed(self, data: bytes) -> int:
        buffer = self._buffer + data if self._buffer else data
        start = 0
        done = 0
        kinds = self._kinds
        index = self._next
        while True:
            end = buffer.find(b"\n", start)
            if end < 0:
                break
            line = buffer[start:end]
            start = end + 1
            if self.awaiting_greeting:
                self._check_greeting(line)
                continue
            if index >= len(kinds):
                raise ProtocolMismatch(f"unsolicited reply {_show(line)}")
            if kinds[index]:
                if line != b"OK":
                    self._unexpected(line, "SET")
            elif line[:6] == b"ERROR:":
                self._unexpected(line, "GET")
            index += 1
            done += 1
        rest = buffer[start:]
        if len(rest) > MAX_REPLY_BYTES:
            raise ProtocolMismatch(f"no end of line in {len(rest)} bytes")
        self._buffer = rest
        self._next = index
        return done

    def _check_greeting(self, line: bytes) -> None:
        if line.rstrip(b"\r") == b"READY":
            self.awaiting_greeting = False
            return
        if _is_busy(line):
            raise ServerBusy(line.decode(errors="replace"))
        raise ProtocolMismatch(f"expected the READY greeting, got {_show(line)}")

    def _unexpected(self, line: bytes, command: str) -> None:
        line = line.rstrip(b"\r")
        if command == "SET" and line == b"OK":
            return  # CRLF-terminated OK
        if _is_busy(line):
            raise ServerBusy(line.decode(errors="replace"))
        if line.startswith(b"ERROR"):
            self.error_replies += 1
            return
        raise ProtocolMismatch(f"{command} answered {_show(line)}")


class RespConversation(_KeyValueConversation):
    """RESP arrays ``SET key:N value`` / ``GET key:N`` (what redis-benchmark sends)."""

    def next_batch(self, depth: int) -> bytes:
        kinds = []
        parts = []
        value = self._value
        set_tail = b"\r\n$%d\r\n%s\r\n" % (len(value), value)
        for _ in range(depth):
            is_set, key = self._pick()
            kinds.append(is_set)
            name = b"key:%d" % key
            if is_set:
                parts.append(b"*3\r\n$3\r\nSET\r\n$%d\r\n%s%s" % (len(name), name, set_tail))
            else:
                parts.append(b"*2\r\n$3\r\nGET\r\n$%d\r\n%s\r\n" % (len(name), name))
        self._kinds = kinds
        self._next = 0
        return parts[0] if depth == 1 else b"".join(parts)

    def feed(self, data: bytes) -> int:
        buffer = self._buffer + data if self._buffer else data
        size = len(buffer)
        start = 0
        done = 0
        kinds = self._kinds
        index = self._next
        while start < size:
            end = buffer.find(b"\r\n", start)
            if end < 0:
                break
            if index >= len(kinds):
                raise ProtocolMismatch(f"unsolicited reply {_show(buffer[start:])}")
            kind = buffer[start]
            if kind == 43:  # '+'
                if not kinds[index] or buffer[start + 1:end] != b"OK":
                    raise ProtocolMismatch(f"unexpected reply {_show(buffer[start:end])}")
                start = end + 2
            elif kind == 36:  # '$'
                try:
                    length = int(buffer[start + 1:end])
                except ValueError:
                    raise ProtocolMismatch(f"invalid bulk length {_show(buffer[start:end])}") from None
                if kinds[index]:
                    raise ProtocolMismatch(f"SET answered with a bulk string {_show(buffer[start:end])}")
                if length < 0:
                    start = end + 2
                else:
                    if length > MAX_REPLY_BYTES:
                        raise ProtocolMismatch(f"bulk length {length} over the limit")
                    stop = end + 2 + length
                    if stop + 2 > size:
                        break
                    if buffer[stop:stop + 2] != b"\r\n":
                        raise ProtocolMismatch("bulk string not terminated by CRLF")
                    start = stop + 2
            elif kind == 95:  # '_' RESP3 null
                if kinds[index] or end != start + 1:
                    raise ProtocolMismatch(f"unexpected reply {_show(buffer[start:end])}")
                start = end + 2
            elif kind == 45:  # '-'
                line = buffer[start + 1:end]
                if _is_busy(line):
                    raise ServerBusy(line.decode(errors="replace"))
                self.error_replies += 1
                start = end + 2
            else:
                raise ProtocolMismatch(f"unexpected reply {_show(buffer[start:end])}")
            index += 1
            done += 1
        rest = buffer[start:]
        if len(rest) > MAX_REPLY_BYTES + 64:
            raise ProtocolMismatch(f"no complete reply in {len(rest)} bytes")
        self._buffer = rest
        self._next = index
        return done


def new_tcp_conversation(spec: WorkloadSpec, rng: random.Random) -> TcpConversation:
    """The conversation class for a TCP workload."""
    if spec.name == "echo":
        return EchoConversation(spec, rng)
    if spec.name == "kv":
        return KvConversation(spec, rng)
    if spec.name == "resp":
        return RespConversation(spec, rng)
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
        if ident in self._waiting:
            del self._waiting[ident]  # type: ignore[arg-type]
            return 1
        return 0
