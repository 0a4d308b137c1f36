"""``serve udp --metrics-port``: datagrams by outcome, rate-limited sources,
/healthz and /readyz (issue #14, item 2).

A real ``sockworks serve udp`` process; datagrams from a loopback socket the
test owns; the scrape is parsed with prometheus_client's parser and compared
with what was sent. Datagrams that get no reply (rate-limited) are waited
for by polling the received counter with a bounded deadline.
"""

from __future__ import annotations

import socket
import time

import pytest

from tests.conftest import spawn_server
from tests.ops.test_metrics import get, metrics_url
from tests.ops.test_metrics_commands import samples, value

pytestmark = pytest.mark.timeout(90)

PING = b'{"type":"ping"}'


@pytest.mark.parametrize("model", ["blocking", "asyncio"])
def test_datagrams_by_outcome(model: str) -> None:
    server = spawn_server("serve", "udp", "--model", model, "--rate", "0.001", "--burst", "3",
                          "--max-datagram", "64", "--metrics-port", "0")
    try:
        base = metrics_url(server)
        assert get(base + "/healthz") == (200, "ok\n")
        assert get(base + "/readyz")[0] == 200
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind(("127.0.0.1", 0))
            sock.settimeout(10)
            target = (server.host, server.port)
            sock.sendto(b'{"type":"echo","data":"' + b"x" * 100 + b'"}', target)
            sock.recvfrom(65536)                            # the 'too large' error
            for _ in range(2):
                sock.sendto(PING, target)
                sock.recvfrom(65536)
            for _ in range(4):                              # the burst is spent
                sock.sendto(PING, target)
        deadline = time.monotonic() + 10
        metrics = samples(base)
        while value(metrics, "sockworks_udp_datagrams_received_total") < 7 \
                and time.monotonic() < deadline:
            time.sleep(0.05)                                # bounded by the deadline
            metrics = samples(base)

        def outcome(name: str) -> float:
            return value(metrics, "sockworks_udp_datagrams_total", outcome=name)

        assert value(metrics, "sockworks_udp_datagrams_received_total") == 7
        assert outcome("replied") == 3
        assert outcome("rate_limited") == 4
        assert outcome("unanswered") == outcome("send_failed") == 0
        assert value(metrics, "sockworks_udp_errors_total", reason="too_large") == 1
        assert value(metrics, "sockworks_udp_sources") == 1
        assert value(metrics, "sockworks_udp_sources_limited") == 1
    finally:
        server.stop()
