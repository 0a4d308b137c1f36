"""In-process CPU cost of one request on the thread models vs the chapter's server.

No sockets: the chapter's ``handle_client`` loop body (``buf += data``,
split, ``process_command``, encode) and sockworks' ``drive_connection``
(session + reply path) each get the same stream of one-request chunks (half
SETs, half GETs over 10,000 keys) from a fake ``recv`` and send to a list.
What is left out is identical for both: the recv/send system calls and the
GIL hand-offs around them. Best of ``--repeat``, CPU microseconds per request.

    .venv/bin/python benchmarks/thread_path.py
"""

from __future__ import annotations

import argparse
import importlib.util
import socket
import sys
import time
from pathlib import Path
from typing import Any

from sockworks.core.config import ServerSettings
from sockworks.core.stats import ServerStats
from sockworks.models.blocking import ConnectionRegistry, Tracked, drive_connection
from sockworks.services.kv import KvService
from sockworks.storage.embedded import open_embedded_store

CHAPTER = Path(__file__).parent / "chapter" / "kv_server.py"
REQUESTS = [b"GET key:%d\n" % (i % 10_000) if i % 2 else b"SET key:%d %s\n" % (i % 10_000,
                                                                               b"v" * 16)
            for i in range(1000)]


def load_chapter() -> Any:
    argv, sys.argv = sys.argv, [str(CHAPTER), "--port", "0"]  # it parses its own args
    try:
        spec = importlib.util.spec_from_file_location("chapter_kv", CHAPTER)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.argv = argv
    return module


def chapter_requests(chapter: Any, n: int) -> None:
    """The body of the chapter's handle_client loop, minus recv/sendall."""
    buf = b""
    sent: list[bytes] = []
    for i in range(n):
        buf += REQUESTS[i % 1000]
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            response = chapter.process_command(line.decode().strip())
            sent.append(response.encode() + b"\n")


def sockworks_requests(n: int) -> None:
    service = KvService(open_embedded_store(None, active_expiry=False))
    stats = ServerStats()
    settings = ServerSettings("thread", idle_timeout=0)
    service.attach(stats, settings)
    left, right = socket.socketpair()  # Tracked needs a socket; nothing is sent on it
    try:
        conn = Tracked(left, service, "127.0.0.1:1", stats)
        chunks = iter(range(n))

        def recv() -> bytes:
            index = next(chunks, None)
            return b"" if index is None else REQUESTS[index % 1000]

        sent: list[bytes] = []
        drive_connection(conn, ConnectionRegistry(), recv, sent.append, settings, stats)
    finally:
        left.close()
        right.close()
        service.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    chapter = load_chapter()
    best = {"chapter kv_server.py": float("inf"), "sockworks thread path": float("inf")}
    for _ in range(args.repeat):
        for name in best:
            started = time.process_time()
            if name.startswith("chapter"):
                chapter_requests(chapter, args.requests)
            else:
                sockworks_requests(args.requests)
            best[name] = min(best[name], (time.process_time() - started) / args.requests * 1e6)
    for name, us in best.items():
        print(f"{name:24} {us:5.2f} us CPU per request")


if __name__ == "__main__":
    main()
