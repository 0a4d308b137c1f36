"""RESP handlers of the pub/sub commands and MONITOR (Redis 7's replies and errors).

(S|P)SUBSCRIBE, (S|P)UNSUBSCRIBE, PUBLISH, SPUBLISH and PUBSUB, over the
connection's :class:`~sockworks.services.pubsub.Subscriptions` and the
server's :class:`~sockworks.services.pubsub.Broker`. Without cluster mode
shard channels behave as plain channels kept apart (Redis 7 standalone).
With a Redis backend (``--store redis://``) they are passed through:
subscriptions go to per-client subscriber connections there
(services/pubsub_relay.py), PUBLISH, SPUBLISH and PUBSUB run on that Redis
(docs/resp.md).
"""

from __future__ import annotations

from typing import Any, Final

from sockworks.protocols.resp import OK, SimpleString, encode
from sockworks.services.pubsub import push_frame
from sockworks.services.pubsub_relay import backend_subscribe, backend_unsubscribe, release_idle
from sockworks.services.resp_commands import (
    error_quoting,
    quoted,
    store_error,
    unknown_subcommand,
    wrong_args,
)
from sockworks.services.resp_context import CommandContext as Ctx
from sockworks.services.resp_context import Plan

__all__ = ["cmd_monitor", "cmd_psubscribe", "cmd_publish", "cmd_pubsub", "cmd_punsubscribe",
           "cmd_spublish", "cmd_ssubscribe", "cmd_subscribe", "cmd_sunsubscribe", "cmd_unsubscribe"]

_HELP: Final = (
    "PUBSUB <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "CHANNELS [<pattern>]",
    "    Return the currently active channels matching a <pattern> (default: '*').",
    "NUMPAT",
    "    Return number of subscriptions to patterns.",
    "NUMSUB [<channel> ...]",
    "    Return the number of subscribers for the specified channels, excluding",
    "    pattern subscriptions(default: no channels).",
    "SHARDCHANNELS [<pattern>]",
    "    Return the currently active shard level channels matching a <pattern> "
    "(default: '*').",
    "SHARDNUMSUB [<shardchannel> ...]",
    "    Return the number of subscribers for the specified shard level channel(s)",
    "HELP",
    "    Prints this help.",
)


def _remote(s: Ctx) -> bool:
    return bool(s.server.store.passthrough)


def _forwarded(s: Ctx, argv: list[bytes]) -> Plan[Any]:
    """Run by the backend Redis as it is (routed on Redis Cluster)."""
    proto = s.proto
    return Plan(lambda st: st.execute_command(argv), lambda reply: encode(reply, proto))


def cmd_subscribe(s: Ctx, argv: list[bytes]) -> bytes:
    return _subscribe(s, argv, b"subscribe")


def cmd_ssubscribe(s: Ctx, argv: list[bytes]) -> bytes:
    return _subscribe(s, argv, b"ssubscribe")


def cmd_psubscribe(s: Ctx, argv: list[bytes]) -> bytes:
    return _subscribe(s, argv, b"psubscribe")


def _subscribe(s: Ctx, argv: list[bytes], kind: bytes) -> bytes:
    subs, broker, proto = s.subscriptions, s.server.broker, s.proto
    subs.client = s.client
    subs.start()
    if _remote(s):
        error = backend_subscribe(s.server.store, subs, kind, argv[1:])
        if error is not None:
            return store_error(error)
    out = []
    for name in argv[1:]:
        if kind == b"psubscribe":
            broker.psubscribe(subs, name)
        else:
            broker.subscribe(subs, name, shard=kind == b"ssubscribe")
        count = len(subs.shard) if kind == b"ssubscribe" else subs.count
        out.append(push_frame(proto, kind, name, count))
    return b"".join(out)


def cmd_unsubscribe(s: Ctx, argv: list[bytes]) -> bytes:
    return _unsubscribe(s, argv, b"unsubscribe")


def cmd_sunsubscribe(s: Ctx, argv: list[bytes]) -> bytes:
    return _unsubscribe(s, argv, b"sunsubscribe")


def cmd_punsubscribe(s: Ctx, argv: list[bytes]) -> bytes:
    return _unsubscribe(s, argv, b"punsubscribe")


def _unsubscribe(s: Ctx, argv: list[bytes], kind: bytes) -> bytes:
    subs, broker, proto = s.subscriptions, s.server.broker, s.proto
    shard = kind == b"sunsubscribe"
    mine = subs.patterns if kind == b"punsubscribe" else subs.shard if shard else subs.channels
    names = argv[1:] or list(mine)
    if not names:
        return push_frame(proto, kind, None, len(subs.shard) if shard else subs.count)
    if _remote(s):
        error = backend_unsubscribe(s.server.store, subs, kind, names)
        if error is not None:
            return store_error(error)
    out = []
    for name in names:
        if kind == b"punsubscribe":
            broker.punsubscribe(subs, name)
        else:
            broker.unsubscribe(subs, name, shard=shard)
        out.append(push_frame(proto, kind, name, len(subs.shard) if shard else subs.count))
    if _remote(s):
        release_idle(subs)
    return b"".join(out)


def cmd_monitor(s: Ctx, argv: list[bytes]) -> bytes:
    """Every command any client of this process runs from now on is pushed
    here as Redis's MONITOR line, until QUIT or RESET (its own included)."""
    subs = s.subscriptions
    if not subs.monitoring:
        subs.client = s.client
        subs.start()
        s.server.broker.monitor(subs)
    return OK


def cmd_publish(s: Ctx, argv: list[bytes]) -> bytes | Plan[Any]:
    if _remote(s):
        return _forwarded(s, argv)
    return b":%d\r\n" % s.server.broker.publish(argv[1], argv[2], s.subscriptions)


def cmd_spublish(s: Ctx, argv: list[bytes]) -> bytes | Plan[Any]:
    if _remote(s):
        return _forwarded(s, argv)
    return b":%d\r\n" % s.server.broker.publish(argv[1], argv[2], s.subscriptions,
                                                shard=True)


def cmd_pubsub(s: Ctx, argv: list[bytes]) -> bytes | Plan[Any]:
    sub = argv[1].lower()
    argc = len(argv)
    if sub == b"help" and argc == 2:
        return encode([SimpleString(line) for line in _HELP], s.proto)
    if sub not in (b"channels", b"shardchannels", b"numsub", b"shardnumsub", b"numpat",
                   b"help"):
        return unknown_subcommand(argv)
    if (sub == b"numpat" and argc != 2) or sub == b"help":
        return wrong_args(f"pubsub|{sub.decode()}")
    if sub in (b"channels", b"shardchannels") and argc > 3:
        return error_quoting("ERR unknown subcommand or wrong number of arguments for "
                             f"'{quoted(argv[1])}'. Try PUBSUB HELP.")
    if _remote(s):
        return _forwarded(s, argv)
    broker, proto = s.server.broker, s.proto
    if sub == b"numpat":
        return b":%d\r\n" % broker.numpat()
    if sub in (b"channels", b"shardchannels"):
        pattern = argv[2] if argc == 3 else None
        return encode(broker.channels(pattern, shard=sub == b"shardchannels"), proto)
    counts = broker.numsub(argv[2:], shard=sub == b"shardnumsub")
    flat: list[object] = []
    for channel, count in zip(argv[2:], counts):
        flat += [channel, count]
    return encode(flat, proto)
