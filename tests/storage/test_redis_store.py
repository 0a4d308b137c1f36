"""RedisStore against real redis-server processes: one server and a 3-master cluster.

What is checked: the backend-agnostic Store contract (store_contract.py, the
same suite the embedded store passes, with INCR exactness under 50 threads) on
both deployments; multi-key calls spanning cluster nodes; MULTI/EXEC batches
(results, per-call errors, atomicity seen by a concurrent reader); an outage
(killed or frozen Redis, exhausted pool) giving StoreUnavailable instead of a
hang, and service resuming on the same store object once Redis is back; the
store used from a forked child; URLs and the factory.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from sockworks.storage.base import (
    BatchCall,
    SetResult,
    Store,
    StoreError,
    StoreUnavailable,
)
from sockworks.storage.factory import open_store
from sockworks.storage.redis_store import RedisStore, redact_url
from tests.redis_support import (  # noqa: F401  (the *_fixture functions are fixtures)
    RedisCluster,
    RedisServer,
    redis_cluster_fixture,
    redis_server_fixture,
    shared_redis_server_fixture,
    start_cluster,
    tls_redis_server_fixture,
)
from tests.storage.store_contract import StoreContract
from tests.support import require_binary

pytestmark = [pytest.mark.redis, pytest.mark.timeout(60)]

BINARY = bytes(range(256))


@pytest.fixture(params=["single", "cluster"])
def store(request: pytest.FixtureRequest) -> Iterator[RedisStore]:
    """A flushed RedisStore on the shared server or on the shared cluster."""
    if request.param == "single":
        server: RedisServer = request.getfixturevalue("shared_redis_server")
        url = server.url
    else:
        cluster: RedisCluster = request.getfixturevalue("redis_cluster")
        url = cluster.url
    st = RedisStore(url, max_connections=32)
    st.flushdb()
    try:
        yield st
    finally:
        st.close()


def closed_port() -> tuple[socket.socket, int]:
    """A loopback port we hold bound but not listening: connects are refused."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    return sock, sock.getsockname()[1]


def run_threads(count: int, target: object) -> None:
    errors: list[BaseException] = []

    def wrapped() -> None:
        try:
            target()  # type: ignore[operator]
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=wrapped) for _ in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
        assert not t.is_alive(), "worker thread hung"
    if errors:
        raise errors[0]


# -- the backend-agnostic contract (store_contract.py) -----------------------------

class TestRedisContract(StoreContract):
    """The contract every Store passes, on one redis-server."""

    @pytest.fixture
    def store(self, shared_redis_server: RedisServer) -> Iterator[Store]:
        st = RedisStore(shared_redis_server.url, max_connections=64)
        st.flushdb()
        try:
            yield st
        finally:
            st.close()

    # A group of calls cannot be isolated over Redis (inside MULTI every reply
    # is QUEUED): the store says so, and a batch takes only single calls.
    def test_groups_are_not_isolated_and_batches_take_single_calls(
            self, store: Store) -> None:
        assert store.isolates_groups is False
        with pytest.raises(ValueError, match="exactly one Store call"):
            store.execute_batch([lambda st: (st.get(b"a"), st.get(b"b"))])
        with pytest.raises(ValueError, match="exactly one Store call"):
            store.execute_batch([lambda st: st.get(b"a") or b"default"])
        with pytest.raises(ValueError, match="exactly one Store call"):
            store.execute_batch([lambda st: None])


class TestRedisClusterContract(TestRedisContract):
    """The same contract on a 3-master Redis Cluster."""

    @pytest.fixture
    def store(self, redis_cluster: RedisCluster) -> Iterator[Store]:
        st = RedisStore(redis_cluster.url, max_connections=64)
        st.flushdb()
        try:
            yield st
        finally:
            st.close()


# -- Redis-specific behaviour, single server and cluster ---------------------------------

def test_set_options(store: RedisStore) -> None:
    assert store.set(b"k", b"1", nx=True) == SetResult(True)
    assert store.set(b"k", b"2", nx=True) == SetResult(False)
    assert store.get(b"k") == b"1"
    assert store.set(b"other", b"x", xx=True) == SetResult(False)
    assert store.get(b"other") is None
    assert store.set(b"k", b"3", xx=True) == SetResult(True)
    assert store.set(b"k", b"4", get=True) == SetResult(True, b"3")
    assert store.set(b"new", b"1", get=True) == SetResult(True, None)
    # NX with GET (Redis >= 7.0): no write, old value reported.
    assert store.set(b"k", b"5", nx=True, get=True) == SetResult(False, b"4")
    assert store.set(b"absent", b"5", nx=True, get=True) == SetResult(True, None)
    assert store.set(b"nope", b"5", xx=True, get=True) == SetResult(False, None)
    assert store.set(b"k", b"6", xx=True, get=True) == SetResult(True, b"4")
    assert store.get(b"k") == b"6"


def test_multi_key_calls(store: RedisStore) -> None:
    keys = [b"key:%d" % i for i in range(40)]    # spread over every cluster node
    store.mset([(k, k + b"!") for k in keys])
    assert store.mget(keys) == [k + b"!" for k in keys]
    assert store.mget([keys[0], b"missing", keys[0]]) == [b"key:0!", None, b"key:0!"]
    assert store.mget([]) == []
    assert store.exists(keys) == 40
    assert store.exists([keys[0], keys[0], b"missing"]) == 2   # counted twice, as Redis
    assert store.exists([]) == 0
    assert store.dbsize() == 40
    assert store.delete([keys[0], keys[0], keys[1], b"missing"]) == 2
    assert store.delete([]) == 0
    assert store.dbsize() == 38
    store.mset([(b"dup", b"1"), (b"dup", b"2")])
    assert store.get(b"dup") == b"2"
    store.mset([])


def test_info(store: RedisStore) -> None:
    store.mset([(b"i%d" % i, b"1") for i in range(7)])
    store.set(b"e", b"1", px=60_000)
    info = store.info()
    assert info["store_status"] == "ok"
    assert info["store_keys"] == 8
    assert info["store_expires"] == 1
    assert info["store_backend"] in ("redis", "redis-cluster")


# -- MULTI/EXEC ------------------------------------------------------------------

def test_batch_is_atomic_for_a_concurrent_reader(store: RedisStore) -> None:
    """Writers move both counters in one batch; a reader (one MGET) must never
    see them differ. The filler between the two INCRs is larger than Redis's
    16 KiB read buffer, so a plain (non-MULTI) pipeline of the same calls is
    split over several event-loop turns and the reader does catch it mid-way."""
    stop = threading.Event()
    mismatches: list[list[bytes | None]] = []
    filler: list[BatchCall] = [lambda st: st.get(b"{pair}" + b"f" * 200)] * 200

    def writer() -> None:
        for _ in range(150):
            store.execute_batch([lambda st: st.incrby(b"{pair}a", 1), *filler,
                                 lambda st: st.incrby(b"{pair}b", 1)])

    def reader() -> None:
        while not stop.is_set():
            a, b = store.mget([b"{pair}a", b"{pair}b"])
            if a != b:
                mismatches.append([a, b])

    reading = threading.Thread(target=reader)
    reading.start()
    try:
        run_threads(4, writer)
    finally:
        stop.set()
        reading.join(30)
    assert mismatches == []
    assert store.mget([b"{pair}a", b"{pair}b"]) == [b"600", b"600"]


def test_cluster_batch_across_slots_is_refused(redis_cluster: RedisCluster) -> None:
    st = RedisStore(redis_cluster.url)
    try:
        with pytest.raises(StoreError, match="CROSSSLOT"):
            st.execute_batch([lambda s: s.set(b"a", b"1"), lambda s: s.set(b"b", b"1")])
        with pytest.raises(StoreError, match="DBSIZE"):
            st.execute_batch([lambda s: s.dbsize()])
    finally:
        st.close()


# -- outages ---------------------------------------------------------------------

def test_redis_killed_then_restarted_on_same_port(redis_server: RedisServer) -> None:
    st = RedisStore(redis_server.url, max_connections=8)
    try:
        # Fill the pool with several live connections first: after the
        # restart every one of them is dead and must be replaced.
        run_threads(8, lambda: [st.incrby(b"n", 1) for _ in range(50)])
        assert st.get(b"n") == b"400"
        redis_server.kill()
        for _ in range(3):
            with pytest.raises(StoreUnavailable, match="redis unavailable"):
                st.get(b"n")
        with pytest.raises(StoreUnavailable):
            st.incrby(b"n", 1)
        info = st.info()     # INFO keeps answering during the outage
        assert info["store_status"].startswith("redis unavailable")
        redis_server.start()      # same port, empty dataset (persistence is off)
        # Every pooled connection is stale now; none of them may surface.
        results: list[int] = []
        run_threads(8, lambda: results.append(st.incrby(b"n", 1)))
        assert sorted(results) == list(range(1, 9))
        assert st.info()["store_status"] == "ok"
    finally:
        st.close()


def test_frozen_redis_times_out_instead_of_hanging(redis_server: RedisServer) -> None:
    st = RedisStore(redis_server.url, socket_timeout=0.5)
    try:
        st.set(b"k", b"v")
        redis_server.signal(signal.SIGSTOP)
        try:
            with pytest.raises(StoreUnavailable, match="redis unavailable"):
                st.get(b"k")
        finally:
            redis_server.signal(signal.SIGCONT)
        assert st.get(b"k") == b"v"
    finally:
        st.close()


def test_burst_beyond_the_pool_waits_for_a_connection(shared_redis_server: RedisServer) -> None:
    """More threads than pooled connections: the extra calls queue for a free
    connection instead of failing (BlockingConnectionPool)."""
    st = RedisStore(shared_redis_server.url, max_connections=2)
    try:
        st.delete([b"burst"])
        run_threads(16, lambda: [st.incrby(b"burst", 1) for _ in range(100)])
        assert st.get(b"burst") == b"1600"
        assert len(st._client.connection_pool._connections) <= 2
    finally:
        st.close()


def test_exhausted_pool_waits_then_reports(redis_server: RedisServer) -> None:
    """With every connection stuck on a frozen Redis, one more call waits for
    the pool timeout and gets StoreUnavailable (not an unbounded wait)."""
    st = RedisStore(redis_server.url, max_connections=2, socket_timeout=3.0, pool_timeout=0.2)
    try:
        st.set(b"k", b"v")
        redis_server.signal(signal.SIGSTOP)
        errors: list[str] = []
        try:
            stuck = [threading.Thread(target=lambda: errors.append(_error_of(st.get, b"k")))
                     for _ in range(2)]
            for t in stuck:
                t.start()
            # Bounded wait until both connections are checked out.
            deadline = time.monotonic() + 10
            while len(st._client.connection_pool._connections) < 2:
                assert time.monotonic() < deadline
                time.sleep(0.01)
            with pytest.raises(StoreUnavailable, match="no free connection"):
                st.get(b"k")
        finally:
            redis_server.signal(signal.SIGCONT)
        for t in stuck:
            t.join(30)
        assert st.get(b"k") == b"v"
    finally:
        st.close()


def _error_of(fn: object, *args: object) -> str:
    try:
        fn(*args)  # type: ignore[operator]
    except StoreError as exc:
        return str(exc)
    return ""


def test_unreachable_at_start_then_reachable(tmp_path: Path) -> None:
    """The server may start before Redis: calls fail, then work, same store."""
    binary = require_binary("redis-server")
    holder, port = closed_port()
    st = RedisStore(f"redis://127.0.0.1:{port}/0")
    try:
        with pytest.raises(StoreUnavailable):
            st.get(b"k")
        holder.close()
        server = RedisServer(binary, tmp_path, port)
        try:
            server.start()
        except RuntimeError:
            pytest.skip("the port was taken meanwhile")
        try:
            assert st.set(b"k", b"v").written
            assert st.get(b"k") == b"v"
        finally:
            server.kill()
    finally:
        holder.close()
        st.close()


@pytest.mark.timeout(90)
def test_cluster_down_then_back(tmp_path: Path) -> None:
    cluster = start_cluster(require_binary("redis-server"), require_binary("redis-cli"), tmp_path)
    st = RedisStore(cluster.url)
    try:
        st.mset([(b"c%d" % i, b"1") for i in range(20)])
        assert st.dbsize() == 20
        cluster.stop()
        with pytest.raises(StoreUnavailable):
            st.get(b"c1")
        with pytest.raises(StoreUnavailable):
            st.incrby(b"c1", 1)
        with pytest.raises(StoreUnavailable):
            st.dbsize()
        for server in cluster.servers:     # same ports, same nodes.conf
            server.start()
        # The nodes re-form the cluster by gossip; calls fail with
        # StoreUnavailable until it is ok, then work on the same store.
        deadline = time.monotonic() + 30
        while True:
            try:
                assert st.incrby(b"c1", 5) == 5     # data was not persisted
                break
            except StoreUnavailable:
                assert time.monotonic() < deadline, "cluster service did not resume"
                time.sleep(0.1)
        assert st.set(b"c2", b"x").written
        assert st.get(b"c2") == b"x"
    finally:
        st.close()
        cluster.stop()


def test_cluster_unreachable_at_start() -> None:
    holder, port = closed_port()
    try:
        st = RedisStore(f"redis+cluster://127.0.0.1:{port}")
        with pytest.raises(StoreUnavailable, match="redis unavailable"):
            st.get(b"k")
        st.close()
    finally:
        holder.close()


# -- TLS -------------------------------------------------------------------------

def test_rediss_with_the_servers_ca(tls_redis_server: RedisServer) -> None:
    st = open_store(tls_redis_server.url, None, "everysec")
    try:
        assert st.set(b"k", BINARY).written
        assert st.get(b"k") == BINARY
        assert st.incrby(b"n", 2) == 2
        assert st.info()["store_url"] == f"rediss://127.0.0.1:{tls_redis_server.port}/0"
    finally:
        st.close()


def test_rediss_refuses_an_unverified_server(tls_redis_server: RedisServer) -> None:
    st = RedisStore(f"rediss://127.0.0.1:{tls_redis_server.port}/0")   # no CA given
    try:
        with pytest.raises(StoreUnavailable, match="certificate verify failed"):
            st.get(b"k")
    finally:
        st.close()


def test_plain_redis_url_on_a_tls_port_fails_cleanly(tls_redis_server: RedisServer) -> None:
    st = RedisStore(f"redis://127.0.0.1:{tls_redis_server.port}/0", socket_timeout=1.0)
    try:
        with pytest.raises(StoreUnavailable):
            st.get(b"k")
    finally:
        st.close()


# -- fork ------------------------------------------------------------------------

def test_store_used_in_forked_child_and_parent(store: RedisStore) -> None:
    """The fork models fork after the store exists: the child's pool must not
    reuse the parent's sockets (redis-py resets a pool used from a new pid)."""
    store.incrby(b"forked", 1)       # the parent's pool now holds a connection
    with warnings.catch_warnings():
        # Python warns about fork() in a process with threads (our Redis log
        # reader); the fork and prefork models fork the same way.
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:      # child: use the inherited store, report by exit code
        code = 1
        try:
            for _ in range(300):
                store.incrby(b"forked", 1)
            code = 0
        finally:
            os._exit(code)
    for _ in range(300):
        store.incrby(b"forked", 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert store.get(b"forked") == b"601"


# -- URLs, the factory, the optional dependency ----------------------------------

def test_redact_url() -> None:
    assert redact_url("redis://user:secret@h:6379/2?ssl_password=x") == "redis://user:***@h:6379/2"
    assert redact_url("rediss://:secret@h:1/0") == "rediss://:***@h:1/0"
    assert redact_url("redis+cluster://h:7000") == "redis+cluster://h:7000"


def test_open_store_picks_backend(shared_redis_server: RedisServer) -> None:
    st = open_store(shared_redis_server.url, None, "everysec", max_connections=4)
    try:
        assert isinstance(st, RedisStore)
        assert st.shared_across_processes
        assert st.max_connections == 4
    finally:
        st.close()


@pytest.mark.parametrize("url", [None, "memory://", "MEMORY", "memory:"])
def test_open_store_embedded_by_default(url: str | None, tmp_path: Path) -> None:
    st = open_store(url, str(tmp_path), "always")
    try:
        assert not isinstance(st, RedisStore)
        assert not st.shared_across_processes
        st.set(b"k", b"v")
    finally:
        st.close()
    st = open_store(url, str(tmp_path), "always")     # the data dir was used
    try:
        assert st.get(b"k") == b"v"
    finally:
        st.close()


@pytest.mark.parametrize("url", ["mysql://h/0", "redis-cluster://h:1", "file:///tmp/x", ""])
def test_open_store_rejects_other_urls(url: str) -> None:
    with pytest.raises(StoreError, match="unsupported store URL"):
        open_store(url, None, "everysec")


def test_cluster_url_must_use_db_0() -> None:
    with pytest.raises(StoreError, match="only database 0"):
        RedisStore("redis+cluster://127.0.0.1:1/3")


def test_errors_show_neither_password_nor_backend_address() -> None:
    """Clients of a sockworks server see why, not where the backend lives."""
    holder, port = closed_port()
    try:
        st = RedisStore(f"redis://user:hunter2@127.0.0.1:{port}/0")
        with pytest.raises(StoreUnavailable) as caught:
            st.get(b"k")
        assert str(caught.value).startswith("redis unavailable: ")
        assert "Connection refused" in str(caught.value)
        assert str(port) not in str(caught.value)
        assert "hunter2" not in str(caught.value)
        assert "hunter2" not in str(st.info())
        st.close()
    finally:
        holder.close()


def test_closed_store_refuses_calls(shared_redis_server: RedisServer) -> None:
    st = RedisStore(shared_redis_server.url)
    st.close()
    with pytest.raises(StoreError, match="closed"):
        st.get(b"k")


def test_missing_redis_package_gives_install_hint() -> None:
    """In a fresh interpreter where ``import redis`` fails (as without the
    extra): the core imports, and asking for Redis says what to install."""
    code = (
        "import sys; sys.modules['redis'] = None\n"
        "import sockworks.storage.redis_store\n"
        "from sockworks.storage.factory import open_store\n"
        "from sockworks.storage.base import StoreError\n"
        "try:\n"
        "    open_store('redis://127.0.0.1:1/0', None, 'everysec')\n"
        "except StoreError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60,
                         check=True, env=dict(os.environ, PYTHONWARNINGS="error"))
    assert b"pip install 'sockworks[redis]'" in out.stdout

