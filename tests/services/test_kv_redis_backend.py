"""Several ``sockworks serve kv`` servers on one Redis backend (issue 4, part 2).

Real processes all the way: redis-server (single or a 3-master cluster) from
tests/redis_support.py, and sockworks KV servers under different concurrency
models, one of them ``prefork`` (which the embedded store refuses), started
with ``--store redis://...``. Checked: each server sees the others' writes,
INCR stays exact under concurrent clients on every server, and a Redis outage
gives clients ``ERROR:`` lines on open connections (never a hang or a drop),
after which the same connections work again.
"""

from __future__ import annotations

import itertools
import socket
import subprocess
import sys
import threading

import pytest

from sockworks.models import FORKING_MODELS
from tests.conftest import ServerProcess
from tests.redis_support import (  # noqa: F401  (the *_fixture functions are fixtures)
    RedisCluster,
    RedisServer,
    redis_cluster_fixture,
    redis_server_fixture,
)
from tests.support import IN_CI, SHARED_MEMORY_MODELS, StartServer

pytestmark = [pytest.mark.redis, pytest.mark.timeout(90),
              pytest.mark.usefixtures("kv_accepts_redis")]

#: Two servers of different models on one backend; the second of each pair
#: forks (prefork workers, or a process per connection). Derived from the
#: registry: every shared-memory model is paired with a forking one in turn,
#: so every registered model (a new one too) runs against the Redis backend.
MODEL_PAIRS = list(zip(SHARED_MEMORY_MODELS, itertools.cycle(FORKING_MODELS)))
CLIENTS_PER_SERVER = 3
INCRS_PER_CLIENT = 300
#: Replies are read with this socket timeout: a hang fails the test instead
#: of stalling it (Redis-side timeouts in the server are 2 s).
CLIENT_TIMEOUT = 20.0


@pytest.fixture(scope="module")
def kv_accepts_redis() -> None:
    """Skip (fail under CI) while `serve kv` still refuses redis:// stores.

    Probed with a cluster URL naming database 5, which every version rejects
    at once without contacting anything: a server that opens stores through
    sockworks.storage.factory says "only database 0"; one that does not yet
    says "unsupported --store". (Probing with a real start would leave a
    failed process behind for each test.)
    """
    probe = subprocess.run(
        [sys.executable, "-m", "sockworks", "serve", "kv", "--port", "0",
         "--store", "redis+cluster://127.0.0.1:1/5"],
        stdin=subprocess.DEVNULL, capture_output=True, timeout=60, check=False)
    if b"unsupported --store" in probe.stderr:
        if IN_CI:
            pytest.fail("serve kv refuses --store redis:// (it must open stores through "
                        "sockworks.storage.factory.open_store)")
        pytest.skip("serve kv does not accept --store redis:// yet")


def start_kv(start_server: StartServer, url: str, model: str) -> ServerProcess:
    args = ["serve", "kv", "--store", url, "--model", model]
    if model == "prefork":
        args += ["--workers", "2"]
    return start_server(*args, process=True)


class Client:
    """A line client of the KV text protocol (reads the READY greeting)."""

    def __init__(self, server: ServerProcess) -> None:
        self.sock: socket.socket = server.connect(timeout=CLIENT_TIMEOUT)
        self.buf = bytearray()
        assert self.lines(1) == [b"READY"]

    def lines(self, count: int) -> list[bytes]:
        while self.buf.count(b"\n") < count:
            chunk = self.sock.recv(65536)
            assert chunk, f"server closed the connection after {bytes(self.buf)!r}"
            self.buf += chunk
        *lines, rest = bytes(self.buf).split(b"\n", count)
        self.buf[:] = rest
        return lines

    def send(self, *commands: bytes) -> list[bytes]:
        self.sock.sendall(b"".join(c + b"\n" for c in commands))
        return self.lines(len(commands))

    def close(self) -> None:
        self.sock.close()


@pytest.fixture(params=["single", "cluster"])
def backend_url(request: pytest.FixtureRequest) -> str:
    if request.param == "single":
        server: RedisServer = request.getfixturevalue("redis_server")
        return server.url
    cluster: RedisCluster = request.getfixturevalue("redis_cluster")
    return cluster.url


@pytest.mark.parametrize("models", MODEL_PAIRS, ids=["-".join(p) for p in MODEL_PAIRS])
def test_servers_share_one_dataset_and_incr_is_exact(
        start_server: StartServer, backend_url: str, models: tuple[str, str]) -> None:
    servers = [start_kv(start_server, backend_url, model) for model in models]
    a, b = Client(servers[0]), Client(servers[1])
    try:
        counter = b"counter:" + "-".join(models).encode()
        assert a.send(b"DEL " + counter)[0] in (b"DELETED", b"NOT_FOUND")
        # Writes through one server are read through the other, both ways.
        assert a.send(b"SET shared:a from-a") == [b"OK"]
        assert b.send(b"GET shared:a") == [b"from-a"]
        assert b.send(b"SET shared:b from-b", b"EXPIRE shared:b 100") == [b"OK", b"1"]
        assert a.send(b"GET shared:b", b"EXISTS shared:a shared:b") == [b"from-b", b"2"]
        assert a.send(b"DEL shared:b") == [b"DELETED"]
        assert b.send(b"GET shared:b") == [b"NOT_FOUND"]

        # Concurrent INCR through both servers, pipelined in chunks.
        errors: list[BaseException] = []

        def incr(server: ServerProcess) -> None:
            try:
                client = Client(server)
                try:
                    for _ in range(INCRS_PER_CLIENT // 50):
                        replies = client.send(*[b"INCR " + counter] * 50)
                        assert all(r.lstrip(b"-").isdigit() for r in replies), replies
                finally:
                    client.close()
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=incr, args=(server,))
                   for server in servers for _ in range(CLIENTS_PER_SERVER)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not any(t.is_alive() for t in threads), "a client hung"
        if errors:
            raise errors[0]
        total = str(len(servers) * CLIENTS_PER_SERVER * INCRS_PER_CLIENT).encode()
        assert a.send(b"GET " + counter) == [total]
        assert b.send(b"GET " + counter) == [total]
    finally:
        a.close()
        b.close()


def test_redis_outage_gives_errors_then_service_resumes(
        start_server: StartServer, redis_server: RedisServer) -> None:
    servers = [start_kv(start_server, redis_server.url, model) for model in ("pool", "prefork")]
    clients = [Client(server) for server in servers]
    try:
        assert clients[0].send(b"SET k before") == [b"OK"]
        assert clients[1].send(b"GET k") == [b"before"]

        redis_server.kill()
        for client in clients:
            replies = client.send(b"GET k", b"SET k during", b"INCR n", b"PING")
            for reply in replies[:3]:
                assert reply.startswith(b"ERROR: redis unavailable"), replies
            assert replies[3] == b"PONG"      # the connection stays open and usable
        # New connections are accepted and answered during the outage too.
        late = Client(servers[1])
        assert late.send(b"GET k")[0].startswith(b"ERROR: ")
        late.close()

        redis_server.start()    # same port; the dataset is empty (no persistence)
        # The same connections work again, with no reconnect by the client.
        assert clients[0].send(b"GET k") == [b"NOT_FOUND"]
        assert clients[1].send(b"SET k after", b"INCR n") == [b"OK", b"1"]
        assert clients[0].send(b"GET k", b"INCR n") == [b"after", b"2"]
        fresh = Client(servers[1])
        assert fresh.send(b"INCR n") == [b"3"]
        fresh.close()
    finally:
        for client in clients:
            client.close()
