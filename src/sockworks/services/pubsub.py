"""Pub/sub for the RESP port: who listens to what, and each listener's push path.

:class:`Broker` (one per :class:`~sockworks.services.resp.RespService`)
maps channels, patterns (Redis's glob, ``storage/glob.py``) and shard
channels to the connections subscribed to them, and ``publish`` fans a
message out. :class:`Subscriptions` is one connection's side: its
subscriptions, and the ordered path of everything pushed to it (messages,
MONITOR lines).

Ordering. Redis writes a message into the subscriber's output buffer
between two commands, so the client sees it after the replies of the
commands that came before. Here a push can come from any thread at any
time, so while the session runs a chunk of commands pushes are held in the
session (placed after the reply of the command that was running; a
connection's own PUBLISH sees its message before PUBLISH's reply, as in
Redis) and, once a connection has subscriptions, its replies too leave
through ``ClientHandle.deliver`` under the same lock as the pushes, so no
reply can overtake a message or fall behind one (see docs/architecture.md).

Bounds: a subscribed connection's ``ClientHandle.output_class`` is
``pubsub`` (the session sets it), so every model holds what is delivered to
it to ``client-output-buffer-limit pubsub`` (hard at once, soft for its
seconds): past it the subscriber is reset, as Redis disconnects it, and
publishing goes on for everyone else. Pushes held while the session runs a
chunk are bounded by that chunk's time.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from sockworks.services.keyspace_events import KEYEVENT, KEYSPACE
from sockworks.storage.glob import compile_glob

if TYPE_CHECKING:
    from sockworks.core.clients import ClientHandle
    from sockworks.storage.base import Subscriber

__all__ = ["Broker", "Subscriptions", "monitor_line", "push_frame"]

#: Bookkeeping bytes counted per subscription besides its name (a dict entry
#: on each side, the pattern's compiled matcher shared).
SUBSCRIPTION_OVERHEAD = 128

#: sdscatrepr's escapes (what MONITOR shows for these bytes).
_REPR_ESCAPES = {ord("\\"): b"\\\\", ord('"'): b'\\"', ord("\n"): b"\\n",
                 ord("\r"): b"\\r", ord("\t"): b"\\t", 7: b"\\a", 8: b"\\b"}
_REPR = [_REPR_ESCAPES.get(i, bytes([i]) if 32 <= i < 127 else b"\\x%02x" % i)
         for i in range(256)]
#: Arguments MONITOR never shows (Redis's redactClientCommandArgument).
REDACTED = b"(redacted)"


def _repr(arg: bytes) -> bytes:
    return b'"' + b"".join([_REPR[i] for i in arg]) + b'"'


def _redacted(argv: list[bytes]) -> list[bytes]:
    name = argv[0].lower()
    if name == b"auth":
        return [argv[0], *[REDACTED] * (len(argv) - 1)]
    if name == b"acl" and len(argv) > 2 and argv[1].lower() == b"setuser":
        return [*argv[:2], *[REDACTED] * (len(argv) - 2)]
    if name == b"hello":
        out = list(argv)
        for i in range(2, len(argv) - 2):
            if argv[i].lower() == b"auth":
                out[i + 1] = out[i + 2] = REDACTED
        return out
    return argv


def monitor_line(argv: list[bytes], peer: str, now: float) -> bytes:
    """Redis's MONITOR line: ``+1339518083.107412 [0 127.0.0.1:60866] "keys" "*"``
    (arguments as typed, escaped as sdscatrepr does, secrets redacted)."""
    micros = int(now * 1_000_000)
    shown = b" ".join([_repr(arg) for arg in _redacted(argv)])
    return b"+%d.%06d [0 %s] %s\r\n" % (micros // 1_000_000, micros % 1_000_000,
                                          peer.encode(), shown)


def _bulk(value: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(value), value)


def push_frame(proto: int, *items: bytes | int | None) -> bytes:
    """A pub/sub frame: an array in RESP2, a push (``>``) in RESP3; None is
    a null (UNSUBSCRIBE with nothing to unsubscribe)."""
    parts = [b"%s%d\r\n" % (b">" if proto == 3 else b"*", len(items))]
    for item in items:
        if item is None:
            parts.append(b"_\r\n" if proto == 3 else b"$-1\r\n")
        elif isinstance(item, int):
            parts.append(b":%d\r\n" % item)
        else:
            parts.append(_bulk(item))
    return b"".join(parts)


class Subscriptions:
    """One connection's channels, patterns and shard channels, and the
    ordered push path to it (see the module docstring).

    The session calls :meth:`start` before running a chunk of
    commands, :meth:`take` after each command, :meth:`finish` at the end.
    """

    __slots__ = ("channels", "patterns", "shard", "proto", "client", "waiting",
                 "monitoring", "memory", "backends", "_lock", "_running", "_own", "_others")

    def __init__(self) -> None:
        #: Dicts used as ordered sets: UNSUBSCRIBE without arguments goes in
        #: subscription order.
        self.channels: dict[bytes, None] = {}
        self.patterns: dict[bytes, None] = {}
        self.shard: dict[bytes, None] = {}
        #: RESP version pushes are encoded in (the session keeps it current).
        self.proto = 2
        self.client: ClientHandle | None = None
        #: Something was pushed while the session runs (read without the lock).
        self.waiting = False
        #: MONITOR: every command of every client is pushed here.
        self.monitoring = False
        #: Bytes the subscriptions hold (names plus bookkeeping): they count
        #: toward the client's memory (maxmemory-clients, CLIENT LIST tot-mem).
        self.memory = 0
        #: With a Redis backend: this connection's subscriber connections
        #: there, by node (services/pubsub_relay.py).
        self.backends: dict[str, Subscriber] = {}
        self._lock = threading.Lock()
        self._running = False
        self._own: list[bytes] = []
        self._others: list[bytes] = []

    @property
    def count(self) -> int:
        """What (P)SUBSCRIBE replies count: channels plus patterns."""
        return len(self.channels) + len(self.patterns)

    @property
    def active(self) -> bool:
        """Subscribed to anything (Redis's pubsub client class)."""
        return bool(self.channels or self.patterns or self.shard)

    @property
    def pushed_to(self) -> bool:
        """Others push to this connection (subscribed, or MONITOR)."""
        return self.monitoring or bool(self.channels or self.patterns or self.shard)

    # -- the session's side ----------------------------------------------------
    @property
    def running(self) -> bool:
        """Pushes are being held for the chunk the session is running."""
        return self._running

    def start(self) -> None:
        """Hold pushes until :meth:`finish` (a chunk with subscriptions, or
        the SUBSCRIBE that makes the first one: its confirmation must go
        before any message)."""
        with self._lock:
            self._running = True

    def take(self) -> tuple[list[bytes], list[bytes]]:
        """Held pushes: the connection's own (go before the reply of the
        command that made them) and the others' (after it)."""
        with self._lock:
            own, others = self._own, self._others
            self._own, self._others = [], []
            self.waiting = False
        return own, others

    def finish(self, data: bytes, *, direct: bool) -> bytes:
        """The chunk's replies are ``data``: what the session returns to
        the model. Once subscribed they leave through ``deliver`` under the
        push lock (returns b""), unless ``direct`` (a reply that must wait
        for a durability barrier goes back to the model)."""
        with self._lock:
            self._running = False
            if self._own or self._others:
                data += b"".join(self._own) + b"".join(self._others)
                self._own, self._others = [], []
                self.waiting = False
            client = self.client
            if direct or not data or client is None or not self.pushed_to:
                return data
            client.deliver(data)
            return b""

    # -- any thread ------------------------------------------------------------
    def push(self, data: bytes, *, own: bool = False) -> bool:
        """Queue ``data`` for this connection; False if it is gone or was
        just disconnected for being over its output limit (its class's,
        which ``deliver`` checks)."""
        with self._lock:
            client = self.client
            if client is None or client.closing:
                return False
            if self._running:
                (self._own if own else self._others).append(data)
                self.waiting = True
                return True
            return client.deliver(data)


class _Frames:
    """One message's frame per RESP version, encoded once however many
    subscribers use it."""

    __slots__ = ("items", "_by_proto")

    def __init__(self, *items: bytes) -> None:
        self.items = items
        self._by_proto: dict[int, bytes] = {}

    def get(self, proto: int) -> bytes:
        frame = self._by_proto.get(proto)
        if frame is None:
            frame = self._by_proto[proto] = push_frame(proto, *self.items)
        return frame


class Broker:
    """Every subscription of one server process; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._channels: dict[bytes, dict[int, Subscriptions]] = {}
        self._shard: dict[bytes, dict[int, Subscriptions]] = {}
        self._patterns: dict[bytes, tuple[Callable[[bytes], bool],
                                          dict[int, Subscriptions]]] = {}
        self._monitors: dict[int, Subscriptions] = {}
        #: Some connection is in MONITOR (read without the lock, per chunk).
        self.monitored = False
        #: notify-keyspace-events (services/keyspace_events.py); 0: off.
        self.keyspace_flags = 0
        #: Per thread, while a RESP command runs with events on: the events
        #: of the blocking pops it served, published after its own (Redis
        #: serves blocked clients after the command that pushed).
        self._deferred = threading.local()

    @property
    def sees_commands(self) -> bool:
        """MONITOR or keyspace events are on: every command must go the
        long way (no GET/SET shortcut, no compiled fast path)."""
        return self.monitored or bool(self.keyspace_flags)

    # -- keyspace notifications ------------------------------------------------------
    def notify(self, cls: int, event: str, key: bytes,
               sender: Subscriptions | None = None) -> None:
        """Publish one keyspace event if its class is enabled (notify.c)."""
        flags = self.keyspace_flags
        if not flags & cls:
            return
        name = event.encode()
        if flags & KEYSPACE:
            self.publish(b"__keyspace@0__:" + key, name, sender)
        if flags & KEYEVENT:
            self.publish(b"__keyevent@0__:" + name, key, sender)

    def defer_pops(self) -> None:
        """This thread runs a command: pop events wait for :meth:`flush_pops`."""
        self._deferred.events = []

    def pop_event(self, cls: int, event: str, key: bytes,
                  sender: Subscriptions | None = None) -> None:
        """A blocking pop's event: published now, or after the command that
        is running on this thread (see :meth:`defer_pops`)."""
        events: list[tuple[int, str, bytes, Subscriptions | None]] | None = getattr(
            self._deferred, "events", None)
        if events is None:
            self.notify(cls, event, key, sender)
        else:
            events.append((cls, event, key, sender))

    def popped_keys(self) -> set[bytes]:
        """The keys of the pop events waiting on this thread."""
        return {event[2] for event in getattr(self._deferred, "events", None) or ()}

    def flush_pops(self) -> None:
        events = getattr(self._deferred, "events", None)
        self._deferred.events = None
        for cls, event, key, sender in events or ():
            self.notify(cls, event, key, sender)

    # -- MONITOR ---------------------------------------------------------------------
    def monitor(self, subs: Subscriptions) -> None:
        subs.monitoring = True
        with self._lock:
            self._monitors[id(subs)] = subs
            self.monitored = True

    def unmonitor(self, subs: Subscriptions) -> None:
        subs.monitoring = False
        with self._lock:
            self._monitors.pop(id(subs), None)
            self.monitored = bool(self._monitors)

    def feed_monitors(self, argv: list[bytes], peer: str) -> None:
        """Show one command to every connection in MONITOR."""
        with self._lock:
            monitors = list(self._monitors.values())
        if monitors:
            line = monitor_line(argv, peer, time.time())
            for subs in monitors:
                subs.push(line)

    # -- (un)subscribing ---------------------------------------------------------
    def subscribe(self, subs: Subscriptions, channel: bytes, *, shard: bool = False) -> bool:
        """Add; False if ``subs`` already had it."""
        mine = subs.shard if shard else subs.channels
        if channel in mine:
            return False
        mine[channel] = None
        subs.memory += len(channel) + SUBSCRIPTION_OVERHEAD
        table = self._shard if shard else self._channels
        with self._lock:
            table.setdefault(channel, {})[id(subs)] = subs
        return True

    def unsubscribe(self, subs: Subscriptions, channel: bytes, *, shard: bool = False) -> bool:
        mine = subs.shard if shard else subs.channels
        if channel not in mine:
            return False
        del mine[channel]
        subs.memory -= len(channel) + SUBSCRIPTION_OVERHEAD
        table = self._shard if shard else self._channels
        with self._lock:
            listeners = table.get(channel)
            if listeners is not None:
                listeners.pop(id(subs), None)
                if not listeners:
                    del table[channel]
        return True

    def psubscribe(self, subs: Subscriptions, pattern: bytes) -> bool:
        if pattern in subs.patterns:
            return False
        subs.patterns[pattern] = None
        subs.memory += len(pattern) + SUBSCRIPTION_OVERHEAD
        with self._lock:
            entry = self._patterns.get(pattern)
            if entry is None:
                entry = self._patterns[pattern] = (compile_glob(pattern), {})
            entry[1][id(subs)] = subs
        return True

    def punsubscribe(self, subs: Subscriptions, pattern: bytes) -> bool:
        if pattern not in subs.patterns:
            return False
        del subs.patterns[pattern]
        subs.memory -= len(pattern) + SUBSCRIPTION_OVERHEAD
        with self._lock:
            entry = self._patterns.get(pattern)
            if entry is not None:
                entry[1].pop(id(subs), None)
                if not entry[1]:
                    del self._patterns[pattern]
        return True

    def drop(self, subs: Subscriptions) -> None:
        """Forget every subscription of a connection (closed, or RESET),
        and its MONITOR."""
        if subs.monitoring:
            self.unmonitor(subs)
        for channel in list(subs.channels):
            self.unsubscribe(subs, channel)
        for channel in list(subs.shard):
            self.unsubscribe(subs, channel, shard=True)
        for pattern in list(subs.patterns):
            self.punsubscribe(subs, pattern)
        backends = list(subs.backends.values())
        subs.backends.clear()
        for backend in backends:
            backend.close()

    # -- publishing ----------------------------------------------------------------
    def publish(self, channel: bytes, message: bytes, sender: Subscriptions | None = None,
                *, shard: bool = False) -> int:
        """Send to the channel's subscribers, then to the patterns matching
        it (Redis's order); how many received it."""
        with self._lock:
            table = self._shard if shard else self._channels
            direct = list(table.get(channel, {}).values())
            matched: list[tuple[bytes, list[Subscriptions]]] = []
            if not shard:
                for pattern, (match, by_id) in self._patterns.items():
                    if match(channel):
                        matched.append((pattern, list(by_id.values())))
        receivers = 0
        if direct:
            frames = _Frames(b"smessage" if shard else b"message", channel, message)
            for subs in direct:
                receivers += 1
                subs.push(frames.get(subs.proto), own=subs is sender)
        for pattern, listeners in matched:
            frames = _Frames(b"pmessage", pattern, channel, message)
            for subs in listeners:
                receivers += 1
                subs.push(frames.get(subs.proto), own=subs is sender)
        return receivers

    # -- PUBSUB ----------------------------------------------------------------------
    def channels(self, pattern: bytes | None, *, shard: bool = False) -> list[bytes]:
        with self._lock:
            names = list(self._shard if shard else self._channels)
        if pattern is None:
            return names
        match = compile_glob(pattern)
        return [name for name in names if match(name)]

    def numsub(self, channels: Iterable[bytes], *, shard: bool = False) -> list[int]:
        table = self._shard if shard else self._channels
        with self._lock:
            return [len(table.get(channel, ())) for channel in channels]

    def numpat(self) -> int:
        """Redis 7.0 counts distinct patterns, not pattern subscriptions."""
        with self._lock:
            return len(self._patterns)
