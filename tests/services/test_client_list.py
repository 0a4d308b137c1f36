"""CLIENT LIST tells the truth about each client's memory and idle time.

A client that pipelines big GETs and never reads holds replies the server
could not send: ``omem`` (and ``tot-mem``) show them from another
connection, under the models that buffer replies differently.
"""

from __future__ import annotations

import socket
import time
from typing import Any

import pytest
import redis

from sockworks import KvService, Server

VALUE = b"v" * (256 * 1024)


@pytest.mark.parametrize("model", ["asyncio", "thread", "pool"])
def test_omem_shows_a_non_readers_unsent_replies(model: str) -> None:
    with Server(KvService(), model=model, resp_port=0) as server:
        host, port = server.addresses[1]
        admin = redis.Redis(host=host, port=port, socket_timeout=10)
        admin.set("big", VALUE)
        hog = socket.create_connection((host, port), timeout=10)
        hog.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        try:
            hog.sendall(b"*2\r\n$3\r\nGET\r\n$3\r\nbig\r\n" * 40)  # 10 MB of replies
            deadline = time.monotonic() + 10
            while True:
                listing = admin.client_list()
                clients = [{k: str(v) for k, v in c.items()} for c in listing]
                hogs = [c for c in clients if c["cmd"] == "get"]
                if (hogs and int(hogs[0]["omem"]) > 0) or time.monotonic() > deadline:
                    break
                time.sleep(0.02)  # polled with a deadline: the server fills its buffer
            assert hogs and int(hogs[0]["omem"]) > 0, clients
            assert int(hogs[0]["tot-mem"]) >= int(hogs[0]["omem"])
            me = [c for c in clients if c["cmd"] == "client|list"]
            assert me and me[0]["idle"] == "0"
        finally:
            hog.close()
            admin.close()


def test_client_kill_by_type_and_user() -> None:
    """TYPE pubsub takes the subscriber only (RESP3 too); USER takes every
    connection of that user but the killer (SKIPME yes)."""
    with Server(KvService(), model="asyncio", resp_port=0) as server:
        host, port = server.addresses[1]
        admin = redis.Redis(host=host, port=port, socket_timeout=10)
        plain = redis.Redis(host=host, port=port, socket_timeout=10)
        # redis-py's pubsub() is untyped: Any keeps mypy --strict quiet.
        subscribers: list[Any] = [redis.Redis(host=host, port=port, socket_timeout=10, protocol=proto)
                       for proto in (2, 3)]
        pubsubs = [client.pubsub() for client in subscribers]
        try:
            plain.ping()
            for ps in pubsubs:
                ps.subscribe("news")
                assert ps.get_message(timeout=10)["type"] == "subscribe"
            assert admin.client_kill_filter(_type="pubsub") == 2
            assert admin.client_kill_filter(_type="pubsub") == 0
            assert admin.client_kill_filter(user="default") == 1  # plain
            assert admin.client_kill_filter(_type="normal") == 0
            assert admin.ping()
        finally:
            for ps in pubsubs:
                ps.close()
            for client in (admin, plain, *subscribers):
                client.close()


@pytest.mark.parametrize("model", ["asyncio", "thread"])
def test_client_list_filters_and_local_address(model: str) -> None:
    """laddr= is the address the client connected to (what CLIENT KILL LADDR
    matches); CLIENT LIST ID and TYPE choose lines as Redis's do."""
    with Server(KvService(), model=model, resp_port=0) as server:
        host, port = server.addresses[1]
        # Any: redis-py types client_kill_filter's laddr as a bool.
        admin: Any = redis.Redis(host=host, port=port, socket_timeout=10)
        other = redis.Redis(host=host, port=port, socket_timeout=10)
        subscriber: Any = redis.Redis(host=host, port=port, socket_timeout=10)
        ps = subscriber.pubsub()
        try:
            other.ping()
            ps.subscribe("news")
            assert ps.get_message(timeout=10)["type"] == "subscribe"
            me = admin.client_id()
            clients = admin.client_list()
            assert {c["laddr"] for c in clients} == {f"{host}:{port}"}
            fds = [int(c["fd"]) for c in clients]
            assert len(set(fds)) == 3 and min(fds) > 2  # each its own socket's
            assert [c["id"] for c in admin.client_list(client_id=[me])] == [str(me)]
            assert [c["sub"] for c in admin.client_list(_type="pubsub")] == ["1"]
            assert len(admin.client_list(_type="normal")) == 2
            assert admin.client_list(_type="replica") == []
            assert admin.client_kill_filter(laddr="127.0.0.1:1") == 0
            assert admin.client_kill_filter(laddr=f"{host}:{port}") == 2  # not me
            assert [c["id"] for c in admin.client_list()] == [str(me)]
        finally:
            ps.close()
            for client in (admin, other, subscriber):
                client.close()
