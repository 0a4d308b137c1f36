"""XREAD / XREADGROUP BLOCK on real servers, through redis-py: a wait ends
by an XADD from another connection (under every shared-memory model), by
its timeout (a null reply, as Redis) and by CLIENT UNBLOCK; readers of a
group are served first come, first served; a destroyed group ends the wait
with Redis's NOGROUP error; inside MULTI nothing blocks.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.conftest import ServerProcess
from tests.support import SHARED_MEMORY_MODELS, StartServer

redis = pytest.importorskip("redis")

pytestmark = pytest.mark.timeout(60)


def start_kv(start_server: StartServer, model: str) -> ServerProcess:
    return start_server("serve", "kv", "--resp-port", "0", "--model", model, process=True,
                        expect_listeners=2)


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, f"never: {what}"


def blocked(client: Any, count: int) -> None:
    wait_until(lambda: int(client.info("clients")["blocked_clients"]) == count,
               f"{count} blocked client(s)")


def in_thread(fn: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
    out: list[Any] = []

    def run() -> None:
        try:
            out.append(fn())
        except Exception as exc:  # the error is the result under test
            out.append(exc)
    thread = threading.Thread(target=run)
    thread.start()
    return thread, out


@pytest.mark.parametrize("model", SHARED_MEMORY_MODELS)
def test_xread_block_is_woken_by_xadd_and_times_out_with_null(
        start_server: StartServer, model: str) -> None:
    port = start_kv(start_server, model).addresses[1][1]
    reader = redis.Redis(port=port, socket_timeout=20)
    writer = redis.Redis(port=port, socket_timeout=20)
    try:
        started = time.monotonic()
        assert reader.xread({"s": "$"}, block=200) == []  # redis-py's null
        assert time.monotonic() - started >= 0.2
        writer.xadd("s", {"old": "1"}, id="1-1")
        thread, out = in_thread(lambda: reader.xread({"s": "$", "other": "0"}, block=0))
        blocked(writer, 1)
        new_id = writer.xadd("s", {"f": "v"})
        thread.join(10)
        assert out == [[[b"s", [(new_id, {b"f": b"v"})]]]]
        assert reader.ping()
    finally:
        reader.close()
        writer.close()


def test_group_readers_are_served_in_arrival_order(start_server: StartServer) -> None:
    port = start_kv(start_server, "asyncio").addresses[1][1]
    admin = redis.Redis(port=port, socket_timeout=20)
    first = redis.Redis(port=port, socket_timeout=20)
    second = redis.Redis(port=port, socket_timeout=20)
    try:
        admin.xgroup_create("s", "g", id="$", mkstream=True)
        t1, out1 = in_thread(lambda: first.xreadgroup("g", "c1", {"s": ">"}, block=0))
        blocked(admin, 1)
        t2, out2 = in_thread(lambda: second.xreadgroup("g", "c2", {"s": ">"}, block=0))
        blocked(admin, 2)
        admin.xadd("s", {"n": "1"}, id="1-1")
        t1.join(10)
        assert out1 == [[[b"s", [(b"1-1", {b"n": b"1"})]]]]
        blocked(admin, 1)  # the entry went to the first reader only
        assert admin.xpending("s", "g")["consumers"] == [{"name": b"c1", "pending": 1}]
        admin.xadd("s", {"n": "2"}, id="2-1")
        t2.join(10)
        assert out2 == [[[b"s", [(b"2-1", {b"n": b"2"})]]]]
    finally:
        for client in (admin, first, second):
            client.close()


def test_unblock_destroyed_group_and_multi(start_server: StartServer) -> None:
    port = start_kv(start_server, "thread").addresses[1][1]
    admin = redis.Redis(port=port, socket_timeout=20)
    reader = redis.Redis(port=port, socket_timeout=20)
    try:
        admin.xgroup_create("s", "g", id="$", mkstream=True)
        reader_id = reader.client_id()
        thread, out = in_thread(lambda: reader.xread({"s": "$"}, block=0))
        blocked(admin, 1)
        assert admin.client_unblock(reader_id) == 1
        thread.join(10)
        assert out == [[]]
        thread, out = in_thread(lambda: reader.xreadgroup("g", "c", {"s": ">"}, block=0))
        blocked(admin, 1)
        admin.xgroup_destroy("s", "g")
        thread.join(10)
        assert isinstance(out[0], redis.ResponseError)
        assert str(out[0]) == ("NOGROUP the consumer group this client was blocked on no "
                               "longer exists")
        pipe = admin.pipeline(transaction=True)
        pipe.xread({"s": "$"}, block=0)
        assert pipe.execute() == [[]]
    finally:
        admin.close()
        reader.close()


@pytest.mark.parametrize("how", [["DEL", "s"], ["SET", "s", "v"], ["FLUSHALL"],
                                 ["EVAL", "redis.call('del', KEYS[1]) "
                                  "redis.call('sadd', KEYS[1], 'e')", "1", "s"]])
def test_a_deleted_or_overwritten_stream_ends_xreadgroup_but_not_xread(
        start_server: StartServer, how: list[str]) -> None:
    port = start_kv(start_server, "asyncio").addresses[1][1]
    admin = redis.Redis(port=port, socket_timeout=20)
    grouped = redis.Redis(port=port, socket_timeout=20)
    plain = redis.Redis(port=port, socket_timeout=20)
    try:
        admin.xadd("s", {"f": "v"}, id="666-0")
        admin.xgroup_create("s", "g", id="$")
        t1, out1 = in_thread(lambda: grouped.xreadgroup("g", "c", {"s": ">"}, block=0))
        t2, out2 = in_thread(lambda: plain.xread({"s": "$"}, block=0))
        blocked(admin, 2)
        admin.execute_command(*how)
        t1.join(10)
        assert isinstance(out1[0], redis.ResponseError)
        assert str(out1[0]) == "UNBLOCKED the stream key no longer exists"
        blocked(admin, 1)  # XREAD waits on
        admin.delete("s")
        admin.xadd("s", {"f": "v"}, id="667-0")
        t2.join(10)
        assert out2 == [[[b"s", [(b"667-0", {b"f": b"v"})]]]]
    finally:
        for client in (admin, grouped, plain):
            client.close()
