"""The handler every data-model command shares: the command goes to
``Store.execute_command`` (the embedded store's storage/model, or Redis
itself), and its reply value is encoded for the connection's protocol
(maps, sets and doubles in RESP3, flat arrays and bulk strings in RESP2).
"""

from __future__ import annotations

from typing import Any

from sockworks.protocols.resp import encode
from sockworks.services.resp_context import CommandContext, Plan

__all__ = ["model_read", "model_write"]


def model_read(ctx: CommandContext, argv: list[bytes]) -> Plan[Any]:
    """A command that changes no data."""
    proto = ctx.proto
    return Plan(lambda st: st.execute_command(argv), lambda r: encode(r, proto))


def model_write(ctx: CommandContext, argv: list[bytes]) -> Plan[Any]:
    """A command that may write (its reply waits for the log's fsync)."""
    proto = ctx.proto
    return Plan(lambda st: st.execute_command(argv), lambda r: encode(r, proto), True)
