"""A key-expiring counter service: the example of docs/writing-a-service.md.

One request per line (``\\n`` or ``\\r\\n``), one reply line per request:

    INCR name   -> the new count; a count expires TTL seconds after its last INCR
    GET name    -> the count (0 when unknown or expired)
    QUIT        -> BYE, then the server closes the connection

Bad input gets one ``ERROR: ...`` line and the connection stays usable; a
line over the limit gets ``ERROR: line too long`` and a close. Run it:

    python examples/counter/counter.py --port 9100 --model asyncio
"""

from __future__ import annotations

import argparse
import logging
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from sockworks import FORKING_MODELS, MODELS, LineFramer, Output, Server, Service, Session

#: Longest counter name, in bytes.
MAX_NAME = 64
#: Longest request line: "INCR " + a name + "\r", with room to spare. Nothing
#: longer can be a valid request, and it bounds what one connection buffers.
MAX_LINE = 256

LINE_TOO_LONG = b"ERROR: line too long\n"


class CounterTable:
    """name -> count, each count expiring ``ttl`` seconds after its last INCR.

    Shared by every session, and the thread and pool models run sessions on
    several threads at once: every access holds the lock. Entries are kept
    in order of their last INCR, which is also the order of their deadlines
    (one ttl for all), so expiry pops from the front and stops at the first
    live entry.
    """

    def __init__(self, ttl: float, max_counters: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self.max_counters = max_counters
        self._clock = clock
        self._lock = threading.Lock()
        self._counts: OrderedDict[bytes, tuple[int, float]] = OrderedDict()

    def incr(self, name: bytes) -> int | None:
        """The new count, or None when ``name`` is new and the table is full."""
        with self._lock:
            now = self._clock()
            self._expire(now)
            entry = self._counts.get(name)
            if entry is None:
                if len(self._counts) >= self.max_counters:
                    return None
                count = 1
            else:
                count = entry[0] + 1
                self._counts.move_to_end(name)
            self._counts[name] = (count, now + self.ttl)
            return count

    def get(self, name: bytes) -> int:
        with self._lock:
            self._expire(self._clock())
            entry = self._counts.get(name)
            return 0 if entry is None else entry[0]

    def __len__(self) -> int:
        with self._lock:
            self._expire(self._clock())
            return len(self._counts)

    def _expire(self, now: float) -> None:
        # The lock is held. At most one pass over the table.
        counts = self._counts
        for _ in range(len(counts)):
            first = next(iter(counts))
            if counts[first][1] > now:
                return
            del counts[first]


class CounterSession(Session):
    """One connection: bytes in, replies out. No sockets, no threads."""

    def __init__(self, table: CounterTable, max_line: int = MAX_LINE) -> None:
        self._table = table
        self._framer = LineFramer(max_line)
        self._closing = False

    def on_data(self, data: bytes) -> Output:
        if self._closing:  # QUIT or an over-long line: ignore what follows
            return Output(close=True)
        self._framer.receive_data(data)
        replies: list[bytes] = []
        # Earlier lines were all answered, so every line left needs one of
        # the newlines in ``data``: at most that many lines, then one event.
        for _ in range(data.count(b"\n") + 1):
            event = self._framer.next_event()
            if event is LineFramer.NEED_DATA:
                break
            if event is LineFramer.LINE_TOO_LONG:
                self._closing = True
                replies.append(LINE_TOO_LONG)
                break
            assert isinstance(event, bytes)
            replies.append(self.handle(event))
            if self._closing:
                break
        return Output(b"".join(replies), close=self._closing)

    def handle(self, line: bytes) -> bytes:
        """The reply to one request line (without its newline)."""
        words = line.split()  # also drops the \r of \r\n
        if not words:
            return b"ERROR: empty line\n"
        command, args = words[0].upper(), words[1:]
        if command == b"QUIT":
            self._closing = True
            return b"BYE\n"
        if command not in (b"INCR", b"GET"):
            return b"ERROR: unknown command (INCR, GET, QUIT)\n"
        if len(args) != 1:
            return b"ERROR: usage: " + command + b" name\n"
        name = args[0]
        if len(name) > MAX_NAME:
            return b"ERROR: name longer than %d bytes\n" % MAX_NAME
        if command == b"GET":
            return b"%d\n" % self._table.get(name)
        count = self._table.incr(name)
        if count is None:
            return b"ERROR: too many counters\n"
        return b"%d\n" % count

    @property
    def busy(self) -> bool:
        # Part of a request is buffered: graceful shutdown lets it finish.
        return not self._closing and self._framer.buffered > 0


class CounterService(Service):
    """The counters, shared by all connections; a session per connection."""

    name = "counter"
    default_model = "thread"

    def __init__(self, *, ttl: float = 60.0, max_counters: int = 10_000,
                 max_line: int = MAX_LINE, clock: Callable[[], float] = time.monotonic) -> None:
        if not ttl > 0:
            raise ValueError(f"ttl must be > 0, got {ttl!r}")
        if max_counters < 1:
            raise ValueError(f"max_counters must be >= 1, got {max_counters!r}")
        self.table = CounterTable(ttl, max_counters, clock)
        self.max_line = max_line

    def new_session(self, peer: str) -> CounterSession:
        return CounterSession(self.table, self.max_line)


#: The counters live in this process's memory: a forking model would give
#: every child its own copy, and each would count alone.
THREADED_MODELS = [model for model in MODELS if model not in FORKING_MODELS]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The key-expiring counter service.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9100, help="0 picks a free port")
    parser.add_argument("--model", default="thread", choices=THREADED_MODELS)
    parser.add_argument("--ttl", type=float, default=60.0, help="seconds (default 60)")
    parser.add_argument("--max-counters", type=int, default=10_000)
    args = parser.parse_args(argv)
    # The server logs "listening on HOST:PORT (model=NAME)" once it accepts.
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        service = CounterService(ttl=args.ttl, max_counters=args.max_counters)
        server = Server(service, host=args.host, port=args.port, model=args.model)
        server.serve_forever()  # until SIGINT/SIGTERM, then a graceful stop
    except (OSError, ValueError) as exc:
        logging.getLogger("counter").error("cannot serve: %s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
