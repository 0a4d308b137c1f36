"""The handler every data-model command shares: the command goes to
``Store.execute_command`` (the embedded store's storage/model, or Redis
itself), and its reply value is encoded for the connection's protocol
(maps, sets and doubles in RESP3, flat arrays and bulk strings in RESP2).

SORT and SORT_RO are model commands with one twist: of a set ``BY`` a
constant (no ``*``) inside a script they sort the elements ALPHA, as Redis
does so a script's result does not depend on a set's internal order (the
model does the same for ``STORE``).
"""

from __future__ import annotations

from typing import Any, Final

from sockworks.protocols.resp import encode
from sockworks.services.resp_context import CommandContext, Plan

__all__ = ["cmd_sort", "cmd_sort_ro", "model_read", "model_write"]

#: SORT's options and how many arguments follow each.
_SORT_OPTIONS: Final = {b"BY": 1, b"GET": 1, b"STORE": 1, b"LIMIT": 2}


def model_read(ctx: CommandContext, argv: list[bytes]) -> Plan[Any]:
    """A command that changes no data."""
    proto = ctx.proto
    return Plan(lambda st: st.execute_command(argv), lambda r: encode(r, proto))


def model_write(ctx: CommandContext, argv: list[bytes]) -> Plan[Any]:
    """A command that may write (its reply waits for the log's fsync)."""
    proto = ctx.proto
    return Plan(lambda st: st.execute_command(argv), lambda r: encode(r, proto), True)


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


def _sort(ctx: CommandContext, argv: list[bytes], write: bool) -> Plan[Any]:
    alpha = _alpha_in_scripts(argv) if ctx.in_script else None
    if alpha is None:
        return model_write(ctx, argv) if write else model_read(ctx, argv)
    proto = ctx.proto

    def call(st: Any) -> bytes:
        is_set = st.execute_command([b"TYPE", argv[1]]) == "set"
        return encode(st.execute_command(alpha if is_set else argv), proto)
    return Plan.group(call, write)


def cmd_sort(ctx: CommandContext, argv: list[bytes]) -> Plan[Any]:
    return _sort(ctx, argv, True)


def cmd_sort_ro(ctx: CommandContext, argv: list[bytes]) -> Plan[Any]:
    return _sort(ctx, argv, False)
