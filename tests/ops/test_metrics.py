"""Metrics, /healthz and /readyz over HTTP (issue #14, item 2).

Real processes with ``--metrics-port 0``; scraped over HTTP and parsed with
prometheus_client's own parser; the counters are compared with the traffic
the test sent. Readiness follows a real redis-server the test stops and
starts. Waits poll with a bounded deadline.
"""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import ServerProcess, spawn_server
from tests.redis_support import RedisServer, redis_server_fixture  # noqa: F401  (fixture)

pytestmark = pytest.mark.timeout(90)

METRICS_LINE = re.compile(rb"metrics on http://([\d.]+):(\d+)/metrics")


def metrics_url(server: ServerProcess) -> str:
    match = METRICS_LINE.search(server.output)
    assert match, server.output.decode(errors="replace")
    return f"http://{match.group(1).decode()}:{int(match.group(2))}"


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def scrape(base: str) -> dict[str, float]:
    status, text = get(base + "/metrics")
    assert status == 200
    return {sample.name: sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples if not sample.labels or sample.labels == {}} | {
        f"{sample.name}{{{','.join(f'{k}={v}' for k, v in sample.labels.items())}}}": sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples if sample.labels}


def wait_status(url: str, want: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    status = 0
    while time.monotonic() < deadline:
        status, _ = get(url)
        if status == want:
            return
        time.sleep(0.05)        # polling an HTTP probe: bounded by the deadline
    raise AssertionError(f"{url} answered {status}, not {want}, for {timeout}s")


@pytest.mark.parametrize("model", ["asyncio", "thread"])
def test_counters_match_the_traffic(model: str) -> None:
    server = spawn_server("serve", "kv", "--model", model, "--metrics-port", "0")
    try:
        base = metrics_url(server)
        assert get(base + "/healthz") == (200, "ok\n")
        assert get(base + "/readyz")[0] == 200
        clients, sets = 3, 50
        for c in range(clients):
            with server.connect() as conn:
                conn.recv(100)                                  # READY
                conn.sendall(b"".join(b"SET k%d-%d v\n" % (c, i) for i in range(sets))
                             + b"GET k0-0\nGET nope\nQUIT\n")
                received = b""
                while not received.endswith(b"BYE\n"):         # a round trip: all handled
                    chunk = conn.recv(65536)
                    assert chunk
                    received += chunk
        figures = scrape(base)
        assert figures["sockworks_connections_accepted_total"] == clients
        assert figures["sockworks_kv_commands_processed_total"] == clients * (sets + 3)
        assert figures["sockworks_kv_get_hits_total"] == clients
        assert figures["sockworks_kv_get_misses_total"] == clients
        assert figures["sockworks_kv_keys"] == clients * sets
        assert figures["sockworks_connections_refused_total{reason=max_connections}"] == 0
        assert get(base + "/nope")[0] == 404
    finally:
        server.stop()


@pytest.mark.redis
def test_readiness_follows_the_redis_backend(redis_server: RedisServer) -> None:
    server = spawn_server("serve", "kv", "--store", redis_server.url, "--metrics-port", "0")
    try:
        base = metrics_url(server)
        assert get(base + "/readyz")[0] == 200
        redis_server.kill()
        wait_status(base + "/readyz", 503)
        assert get(base + "/healthz")[0] == 200         # alive, just not ready
        redis_server.start()
        wait_status(base + "/readyz", 200)
    finally:
        server.stop()


def test_socketserver_fork_refuses_metrics() -> None:
    done = subprocess.run([sys.executable, "-m", "sockworks", "serve", "echo", "--model",
                           "socketserver-fork", "--port", "0", "--metrics-port", "0"],
                          capture_output=True, timeout=60, check=False)
    assert done.returncode == 2
    assert b"--metrics-port is not supported with --model socketserver-fork" in done.stderr


def stats(conn: socket.socket) -> dict[str, str]:
    """One STATS round trip on the KV text port."""
    conn.sendall(b"STATS\n")
    received = b""
    while b"STATS " not in received or not received.endswith(b"\n"):
        chunk = conn.recv(65536)
        assert chunk
        received += chunk
    line = received[received.index(b"STATS "):].decode().split()
    return dict(field.split("=", 1) for field in line[1:])


@pytest.mark.redis
def test_prefork_sums_over_workers(redis_server: RedisServer) -> None:
    """Connections land on different workers (SO_REUSEPORT); STATS on any of
    them, and the metrics, are the server-wide sums of what was sent."""
    server = spawn_server("serve", "kv", "--model", "prefork", "--workers", "3",
                          "--store", redis_server.url, "--metrics-port", "0")
    try:
        base = metrics_url(server)
        wait_status(base + "/readyz", 200)
        clients, sets = 12, 20
        pids: set[str] = set()
        for c in range(clients):
            with server.connect() as conn:
                conn.recv(100)                                  # READY
                conn.sendall(b"".join(b"SET k%d-%d v\n" % (c, i) for i in range(sets))
                             + b"GET k0-0\nGET nope\n")
                pids.add(stats(conn)["pid"])                    # replies all in: handled
        assert len(pids) > 1, "every connection landed on one worker"
        commands = clients * (sets + 3)                         # SETs, 2 GETs, STATS
        # Workers publish within 50 ms. Scraping adds no command (the metrics
        # endpoint is a process of its own), so wait, bounded, until the sum
        # is complete and every connection closed; then it is exact.
        deadline = time.monotonic() + 10
        while True:
            metrics = scrape(base)
            if (metrics["sockworks_kv_commands_processed_total"] == commands
                    and metrics["sockworks_connections_current"] == 0) \
                    or time.monotonic() > deadline:
                break
        assert metrics["sockworks_kv_commands_processed_total"] == commands
        assert metrics["sockworks_kv_get_hits_total"] == clients
        assert metrics["sockworks_kv_get_misses_total"] == clients
        assert metrics["sockworks_connections_accepted_total"] == clients
        assert metrics["sockworks_connections_current"] == 0
        # STATS on any worker: the others' published figures plus its own.
        with server.connect() as conn:
            conn.recv(100)
            figures = stats(conn)
        assert int(figures["commands_processed"]) == commands + 1
        assert int(figures["connections_total"]) == clients + 1
        assert int(figures["get_hits"]) == clients
        assert int(figures["get_misses"]) == clients
        assert int(figures["keys"]) == clients * sets
        server.signal(signal.SIGTERM)
        assert server.wait() == 0
    finally:
        server.stop()


def test_without_prometheus_client_a_clear_error() -> None:
    code = ("import sys; sys.modules['prometheus_client'] = None\n"
            "from sockworks.cli import main\n"
            "sys.exit(main(['serve', 'echo', '--port', '0', '--metrics-port', '0']))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60,
                          check=False)
    assert done.returncode == 2
    assert b"pip install 'sockworks[metrics]'" in done.stderr
