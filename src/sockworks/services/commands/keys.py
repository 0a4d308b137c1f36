"""Keyspace commands across types (TYPE OBJECT COPY RENAME ... SORT).

Arity, flags and key positions are Redis 7.0's (``COMMAND INFO``). SORT of
a set ``BY`` a constant (no ``*``) inside a script sorts the elements
ALPHA, as Redis does so a script's result does not depend on a set's
internal order (the model does the same for ``STORE``).
"""

from __future__ import annotations

from typing import Any, Final

from sockworks.protocols.resp import encode
from sockworks.services.commands.model import model_read, model_write
from sockworks.services.resp_context import CommandContext, CommandSpec, Plan

#: SORT's options and how many arguments follow each.
_SORT_OPTIONS: Final = {b"BY": 1, b"GET": 1, b"STORE": 1, b"LIMIT": 2}


def _alpha_in_scripts(argv: list[bytes]) -> list[bytes] | None:
    """SORT's arguments with every constant BY dropped and ALPHA added,
    or None when there is no constant BY."""
    kept, constant, i = argv[:2], False, 2
    while i < len(argv):
        opt = argv[i].upper()
        width = _SORT_OPTIONS.get(opt, 0)
        if opt == b"BY" and i + 1 < len(argv):
            constant = b"*" not in argv[i + 1]
            if not constant:
                kept.extend(argv[i:i + 2])
        else:
            kept.extend(argv[i:i + 1 + width])
        i += 1 + width
    return [*kept, b"ALPHA"] if constant else None


def _sort(write: bool) -> Any:
    plain = model_write if write else model_read

    def handler(ctx: CommandContext, argv: list[bytes]) -> Plan[Any]:
        alpha = _alpha_in_scripts(argv) if ctx.in_script else None
        if alpha is None:
            return plain(ctx, argv)
        proto = ctx.proto

        def call(st: Any) -> Any:
            is_set = st.execute_command([b"TYPE", argv[1]]) == "set"
            return st.execute_command(alpha if is_set else argv)
        return Plan.group(lambda st: encode(call(st), proto), write)
    return handler

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
    CommandSpec("sort", _sort(True), -2, ("write", "denyoom", "movablekeys"), (1, 1, 1)),
    CommandSpec("sort_ro", _sort(False), -2, ("readonly", "movablekeys"), (1, 1, 1)),
)
