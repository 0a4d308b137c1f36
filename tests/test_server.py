"""sockworks.Server as a library user drives it: threads, port 0, lifecycle.

Every non-forking model from ``sockworks.models.MODELS`` is started from a
thread that is not the main one, two servers at once, and stopped; errors
(start twice, forking models from start(), bad settings, a port in use) are
checked for their exact behaviour. Nothing here starts a process except the
serve_forever() test, which needs a main thread of its own.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from sockworks import EchoService, KvService, Output, Server, Service, Session
from sockworks.core.config import SERVER_SETTINGS
from sockworks.models import FORKING_MODELS
from sockworks.storage.base import StoreError
from sockworks.storage.embedded import open_embedded_store
from tests.support import SHARED_MEMORY_MODELS, recv_lines, recv_until


def echo_once(address: tuple[str, int], line: bytes = b"ping\n") -> bytes:
    with socket.create_connection(address, timeout=10) as sock:
        sock.sendall(line)
        return recv_until(sock)


@pytest.mark.parametrize("model", SHARED_MEMORY_MODELS)
def test_start_in_a_thread_two_at_once(model: str) -> None:
    results: dict[str, object] = {}

    def run() -> None:
        first = Server(EchoService(), model=model, port=0)
        second = Server(KvService(), model=model, port=0, resp_port=0)
        with first, second:
            results["echo"] = echo_once(first.addresses[0])
            (host, port), (_, resp_port) = second.addresses
            with socket.create_connection((host, port), timeout=10) as sock:
                results["kv"] = recv_until(sock)  # READY
            with socket.create_connection((host, resp_port), timeout=10) as sock:
                sock.sendall(b"*1\r\n$4\r\nPING\r\n")
                results["resp"] = recv_until(sock)
            results["running"] = first.running and second.running
        results["stopped"] = not first.running and not second.running

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(60)
    assert not thread.is_alive()
    assert results == {"echo": b"PING\n", "kv": b"READY\n", "resp": b"+PONG\r\n",
                       "running": True, "stopped": True}


def test_addresses_have_the_real_ports() -> None:
    server = Server(KvService(), port=0, resp_port=0)
    assert server.addresses == []  # not bound yet
    with server:
        (host, port), (host2, resp_port) = server.addresses
        assert host == host2 == "127.0.0.1"
        assert port and resp_port and port != resp_port
    assert server.model == "asyncio"  # KvService's own default


def test_stop_is_graceful_and_releases_the_port() -> None:
    server = Server(EchoService(), model="thread").start()
    address = server.addresses[0]
    sock = socket.create_connection(address, timeout=10)
    sock.sendall(b"warm\n")
    assert recv_until(sock) == b"WARM\n"
    server.stop()
    assert sock.recv(10) == b""  # the idle connection was closed
    sock.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(address, timeout=5)


def test_lifecycle_errors() -> None:
    server = Server(EchoService())
    server.stop()  # not running: a no-op
    server.start()
    with pytest.raises(RuntimeError, match="already running"):
        server.start()
    server.stop()
    server.stop()  # again: a no-op
    with pytest.raises(RuntimeError, match="already stopped"):
        server.start()


@pytest.mark.parametrize("model", FORKING_MODELS)
def test_forking_models_refuse_start(model: str) -> None:
    with pytest.raises(RuntimeError, match="serve_forever"):
        Server(EchoService(), model=model).start()


def test_serve_forever_outside_the_main_thread_is_refused() -> None:
    errors: list[BaseException] = []

    def run() -> None:
        try:
            Server(EchoService()).serve_forever()
        except RuntimeError as exc:
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(10)
    assert len(errors) == 1 and "main thread" in str(errors[0])


def test_settings_are_checked_with_the_cli_messages() -> None:
    with pytest.raises(ValueError, match=r"^max_connections must be >= 1, got 0$"):
        Server(EchoService(), max_connections=0)
    with pytest.raises(ValueError, match=r"^idle_timeout must be >= 0, got -1$"):
        Server(EchoService(), idle_timeout=-1)
    with pytest.raises(ValueError, match="model must be one of"):
        Server(EchoService(), model="fibers")
    with pytest.raises(TypeError, match="unknown server setting"):
        Server(EchoService(), max_conections=5)
    with pytest.raises(TypeError, match="no RESP front end"):
        Server(EchoService(), resp_port=0)
    with pytest.raises(ValueError, match="port must be between"):
        Server(EchoService(), port=70000)
    # Every setting the CLI has is a keyword with the same default.
    defaults = Server(EchoService()).settings
    for name, setting in SERVER_SETTINGS.items():
        assert getattr(defaults, name) == setting.default


def test_port_in_use_raises_and_leaves_nothing_open(tmp_path: Path) -> None:
    with Server(EchoService()) as first:
        port = first.addresses[0][1]
        second = Server(KvService(open_embedded_store(str(tmp_path), "no")), port=0,
                        resp_port=port)
        with pytest.raises(OSError, match="cannot listen"):
            second.start()
        assert not second.running
    # The text port's listener is closed and the store (its log lock) released.
    reopened = open_embedded_store(str(tmp_path), "no")
    reopened.close()


class Shout(Session):
    def on_data(self, data: bytes) -> Output:
        return Output(data.upper())


class ShoutService(Service):
    def new_session(self, peer: str) -> Session:
        return Shout()


@pytest.mark.parametrize("model", SHARED_MEMORY_MODELS)
def test_a_custom_service_under_every_threaded_model(model: str) -> None:
    with Server(ShoutService(), model=model) as server, \
            socket.create_connection(server.addresses[0], timeout=10) as sock:
        sock.sendall(b"abc")
        assert sock.recv(10) == b"ABC"


def test_serve_forever_in_a_main_thread_stops_on_stop() -> None:
    """A separate interpreter, so serve_forever() has a main thread of its own:
    stop() from another thread ends it, and it returns normally."""
    script = textwrap.dedent("""
        import socket, threading
        from sockworks import EchoService, Server
        server = Server(EchoService(), model="asyncio")
        def client():
            while not server.running:
                threading.Event().wait(0.01)
            with socket.create_connection(server.addresses[0], timeout=10) as s:
                s.sendall(b"hi\\n")
                assert s.recv(10) == b"HI\\n"
            server.stop()
        threading.Thread(target=client).start()
        server.serve_forever()
        print("returned", server.running)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "returned False"


def kv_text(address: tuple[str, int], *requests: bytes) -> list[bytes]:
    with socket.create_connection(address, timeout=10) as sock:
        assert recv_until(sock) == b"READY\n"
        sock.sendall(b"".join(r + b"\n" for r in requests))
        return recv_lines(sock, len(requests))


def test_kv_service_persists_with_data_dir(tmp_path: Path) -> None:
    with Server(KvService(data_dir=str(tmp_path), fsync="always")) as server:
        assert kv_text(server.addresses[0], b"SET greeting hello") == [b"OK"]
    with Server(KvService(data_dir=str(tmp_path))) as server:
        assert kv_text(server.addresses[0], b"GET greeting") == [b"hello"]


def test_kv_service_options_are_checked() -> None:
    with pytest.raises(TypeError, match="either store"):
        KvService(open_embedded_store(None), data_dir="x")
    with pytest.raises(ValueError, match="no such command"):
        KvService(rename_commands={"NOPE": ""})
    with pytest.raises(StoreError, match="unsupported store URL"):
        KvService(url="ftp://example")


def test_kv_service_rename_commands() -> None:
    with Server(KvService(rename_commands={"DEL": "", "GET": "fetch"})) as server:
        assert kv_text(server.addresses[0], b"SET k v", b"GET k", b"fetch k", b"DEL k") == [
            b"OK", b"ERROR: unknown command", b"v", b"ERROR: unknown command"]
