"""The chapter's echo server: every line comes back uppercased.

    sockworks serve echo [--transform upper|none] [--max-line BYTES] [common flags]

Lines end with ``\\n``. A line longer than ``--max-line`` gets ``ERROR: line
too long`` and the connection is closed; its tail is never echoed as a line of
its own. When the client half-closes, a final unterminated line is answered
too (transformed, without a newline added), then the connection closes.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from sockworks.core.config import DEFAULT_MAX_LINE, Endpoint
from sockworks.core.service import Output, Service, Session
from sockworks.core.stats import ServerStats
from sockworks.protocols.lines import CLOSED, LINE_TOO_LONG, NEED_DATA, LineFramer

__all__ = ["EchoService", "HELP", "add_arguments", "main"]

HELP = "the chapter's uppercase echo server"

LINE_TOO_LONG_REPLY = b"ERROR: line too long\n"

TRANSFORMS: dict[str, Callable[[bytes], bytes]] = {
    "upper": bytes.upper,
    "none": lambda line: line,
}


class EchoSession(Session):
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


class EchoService(Service):
    """The echo server: every line comes back transformed (upper-cased by default)."""

    name = "echo"

    def __init__(self, *, max_line: int = DEFAULT_MAX_LINE, transform: str = "upper") -> None:
        self.max_line = max_line
        self.transform = TRANSFORMS[transform]

    def new_session(self, peer: str) -> Session:
        return EchoSession(self.max_line, self.transform)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from sockworks.cli.serve import add_tcp_arguments, positive_int
    from sockworks.models import MODELS

    add_tcp_arguments(parser, default_port=9000, models=tuple(MODELS), default_model="thread")
    parser.add_argument("--transform", choices=tuple(TRANSFORMS), default="upper",
                        help="what to do to each line (default upper, as the chapter)")
    parser.add_argument("--max-line", type=positive_int, default=DEFAULT_MAX_LINE,
                        metavar="BYTES", help=f"longest line (default {DEFAULT_MAX_LINE})")


def main(args: argparse.Namespace) -> int:
    from sockworks.core.logs import configure_logging
    from sockworks.core.server import run_server, settings_from_args

    configure_logging(args.log_level, args.log_file, args.log_format)
    service = EchoService(max_line=args.max_line, transform=args.transform)
    return run_server([Endpoint(args.host, args.port, service)], settings_from_args(args),
                      ServerStats())
