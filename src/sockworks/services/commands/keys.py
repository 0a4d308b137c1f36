"""Keyspace commands across types (TYPE OBJECT COPY RENAME ... SORT, DUMP, RESTORE).

Arity, flags and key positions are Redis 7.0's (``COMMAND INFO``).
"""

from __future__ import annotations

from typing import Any, Final

from sockworks.services.commands.model import cmd_sort, cmd_sort_ro, model_read, model_write
from sockworks.services.resp_context import CommandContext, CommandSpec, Plan
from sockworks.storage.model.dump import BAD_FORMAT, MAX_DECODED, over_budget

__all__ = ["SPECS", "cmd_restore"]


def cmd_restore(ctx: CommandContext, argv: list[bytes]) -> bytes | Plan[Any]:
    """RESTORE: the store bounds what a payload may decompress to by
    Redis's largest proto-max-bulk-len; the port's own --max-bulk is
    checked here first (as bits_write checks SETBIT's offsets), and only
    for a payload big enough to pass it."""
    limit = ctx.server.max_bulk
    if limit < MAX_DECODED and len(argv) >= 4 and over_budget(argv[3], limit):
        return b"-ERR %s\r\n" % BAD_FORMAT.encode()
    return model_write(ctx, argv)


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
    CommandSpec("dump", model_read, 2, ("readonly",), (1, 1, 1)),
    CommandSpec("restore", cmd_restore, -4, ("write", "denyoom"), (1, 1, 1)),
)
