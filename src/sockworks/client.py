"""A small blocking client for the KV text protocol (docs/protocol.md).

It is also the reference for a correct client of that protocol: it reads the
``READY`` greeting before sending anything, frames replies on ``\\n`` with a
bound on their length, never sends a request containing a newline (it would
become two requests), and tells "the server closed the connection" apart from
an ``ERROR:`` reply::

    with KvClient("127.0.0.1", 9000) as kv:
        kv.set(b"greeting", b"hello world")
        kv.get(b"greeting")            # b"hello world"
        kv.incr(b"visits")             # 1
        kv.pipeline([b"GET a", b"GET b"])   # [b"NOT_FOUND", b"NOT_FOUND"]

    KvClient("db.internal", 9000, password=secret, username="app")  # AUTH first

The protocol itself has one ambiguity worth knowing: a stored value that reads
``NOT_FOUND`` or starts with ``ERROR: `` cannot be told apart from those
replies; use ``exists()`` or the RESP port when that matters.
"""

from __future__ import annotations

import logging
import select
import socket
import ssl
from collections.abc import Iterable
from types import TracebackType
from typing import Self

__all__ = [
    "MAX_REPLY_LINE",
    "ConnectionClosed",
    "KvClient",
    "KvClientError",
    "ProtocolError",
    "ServerError",
    "parse_stats",
]

logger = logging.getLogger(__name__)

#: Longest reply line accepted. A text-protocol value is bounded by the
#: server's --max-line (64 KiB by default), but a value stored through the
#: RESP port may be larger; 64 MiB leaves room and still stops a broken or
#: hostile server from growing our buffer without end.
MAX_REPLY_LINE = 64 * 1024 * 1024

#: recv() size: large enough for a burst of pipelined replies in one call.
RECV_SIZE = 256 * 1024


class KvClientError(Exception):
    """Base class of this client's errors."""


class ConnectionClosed(KvClientError):
    """The server closed the connection before a complete reply."""


class ProtocolError(KvClientError):
    """The server sent something that is not this protocol."""


class ServerError(KvClientError):
    """The server answered ``ERROR: <message>``; ``str(exc)`` is the message."""


def _check_line(line: bytes) -> bytes:
    if b"\n" in line or b"\r" in line:
        raise ValueError("a request cannot contain a newline or carriage return")
    return line


def _as_bytes(part: bytes | str | int) -> bytes:
    if isinstance(part, bytes):
        return part
    if isinstance(part, int):
        return b"%d" % part
    return part.encode("utf-8")


def _connect(host: str, port: int, timeout: float | None, tls: ssl.SSLContext | None,
             unix_path: str | None) -> socket.socket:
    if unix_path is not None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(unix_path)
        except BaseException:
            sock.close()
            raise
    else:
        sock = socket.create_connection((host, port), timeout=timeout)
    if tls is None:
        return sock
    try:
        return tls.wrap_socket(sock, server_hostname=host)
    except BaseException:
        sock.close()
        raise


class KvClient:
    """One connection to a KV text-protocol server (not thread-safe)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 9000, *,
                 timeout: float | None = 10.0, max_reply: int = MAX_REPLY_LINE,
                 tls: ssl.SSLContext | None = None, unix_path: str | None = None,
                 password: bytes | str | None = None,
                 username: bytes | str | None = None) -> None:
        """Connect to ``host``:``port`` (over TLS with ``tls``, the server's
        name checked against ``host``), or to the UNIX socket ``unix_path``;
        with ``password`` (and ``username``), AUTH before anything else."""
        self.host = host
        self.port = port
        self.max_reply = max_reply
        self._buf = bytearray()
        self._sock: socket.socket | None = _connect(host, port, timeout, tls, unix_path)
        try:
            greeting = self.read_line()
            if greeting.startswith(b"ERROR: "):
                raise ServerError(greeting[7:].decode("utf-8", "replace"))
            if greeting != b"READY":
                raise ProtocolError(f"unexpected greeting {greeting[:80]!r} (not a KV server?)")
            if password is not None:
                # AUTH [user] password before anything else; ServerError if refused.
                words = [b"AUTH"] + ([_as_bytes(username)] if username is not None else [])
                self._checked(*words, _as_bytes(password))
        except BaseException:
            self.close()
            raise

    # -- plumbing --------------------------------------------------------

    @property
    def sock(self) -> socket.socket:
        if self._sock is None:
            raise ConnectionClosed("the connection is closed")
        return self._sock

    def send_line(self, line: bytes) -> None:
        """Send one request line (the ``\\n`` is added)."""
        self.sock.sendall(_check_line(line) + b"\n")

    def read_line(self) -> bytes:
        """The next reply line, without its ``\\n`` (and a ``\\r`` before it)."""
        buf = self._buf
        scanned = 0
        while True:
            newline = buf.find(b"\n", scanned)
            if newline >= 0:
                line = bytes(buf[:newline])
                del buf[: newline + 1]
                return line[:-1] if line.endswith(b"\r") else line
            if len(buf) > self.max_reply:
                raise ProtocolError(f"reply longer than {self.max_reply} bytes")
            scanned = len(buf)
            try:
                chunk = self.sock.recv(RECV_SIZE)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                raise ConnectionClosed("the server closed the connection")
            buf += chunk

    def peer_closed(self) -> bool:
        """True when the server has already closed this connection (idle
        timeout, shutdown) while we were not waiting for a reply. Checked
        before sending, so a reconnect never risks running a command twice."""
        if self._sock is None:
            return True
        if self._buf:
            return False
        readable, _, _ = select.select([self._sock], [], [], 0)
        if not readable:
            return False
        try:
            # The plain socket's call (a TLS socket refuses flags): peeks at
            # the bytes on the wire, enough to see a close.
            return socket.socket.recv(self._sock, 1, socket.MSG_PEEK) == b""
        except (ConnectionResetError, BlockingIOError):
            return True

    def execute(self, line: bytes) -> bytes:
        """Send one request line and return its reply line, whatever it is."""
        self.send_line(line)
        return self.read_line()

    def command(self, *parts: bytes | str | int) -> bytes:
        """``command("SET", key, value)``: the parts joined by spaces."""
        return self.execute(b" ".join(_as_bytes(part) for part in parts))

    def pipeline(self, lines: Iterable[bytes]) -> list[bytes]:
        """Send every line in one write, then read one reply per line.

        Keep pipelines to what fits in the socket buffers (thousands of small
        commands): a client that writes megabytes without reading can
        deadlock with a server that stops reading while its replies are not
        being consumed.
        """
        batch = [_check_line(line) for line in lines]
        if not batch:
            return []
        self.sock.sendall(b"\n".join(batch) + b"\n")
        return [self.read_line() for _ in batch]

    def close(self) -> None:
        if self._sock is not None:
            sock, self._sock = self._sock, None
            sock.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # -- typed commands --------------------------------------------------

    def _checked(self, *parts: bytes | str | int) -> bytes:
        reply = self.command(*parts)
        if reply.startswith(b"ERROR: "):
            raise ServerError(reply[7:].decode("utf-8", "replace"))
        return reply

    def _integer(self, *parts: bytes | str | int) -> int:
        reply = self._checked(*parts)
        try:
            return int(reply)
        except ValueError:
            raise ProtocolError(f"expected an integer, got {reply[:80]!r}") from None

    def ping(self) -> None:
        if self._checked("PING") != b"PONG":
            raise ProtocolError("PING did not answer PONG")

    def set(self, key: bytes | str, value: bytes | str) -> None:
        if self._checked("SET", key, value) != b"OK":
            raise ProtocolError("SET did not answer OK")

    def get(self, key: bytes | str) -> bytes | None:
        reply = self._checked("GET", key)
        return None if reply == b"NOT_FOUND" else reply

    def delete(self, key: bytes | str) -> bool:
        return self._checked("DEL", key) == b"DELETED"

    def exists(self, *keys: bytes | str) -> int:
        return self._integer("EXISTS", *keys)

    def incr(self, key: bytes | str, by: int = 1) -> int:
        return self._integer("INCR", key) if by == 1 else self._integer("INCRBY", key, by)

    def expire(self, key: bytes | str, seconds: int) -> bool:
        return self._integer("EXPIRE", key, seconds) == 1

    def ttl(self, key: bytes | str) -> int:
        return self._integer("TTL", key)

    def persist(self, key: bytes | str) -> bool:
        return self._integer("PERSIST", key) == 1

    def dbsize(self) -> int:
        return self._integer("DBSIZE")

    def stats(self) -> dict[str, str]:
        """STATS as a dict of name -> value text (docs/protocol.md)."""
        return parse_stats(self._checked("STATS"))

    def compact(self) -> str:
        return self._checked("COMPACT").decode("utf-8", "replace")

    def quit(self) -> None:
        """Say goodbye (the server answers BYE and closes), then close."""
        try:
            if self.sock and self.execute(b"QUIT") != b"BYE":
                raise ProtocolError("QUIT did not answer BYE")
        finally:
            self.close()


def parse_stats(reply: bytes) -> dict[str, str]:
    """``STATS a=1 b=2`` -> {"a": "1", "b": "2"}."""
    words = reply.decode("utf-8", "replace").split()
    if not words or words[0] != "STATS":
        raise ProtocolError(f"not a STATS reply: {reply[:80]!r}")
    fields: dict[str, str] = {}
    for word in words[1:]:
        name, sep, value = word.partition("=")
        if not sep:
            raise ProtocolError(f"malformed STATS field {word!r}")
        fields[name] = value
    return fields
