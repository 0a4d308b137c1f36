"""Embed sockworks servers in a program, using only ``from sockworks import ...``.

For every model that can run inside a process with other threads (all of
``MODELS`` but ``FORKING_MODELS``), start two servers at once, each from a
thread of its own, on free ports (port 0: read the real ones from
``addresses``): an echo server and a key-value server with its RESP port.
Talk to each (echo, the KV text protocol, RESP through redis-py when it is
installed, raw RESP bytes otherwise), then stop both.

    python examples/embed.py        # exit status 0 when every check passed

Every wait is bounded: sockets have timeouts, threads are joined with one.
"""

from __future__ import annotations

import socket
import sys
import threading
from typing import Any

from sockworks import FORKING_MODELS, MODELS, EchoService, KvService, Server

TIMEOUT = 10.0

redis: Any
try:
    import redis
except ImportError:  # optional: raw RESP bytes then
    redis = None


def exchange(address: tuple[str, int], request: bytes, replies: int,
             greeting: bool = False) -> list[bytes]:
    """Send ``request`` and read ``replies`` lines (after the greeting line)."""
    with socket.create_connection(address, timeout=TIMEOUT) as sock, \
            sock.makefile("rb") as reader:
        if greeting:
            reader.readline(1024)
        sock.sendall(request)
        return [reader.readline(1024) for _ in range(replies)]


def check_echo(address: tuple[str, int]) -> None:
    lines = exchange(address, b"hello\nembedded world\n", 2)
    assert lines == [b"HELLO\n", b"EMBEDDED WORLD\n"], lines


def check_kv_text(address: tuple[str, int]) -> None:
    lines = exchange(address, b"SET city Lyon\r\nGET city\r\nINCR n\r\n", 3, greeting=True)
    assert lines == [b"OK\n", b"Lyon\n", b"1\n"], lines


def check_kv_resp(address: tuple[str, int]) -> None:
    host, port = address
    if redis is None:
        lines = exchange(address, b"*1\r\n$4\r\nPING\r\n*2\r\n$3\r\nGET\r\n$4\r\ncity\r\n", 3)
        assert lines == [b"+PONG\r\n", b"$4\r\n", b"Lyon\r\n"], lines
        return
    client = redis.Redis(host=host, port=port, socket_timeout=TIMEOUT)
    try:
        assert client.ping()
        assert client.get("city") == b"Lyon"  # the text port's SET: one store
        assert client.incr("n") == 2
    finally:
        client.close()


def start_in_threads(servers: list[Server]) -> None:
    """Start every server from a thread of its own, all at once."""
    errors: list[BaseException] = []

    def start(server: Server) -> None:
        try:
            server.start()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(server,)) for server in servers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT)
    if errors:
        raise errors[0]
    if not all(server.running for server in servers):
        raise RuntimeError("a server did not start in time")


def run(model: str) -> None:
    echo = Server(EchoService(), port=0, model=model)
    kv = Server(KvService(), port=0, resp_port=0, model=model)
    try:
        start_in_threads([echo, kv])
        check_echo(echo.addresses[0])
        text, resp = kv.addresses
        check_kv_text(text)
        check_kv_resp(resp)
    finally:
        echo.stop(timeout=TIMEOUT)  # no-ops when a server did not start
        kv.stop(timeout=TIMEOUT)
    assert not echo.running and not kv.running


def main() -> int:
    models = [model for model in MODELS if model not in FORKING_MODELS]
    failed = 0
    for model in models:
        try:
            run(model)
        except Exception as exc:
            failed += 1
            print(f"FAIL {model}: {type(exc).__name__}: {exc}", file=sys.stderr)
        else:
            print(f"ok   {model}: echo, kv text and RESP "
                  f"({'redis-py' if redis is not None else 'raw RESP'})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
