"""A real redis-server beside an in-process RespSession, for differential tests.

:class:`SessionPair` holds one connection to a redis-server and one
``RespSession`` of a ``RespService`` on a ``MemoryStore`` (or the store it is
given), in the same RESP version, and sends a command to either side. Each
differential module subclasses it with the comparison it needs (byte for
byte, unordered, masked): test_datamodel_differential (and the modules that
import its ``Pair``), test_bitfield, test_introspection, test_dump_differential.
"""

from __future__ import annotations

import socket
from typing import Any

from sockworks.core.stats import ServerStats
from sockworks.protocols.resp import encode_command
from sockworks.services.resp import RespService, RespSession
from sockworks.storage.base import Store
from sockworks.storage.memory import MemoryStore
from tests.redis_support import redis_call

__all__ = ["SessionPair"]


class SessionPair:
    """One connection to redis-server and one RespSession, same protocol."""

    def __init__(self, port: int, proto: int, store: Store | None = None,
                 **service: Any) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.store = store if store is not None else MemoryStore()
        self.service = RespService(self.store, ServerStats(), owns_store=True, **service)
        self.session: RespSession = self.service.new_session("127.0.0.1:1")
        self.proto = proto

    def redis(self, argv: list[bytes]) -> bytes:
        """redis-server's reply to ``argv``, raw."""
        return redis_call(self.sock, argv)

    def ours(self, argv: list[bytes]) -> bytes:
        """The session's reply to ``argv``, raw."""
        return self.session.on_data(encode_command(argv)).data

    def close(self) -> None:
        self.sock.close()
        self.session.on_close()
        self.service.close()
