"""Newline-delimited framing with a hard limit on line length.

The framer buffers received bytes and hands out complete lines. A line longer
than ``max_line`` (the terminating newline not counted) is a protocol error:
the framer reports :data:`LINE_TOO_LONG` once and then refuses all further
input, so the tail of an over-long line can never be mistaken for a new
command (the request-smuggling trap; Redis closes the connection the same way
when an inline request exceeds PROTO_INLINE_MAX_SIZE).

    framer = LineFramer(max_line=65536)
    framer.receive_data(b"SET a 1\\nGET")
    framer.next_event()   # b"SET a 1"
    framer.next_event()   # NEED_DATA  (b"GET" is buffered)
    framer.receive_data(b"")  # peer closed
    framer.next_event()   # CLOSED (an unterminated tail is in framer.trailing)
"""

from __future__ import annotations

import enum

__all__ = ["LineFramer", "NEED_DATA", "LINE_TOO_LONG", "CLOSED", "FramerEvent"]


class _Sentinel(enum.Enum):
    NEED_DATA = "NEED_DATA"
    LINE_TOO_LONG = "LINE_TOO_LONG"
    CLOSED = "CLOSED"


NEED_DATA = _Sentinel.NEED_DATA
LINE_TOO_LONG = _Sentinel.LINE_TOO_LONG
CLOSED = _Sentinel.CLOSED

FramerEvent = bytes | _Sentinel


class LineFramer:
    """Split a byte stream into lines (without the ``\\n``)."""

    __slots__ = ("max_line", "_buf", "_pos", "_scanned", "_eof", "_failed", "trailing")

    #: The events besides a line, also reachable from the public class
    #: (``event is LineFramer.NEED_DATA``) for code that imports only ``sockworks``.
    NEED_DATA = NEED_DATA
    LINE_TOO_LONG = LINE_TOO_LONG
    CLOSED = CLOSED

    def __init__(self, max_line: int) -> None:
        if max_line < 1:
            raise ValueError("max_line must be >= 1")
        self.max_line = max_line
        self._buf = bytearray()
        self._pos = 0          # start of the unconsumed data in _buf
        self._scanned = 0      # bytes after _pos already known to hold no newline
        self._eof = False
        self._failed = False
        #: At CLOSED: bytes the peer sent after its last newline (not a line).
        self.trailing = b""

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned as lines."""
        return len(self._buf) - self._pos

    def receive_data(self, data: bytes) -> None:
        """Add received bytes; ``b""`` means the peer closed its side."""
        if self._failed:
            return
        if not data:
            self._eof = True
            return
        if self._eof:
            raise RuntimeError("data received after end of stream")
        # Compact once consumed lines dominate, so memory stays bounded.
        if self._pos and self._pos > len(self._buf) // 2:
            del self._buf[: self._pos]
            self._pos = 0
        self._buf += data

    def next_event(self) -> FramerEvent:
        """The next complete line, or NEED_DATA, LINE_TOO_LONG or CLOSED."""
        if self._failed:
            return LINE_TOO_LONG
        buf = self._buf
        start = self._pos
        newline = buf.find(b"\n", start + self._scanned)
        if newline < 0:
            pending = len(buf) - start
            if pending > self.max_line:
                return self._fail()
            if self._eof:
                self.trailing = bytes(buf[start:])
                del buf[:]
                self._pos = self._scanned = 0
                return CLOSED
            self._scanned = pending
            return NEED_DATA
        if newline - start > self.max_line:
            return self._fail()
        line = bytes(buf[start:newline])
        self._pos = newline + 1
        self._scanned = 0
        return line

    def _fail(self) -> _Sentinel:
        self._failed = True
        del self._buf[:]
        self._pos = self._scanned = 0
        return LINE_TOO_LONG
