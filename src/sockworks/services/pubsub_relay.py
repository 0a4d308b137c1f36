"""Pub/sub passed through to a Redis backend (``--store redis://``).

Each subscribed client of the RESP port gets its own subscriber connection
on the backend (per node on Redis Cluster: plain channels and patterns on
the cluster client's default node, shard channels on their slot's primary),
so Redis sees one subscriber per client and its replies are exact: PUBLISH
counts sockworks' subscribers and the backend's own clients alike, PUBSUB
NUMSUB/NUMPAT/CHANNELS are Redis's figures. A shared connection that
multiplexed channels for every local subscriber would bound backend
connections to one per process, but every one of those figures would count
a whole sockworks process as one subscriber; per client is exact and
simpler, and ``--store-pinned-connections`` bounds it.

The session keeps its subscriptions as on the embedded store
(:class:`~sockworks.services.pubsub.Subscriptions`: the counts in the
confirmations, RESP2's subscribed mode, the ``pubsub`` output class) and
answers the confirmations itself, once the backend has confirmed (so a
message published after the reply is received). The reader thread of the
backend connection pushes each message through ``Subscriptions.push``:
after the replies of the command running, in the backend's order, held to
the client's ``pubsub`` output limit (past it the client is disconnected
and the reader closes its connection: nothing queues in between). When the
backend connection is lost the client is disconnected, with a log line.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from sockworks.core.logs import RateLimitedLog
from sockworks.services.pubsub import Subscriptions, push_frame
from sockworks.storage.base import Store, StoreError

__all__ = ["backend_subscribe", "backend_unsubscribe", "release_idle"]

logger = logging.getLogger(__name__)

#: One line per interval however many subscribers an outage disconnects.
_lost_log = RateLimitedLog(logger, logging.WARNING)

CROSSSLOT = "CROSSSLOT Keys in request don't hash to the same slot"


def _on_message(subs: Subscriptions) -> Callable[[list[bytes]], bool]:
    def deliver(reply: list[bytes]) -> bool:
        kind = bytes(reply[0]).lower()
        table = (subs.channels if kind == b"message" else subs.patterns
                 if kind == b"pmessage" else subs.shard)
        if reply[1] not in table:
            return True  # unsubscribed while the message was on its way
        return subs.push(push_frame(subs.proto, *[bytes(item) for item in reply]))
    return deliver


def _on_lost(subs: Subscriptions) -> Callable[[str], None]:
    def lost(reason: str) -> None:
        client = subs.client
        peer = client.peer if client is not None else "?"
        _lost_log("closing subscriber %s: its Redis subscriber connection failed (%s)",
                  peer, reason)
        if client is not None:
            client.close(f"pub/sub backend connection lost: {reason}")
    return lost


def backend_subscribe(store: Store, subs: Subscriptions, kind: bytes,
                      names: list[bytes]) -> StoreError | None:
    """(P|S)SUBSCRIBE ``names`` on the backend (the ones ``subs`` lacks);
    None once Redis confirmed them, else the error to answer."""
    shard = kind == b"ssubscribe"
    mine = subs.shard if shard else subs.patterns if kind == b"psubscribe" else subs.channels
    new = [name for name in dict.fromkeys(names) if name not in mine]
    if not new:
        return None
    try:
        nodes = {store.subscriber_node(name if shard else None) for name in new}
        if len(nodes) > 1:
            return StoreError(CROSSSLOT)
        node = nodes.pop()
        backend = subs.backends.get(node)
        if backend is None:
            node, backend = store.open_subscriber(new[0] if shard else None,
                                                  _on_message(subs), _on_lost(subs))
            subs.backends[node] = backend
        backend.command([kind.upper(), *new], len(new))
    except StoreError as exc:
        return exc
    return None


def backend_unsubscribe(store: Store, subs: Subscriptions, kind: bytes,
                        names: list[bytes]) -> StoreError | None:
    """(P|S)UNSUBSCRIBE ``names`` on the backend connections that have them."""
    shard = kind == b"sunsubscribe"
    by_node: dict[str, list[bytes]] = {}
    try:
        for name in dict.fromkeys(names):
            by_node.setdefault(store.subscriber_node(name if shard else None), []).append(name)
        for node, group in by_node.items():
            backend = subs.backends.get(node)
            if backend is not None:
                backend.command([kind.upper(), *group], len(group))
    except StoreError as exc:
        return exc
    return None


def release_idle(subs: Subscriptions) -> None:
    """Close the backend connections once nothing is subscribed."""
    if subs.active or not subs.backends:
        return
    backends = list(subs.backends.values())
    subs.backends.clear()
    for backend in backends:
        backend.close()
