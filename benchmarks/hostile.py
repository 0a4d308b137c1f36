"""A second client's PING p99 while hostile clients sit on ``serve kv`` (issue #10).

Scenarios, for each model given (loopback only; bounded in count and time;
stops by itself):

* ``loris``: 1,000 connections that each sent half a request;
* ``nonreader``: one client pipelines 1,500 GETs of a 1 MB value and never reads.

Usage: ``.venv/bin/python benchmarks/hostile.py [--models asyncio thread] [--pings 2000]``
"""

from __future__ import annotations

import argparse
import socket
import time

from sockworks import Server
from sockworks.protocols.resp import encode_command
from sockworks.services.kv import KvService

PING = encode_command([b"PING"])


def p99_ping(port: int, count: int) -> float:
    """Milliseconds: the 99th percentile of ``count`` PING round trips."""
    times = []
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for _ in range(count):
            start = time.perf_counter()
            sock.sendall(PING)
            reply = b""
            while not reply.endswith(b"\r\n"):
                reply += sock.recv(64)
            times.append(time.perf_counter() - start)
    times.sort()
    return times[int(len(times) * 0.99)] * 1000


def run(model: str, pings: int) -> dict[str, float]:
    results = {}
    with Server(KvService(), resp_port=0, model=model, max_connections=1100,
                idle_timeout=60) as server:
        port = server.addresses[1][1]
        results["baseline"] = p99_ping(port, pings)
        loris = []
        for _ in range(1000):
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            sock.sendall(b"*3\r\n$3\r\nSET\r\n$1\r\nk")
            loris.append(sock)
        results["loris"] = p99_ping(port, pings)
        for sock in loris:
            sock.close()
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(encode_command([b"SET", b"big", b"v" * 1_000_000]))
            sock.recv(16)
        hostile = socket.socket()
        hostile.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        hostile.connect(("127.0.0.1", port))
        hostile.sendall(encode_command([b"GET", b"big"]) * 1500)
        results["nonreader"] = p99_ping(port, pings)
        hostile.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["asyncio", "thread"])
    parser.add_argument("--pings", type=int, default=2000)
    args = parser.parse_args()
    print("| model | PING p99 alone (ms) | with 1,000 slow-loris (ms) | with a non-reader "
          "pipelining 1,500 x 1 MB GET (ms) |")
    print("|---|---|---|---|")
    for model in args.models:
        r = run(model, args.pings)
        print(f"| {model} | {r['baseline']:.3f} | {r['loris']:.3f} | {r['nonreader']:.3f} |")


if __name__ == "__main__":
    main()
