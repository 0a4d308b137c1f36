"""The asyncio model holds 10,000 concurrent connections (issue #2)."""

from __future__ import annotations

import resource
import socket

import pytest

from tests.support import StartServer, recv_until

CONNECTIONS = 10_000


@pytest.mark.timeout(120)
def test_ten_thousand_concurrent_connections(start_server: StartServer) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < CONNECTIONS + 500:
        pytest.skip(f"RLIMIT_NOFILE hard limit {hard} is below {CONNECTIONS + 500}")
    wanted = min(hard, CONNECTIONS * 2 + 1000)
    resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    server = start_server("serve", "echo", "--model", "asyncio",
                          "--max-connections", str(CONNECTIONS + 100), "--idle-timeout", "0",
                          process=True)  # its own descriptor limit, not ours
    socks: list[socket.socket] = []
    try:
        for _ in range(CONNECTIONS):
            socks.append(socket.create_connection(server.address, timeout=30))
        # Every 100th connection, and the last one, is live and answered.
        for i, sock in enumerate(socks[::100] + socks[-1:]):
            sock.sendall(b"conn %d\n" % i)
            assert recv_until(sock) == b"CONN %d\n" % i
    finally:
        for sock in socks:
            sock.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
