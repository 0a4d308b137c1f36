"""One behavioural suite, every concurrency model: real processes, real sockets.

Each test starts ``sockworks serve echo --model M --port 0`` and drives it as
a client would. What must hold is the same for every model (issue #2).
"""

from __future__ import annotations

import os
import re
import resource
import signal
import socket
import struct
import threading
import time
from collections.abc import Callable

import pytest

from sockworks.models import FORKING_MODELS, MODELS, get_model
from tests.conftest import ServerProcess
from tests.support import RunningServer, StartServer, recv_all, recv_lines, recv_until

pytestmark = pytest.mark.timeout(60)


# Every registered model: a new one cannot miss this suite.
@pytest.fixture(params=list(MODELS))
def model(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_the_registry_resolves_every_model_by_its_name() -> None:
    for name in MODELS:
        assert get_model(name).name == name
    assert set(FORKING_MODELS) <= set(MODELS)


def echo_argv(model: str, *extra: str) -> list[str]:
    args = ["serve", "echo", "--model", model, *extra]
    if model == "prefork" and "--workers" not in extra:
        args += ["--workers", "2"]
    return args


def echo(start_server: StartServer, model: str, *extra: str,
         process: bool = False) -> RunningServer:
    """The echo server under ``model`` (in-process unless it must be a process)."""
    return start_server(*echo_argv(model, *extra), process=process)


def echo_process(start_server: StartServer, model: str, *extra: str,
                 preexec_fn: Callable[[], object] | None = None) -> ServerProcess:
    """The echo server as a process of its own (signals, children, limits)."""
    return start_server(*echo_argv(model, *extra), process=True, preexec_fn=preexec_fn)


def test_listening_line_reports_real_port(start_server: StartServer, model: str) -> None:
    server = echo(start_server, model)
    assert server.port != 0
    assert server.model == model


def test_echo_whole_line(start_server: StartServer, model: str) -> None:
    server = echo(start_server, model)
    with server.connect() as sock:
        sock.sendall(b"hello world\n")
        assert recv_until(sock) == b"HELLO WORLD\n"


def test_echo_byte_by_byte(start_server: StartServer, model: str) -> None:
    server = echo(start_server, model)
    with server.connect() as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for byte in b"slow line\n":
            sock.sendall(bytes([byte]))
        assert recv_until(sock) == b"SLOW LINE\n"


def test_pipelined_lines_answered_in_order(start_server: StartServer, model: str) -> None:
    server = echo(start_server, model)
    lines = [f"line {i}".encode() for i in range(500)]
    with server.connect() as sock:
        sock.sendall(b"".join(line + b"\n" for line in lines))
        assert recv_lines(sock, len(lines)) == [line.upper() for line in lines]


def test_transform_none(start_server: StartServer, model: str) -> None:
    server = echo(start_server, model, "--transform", "none")
    with server.connect() as sock:
        sock.sendall(b"Keep Case\n")
        assert recv_until(sock) == b"Keep Case\n"


def test_hundred_concurrent_clients(start_server: StartServer, model: str) -> None:
    server = echo(start_server, model)
    errors: list[BaseException] = []
    barrier = threading.Barrier(100)

    def client(i: int) -> None:
        try:
            with server.connect(timeout=30) as sock:
                barrier.wait(timeout=30)
                for j in range(5):
                    msg = f"client {i} msg {j}\n".encode()
                    sock.sendall(msg)
                    assert recv_until(sock) == msg.upper()
        except BaseException as exc:  # collected and re-raised in the test thread
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(100)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(45)
    assert not errors, errors[:3]


def test_over_long_line_is_refused_and_tail_never_runs(start_server: StartServer, model: str) -> None:
    server = echo(start_server, model, "--max-line", "1024")
    with server.connect() as sock:
        # 2000 bytes of 'a' then a newline and what looks like a new line.
        try:
            sock.sendall(b"a" * 2000 + b"\nTAIL\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        data = recv_all(sock)
    assert data == b"ERROR: line too long\n"


def test_line_at_the_limit_is_accepted(start_server: StartServer, model: str) -> None:
    server = echo(start_server, model, "--max-line", "1024")
    with server.connect() as sock:
        sock.sendall(b"b" * 1024 + b"\n")
        assert recv_until(sock) == b"B" * 1024 + b"\n"


def test_connection_over_the_limit_gets_busy_reply(start_server: StartServer, model: str) -> None:
    server = echo(start_server, model, "--max-connections", "3")
    held = []
    try:
        for _ in range(3):
            sock = server.connect()
            sock.sendall(b"hi\n")
            assert recv_until(sock) == b"HI\n"  # admitted and served
            held.append(sock)
        with server.connect() as extra:
            assert recv_all(extra) == b"ERROR: server busy\n"
        # Existing clients are unaffected.
        for sock in held:
            sock.sendall(b"still here\n")
            assert recv_until(sock) == b"STILL HERE\n"
    finally:
        for sock in held:
            sock.close()
    # A slot frees up when a client leaves (the limit counts live connections).
    deadline = time.monotonic() + 10
    while True:
        with server.connect() as sock:
            sock.sendall(b"again\n")
            reply = recv_until(sock)
        if reply == b"AGAIN\n" or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert reply == b"AGAIN\n"
    server.wait_for_log(b"server busy")


def test_idle_timeout_closes_silent_connection(start_server: StartServer, model: str) -> None:
    # Routine idle closes are logged at DEBUG (a flood of them must not be INFO).
    server = echo(start_server, model, "--idle-timeout", "0.5", "--log-level", "DEBUG")
    with server.connect() as sock:
        sock.sendall(b"ping\n")
        assert recv_until(sock) == b"PING\n"
        assert recv_all(sock) == b""  # closed by the server, not by us
    server.wait_for_log(b"idle for 0.5s")


def test_client_reset_mid_reply_does_not_hurt_others(start_server: StartServer, model: str) -> None:
    server = echo(start_server, model)
    for _ in range(5):
        sock = server.connect()
        sock.sendall(b"x" * 60000 + b"\n" + b"y\n" * 20000)
        # SO_LINGER 0: close() sends RST while replies are in flight.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
    with server.connect() as sock:
        sock.sendall(b"after resets\n")
        assert recv_until(sock) == b"AFTER RESETS\n"
    assert b"Traceback" not in server.read_output(0.2)


def test_half_close_gets_every_reply(start_server: StartServer, model: str) -> None:
    server = echo(start_server, model)
    with server.connect() as sock:
        sock.sendall(b"one\ntwo\nthree")
        sock.shutdown(socket.SHUT_WR)
        assert recv_all(sock) == b"ONE\nTWO\nTHREE"


def send_partial_request(sock: socket.socket, partial: bytes) -> None:
    """Leave ``partial`` (no newline) buffered in the server's session: busy.

    Synchronised on a round trip, not a sleep: a complete line and the partial
    one go out in a single send() on a fresh (or quiet) connection, so they
    travel as one loopback segment, and every model's one recv() hands both to
    the session in the same on_data() call. The SYNC reply is only sent after
    that call returned, so once it is read the partial line is in the
    session's buffer and the server counts the connection as busy.
    """
    assert b"\n" not in partial
    sock.sendall(b"sync\n" + partial)
    assert recv_until(sock) == b"SYNC\n"


def test_sigterm_answers_requests_in_flight_and_exits_zero(start_server: StartServer,
                                                           model: str) -> None:
    # A process: what SIGTERM does to `sockworks serve`, and its exit status.
    server = echo_process(start_server, model, "--grace", "20")
    busy = [server.connect() for _ in range(5)]
    idle = server.connect()
    idle.sendall(b"warm\n")
    assert recv_until(idle) == b"WARM\n"
    for sock in busy:
        send_partial_request(sock, b"partial request")  # no newline yet: in flight
    server.signal(signal.SIGTERM)
    server.wait_for_log(b"shutting down")
    for sock in busy:
        sock.sendall(b" completed\n")
        assert recv_until(sock) == b"PARTIAL REQUEST COMPLETED\n"
        assert recv_all(sock) == b""  # then closed
        sock.close()
    assert recv_all(idle) == b""  # the idle one was closed
    idle.close()
    assert server.wait(timeout=30) == 0


def test_sigterm_with_idle_clients_exits_without_waiting_for_grace(start_server: StartServer, model: str) -> None:
    server = echo(start_server, model, "--grace", "60")
    socks = [server.connect() for _ in range(10)]
    try:
        for sock in socks:
            sock.sendall(b"x\n")
            assert recv_until(sock) == b"X\n"
        server.signal(signal.SIGTERM)
        # Grace is 60 s; idle clients must not hold the server that long.
        assert server.wait(timeout=30) == 0
        for sock in socks:
            assert recv_all(sock) == b""
    finally:
        for sock in socks:
            sock.close()


def test_second_signal_exits_at_once(start_server: StartServer, model: str) -> None:
    server = echo_process(start_server, model, "--grace", "60")
    with server.connect() as sock:
        # Busy, so the first signal cannot finish the shutdown by itself.
        send_partial_request(sock, b"never finished")
        server.signal(signal.SIGINT)
        server.wait_for_log(b"shutting down")
        server.signal(signal.SIGINT)
        assert server.wait(timeout=20) != 0


def test_grace_period_force_closes_stuck_clients(start_server: StartServer, model: str) -> None:
    server = echo(start_server, model, "--grace", "1")
    with server.connect() as sock:
        # Busy, so the server waits out the grace period and then force-closes.
        send_partial_request(sock, b"stuck forever")
        server.signal(signal.SIGTERM)
        assert server.wait(timeout=30) == 0
        assert recv_all(sock) == b""


def test_ipv6_loopback(start_server: StartServer, model: str) -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        probe = socket.socket(socket.AF_INET6)
        probe.bind(("::1", 0))
        probe.close()
    except OSError:
        pytest.skip("::1 not configured")
    server = echo(start_server, model, "--host", "::1")
    assert server.host == "::1"
    with socket.create_connection(("::1", server.port), timeout=10) as sock:
        sock.sendall(b"six\n")
        assert recv_until(sock) == b"SIX\n"


def test_port_in_use_is_one_clear_line(start_server: StartServer, model: str) -> None:
    import subprocess
    import sys

    first = echo(start_server, model)
    proc = subprocess.run(
        [sys.executable, "-m", "sockworks", "serve", "echo", "--model", model,
         "--port", str(first.port)],
        capture_output=True, timeout=30)
    assert proc.returncode != 0
    assert b"Traceback" not in proc.stderr
    assert b"ddress already in use" in proc.stderr


def _children(pid: int) -> list[tuple[int, str]]:
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append((int(entry), fields[0]))
    return out


@pytest.mark.parametrize("fork_model", FORKING_MODELS)
def test_fork_models_leave_no_zombies(start_server: StartServer, fork_model: str) -> None:
    server = echo_process(start_server, fork_model)
    for _ in range(20):
        with server.connect() as sock:
            sock.sendall(b"z\n")
            assert recv_until(sock) == b"Z\n"
    deadline = time.monotonic() + 10
    while True:
        zombies = [pid for pid, state in _children(server.proc.pid) if state == "Z"]
        if not zombies or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert zombies == []


def test_prefork_restarts_a_dead_worker(start_server: StartServer) -> None:
    server = echo_process(start_server, "prefork", "--workers", "2")
    workers = [pid for pid, _ in _children(server.proc.pid)]
    assert len(workers) == 2
    os.kill(workers[0], signal.SIGKILL)
    server.wait_for_log(b"restarting")
    deadline = time.monotonic() + 10
    while len(_children(server.proc.pid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(_children(server.proc.pid)) == 2
    for _ in range(10):
        with server.connect() as sock:
            sock.sendall(b"alive\n")
            assert recv_until(sock) == b"ALIVE\n"


def _limit_fds(limit: int) -> Callable[[], None]:
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))
    return apply


def test_out_of_descriptors_recovers(start_server: StartServer, model: str) -> None:
    """EMFILE on accept: logged, backed off, and served again once fds free up."""
    server = echo_process(start_server, model, "--max-connections", "10000",
                          *(["--workers", "1"] if model in ("prefork", "pool") else []),
                          preexec_fn=_limit_fds(64))
    held: list[socket.socket] = []
    try:
        for _ in range(80):  # more than the server has descriptors for
            sock = socket.create_connection(server.address, timeout=5)
            held.append(sock)
        if model == "socketserver-fork":
            # The parent hands each socket to a child and closes its copy, so
            # it never runs out: every connection is served.
            for sock in held:
                sock.sendall(b"served\n")
                assert recv_until(sock) == b"SERVED\n"
        else:
            server.wait_for_log(b"accept() failed", timeout=15)
        for sock in held:
            sock.close()
        held.clear()
        # Once descriptors are free again, new clients are served.
        deadline = time.monotonic() + 20
        reply = b""
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(server.address, timeout=3) as sock:
                    sock.sendall(b"back\n")
                    reply = recv_until(sock)
            except OSError:
                reply = b""
            if reply == b"BACK\n":
                break
            time.sleep(0.1)
        assert reply == b"BACK\n"
    finally:
        for sock in held:
            sock.close()


def test_sigterm_the_moment_listening_is_logged_is_graceful(start_server: StartServer, model: str) -> None:
    # Signal handlers are installed before the listening line, so even a
    # signal sent immediately is a graceful stop, not death by SIGTERM.
    server = echo(start_server, model)
    server.signal(signal.SIGTERM)
    assert server.wait(timeout=30) == 0


def test_prefork_workers_die_with_a_killed_supervisor(start_server: StartServer) -> None:
    server = echo_process(start_server, "prefork", "--workers", "2")
    workers = [pid for pid, _ in _children(server.proc.pid)]
    assert len(workers) == 2
    server.proc.kill()  # SIGKILL: no chance to forward anything
    server.proc.wait(10)
    deadline = time.monotonic() + 20
    alive = workers
    while alive and time.monotonic() < deadline:
        alive = [pid for pid in workers if _state(pid) not in (None, "Z")]
        time.sleep(0.05)
    assert alive == []


def _state(pid: int) -> str | None:
    """A process's state letter, None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


# -- hostile clients (issue #10): deadlines and closes that really close -------

#: Slow-loris connections per model: enough to show they are all closed,
#: few enough for forking models (a process each) to stay quick.
LORIS = 24


def server_side_state(server_port: int, client_port: int) -> str | None:
    """The TCP state (hex, /proc/net/tcp) of the server's end of the
    connection from ``client_port``; None when the socket is gone."""
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(path) as table:
            for row in table.readlines()[1:]:
                fields = row.split()
                local, remote, state = fields[1], fields[2], fields[3]
                if (int(local.rsplit(":", 1)[1], 16) == server_port
                        and int(remote.rsplit(":", 1)[1], 16) == client_port):
                    return state
    return None


def test_slow_loris_connections_are_closed_at_the_idle_timeout(start_server: StartServer,
                                                               model: str) -> None:
    server = echo(start_server, model, "--idle-timeout", "0.5")
    loris = []
    for _ in range(LORIS):
        sock = server.connect()
        sock.sendall(b"half a requ")  # no newline: the session holds it
        loris.append(sock)
    deadline = time.monotonic() + 15
    for sock in loris:
        sock.settimeout(max(0.1, deadline - time.monotonic()))
        assert recv_all(sock) == b""  # closed by the server, nothing answered
        sock.close()
    with server.connect() as sock:
        sock.sendall(b"next\n")
        assert recv_until(sock) == b"NEXT\n"
    if model not in FORKING_MODELS:  # children log to their own copy of the handler
        server.wait_for_log(b"unfinished request")


def _fill_until_stuck(sock: socket.socket) -> None:
    """Send requests for replies we never read, until both sides' buffers are
    full and the server has stopped reading us (bounded in bytes and time)."""
    line = b"y" * 32767 + b"\n"
    sent, deadline = 0, time.monotonic() + 10
    while sent < 256 * 1024 * 1024 and time.monotonic() < deadline:
        try:
            sent += sock.send(line)
        except BlockingIOError:
            stuck = time.monotonic() + 0.3
            while time.monotonic() < stuck:
                try:
                    sent += sock.send(line)
                    break
                except BlockingIOError:
                    time.sleep(0.01)
            else:
                return


def test_a_peer_that_never_reads_is_reset_within_send_timeout(start_server: StartServer,
                                                              model: str) -> None:
    server = echo(start_server, model, "--idle-timeout", "0.5", "--send-timeout", "0.5")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(server.address)
        client_port = sock.getsockname()[1]
        sock.setblocking(False)
        try:
            _fill_until_stuck(sock)
        except (ConnectionResetError, BrokenPipeError):
            pass  # on a slow machine the server may reset us while we still send
        # idle 0.5 s + send timeout 0.5 s + sweep ticks: gone well within 10 s.
        deadline = time.monotonic() + 10
        state = server_side_state(server.port, client_port)
        while state not in (None, "06", "07") and time.monotonic() < deadline:
            time.sleep(0.05)
            state = server_side_state(server.port, client_port)
        assert state in (None, "06", "07"), f"server end still in TCP state {state}"
    with server.connect() as other:
        other.sendall(b"still here\n")
        assert recv_until(other) == b"STILL HERE\n"


# -- ClientHandle.deliver: output no session call produced ---------------------------
# tests/models/push_service.py is a line service whose commands make another
# thread deliver to the connection (as a pusher on another connection would).

def push_server(start_server: StartServer, model: str, *extra: str) -> ServerProcess:
    return start_server(model, *extra, process=True, module="tests.models.push_service")


def test_deliveries_from_another_thread_arrive_whole_and_in_order(start_server: StartServer,
                                                                 model: str) -> None:
    server = push_server(start_server, model)
    with server.connect() as sock:
        sock.sendall(b"PUSH 200\n")
        lines = recv_lines(sock, 201)
        assert lines.count(b"OK") == 1
        assert [line for line in lines if line != b"OK"] == [b"push %d" % i for i in range(200)]
        sock.sendall(b"PING\n")
        assert recv_until(sock) == b"PONG\n"


def test_a_delivery_wakes_a_waiting_session_before_what_it_held_runs(
        start_server: StartServer, model: str) -> None:
    server = push_server(start_server, model)
    with server.connect() as sock:
        # Held while the session waits: the model keeps reading them.
        sock.sendall(b"WAIT\nPING\nPING\n")
        sock.sendall(b"KICK\n")
        assert recv_lines(sock, 3) == [b"woken", b"PONG", b"PONG"]
        sock.sendall(b"WAIT\nKICK\nPING\n")  # waiting and woken within one read
        assert recv_lines(sock, 2) == [b"woken", b"PONG"]


@pytest.mark.parametrize("limit_class", ["normal", "pubsub"])
def test_deliveries_to_a_client_that_reads_nothing_hit_the_output_limit(
        start_server: StartServer, model: str, limit_class: str) -> None:
    # Only the client's own class is limited to 1 MB (the other keeps 256 MB).
    server = push_server(start_server, model, "--limit", f"{limit_class} 1mb 0 0")
    with server.connect() as sock:
        sock.sendall(f"CLASS {limit_class}\n".encode())
        assert recv_until(sock) == b"OK\n"
        sock.sendall(b"FLOOD 65536\n")  # and never read
        log = server.wait_for_log(b"over client-output-buffer-limit hard 1048576", timeout=30)
        # What was queued stayed bounded: the limit plus what the kernel's
        # socket buffers took, never the 100,000 chunks the flood tried. The
        # close names what it held; the flood's own "refused after N" line is
        # not waited for: under socketserver-fork the child exits on the close
        # and may take the flood thread with it before it logs.
        held = [int(n) for n in re.findall(
            rb"(\d+)(?:-byte reply is| bytes of unsent output| bytes unsent) over "
            rb"client-output-buffer-limit hard 1048576", log)]
        assert held and max(held) < 64 * 1024 * 1024, log
        found = re.search(rb"flood refused after (\d+)\n", log)
        if found is not None:
            assert int(found.group(1)) * 65536 < 64 * 1024 * 1024
    with server.connect() as sock:  # the server goes on serving
        sock.sendall(b"PING\n")
        assert recv_until(sock) == b"PONG\n"


def test_sigterm_gives_a_waiting_session_its_last_words(start_server: StartServer,
                                                       model: str) -> None:
    server = push_server(start_server, model, "--grace", "60")
    with server.connect(timeout=30) as sock:
        sock.sendall(b"PING\nWAIT\n")
        assert recv_until(sock) == b"PONG\n"  # the same read ran WAIT too
        server.signal(signal.SIGTERM)
        assert recv_all(sock) == b"stopped\n"
    assert server.wait(timeout=30) == 0  # well before the 60 s grace
