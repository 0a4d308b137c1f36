"""Hash commands (HSET ... HSCAN).

Arity, flags and key positions are Redis 7.0's (``COMMAND INFO``).
"""

from __future__ import annotations

from typing import Final

from sockworks.services.commands.model import model_read, model_write
from sockworks.services.resp_context import CommandSpec

__all__ = ["SPECS"]

SPECS: Final[tuple[CommandSpec, ...]] = (
    CommandSpec("hset", model_write, -4, ("write", "denyoom", "fast"), (1, 1, 1)),
    CommandSpec("hsetnx", model_write, 4, ("write", "denyoom", "fast"), (1, 1, 1)),
    CommandSpec("hget", model_read, 3, ("readonly", "fast"), (1, 1, 1)),
    CommandSpec("hmget", model_read, -3, ("readonly", "fast"), (1, 1, 1)),
    CommandSpec("hmset", model_write, -4, ("write", "denyoom", "fast"), (1, 1, 1)),
    CommandSpec("hdel", model_write, -3, ("write", "fast"), (1, 1, 1)),
    CommandSpec("hlen", model_read, 2, ("readonly", "fast"), (1, 1, 1)),
    CommandSpec("hstrlen", model_read, 3, ("readonly", "fast"), (1, 1, 1)),
    CommandSpec("hexists", model_read, 3, ("readonly", "fast"), (1, 1, 1)),
    CommandSpec("hkeys", model_read, 2, ("readonly",), (1, 1, 1)),
    CommandSpec("hvals", model_read, 2, ("readonly",), (1, 1, 1)),
    CommandSpec("hgetall", model_read, 2, ("readonly",), (1, 1, 1)),
    CommandSpec("hincrby", model_write, 4, ("write", "denyoom", "fast"), (1, 1, 1)),
    CommandSpec("hincrbyfloat", model_write, 4, ("write", "denyoom", "fast"), (1, 1, 1)),
    CommandSpec("hrandfield", model_read, -2, ("readonly",), (1, 1, 1)),
    CommandSpec("hscan", model_read, -3, ("readonly",), (1, 1, 1)),
)
