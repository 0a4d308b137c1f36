"""List commands (LPUSH ... LMPOP), and the blocking ones (BLPOP ...: resp_blocking.py).

Arity, flags and key positions are Redis 7.0's (``COMMAND INFO``).
"""

from __future__ import annotations

from typing import Final

from sockworks.services.commands.model import model_read, model_write
from sockworks.services.resp_blocking import (
    cmd_blmove,
    cmd_blmpop,
    cmd_blpop,
    cmd_brpop,
    cmd_brpoplpush,
)
from sockworks.services.resp_context import CommandSpec

__all__ = ["SPECS"]

SPECS: Final[tuple[CommandSpec, ...]] = (
    CommandSpec("lpush", model_write, -3, ("write", "denyoom", "fast"), (1, 1, 1)),
    CommandSpec("rpush", model_write, -3, ("write", "denyoom", "fast"), (1, 1, 1)),
    CommandSpec("lpushx", model_write, -3, ("write", "denyoom", "fast"), (1, 1, 1)),
    CommandSpec("rpushx", model_write, -3, ("write", "denyoom", "fast"), (1, 1, 1)),
    CommandSpec("lpop", model_write, -2, ("write", "fast"), (1, 1, 1)),
    CommandSpec("rpop", model_write, -2, ("write", "fast"), (1, 1, 1)),
    CommandSpec("llen", model_read, 2, ("readonly", "fast"), (1, 1, 1)),
    CommandSpec("lrange", model_read, 4, ("readonly",), (1, 1, 1)),
    CommandSpec("lindex", model_read, 3, ("readonly",), (1, 1, 1)),
    CommandSpec("lset", model_write, 4, ("write", "denyoom"), (1, 1, 1)),
    CommandSpec("linsert", model_write, 5, ("write", "denyoom"), (1, 1, 1)),
    CommandSpec("lrem", model_write, 4, ("write",), (1, 1, 1)),
    CommandSpec("ltrim", model_write, 4, ("write",), (1, 1, 1)),
    CommandSpec("lpos", model_read, -3, ("readonly",), (1, 1, 1)),
    CommandSpec("lmove", model_write, 5, ("write", "denyoom"), (1, 2, 1)),
    CommandSpec("rpoplpush", model_write, 3, ("write", "denyoom"), (1, 2, 1)),
    CommandSpec("lmpop", model_write, -4, ("write", "movablekeys"), (0, 0, 0)),
    CommandSpec("blpop", cmd_blpop, -3, ("write", "noscript", "blocking"), (1, -2, 1)),
    CommandSpec("brpop", cmd_brpop, -3, ("write", "noscript", "blocking"), (1, -2, 1)),
    CommandSpec("blmove", cmd_blmove, 6, ("write", "denyoom", "noscript", "blocking"),
                (1, 2, 1)),
    CommandSpec("brpoplpush", cmd_brpoplpush, 4,
                ("write", "denyoom", "noscript", "blocking"), (1, 2, 1)),
    CommandSpec("blmpop", cmd_blmpop, -5, ("write", "blocking", "movablekeys"),
                (0, 0, 0)),
)
