"""Keyspace commands across types (TYPE OBJECT COPY RENAME ... SORT).

Arity, flags and key positions are Redis 7.0's (``COMMAND INFO``).
"""

from __future__ import annotations

from typing import Final

from sockworks.services.commands.model import cmd_sort, cmd_sort_ro, model_read, model_write
from sockworks.services.resp_context import CommandSpec

__all__ = ["SPECS"]

SPECS: Final[tuple[CommandSpec, ...]] = (
    CommandSpec("type", model_read, 2, ("readonly", "fast"), (1, 1, 1)),
    CommandSpec("object", model_read, -2, (), (0, 0, 0)),
    CommandSpec("copy", model_write, -3, ("write", "denyoom"), (1, 2, 1)),
    CommandSpec("rename", model_write, 3, ("write",), (1, 2, 1)),
    CommandSpec("renamenx", model_write, 3, ("write", "fast"), (1, 2, 1)),
    CommandSpec("randomkey", model_read, 1, ("readonly",), (0, 0, 0)),
    CommandSpec("touch", model_read, -2, ("readonly", "fast"), (1, -1, 1)),
    CommandSpec("expiretime", model_read, 2, ("readonly", "fast"), (1, 1, 1)),
    CommandSpec("pexpiretime", model_read, 2, ("readonly", "fast"), (1, 1, 1)),
    CommandSpec("sort", cmd_sort, -2, ("write", "denyoom", "movablekeys"), (1, 1, 1)),
    CommandSpec("sort_ro", cmd_sort_ro, -2, ("readonly", "movablekeys"), (1, 1, 1)),
)
