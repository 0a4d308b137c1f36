"""The chapter's echo service: every line comes back uppercased.

    Server(EchoService(), port=0)          # or: sockworks serve echo

Lines end with ``\\n``. A line longer than ``--max-line`` gets ``ERROR: line
too long`` and the connection is closed; its tail is never echoed as a line of
its own. When the client half-closes, a final unterminated line is answered
too (transformed, without a newline added), then the connection closes.
"""

from __future__ import annotations

from collections.abc import Callable

from sockworks.core.config import DEFAULT_MAX_LINE
from sockworks.core.service import Output, Service, Session
from sockworks.protocols.lines import CLOSED, LINE_TOO_LONG, NEED_DATA, LineFramer

__all__ = ["DEFAULT_PORT", "EchoService", "EchoSession", "TRANSFORMS"]

#: The chapter's port (the command line's default).
DEFAULT_PORT = 9000

LINE_TOO_LONG_REPLY = b"ERROR: line too long\n"

TRANSFORMS: dict[str, Callable[[bytes], bytes]] = {
    "upper": bytes.upper,
    "none": lambda line: line,
}


class EchoSession(Session):
    """One connection: frame lines, answer each with its transformed copy."""

    __slots__ = ("_framer", "_transform")

    def __init__(self, max_line: int, transform: Callable[[bytes], bytes]) -> None:
        self._framer = LineFramer(max_line)
        self._transform = transform

    def on_data(self, data: bytes) -> Output:
        framer = self._framer
        framer.receive_data(data)
        replies: list[bytes] = []
        transform = self._transform
        while True:
            event = framer.next_event()
            if event is NEED_DATA:
                return Output(b"".join(replies))
            if event is LINE_TOO_LONG:
                replies.append(LINE_TOO_LONG_REPLY)
                return Output(b"".join(replies), close=True)
            assert isinstance(event, bytes)
            replies.append(transform(event) + b"\n")

    def on_eof(self) -> Output:
        framer = self._framer
        framer.receive_data(b"")
        replies: list[bytes] = []
        while True:
            event = framer.next_event()
            if event is CLOSED or event is NEED_DATA:
                if framer.trailing:
                    replies.append(self._transform(framer.trailing))
                return Output(b"".join(replies), close=True)
            if event is LINE_TOO_LONG:
                return Output(LINE_TOO_LONG_REPLY, close=True)
            assert isinstance(event, bytes)
            replies.append(self._transform(event) + b"\n")

    @property
    def busy(self) -> bool:
        return self._framer.buffered > 0

    @property
    def input_bytes(self) -> int:
        return self._framer.buffered


class EchoService(Service):
    """Echo every line, transformed (``upper`` as the chapter, or ``none``);
    a line over ``max_line`` bytes gets ``ERROR: line too long`` and a close."""

    name = "echo"
    default_model = "thread"

    def __init__(self, *, max_line: int = DEFAULT_MAX_LINE, transform: str = "upper") -> None:
        if transform not in TRANSFORMS:
            raise ValueError(f"transform must be one of {', '.join(TRANSFORMS)}, "
                             f"got {transform!r}")
        self.max_line = max_line
        self.transform = TRANSFORMS[transform]

    def new_session(self, peer: str) -> Session:
        return EchoSession(self.max_line, self.transform)
