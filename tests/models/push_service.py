"""A line service that uses ``ClientHandle.deliver``, for the conformance suite.

Run as ``python -m tests.models.push_service MODEL [--limit 'normal 1mb 0 0']``
(the forking models need a main thread of their own). Commands, one a line:

* ``PING`` -> ``PONG``;
* ``PUSH n`` -> ``OK``, and another thread delivers ``push 0`` ... ``push n-1``;
* ``WAIT`` parks the session: lines after it are held (the model keeps
  reading them), except ``KICK``, which makes another thread deliver
  ``woken``, unpark it and wake it: the held lines then run, after ``woken``;
* ``CLASS name`` sets the client's output-limit class (``pubsub``);
* ``FLOOD size`` makes another thread deliver ``size``-byte chunks until a
  delivery is refused (the output limit), then logs ``flood refused after N``;
* at shutdown a parked session says ``stopped``.

Every delivery comes from a thread that is not the model's, as a pusher on
another connection would.
"""

from __future__ import annotations

import argparse
import logging
import sys
import threading

from sockworks import Output, Server, Service, Session
from sockworks.core.limits import OutputLimits

logger = logging.getLogger("push_service")

#: Chunks a FLOOD tries at most (it stops at the first refused one).
MAX_FLOOD_CHUNKS = 100_000


class PushSession(Session):
    def __init__(self) -> None:
        self.buffer = b""
        self.held: list[bytes] = []
        self.parked = False
        self.lock = threading.Lock()

    @property
    def expects_deliveries(self) -> bool:
        return self.parked

    @property
    def backlog(self) -> bool:
        return not self.parked and bool(self.held)

    @property
    def input_bytes(self) -> int:
        return len(self.buffer) + sum(map(len, self.held))

    def on_data(self, data: bytes) -> Output:
        self.buffer += data
        *lines, self.buffer = self.buffer.split(b"\n")
        with self.lock:
            self.held.extend(lines)
        return self.resume()

    def resume(self) -> Output:
        replies: list[bytes] = []
        while True:
            with self.lock:
                if not self.held:
                    break
                if self.parked:
                    if b"KICK" in self.held:
                        self.held.remove(b"KICK")
                        threading.Thread(target=self._wake, daemon=True).start()
                    break
                line = self.held.pop(0)
            replies.append(self._run(line))
        return Output(b"".join(replies))

    def _run(self, line: bytes) -> bytes:
        word, _, arg = line.strip().partition(b" ")
        handle = self.client
        assert handle is not None
        if word == b"PING":
            return b"PONG\n"
        if word == b"WAIT":
            self.parked = True
            return b""
        if word == b"PUSH":
            count = int(arg)

            def push() -> None:
                for i in range(count):
                    handle.deliver(b"push %d\n" % i)

            threading.Thread(target=push, daemon=True).start()
            return b"OK\n"
        if word == b"CLASS":  # as a session that subscribes sets "pubsub"
            handle.output_class = arg.decode()
            return b"OK\n"
        if word == b"FLOOD":
            chunk = b"x" * int(arg)

            def flood() -> None:
                for i in range(MAX_FLOOD_CHUNKS):
                    if not handle.deliver(chunk):
                        logger.warning("flood refused after %d", i)
                        return

            threading.Thread(target=flood, daemon=True).start()
            return b""
        return b"ERROR\n"

    def _wake(self) -> None:
        assert self.client is not None
        with self.lock:
            self.client.deliver(b"woken\n")  # before the held lines can run
            self.parked = False
        self.client.wake()  # after the state change: the held lines run now

    def on_stop(self) -> Output:
        return Output(b"stopped\n") if self.parked else Output()


class PushService(Service):
    name = "push"

    def new_session(self, peer: str) -> Session:
        return PushSession()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("--limit", default=None)
    parser.add_argument("--grace", type=float, default=10.0)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    limits = OutputLimits.parse(args.limit) if args.limit else OutputLimits()
    server = Server(PushService(), model=args.model, port=args.port, grace=args.grace,
                    client_output_buffer_limit=limits,
                    workers=2 if args.model == "prefork" else None)
    server.serve_forever()


if __name__ == "__main__":
    main()
