"""The pool model's promise: idle clients hold no worker (the chapter's
ThreadPoolExecutor server starves the 51st client forever)."""

from __future__ import annotations

import pytest

from tests.support import StartServer, recv_until

pytestmark = pytest.mark.timeout(60)


def test_more_idle_clients_than_workers_do_not_starve_a_new_one(start_server: StartServer) -> None:
    server = start_server("serve", "echo", "--model", "pool", "--workers", "2")
    idle = [server.connect() for _ in range(10)]  # five times the workers
    try:
        for sock in idle:
            sock.sendall(b"hi\n")
            assert recv_until(sock) == b"HI\n"
        with server.connect() as newcomer:
            newcomer.sendall(b"served\n")
            assert recv_until(newcomer) == b"SERVED\n"
        # And the idle ones are still served too, in any order.
        for sock in reversed(idle):
            sock.sendall(b"again\n")
            assert recv_until(sock) == b"AGAIN\n"
    finally:
        for sock in idle:
            sock.close()


def test_one_worker_serves_many_pipelined_clients_in_turn(start_server: StartServer) -> None:
    server = start_server("serve", "echo", "--model", "pool", "--workers", "1")
    socks = [server.connect() for _ in range(20)]
    try:
        for i, sock in enumerate(socks):
            sock.sendall(b"".join(b"c%d l%d\n" % (i, j) for j in range(50)))
        for i, sock in enumerate(socks):
            data = b""
            while data.count(b"\n") < 50:
                chunk = sock.recv(65536)
                assert chunk
                data += chunk
            assert data == b"".join(b"C%d L%d\n" % (i, j) for j in range(50))
    finally:
        for sock in socks:
            sock.close()
