"""TLS on the listeners, under every concurrency model (issue #11 item 3).

``sockworks serve echo --tls-port 0`` with a throw-away CA (tests/tls_support.py):
the handshake and a round trip, mutual TLS (required, optional, none), a
certificate from the wrong CA, a plaintext client, a handshake that never
starts, and certificate rotation on SIGHUP (a real process).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import ssl
import time
from pathlib import Path

import pytest

from sockworks.models import FORKING_MODELS, MODELS
from tests.support import RunningServer, StartServer, recv_until
from tests.tls_support import Pki, client_context, make_pki, tls_connect

pytestmark = pytest.mark.timeout(90)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(params=list(MODELS))
def model(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def tls_echo(start_server: StartServer, model: str, pki: Pki, *extra: str) -> RunningServer:
    """Echo with a TLS port (addresses[1]); forking models run as processes."""
    argv = ["serve", "echo", "--model", model, "--tls-port", "0", *pki.server_flags(), *extra]
    if model == "prefork":
        argv += ["--workers", "2"]
    if model in FORKING_MODELS:
        return start_server(*argv, process=True, expect_listeners=2)
    return start_server(*argv)


def round_trip(sock: socket.socket) -> bytes:
    sock.sendall(b"hello tls\n")
    return recv_until(sock)


def refused(sock: ssl.SSLSocket) -> bool:
    """True when the server ends the session instead of answering (TLS 1.3
    reports a refused client certificate on the client's first read)."""
    try:
        sock.sendall(b"hello\n")
        return sock.recv(100) == b""
    except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
        return True


def test_handshake_and_round_trip(start_server: StartServer, model: str, pki: Pki) -> None:
    server = tls_echo(start_server, model, pki)
    with tls_connect(server.addresses[1], client_context(pki)) as sock:
        assert sock.version() in ("TLSv1.2", "TLSv1.3")
        assert round_trip(sock) == b"HELLO TLS\n"
        assert round_trip(sock) == b"HELLO TLS\n"
    with server.connect() as plain:  # the plain port is still plain
        assert round_trip(plain) == b"HELLO TLS\n"


def test_plaintext_client_is_closed_cleanly(start_server: StartServer, model: str,
                                            pki: Pki) -> None:
    server = tls_echo(start_server, model, pki, "--log-level", "DEBUG")
    with socket.create_connection(server.addresses[1], timeout=10) as sock:
        sock.sendall(b"PING\r\n")
        assert sock.recv(100) == b""  # a FIN, not a reset and not a reply
    server.wait_for_log(b"TLS handshake failed")


def test_a_stalled_handshake_is_closed_after_the_idle_timeout(
        start_server: StartServer, model: str, pki: Pki) -> None:
    server = tls_echo(start_server, model, pki, "--idle-timeout", "1")
    with socket.create_connection(server.addresses[1], timeout=10) as sock:
        started = time.monotonic()
        try:
            assert sock.recv(100) == b""
        except ConnectionResetError:
            pass
        waited = time.monotonic() - started
    assert 0.8 <= waited < 6, waited


@pytest.mark.parametrize("model", ["thread", "asyncio", "pool", "socketserver-thread"])
def test_mutual_tls_required(start_server: StartServer, model: str, pki: Pki) -> None:
    server = tls_echo(start_server, model, pki, "--tls-ca-cert-file", pki.path("ca.pem"))
    with tls_connect(server.addresses[1], client_context(pki, "client")) as sock:
        assert round_trip(sock) == b"HELLO TLS\n"
    for cert in (None, "stranger"):  # no certificate; one from a CA the server does not trust
        try:
            sock = tls_connect(server.addresses[1], client_context(pki, cert))
        except (ssl.SSLError, ConnectionResetError):
            continue
        with sock:
            assert refused(sock), cert


@pytest.mark.parametrize("model", ["thread", "asyncio", "pool"])
def test_mutual_tls_optional_and_none(start_server: StartServer, model: str,
                                      pki: Pki) -> None:
    optional = tls_echo(start_server, model, pki, "--tls-ca-cert-file", pki.path("ca.pem"),
                        "--tls-auth-clients", "optional")
    for cert in (None, "client"):
        with tls_connect(optional.addresses[1], client_context(pki, cert)) as sock:
            assert round_trip(sock) == b"HELLO TLS\n"
    try:  # optional still checks a certificate that is sent
        sock = tls_connect(optional.addresses[1], client_context(pki, "stranger"))
    except (ssl.SSLError, ConnectionResetError):
        pass
    else:
        with sock:
            assert refused(sock)
    none = tls_echo(start_server, model, pki, "--tls-ca-cert-file", pki.path("ca.pem"),
                    "--tls-auth-clients", "no")
    with tls_connect(none.addresses[1], client_context(pki, "stranger")) as sock:
        assert round_trip(sock) == b"HELLO TLS\n"


def test_client_refuses_a_server_signed_by_another_ca(start_server: StartServer,
                                                      pki: Pki) -> None:
    server = tls_echo(start_server, "thread", pki)
    ctx = ssl.create_default_context(cafile=pki.path("other_ca.pem"))
    with pytest.raises(ssl.SSLCertVerificationError):
        tls_connect(server.addresses[1], ctx)


def test_protocol_and_cipher_settings(start_server: StartServer, pki: Pki) -> None:
    server = tls_echo(start_server, "asyncio", pki, "--tls-protocols", "TLSv1.3",
                      "--tls-ciphersuites", "TLS_CHACHA20_POLY1305_SHA256")
    with tls_connect(server.addresses[1], client_context(pki)) as sock:
        assert sock.version() == "TLSv1.3"
        assert (sock.cipher() or ("",))[0] == "TLS_CHACHA20_POLY1305_SHA256"
    old = client_context(pki)
    old.maximum_version = ssl.TLSVersion.TLSv1_2
    with pytest.raises((ssl.SSLError, ConnectionResetError)):
        tls_connect(server.addresses[1], old)
    twelve = tls_echo(start_server, "thread", pki, "--tls-protocols", "TLSv1.2",
                      "--tls-ciphers", "ECDHE-RSA-AES128-GCM-SHA256")
    with tls_connect(twelve.addresses[1], client_context(pki)) as sock:
        assert sock.version() == "TLSv1.2"
        assert (sock.cipher() or ("",))[0] == "ECDHE-RSA-AES128-GCM-SHA256"


def _subject(sock: ssl.SSLSocket) -> str:
    cert = sock.getpeercert()
    assert cert is not None
    for rdn in cert["subject"]:
        for name, value in rdn:  # type: ignore[str-unpack]
            if name == "commonName":
                return str(value)
    raise AssertionError(f"no commonName in {cert}")


@pytest.mark.parametrize("model", ["asyncio", "prefork", "thread", "socketserver-fork"])
def test_certificates_rotate_on_sighup(start_server: StartServer, model: str, pki: Pki,
                                       tmp_path: Path) -> None:
    cert, key = tmp_path / "live.pem", tmp_path / "live.key"
    shutil.copy(pki.path("server.pem"), cert)
    shutil.copy(pki.path("server.key"), key)
    argv = ["serve", "echo", "--model", model, "--tls-port", "0", "--tls-cert-file", str(cert),
            "--tls-key-file", str(key)]
    if model == "prefork":
        argv += ["--workers", "2"]
    server = start_server(*argv, process=True, expect_listeners=2)
    reloads = 3 if model == "prefork" else 1  # the parent and each worker
    ctx = client_context(pki)
    old = tls_connect(server.addresses[1], ctx)
    assert _subject(old) == "server one"

    shutil.copy(pki.path("server2.pem"), cert)
    shutil.copy(pki.path("server2.key"), key)
    server.signal(signal.SIGHUP)
    _wait_count(server, b"TLS: reloaded certificate", reloads)
    for _ in range(4):  # new connections (any worker) get the new certificate
        with tls_connect(server.addresses[1], ctx) as sock:
            assert _subject(sock) == "server two"
            assert round_trip(sock) == b"HELLO TLS\n"
    assert round_trip(old) == b"HELLO TLS\n"  # an open connection is not disturbed
    old.close()

    # A bad new pair (a certificate with another's key) leaves the old one serving.
    shutil.copy(pki.path("server.pem"), cert)
    server.signal(signal.SIGHUP)
    _wait_count(server, b"still serving the previous certificate", reloads)
    with tls_connect(server.addresses[1], ctx) as sock:
        assert _subject(sock) == "server two"
        assert round_trip(sock) == b"HELLO TLS\n"


def _wait_count(server: RunningServer, pattern: bytes, count: int) -> None:
    deadline = time.monotonic() + 15
    while server.read_output(0.1).count(pattern) < count:
        assert time.monotonic() < deadline, server.output.decode(errors="replace")


def test_bad_tls_flags_stop_start_up(start_server: StartServer, pki: Pki,
                                     tmp_path: Path) -> None:
    from tests.conftest import spawn_server

    with pytest.raises(AssertionError, match="needs --tls-cert-file"):
        spawn_server("serve", "echo", "--tls-port", "0")
    with pytest.raises(AssertionError, match="cannot load the TLS certificate"):
        spawn_server("serve", "echo", "--tls-port", "0", "--tls-cert-file",
                     pki.path("server.pem"), "--tls-key-file", pki.path("server2.key"))
    missing = str(tmp_path / "nope.pem")
    with pytest.raises(AssertionError, match=r"nope\.pem"):
        spawn_server("serve", "echo", "--tls-port", "0", "--tls-cert-file", missing,
                     "--tls-key-file", missing)
    assert not os.path.exists(missing)
