"""Bit commands on strings (SETBIT GETBIT BITCOUNT BITPOS BITOP BITFIELD
BITFIELD_RO) and LCS.

Arity, flags and key positions are Redis 7.0's (``COMMAND INFO``).
"""

from __future__ import annotations

from typing import Any, Final

from sockworks.services.commands.model import model_read, model_write
from sockworks.services.resp_commands import store_error
from sockworks.services.resp_context import CommandContext, CommandSpec, Plan
from sockworks.storage.model import bitfield, bitmaps
from sockworks.storage.model.common import CommandError

__all__ = ["SPECS", "bits_read", "bits_write"]


def _too_far(ctx: CommandContext, argv: list[bytes]) -> bytes | None:
    """An offset past the port's --max-bulk (Redis: proto-max-bulk-len), as
    Redis's error and in its order; the store then bounds nothing more
    than 512 MiB. None: within bounds (or another error the store reports)."""
    try:
        if argv[0].lower() in (b"setbit", b"getbit"):
            bitmaps.check_offset(argv, ctx.server.max_bulk)
        else:
            bitfield.parse(argv, ctx.server.max_bulk)
    except CommandError as exc:
        return store_error(exc)
    return None


def bits_read(ctx: CommandContext, argv: list[bytes]) -> bytes | Plan[Any]:
    """GETBIT, BITFIELD_RO: offsets checked against --max-bulk first."""
    return _too_far(ctx, argv) or model_read(ctx, argv)


def bits_write(ctx: CommandContext, argv: list[bytes]) -> bytes | Plan[Any]:
    """SETBIT, BITFIELD: a string grows no further than SETRANGE may."""
    return _too_far(ctx, argv) or model_write(ctx, argv)

SPECS: Final[tuple[CommandSpec, ...]] = (
    CommandSpec("setbit", bits_write, 4, ("write", "denyoom"), (1, 1, 1)),
    CommandSpec("getbit", bits_read, 3, ("readonly", "fast"), (1, 1, 1)),
    CommandSpec("bitcount", model_read, -2, ("readonly",), (1, 1, 1)),
    CommandSpec("bitpos", model_read, -3, ("readonly",), (1, 1, 1)),
    CommandSpec("bitop", model_write, -4, ("write", "denyoom"), (2, -1, 1)),
    CommandSpec("bitfield", bits_write, -2, ("write", "denyoom"), (1, 1, 1)),
    CommandSpec("bitfield_ro", bits_read, -2, ("readonly", "fast"), (1, 1, 1)),
    CommandSpec("lcs", model_read, -3, ("readonly",), (1, 2, 1)),
)
