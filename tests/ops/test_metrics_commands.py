"""Commands by name, errors by name and the processing-time histogram (issue #14, item 2).

Real server processes with ``--metrics-port 0``, scraped over HTTP and parsed
with prometheus_client's parser; the counts are compared with the requests
the test sent, on the text port and the RESP port, under asyncio, thread
and prefork (whose figures are the sums over its workers). Every exchange
ends on a round trip, so what was sent has been handled when scraped.
"""

from __future__ import annotations

import socket
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import ServerProcess, spawn_server
from tests.ops.test_metrics import get, metrics_url
from tests.redis_support import RedisServer, redis_server_fixture  # noqa: F401  (fixture)

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def samples(base: str) -> Samples:
    """One scrape: every sample by (name, labels), whatever the label order."""
    status, text = get(base + "/metrics")
    assert status == 200
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def value(metrics: Samples, name: str, **labels: str) -> float:
    return metrics.get((name, frozenset(labels.items())), 0.0)

pytestmark = pytest.mark.timeout(90)


def read_until(conn: socket.socket, end: bytes) -> bytes:
    received = b""
    while not received.endswith(end):
        chunk = conn.recv(65536)
        assert chunk, received
        received += chunk
    return received


def text_traffic(server: ServerProcess, sets: int) -> None:
    """``sets`` SETs, 2 GETs, an INCR on a non-number (an error), an unknown
    command (an error) and QUIT, in one pipelined chunk."""
    with server.connect() as conn:
        read_until(conn, b"\n")                                  # READY
        conn.sendall(b"".join(b"SET k%d v\n" % i for i in range(sets))
                     + b"GET k0\nGET nope\nINCR k0\nFROB x\nQUIT\n")
        read_until(conn, b"BYE\n")


def resp_traffic(server: ServerProcess, sets: int) -> None:
    """``sets`` SETs, one GET, one PING and one wrong-arity GET, then QUIT."""
    with server.connect(index=1) as conn:
        conn.sendall(b"".join(b"*3\r\n$3\r\nSET\r\n$2\r\nr%d\r\n$1\r\nv\r\n" % (i % 10)
                              for i in range(sets))
                     + b"*2\r\n$3\r\nGET\r\n$2\r\nr0\r\n*1\r\n$4\r\nPING\r\n"
                     + b"*1\r\n$3\r\nGET\r\n*1\r\n$4\r\nQUIT\r\n")
        read_until(conn, b"+OK\r\n" if sets == 0 else b"command\r\n+OK\r\n")


def check(metrics: Samples, clients: int, sets: int) -> None:
    def cmd(service: str, name: str, kind: str = "commands") -> float:
        return value(metrics, f"sockworks_{kind}_total", service=service, cmd=name)

    assert cmd("kv", "set") == clients * sets
    assert cmd("kv", "get") == clients * 2
    assert cmd("kv", "incr") == clients
    assert cmd("kv", "quit") == clients
    assert cmd("kv", "other") == clients                        # FROB
    assert cmd("kv", "incr", "command_errors") == clients
    assert cmd("kv", "other", "command_errors") == clients
    assert cmd("kv", "set", "command_errors") == 0
    assert cmd("resp", "set") == clients * sets
    assert cmd("resp", "get") == clients * 2                    # one good, one wrong arity
    assert cmd("resp", "ping") == clients
    assert cmd("resp", "get", "command_errors") == clients
    for service in ("kv", "resp"):
        name = "sockworks_command_duration_seconds"
        count = value(metrics, name + "_count", service=service)
        inf = value(metrics, name + "_bucket", service=service, le="+Inf")
        assert count == inf >= clients                          # at least a chunk each
        assert value(metrics, name + "_sum", service=service) > 0


@pytest.mark.parametrize("model", ["asyncio", "thread"])
def test_commands_by_name(model: str) -> None:
    server = spawn_server("serve", "kv", "--model", model, "--resp-port", "0",
                          "--metrics-port", "0", expect_listeners=2)
    try:
        base = metrics_url(server)
        clients, sets = 3, 20
        for _ in range(clients):
            text_traffic(server, sets)
            resp_traffic(server, sets)
        check(samples(base), clients, sets)
    finally:
        server.stop()


@pytest.mark.redis
def test_prefork_sums_commands_over_workers(redis_server: RedisServer) -> None:
    """Prefork needs a store shared by its workers: a real redis-server."""
    server = spawn_server("serve", "kv", "--model", "prefork", "--workers", "3",
                          "--store", redis_server.url,
                          "--resp-port", "0", "--metrics-port", "0", expect_listeners=2)
    try:
        base = metrics_url(server)
        clients, sets = 12, 10
        for _ in range(clients):
            text_traffic(server, sets)
            resp_traffic(server, sets)
        # Workers publish every 50 ms: poll, bounded, until the sums are in.
        deadline = time.monotonic() + 10
        while True:
            metrics = samples(base)
            done = (value(metrics, "sockworks_commands_total", service="resp", cmd="ping")
                    == clients == value(metrics, "sockworks_commands_total", service="kv",
                                        cmd="quit"))
            if done or time.monotonic() > deadline:
                break
        check(metrics, clients, sets)
    finally:
        server.stop()
