"""Sorted-set commands (ZADD ... ZSCAN), and BZPOPMIN BZPOPMAX BZMPOP (resp_blocking.py).

Arity, flags and key positions are Redis 7.0's (``COMMAND INFO``).
"""

from __future__ import annotations

from typing import Final

from sockworks.services.commands.model import model_read, model_write
from sockworks.services.resp_blocking import (
    cmd_bzmpop,
    cmd_bzpopmax,
    cmd_bzpopmin,
)
from sockworks.services.resp_context import CommandSpec

__all__ = ["SPECS"]

SPECS: Final[tuple[CommandSpec, ...]] = (
    CommandSpec("zadd", model_write, -4, ("write", "denyoom", "fast"), (1, 1, 1)),
    CommandSpec("zincrby", model_write, 4, ("write", "denyoom", "fast"), (1, 1, 1)),
    CommandSpec("zscore", model_read, 3, ("readonly", "fast"), (1, 1, 1)),
    CommandSpec("zmscore", model_read, -3, ("readonly", "fast"), (1, 1, 1)),
    CommandSpec("zcard", model_read, 2, ("readonly", "fast"), (1, 1, 1)),
    CommandSpec("zcount", model_read, 4, ("readonly", "fast"), (1, 1, 1)),
    CommandSpec("zlexcount", model_read, 4, ("readonly", "fast"), (1, 1, 1)),
    CommandSpec("zrank", model_read, 3, ("readonly", "fast"), (1, 1, 1)),
    CommandSpec("zrevrank", model_read, 3, ("readonly", "fast"), (1, 1, 1)),
    CommandSpec("zrange", model_read, -4, ("readonly",), (1, 1, 1)),
    CommandSpec("zrangestore", model_write, -5, ("write", "denyoom"), (1, 2, 1)),
    CommandSpec("zrevrange", model_read, -4, ("readonly",), (1, 1, 1)),
    CommandSpec("zrangebyscore", model_read, -4, ("readonly",), (1, 1, 1)),
    CommandSpec("zrevrangebyscore", model_read, -4, ("readonly",), (1, 1, 1)),
    CommandSpec("zrangebylex", model_read, -4, ("readonly",), (1, 1, 1)),
    CommandSpec("zrevrangebylex", model_read, -4, ("readonly",), (1, 1, 1)),
    CommandSpec("zrem", model_write, -3, ("write", "fast"), (1, 1, 1)),
    CommandSpec("zremrangebyrank", model_write, 4, ("write",), (1, 1, 1)),
    CommandSpec("zremrangebyscore", model_write, 4, ("write",), (1, 1, 1)),
    CommandSpec("zremrangebylex", model_write, 4, ("write",), (1, 1, 1)),
    CommandSpec("zpopmin", model_write, -2, ("write", "fast"), (1, 1, 1)),
    CommandSpec("zpopmax", model_write, -2, ("write", "fast"), (1, 1, 1)),
    CommandSpec("zrandmember", model_read, -2, ("readonly",), (1, 1, 1)),
    CommandSpec("zunionstore", model_write, -4, ("write", "denyoom", "movablekeys"), (1, 1, 1)),
    CommandSpec("zinterstore", model_write, -4, ("write", "denyoom", "movablekeys"), (1, 1, 1)),
    CommandSpec("zdiffstore", model_write, -4, ("write", "denyoom", "movablekeys"), (1, 1, 1)),
    CommandSpec("zunion", model_read, -3, ("readonly", "movablekeys"), (0, 0, 0)),
    CommandSpec("zinter", model_read, -3, ("readonly", "movablekeys"), (0, 0, 0)),
    CommandSpec("zdiff", model_read, -3, ("readonly", "movablekeys"), (0, 0, 0)),
    CommandSpec("zintercard", model_read, -3, ("readonly", "movablekeys"), (0, 0, 0)),
    CommandSpec("zmpop", model_write, -4, ("write", "movablekeys"), (0, 0, 0)),
    CommandSpec("zscan", model_read, -3, ("readonly",), (1, 1, 1)),
    CommandSpec("bzpopmin", cmd_bzpopmin, -3,
                ("write", "noscript", "blocking", "fast"), (1, -2, 1)),
    CommandSpec("bzpopmax", cmd_bzpopmax, -3,
                ("write", "noscript", "blocking", "fast"), (1, -2, 1)),
    CommandSpec("bzmpop", cmd_bzmpop, -5, ("write", "blocking", "movablekeys"),
                (0, 0, 0)),
)
