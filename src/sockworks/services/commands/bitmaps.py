"""Bit commands on strings (SETBIT GETBIT BITCOUNT BITPOS BITOP) and LCS.

Arity, flags and key positions are Redis 7.0's (``COMMAND INFO``).
"""

from __future__ import annotations

from typing import Final

from sockworks.services.commands.model import model_read, model_write
from sockworks.services.resp_context import CommandSpec

__all__ = ["SPECS"]

SPECS: Final[tuple[CommandSpec, ...]] = (
    CommandSpec("setbit", model_write, 4, ("write", "denyoom"), (1, 1, 1)),
    CommandSpec("getbit", model_read, 3, ("readonly", "fast"), (1, 1, 1)),
    CommandSpec("bitcount", model_read, -2, ("readonly",), (1, 1, 1)),
    CommandSpec("bitpos", model_read, -3, ("readonly",), (1, 1, 1)),
    CommandSpec("bitop", model_write, -4, ("write", "denyoom"), (2, -1, 1)),
    CommandSpec("lcs", model_read, -3, ("readonly",), (1, 2, 1)),
)
