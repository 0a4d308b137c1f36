"""Bytes in/out and the limit closes as metrics (issue #14, item 2).

Real server processes scraped over HTTP; bytes are compared with exactly
what the test sent and received; each limit close (a half request at the
idle timeout, a reply over the output limit, a peer that stops reading for
--send-timeout) is provoked for real and waited for with a bounded
deadline.
"""

from __future__ import annotations

import socket
import time

import pytest

from tests.conftest import spawn_server
from tests.ops.test_metrics import metrics_url
from tests.ops.test_metrics_commands import read_until, samples, value

pytestmark = pytest.mark.timeout(90)


def wait_for(base: str, name: str, want: float, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    got = 0.0
    while time.monotonic() < deadline:
        got = value(samples(base), name)
        if got >= want:
            return
        time.sleep(0.05)        # polling a counter: bounded by the deadline
    raise AssertionError(f"{name} stayed at {got}, wanted {want}")


@pytest.mark.parametrize("model", ["asyncio", "thread"])
def test_bytes_in_and_out(model: str) -> None:
    server = spawn_server("serve", "kv", "--model", model, "--resp-port", "0",
                          "--metrics-port", "0", expect_listeners=2)
    try:
        base = metrics_url(server)
        text_sent = text_received = resp_sent = resp_received = 0
        for i in range(3):
            with server.connect() as conn:
                text_received += len(read_until(conn, b"\n"))       # READY
                request = b"SET k%d hello\nGET k%d\nQUIT\n" % (i, i)
                conn.sendall(request)
                text_sent += len(request)
                text_received += len(read_until(conn, b"BYE\n"))
            with server.connect(index=1) as conn:
                request = b"*2\r\n$3\r\nGET\r\n$2\r\nk0\r\n*1\r\n$4\r\nQUIT\r\n"
                conn.sendall(request)
                resp_sent += len(request)
                resp_received += len(read_until(conn, b"+OK\r\n"))
        metrics = samples(base)
        assert value(metrics, "sockworks_received_bytes_total", service="kv") == text_sent
        assert value(metrics, "sockworks_sent_bytes_total", service="kv") == text_received
        assert value(metrics, "sockworks_received_bytes_total", service="resp") == resp_sent
        assert value(metrics, "sockworks_sent_bytes_total", service="resp") == resp_received
    finally:
        server.stop()


@pytest.mark.parametrize("model", ["asyncio", "thread"])
def test_half_request_at_the_idle_timeout(model: str) -> None:
    server = spawn_server("serve", "kv", "--model", model, "--idle-timeout", "0.3",
                          "--metrics-port", "0")
    try:
        base = metrics_url(server)
        with server.connect() as conn:
            read_until(conn, b"\n")
            conn.sendall(b"SET k")                          # half a request
            conn.settimeout(10)
            while conn.recv(4096):                          # until the server closes
                pass
        wait_for(base, "sockworks_connections_closed_deadline_total", 1)
        assert value(samples(base), "sockworks_connections_closed_deadline_total") == 1
    finally:
        server.stop()


def test_reply_over_the_output_limit() -> None:
    server = spawn_server("serve", "kv", "--model", "thread", "--client-output-buffer-limit",
                          "normal 1000 0 0", "--metrics-port", "0")
    try:
        base = metrics_url(server)
        with server.connect() as conn:
            read_until(conn, b"\n")
            conn.sendall(b"SET big " + b"x" * 2000 + b"\nGET big\n")
            conn.settimeout(10)
            try:
                while conn.recv(65536):
                    pass
            except ConnectionResetError:
                pass                                        # the limit close resets
        wait_for(base, "sockworks_connections_closed_output_limit_total", 1)
    finally:
        server.stop()


def test_peer_not_reading_is_aborted() -> None:
    server = spawn_server("serve", "kv", "--model", "thread", "--send-timeout", "0.5",
                          "--client-output-buffer-limit", "normal 0 0 0",
                          "--metrics-port", "0")
    try:
        base = metrics_url(server)
        with server.connect() as conn:
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            read_until(conn, b"\n")
            conn.sendall(b"SET big " + b"x" * 60000 + b"\n")
            read_until(conn, b"OK\n")
            conn.sendall(b"GET big\n" * 200)                # ~12 MB of replies, unread
            wait_for(base, "sockworks_connections_aborted_send_timeout_total", 1)
    finally:
        server.stop()
