"""``serve udp``: the rate limiter and service directly, then both concurrency
models as real processes on real sockets (one suite, parametrized by model)."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
from datetime import datetime
from typing import Any

import pytest

from sockworks.protocols.udpjson import MAX_REPLY
from sockworks.services.udp import TokenBucketTable, UdpJsonService, source_key
from sockworks.services.udp_models import UDP_MODELS
from tests.conftest import ServerProcess
from tests.support import StartServer

REPLY_TIMEOUT = 5.0


# --- no sockets: the limiter and the service ------------------------------

def test_token_bucket_allows_the_burst_then_refills_at_the_rate() -> None:
    table = TokenBucketTable(rate=10.0, burst=5, max_sources=10)
    assert [table.allow("a", 0.0) for _ in range(6)] == [True] * 5 + [False]
    assert table.allow("b", 0.0)            # another source has its own bucket
    assert not table.allow("a", 0.05)       # half a token
    assert table.allow("a", 0.1)            # one token after 1/rate seconds
    assert not table.allow("a", 0.1)
    assert [table.allow("a", 100.0) for _ in range(6)] == [True] * 5 + [False]  # capped at burst


def start_udp(start_server: StartServer, *args: str) -> ServerProcess:
    """``sockworks serve udp`` runs as a process (no Server: UDP owns its socket)."""
    return start_server("serve", "udp", *args, process=True)


def test_token_bucket_table_is_bounded_lru() -> None:
    table = TokenBucketTable(rate=1.0, burst=1, max_sources=3)
    for source in ("a", "b", "c"):
        assert table.allow(source, 0.0)
    assert not table.allow("a", 0.0)        # "a" is now the most recently seen
    for i in range(1000):                   # a forged-source sweep
        table.allow(f"spoof{i}", 0.0)
    assert len(table) == 3
    assert table.evicted == 1000
    assert table.allow("a", 0.0)            # evicted: starts again with a full bucket


def test_source_key() -> None:
    assert source_key(("127.0.0.1", 5)) == "127.0.0.1"
    assert source_key(("::ffff:10.1.2.3", 5, 0, 0)) == "10.1.2.3"
    assert source_key(("2001:db8:1:2::1", 5, 0, 0)) == source_key(("2001:db8:1:2:ffff::9", 6, 0, 0))
    assert source_key(("2001:db8:1:2::1", 5, 0, 0)) != source_key(("2001:db8:1:3::1", 5, 0, 0))


def test_service_counts_everything() -> None:
    clock = [0.0]
    service = UdpJsonService(rate=1.0, burst=2, max_sources=8, clock=lambda: clock[0])
    source = ("192.0.2.1", 1234)
    assert service.handle(b'{"type":"ping"}', source) == b'{"pong":true}'
    assert service.handle(b"[1]", source) is None           # error too big to send
    assert service.handle(b'{"type":"ping"}', source) is None  # over the burst
    clock[0] = 10.0
    assert service.handle(b"x" * 5000, source) == b'{"error":"datagram too large"}'
    snapshot = service.snapshot()
    assert snapshot["received"] == 4
    assert snapshot["rate_limited"] == 1
    assert snapshot["errors"] == 2
    assert snapshot["too_large"] == 1
    assert snapshot["unanswered"] == 1
    assert snapshot["sources"] == 1


# --- real processes -------------------------------------------------------

def udp_socket(source: str = "127.0.0.1", family: int = socket.AF_INET) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.bind((source, 0))
    sock.settimeout(REPLY_TIMEOUT)
    return sock


def ask(server: Any, payload: bytes, *, source: str = "127.0.0.1",
        attempts: int = 1) -> dict[str, Any]:
    """Send ``payload`` to ``server`` (a started server or a (host, port)) and
    return the parsed reply. ``attempts`` > 1 resends after a timeout (for use
    right after a flood, when the kernel may drop)."""
    host, port = server if isinstance(server, tuple) else server.address
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with udp_socket(source, family) as sock:
        if attempts > 1:
            sock.settimeout(1.0)
        for attempt in range(attempts):
            sock.sendto(payload, (host, port))
            try:
                data, sender = sock.recvfrom(65536)
            except TimeoutError:
                if attempt == attempts - 1:
                    raise
                continue
            assert sender[1] == port
            assert len(data) <= min(MAX_REPLY, 3 * len(payload))
            doc = json.loads(data)
            assert isinstance(doc, dict)
            return doc
    raise AssertionError("unreachable")


def pad(payload: bytes, size: int = 120) -> bytes:
    return payload + b" " * max(0, size - len(payload))


def stats(server: Any, source: str = "127.0.0.9") -> dict[str, int]:
    doc = ask(server, pad(b'{"type":"stats"}', 420), source=source, attempts=10)
    result: dict[str, int] = doc["stats"]
    return result


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.fixture(params=list(UDP_MODELS))
def model(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_logs_one_listening_line_and_answers(start_server: StartServer, model: str) -> None:
    server = start_udp(start_server, "--model", model)
    assert server.model == model
    assert server.read_output().count(b"listening on") == 1
    time_reply = ask(server, b'{"type":"time","id":"t1"}')
    assert time_reply["id"] == "t1"
    assert datetime.fromisoformat(time_reply["time"]).tzinfo is not None
    assert ask(server, b'{"type":"ping","id":7}') == {"pong": True, "id": 7}
    assert ask(server, b'{"type":"echo","data":{"k":[1,"\xc3\xa9"]}}') == {"data": {"k": [1, "é"]}}
    counters = stats(server)
    assert counters["received"] >= 3 and counters["replied"] >= 3


@pytest.mark.parametrize(("payload", "error"), [
    (b"\xff\xfe\xfd", "invalid UTF-8"),
    (b"{not json", "invalid JSON"),
    (b"GET / HTTP/1.1\r\nHost: example\r\n\r\n", "invalid JSON"),
    (b"[1]", "request must be a JSON object"),
    (b'"x"', "request must be a JSON object"),
    (b"null", "request must be a JSON object"),
    (b'{"id": 1}', "missing type"),
    (b'{"type": "shutdown"}', "unknown type"),
    (b"[" * 40 + b"]" * 40, "nesting too deep"),
    (b'{"type":"ping","n":' + b"9" * 500 + b"}", "number too large"),
    (b'{"type":"ping","n":NaN}', "NaN is not valid JSON"),
    (b'{"type":"ping","n":1e999}', "number out of range"),
    (b'{"type":"echo"}', "missing data"),
    (b'{"type":"ping","id":{"nested":1}}', "invalid id"),
])
def test_bad_input_over_the_wire(start_server: StartServer, model: str, payload: bytes,
                                 error: str) -> None:
    server = start_udp(start_server, "--model", model)
    doc = ask(server, pad(payload, len(payload) + 40))
    assert doc["error"] == error
    assert ask(server, b'{"type":"ping"}') == {"pong": True}   # still serving


def test_oversized_and_tiny_datagrams(start_server: StartServer, model: str) -> None:
    server = start_udp(start_server, "--model", model)
    assert ask(server, b"x" * 5000) == {"error": "datagram too large"}
    assert ask(server, pad(b'{"type":"ping"}', 1233)) == {"error": "datagram too large"}
    assert ask(server, pad(b'{"type":"ping"}', 1232)) == {"pong": True}
    with udp_socket() as sock:
        # Too small for any error reply within 3x: dropped, but counted.
        for tiny in (b"[1]", b"x", b"null"):
            sock.sendto(tiny, server.address)
    counters = stats(server)
    assert counters["unanswered"] == 3
    assert counters["too_large"] == 2


def test_deep_nesting_100k_with_a_large_receive_limit(start_server: StartServer, model: str) -> None:
    server = start_udp(start_server, "--model", model, "--max-datagram", "65507")
    assert ask(server, b"[" * 60000) == {"error": "nesting too deep"}
    assert ask(server, b'{"type":"ping","n":' + b"1" * 5000 + b"}") == {"error": "number too large"}


def test_reply_too_large_tells_the_client_how_to_pad(start_server: StartServer, model: str) -> None:
    server = start_udp(start_server, "--model", model)
    doc = ask(server, b'{"type":"stats","id":1}')
    assert doc["error"] == "reply too large" and doc["id"] == 1
    full = ask(server, pad(b'{"type":"stats","id":1}', doc["pad_to"] + 20))
    assert full["id"] == 1 and "stats" in full


def flood(server: Any, sockets: int = 50, per_socket: int = 200) -> None:
    """Many source ports on one address, then many source addresses (a
    forged-source sweep across 127.0.2.0/24). Bounded in count.

    After each burst a ping from an address of its own is answered only once
    the server has worked through everything queued before it (one socket,
    FIFO), so the next burst is not lost to a full kernel buffer.
    """
    payload = b'{"type":"ping"}'
    senders = [udp_socket("127.0.0.1") for _ in range(sockets)]
    try:
        for _ in range(per_socket):
            for sock in senders:
                sock.sendto(payload, server.address)
    finally:
        for sock in senders:
            sock.close()
    sync = iter(range(1, 255))
    assert ask(server, payload, source=f"127.0.3.{next(sync)}", attempts=10) == {"pong": True}
    for start in range(1, 255, 50):
        for i in range(start, min(start + 50, 255)):
            with udp_socket(f"127.0.2.{i}") as sock:
                sock.sendto(payload, server.address)
        assert ask(server, payload, source=f"127.0.3.{next(sync)}", attempts=10) == {"pong": True}


def test_flood_is_rate_limited_and_memory_stays_flat(start_server: StartServer, model: str) -> None:
    server = start_udp(start_server, "--model", model, "--rate", "5", "--burst", "10",
                          "--max-sources", "64")
    flood(server)
    # A fresh client (its own address) is answered right after the flood.
    assert ask(server, b'{"type":"ping"}', source="127.0.0.2", attempts=10) == {"pong": True}
    first = stats(server)
    assert first["rate_limited"] > 0, first
    assert first["sources"] <= 64
    assert first["sources_evicted"] > 0
    rss_before = rss_kib(server.proc.pid)
    flood(server)
    assert ask(server, b'{"type":"ping"}', source="127.0.0.3", attempts=10) == {"pong": True}
    second = stats(server, source="127.0.0.10")
    assert second["rate_limited"] > first["rate_limited"]
    assert second["sources"] <= 64
    rss_after = rss_kib(server.proc.pid)
    # Generous: the second flood must not cost memory (the table is bounded).
    assert rss_after - rss_before < 8 * 1024, (rss_before, rss_after)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_graceful_shutdown(start_server: StartServer, model: str, sig: int) -> None:
    server = start_udp(start_server, "--model", model)
    assert ask(server, b'{"type":"ping"}') == {"pong": True}
    server.signal(sig)
    assert server.wait(15) == 0
    output = server.read_output()
    assert b"Traceback" not in output
    assert b"server stopped" in output


def test_second_signal_exits_at_once(start_server: StartServer, model: str) -> None:
    server = start_udp(start_server, "--model", model)
    server.signal(signal.SIGTERM)
    server.signal(signal.SIGTERM)
    # 0: the first finished the stop before the second was handled; 1: the
    # second forced the exit; -SIGTERM: it came after the handlers were gone.
    assert server.wait(15) in (0, 1, -signal.SIGTERM)
    assert b"Traceback" not in server.read_output()


def test_port_in_use_is_one_clear_line(model: str) -> None:
    with udp_socket() as taken:
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "sockworks", "serve", "udp", "--port", str(port),
             "--model", model],
            check=False, capture_output=True, timeout=30, stdin=subprocess.DEVNULL)
    assert result.returncode != 0
    stderr = result.stderr.decode()
    assert "Traceback" not in stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert "in use" in lines[0] and str(port) in lines[0]


def test_ipv6(start_server: StartServer, model: str) -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("::1 not available")
    server = start_udp(start_server, "--model", model, "--host", "::1")
    assert server.host == "::1"
    assert ask(server, b'{"type":"ping","id":"v6"}', source="::1") == {"pong": True, "id": "v6"}


def test_dual_stack_counts_mapped_ipv4_as_ipv4(start_server: StartServer, model: str) -> None:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("::1 not available")
    server = start_udp(start_server, "--model", model, "--host", "::")
    port = server.port
    v4, v6 = ("127.0.0.1", port), ("::1", port)
    assert ask(v4, b'{"type":"ping"}') == {"pong": True}
    assert ask(v6, b'{"type":"ping"}', source="::1") == {"pong": True}
    counters = stats(v4, source="127.0.0.1")
    # 127.0.0.1 arrives as ::ffff:127.0.0.1 and is charged to the IPv4 address.
    assert counters["sources"] == 2


# --- udp-client -----------------------------------------------------------

def run_client(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sockworks", "udp-client", *args],
                          check=False, capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)


def test_udp_client_prints_the_reply(start_server: StartServer) -> None:
    server = start_udp(start_server, "--model", "blocking")
    port = str(server.port)
    result = run_client("--port", port, "ping")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["pong"] is True and isinstance(doc["id"], int)
    result = run_client("--port", port, "echo", "data:=[1, {\"a\": null}]", "note=hi")
    assert json.loads(result.stdout)["data"] == [1, {"a": None}]
    result = run_client("--port", port, "stats")   # padded: the full reply is allowed
    assert "stats" in json.loads(result.stdout)
    result = run_client("--port", port, "--no-pad", "stats")
    assert json.loads(result.stdout)["error"] == "reply too large"
    assert result.returncode == 1   # an error reply is a failure


def test_udp_client_shows_an_error_reply_without_an_id(start_server: StartServer) -> None:
    # Too large for the server to read, so its error cannot carry our id.
    # Before, the client ignored it and retried until "no reply" (15 s).
    server = start_udp(start_server, "--model", "blocking")
    result = run_client("--port", str(server.port), "--retries", "0", "--timeout", "20",
                        "echo", "data=" + "x" * 2000)
    assert json.loads(result.stdout) == {"error": "datagram too large"}
    assert result.returncode == 1
    assert "no reply" not in result.stderr


def test_udp_client_times_out_with_exit_1() -> None:
    with udp_socket() as silent:   # bound, so no ICMP unreachable: just silence
        port = str(silent.getsockname()[1])
        result = run_client("--port", port, "--timeout", "0.2", "--retries", "2", "ping")
        received = 0
        silent.settimeout(0.1)
        try:
            while silent.recv(2048):
                received += 1
        except TimeoutError:
            pass
    assert result.returncode == 1
    assert "no reply" in result.stderr and "3 attempt" in result.stderr
    assert received == 3    # one send plus two retries


def test_udp_client_reports_no_server() -> None:
    with udp_socket() as probe:
        port = str(probe.getsockname()[1])
    result = run_client("--port", port, "--timeout", "0.5", "--retries", "1", "ping")
    assert result.returncode == 1
    assert "udp-client:" in result.stderr and "Traceback" not in result.stderr


def test_udp_client_refuses_port_0() -> None:
    # Port 0 is "any free port" when binding, never a server to send to.
    result = run_client("--port", "0", "ping")
    assert result.returncode == 2
    assert result.stderr.startswith("usage: sockworks udp-client")
    assert "--port" in result.stderr and "Traceback" not in result.stderr


def test_udp_client_rejects_bad_fields() -> None:
    result = run_client("echo", "nokey")
    assert result.returncode == 2
    result = run_client("echo", "data:={oops")
    assert result.returncode == 2 and "invalid JSON" in result.stderr
