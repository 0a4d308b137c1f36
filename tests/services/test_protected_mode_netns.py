"""Protected mode seen from another host: a peer in a second network namespace.

The server runs in namespace A bound to all of A's addresses; a client in
namespace B reaches it over the veth pair at 10.213.0.1, a non-loopback
address that exists only between the two namespaces this test creates
(tests/netns_support.py). Without a password that client is refused with
Redis's DENIED explanation, while a client on A's loopback is served; a
password, or --protected-mode no, lets B in (B then has to AUTH).
"""

from __future__ import annotations

import os
import select
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from tests.netns_support import ADDRESS_A

TEXT_PORT, RESP_PORT = 9000, 6379  # inside namespace A, which is ours alone

PROBE = textwrap.dedent("""
    import socket, sys
    host, port, request = sys.argv[1], int(sys.argv[2]), sys.argv[3].encode()
    with socket.create_connection((host, port), timeout=10) as s:
        s.sendall(request.replace(b"|", b"\\r\\n"))
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
            if request.startswith(b"*") and data.endswith(b"\\r\\n"):
                break
            if not request and data.endswith(b"\\n"):
                break
    sys.stdout.buffer.write(data)
""")


def probe(ns: str, host: str, port: int, request: str) -> str:
    """Send ``request`` (``|`` = CRLF) from namespace ``ns``; the reply."""
    done = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", PROBE, host,
                           str(port), request], capture_output=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return done.stdout.decode("latin-1")  # no newline translation: CRLF stays


@contextmanager
def server_in(ns: str, *flags: str) -> Iterator[bytes]:
    """``serve kv`` on every address of namespace ``ns``; yields its log so far."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        ["ip", "netns", "exec", ns, sys.executable, "-m", "sockworks", "serve", "kv",
         "--host", "0.0.0.0", "--port", str(TEXT_PORT), "--resp-port", str(RESP_PORT),
         *flags], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    assert proc.stderr is not None
    log = b""
    deadline = time.monotonic() + 20
    try:
        while log.count(b"listening on") < 2:
            remaining = deadline - time.monotonic()
            assert remaining > 0, log.decode(errors="replace")
            ready, _, _ = select.select([proc.stderr], [], [], remaining)
            if ready:
                chunk = os.read(proc.stderr.fileno(), 65536)
                assert chunk, log.decode(errors="replace")
                log += chunk
        yield log
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        proc.stderr.close()


PING = "*1|$4|PING|"


@pytest.mark.netns
def test_a_remote_peer_is_denied_without_a_password(
        netns_pair: tuple[str, str, str, str]) -> None:
    ns_a, ns_b, _, _ = netns_pair
    with server_in(ns_a) as log:
        assert b"WARNING" in log and b"0.0.0.0" in log  # the exposed address named
        denied = probe(ns_b, ADDRESS_A, RESP_PORT, PING)
        assert denied.startswith("-DENIED Sockworks is running in protected mode"), denied
        # A text client reads the greeting before it speaks: here, the refusal.
        text = probe(ns_b, ADDRESS_A, TEXT_PORT, "")
        assert "ERROR: protected mode:" in text, text
        # The same server, from A's own loopback: served.
        assert probe(ns_a, "127.0.0.1", RESP_PORT, PING) == "+PONG\r\n"


@pytest.mark.netns
@pytest.mark.parametrize(("flags", "expected"), [
    (("--requirepass", "s3cret"), "-NOAUTH Authentication required.\r\n"),
    (("--protected-mode", "no"), "+PONG\r\n"),
])
def test_a_password_or_protected_mode_off_lets_a_remote_peer_in(
        netns_pair: tuple[str, str, str, str], flags: tuple[str, str], expected: str) -> None:
    ns_a, ns_b, _, _ = netns_pair
    with server_in(ns_a, *flags):
        assert probe(ns_b, ADDRESS_A, RESP_PORT, PING) == expected
