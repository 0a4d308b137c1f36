"""Set commands (SADD ... SSCAN).

Arity, flags and key positions are Redis 7.0's (``COMMAND INFO``).
"""

from __future__ import annotations

from typing import Final

from sockworks.services.commands.model import model_read, model_write
from sockworks.services.resp_context import CommandSpec

__all__ = ["SPECS"]

SPECS: Final[tuple[CommandSpec, ...]] = (
    CommandSpec("sadd", model_write, -3, ("write", "denyoom", "fast"), (1, 1, 1)),
    CommandSpec("srem", model_write, -3, ("write", "fast"), (1, 1, 1)),
    CommandSpec("scard", model_read, 2, ("readonly", "fast"), (1, 1, 1)),
    CommandSpec("sismember", model_read, 3, ("readonly", "fast"), (1, 1, 1)),
    CommandSpec("smismember", model_read, -3, ("readonly", "fast"), (1, 1, 1)),
    CommandSpec("smembers", model_read, 2, ("readonly",), (1, 1, 1)),
    CommandSpec("spop", model_write, -2, ("write", "fast"), (1, 1, 1)),
    CommandSpec("srandmember", model_read, -2, ("readonly",), (1, 1, 1)),
    CommandSpec("smove", model_write, 4, ("write", "fast"), (1, 2, 1)),
    CommandSpec("sinter", model_read, -2, ("readonly",), (1, -1, 1)),
    CommandSpec("sintercard", model_read, -3, ("readonly", "movablekeys"), (0, 0, 0)),
    CommandSpec("sunion", model_read, -2, ("readonly",), (1, -1, 1)),
    CommandSpec("sdiff", model_read, -2, ("readonly",), (1, -1, 1)),
    CommandSpec("sinterstore", model_write, -3, ("write", "denyoom"), (1, -1, 1)),
    CommandSpec("sunionstore", model_write, -3, ("write", "denyoom"), (1, -1, 1)),
    CommandSpec("sdiffstore", model_write, -3, ("write", "denyoom"), (1, -1, 1)),
    CommandSpec("sscan", model_read, -3, ("readonly",), (1, 1, 1)),
)
