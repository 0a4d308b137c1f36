"""Stream commands (XADD ... XINFO), and XREAD/XREADGROUP's BLOCK.

Arity, flags and key positions are Redis 7.0's (``COMMAND INFO``).

XREAD/XREADGROUP without BLOCK, inside MULTI, or from a script (where
BLOCK is Redis's error) are plain model commands. With BLOCK they become a
:class:`BlockRequest` on the blocking registry (resp_blocking.py): the
attempt is the command without BLOCK, with ``$`` turned into each
stream's last ID under the store's lock; an XADD to one of the keys serves
the client with the same read on that key, at most COUNT entries (Redis's
1000 when no COUNT was given), first come first served. A timeout answers
the null array, as Redis does.
"""

from __future__ import annotations

from typing import Any, Final

from sockworks.protocols.resp import NULL_ARRAY, ArrayMap
from sockworks.services.commands.model import model_read, model_write
from sockworks.services.resp_blocking import BlockRequest
from sockworks.services.resp_commands import store_error
from sockworks.services.resp_context import CommandContext, CommandSpec, Plan
from sockworks.storage.base import StoreError
from sockworks.storage.memory import MemoryStore
from sockworks.storage.model.common import CommandError, parse_int
from sockworks.storage.model.streams import parse_read
from sockworks.storage.model.streamvalue import StreamValue, format_id, parse_id

__all__ = ["SPECS", "cmd_xread"]

#: Entries a blocked XREAD without COUNT is served at most (Redis's
#: XREAD_BLOCKED_DEFAULT_COUNT).
BLOCKED_DEFAULT_COUNT: Final = 1000


def _block_ms(arg: bytes) -> int:
    """BLOCK's milliseconds, as Redis's getTimeoutFromObjectOrReply."""
    ms = parse_int(arg, "timeout is not an integer or out of range")
    if ms < 0:
        raise CommandError("timeout is negative")
    return ms


def cmd_xread(ctx: CommandContext, argv: list[bytes]) -> bytes | Plan[Any]:
    """XREAD and XREADGROUP (the model command, or a wait with BLOCK)."""
    try:
        args = parse_read(argv, _block_ms)
    except CommandError as exc:
        return store_error(exc)
    group_cmd = args.group is not None
    write = model_write if group_cmd else model_read
    if args.block < 0:
        return write(ctx, argv)
    if ctx.in_script:
        name = argv[0].decode("latin-1")
        return store_error(CommandError(
            f"{name} command is not allowed with BLOCK option from scripts"))
    head = [argv[0]]
    if group_cmd:
        assert args.group is not None
        head += [b"GROUP", args.group, args.consumer]
        if args.noack:
            head.append(b"NOACK")
    plain = head + ([b"COUNT", b"%d" % args.count] if args.count else [])
    if not ctx.may_block:
        return write(ctx, [*plain, b"STREAMS", *args.keys, *args.ids])
    serve_count = [b"COUNT", b"%d" % (args.count or BLOCKED_DEFAULT_COUNT)]
    ids = dict(zip(args.keys, args.ids, strict=False))  # a repeated key: its last ID
    attempt = [*plain, b"STREAMS", *args.keys, *args.ids]
    at = len(plain) + 1 + len(args.keys)

    def prepare(store: MemoryStore) -> None:
        for i, (key, arg) in enumerate(zip(args.keys, args.ids, strict=True)):
            if arg == b"$":
                value = store.lookup(key)
                last = value.last_id if isinstance(value, StreamValue) else 0
                attempt[at + i] = format_id(last)
                ids[key] = attempt[at + i]

    def serve(key: bytes) -> list[bytes]:
        return [*head, *serve_count, b"STREAMS", key, ids[key]]

    def ready(store: MemoryStore, key: bytes) -> Any:
        """Redis serves a reader once the stream's last ID passes its own
        (the group's for ``>``), even if that entry is deleted: an empty read."""
        value = store.lookup(key)
        if not isinstance(value, StreamValue):
            return NULL_ARRAY
        if group_cmd:
            group = value.groups.get(args.group or b"")
            after = group.last_id if group is not None else value.last_id
        else:
            after = parse_id(ids[key])
        return ArrayMap([(key, [])]) if value.last_id > after else NULL_ARRAY

    request = BlockRequest(tuple(args.keys), "stream", attempt, serve, _as_is,
                           args.block / 1000, prepare=prepare, on_error=_served_error,
                           on_gone=STREAM_GONE if group_cmd else None, ready=ready)
    return ctx.block(request)


def _as_is(result: Any) -> Any:
    return result


#: A blocked XREADGROUP whose group was destroyed (Redis 7.0's text).
GROUP_GONE: Final = (b"-NOGROUP the consumer group this client was blocked on no longer "
                     b"exists\r\n")


#: A blocked XREADGROUP whose stream was deleted or overwritten (Redis 7.0).
STREAM_GONE: Final = b"-UNBLOCKED the stream key no longer exists\r\n"


def _served_error(exc: StoreError) -> bytes:
    return GROUP_GONE if str(exc).startswith("NOGROUP ") else store_error(exc)


SPECS: Final[tuple[CommandSpec, ...]] = (
    CommandSpec("xadd", model_write, -5, ("write", "denyoom", "fast"), (1, 1, 1)),
    CommandSpec("xrange", model_read, -4, ("readonly",), (1, 1, 1)),
    CommandSpec("xrevrange", model_read, -4, ("readonly",), (1, 1, 1)),
    CommandSpec("xlen", model_read, 2, ("readonly", "fast"), (1, 1, 1)),
    CommandSpec("xread", cmd_xread, -4, ("readonly", "blocking", "movablekeys"), (0, 0, 0)),
    CommandSpec("xreadgroup", cmd_xread, -7, ("write", "blocking", "movablekeys"), (0, 0, 0)),
    CommandSpec("xgroup", model_write, -2, (), (0, 0, 0)),
    CommandSpec("xinfo", model_read, -2, (), (0, 0, 0)),
    CommandSpec("xack", model_write, -4, ("write", "fast"), (1, 1, 1)),
    CommandSpec("xpending", model_read, -3, ("readonly",), (1, 1, 1)),
    CommandSpec("xclaim", model_write, -6, ("write", "fast"), (1, 1, 1)),
    CommandSpec("xautoclaim", model_write, -6, ("write", "fast"), (1, 1, 1)),
    CommandSpec("xdel", model_write, -3, ("write", "fast"), (1, 1, 1)),
    CommandSpec("xtrim", model_write, -4, ("write",), (1, 1, 1)),
    CommandSpec("xsetid", model_write, -3, ("write", "denyoom", "fast"), (1, 1, 1)),
)
