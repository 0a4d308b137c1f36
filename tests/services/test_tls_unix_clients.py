"""Real clients over TLS and UNIX sockets against the KV server's listeners.

redis-cli (``--tls --cacert``, ``-s``), redis-py (``ssl=True``,
``unix_socket_path=``; sync and asyncio) and ``sockworks client --tls``;
CONFIG GET of the listener settings in force (issue #11 items 3, 4, 6).
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest
import redis
import redis.asyncio

from tests.support import RunningServer, StartServer, require_binary
from tests.tls_support import Pki, make_pki

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def kv(start_server: StartServer, pki: Pki, tmp_path: Path, *extra: str,
       model: str = "asyncio") -> RunningServer:
    """KV with ports: text, RESP, TLS text, TLS RESP; and two UNIX sockets."""
    return start_server("serve", "kv", "--model", model, "--resp-port", "0", "--tls-port", "0",
                        "--tls-resp-port", "0", *pki.server_flags(),
                        "--unixsocket", str(tmp_path / "kv.sock"),
                        "--unixsocket-resp", str(tmp_path / "resp.sock"),
                        "--unixsocketperm", "770", *extra)


@pytest.mark.parametrize("model", ["asyncio", "thread", "pool"])
def test_redis_cli_over_tls_and_unix_socket(start_server: StartServer, pki: Pki,
                                            tmp_path: Path, model: str) -> None:
    cli = require_binary("redis-cli")
    server = kv(start_server, pki, tmp_path, model=model)
    tls_port = server.addresses[3][1]

    def run(*argv: str) -> str:
        done = subprocess.run([cli, *argv], capture_output=True, timeout=30, check=True)
        return done.stdout.decode().strip()

    tls = ["-p", str(tls_port), "--tls", "--cacert", pki.path("ca.pem")]
    assert run(*tls, "SET", "k", "via tls") == "OK"
    assert run("-s", str(tmp_path / "resp.sock"), "GET", "k") == "via tls"
    assert run(*tls, "CONFIG", "GET", "tls-port").split() == ["tls-port", str(tls_port)]
    assert "addr=" + str(tmp_path / "resp.sock") + ":0" in run(
        "-s", str(tmp_path / "resp.sock"), "CLIENT", "LIST")


def test_redis_py_sync_and_asyncio(start_server: StartServer, pki: Pki,
                                   tmp_path: Path) -> None:
    server = kv(start_server, pki, tmp_path)
    tls_port = server.addresses[3][1]
    with redis.Redis(host="127.0.0.1", port=tls_port, ssl=True,
                     ssl_ca_certs=pki.path("ca.pem"), socket_timeout=10) as client:
        assert client.set("a", "1")
        assert client.incr("a") == 2
    with redis.Redis(unix_socket_path=str(tmp_path / "resp.sock"), socket_timeout=10,
                     protocol=3) as client:
        assert client.get("a") == b"2"
        config = client.config_get("unixsocket*")
        assert config == {"unixsocket": str(tmp_path / "resp.sock"), "unixsocketperm": "770"}

    async def use() -> list[object]:
        tls_client = redis.asyncio.Redis(host="127.0.0.1", port=tls_port, ssl=True,
                                         ssl_ca_certs=pki.path("ca.pem"))
        unix_client = redis.asyncio.Redis(unix_socket_path=str(tmp_path / "resp.sock"))
        try:
            await tls_client.set("b", "x")
            return [await unix_client.get("b"), await tls_client.ping()]
        finally:
            await tls_client.aclose()
            await unix_client.aclose()

    assert asyncio.run(asyncio.wait_for(use(), 30)) == [b"x", True]


def test_redis_py_mutual_tls(start_server: StartServer, pki: Pki, tmp_path: Path) -> None:
    server = kv(start_server, pki, tmp_path, "--tls-ca-cert-file", pki.path("ca.pem"))
    tls_port = server.addresses[3][1]
    with redis.Redis(host="127.0.0.1", port=tls_port, ssl=True, socket_timeout=10,
                     ssl_ca_certs=pki.path("ca.pem"), ssl_certfile=pki.path("client.pem"),
                     ssl_keyfile=pki.path("client.key")) as client:
        assert client.ping()
    with redis.Redis(host="127.0.0.1", port=tls_port, ssl=True, socket_timeout=10,
                     ssl_ca_certs=pki.path("ca.pem")) as client, \
            pytest.raises(redis.ConnectionError):
        client.ping()


def test_config_get_answers_the_listeners_in_force(start_server: StartServer, pki: Pki,
                                                   tmp_path: Path) -> None:
    server = kv(start_server, pki, tmp_path)
    with redis.Redis(host="127.0.0.1", port=server.addresses[1][1], socket_timeout=10) as c:
        config = c.config_get("*port*")
        assert config["port"] == str(server.addresses[1][1])
        assert config["tls-port"] == str(server.addresses[3][1])
    plain = start_server("serve", "kv", "--resp-port", "0")
    with redis.Redis(host="127.0.0.1", port=plain.addresses[1][1], socket_timeout=10) as c:
        # Redis's values when the listeners are off.
        assert c.config_get("tls-port") == {"tls-port": "0"}
        assert c.config_get("unixsocket*") == {"unixsocket": "", "unixsocketperm": "0"}


def test_sockworks_client_over_tls(start_server: StartServer, pki: Pki,
                                   tmp_path: Path) -> None:
    server = kv(start_server, pki, tmp_path, "--tls-ca-cert-file", pki.path("ca.pem"),
                "--tls-auth-clients", "optional")
    port = str(server.addresses[2][1])

    def client(*argv: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run([sys.executable, "-m", "sockworks", "client", "--port", port,
                               *argv], capture_output=True, timeout=30, check=False)

    tls = ["--tls", "--cacert", pki.path("ca.pem")]
    assert client(*tls, "SET", "k", "v").stdout == b"OK\n"
    assert client(*tls, "--cert", pki.path("client.pem"), "--key", pki.path("client.key"),
                  "GET", "k").stdout == b"v\n"
    untrusted = client("--tls", "GET", "k")  # the system's CAs do not know ours
    assert untrusted.returncode == 2
    assert b"CERTIFICATE_VERIFY_FAILED" in untrusted.stderr


@pytest.mark.parametrize("model", ["asyncio", "thread"])
def test_passwords_over_tls_and_unix_sockets(start_server: StartServer, pki: Pki,
                                             tmp_path: Path, model: str) -> None:
    """Authentication is the same on every listener: redis-cli -a, redis-py
    password= (sync and asyncio) and sockworks client --password, over TLS
    and UNIX sockets; without the password, NOAUTH / authentication required."""
    cli = require_binary("redis-cli")
    server = kv(start_server, pki, tmp_path, "--requirepass", "s3cret", model=model)
    tls_port = server.addresses[3][1]
    resp_sock = str(tmp_path / "resp.sock")
    tls = ["-p", str(tls_port), "--tls", "--cacert", pki.path("ca.pem")]

    def run(*argv: str) -> str:
        done = subprocess.run([cli, "--no-auth-warning", *argv], capture_output=True,
                              timeout=30, check=True)
        return done.stdout.decode().strip()

    assert run(*tls, "GET", "k").startswith("NOAUTH")
    assert run(*tls, "-a", "s3cret", "SET", "k", "v") == "OK"
    assert run("-s", resp_sock, "GET", "k").startswith("NOAUTH")
    assert run("-s", resp_sock, "-a", "s3cret", "GET", "k") == "v"
    with pytest.raises(redis.exceptions.AuthenticationError):
        redis.Redis(unix_socket_path=resp_sock, password="wrong").ping()
    with redis.Redis(host="127.0.0.1", port=tls_port, ssl=True, ssl_ca_certs=pki.path("ca.pem"),
                     password="s3cret") as r:
        assert r.get("k") == b"v"

    async def via_asyncio() -> bytes | str | None:
        client = redis.asyncio.Redis(unix_socket_path=resp_sock, password="s3cret")
        try:
            value: bytes | str | None = await client.get("k")
            return value
        finally:
            await client.aclose()

    assert asyncio.run(via_asyncio()) == b"v"
    text = [sys.executable, "-m", "sockworks", "client", "--unix", str(tmp_path / "kv.sock")]
    denied = subprocess.run([*text, "GET", "k"], capture_output=True, timeout=30)
    assert denied.stdout == b"ERROR: authentication required\n"
    allowed = subprocess.run([*text, "--password", "s3cret", "GET", "k"], capture_output=True,
                             timeout=30)
    assert (allowed.returncode, allowed.stdout) == (0, b"v\n")
