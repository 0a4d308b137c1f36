"""The stateless JSON datagram service (``sockworks serve udp``).

What lives here: :class:`UdpJsonService` (one datagram in, at most one out:
rate limit, codec, counters), the per-source :class:`TokenBucketTable` and
the UDP socket set-up; the command line's flags are in ``cli/serve/udp.py``.
The two concurrency models that move datagrams are in
:mod:`sockworks.services.udp_models`; the wire format and the
anti-amplification rule are in :mod:`sockworks.protocols.udpjson`.
See docs/udp.md for the protocol and why the limits are what they are.
"""

from __future__ import annotations

import logging
import socket
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sockworks.core.net import bind_socket, format_address
from sockworks.protocols import udpjson

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_BURST",
    "DEFAULT_MAX_SOURCES",
    "DEFAULT_PORT",
    "DEFAULT_RATE",
    "TokenBucketTable",
    "UdpCounters",
    "UdpJsonService",
    "open_udp_socket",
    "source_key",
]

#: The chapter's port.
DEFAULT_PORT = 9001

#: Per-source rate limit: 100 requests/s sustained with bursts of 200. Far
#: above what a legitimate client of a time/ping service sends, far below
#: what a flood (or a reflection attempt with one forged victim address) needs.
DEFAULT_RATE = 100.0
DEFAULT_BURST = 200

#: Sources tracked at once. The table is an LRU: a flood of forged source
#: addresses evicts old entries instead of growing memory (4096 entries is a
#: few hundred KiB). An evicted source starts again with a full bucket, so a
#: flood from more than this many addresses is not limited per source, but
#: it still gets no amplification (the codec's reply cap holds regardless).
DEFAULT_MAX_SOURCES = 4096



def source_key(address: tuple[Any, ...]) -> str:
    """Who a datagram's rate limit is charged to.

    IPv4: the address (the port is the sender's free choice). IPv4-mapped
    IPv6 (a dual-stack socket): the IPv4 address inside. IPv6: the /64, since
    one host routinely owns a whole /64 and could rotate through it.
    """
    host = str(address[0])
    if ":" not in host:
        return host
    if host.startswith("::ffff:") and "." in host:
        return host[7:]
    packed = socket.inet_pton(socket.AF_INET6, host.partition("%")[0])
    return packed[:8].hex() + "::/64"


class TokenBucketTable:
    """Per-source token buckets in a bounded LRU table.

    Not thread-safe: each model calls it from its one serving thread.
    ``now`` is a monotonic time in seconds, passed in so tests control it.
    """

    __slots__ = ("_buckets", "burst", "evicted", "max_sources", "rate")

    def __init__(self, rate: float, burst: int, max_sources: int) -> None:
        if rate <= 0 or burst < 1 or max_sources < 1:
            raise ValueError("rate must be > 0, burst and max_sources >= 1")
        self.rate = rate
        self.burst = burst
        self.max_sources = max_sources
        self.evicted = 0
        # source -> [tokens, last refill time]; a list so it updates in place.
        self._buckets: OrderedDict[str, list[float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def allow(self, source: str, now: float) -> bool:
        """Take one token from ``source``'s bucket; False when it is empty."""
        bucket = self._buckets.get(source)
        if bucket is None:
            if len(self._buckets) >= self.max_sources:
                self._buckets.popitem(last=False)
                self.evicted += 1
            bucket = [float(self.burst), now]
            self._buckets[source] = bucket
        else:
            self._buckets.move_to_end(source)
            elapsed = now - bucket[1]
            if elapsed > 0:
                bucket[0] = min(float(self.burst), bucket[0] + elapsed * self.rate)
                bucket[1] = now
        if bucket[0] >= 1.0:
            bucket[0] -= 1.0
            return True
        return False

    def limited(self, now: float) -> int:
        """Tracked sources that would be refused now (out of tokens). Safe to
        call from another thread: it reads a copy of the table."""
        rate = self.rate
        return sum(1 for tokens, last in list(self._buckets.values())
                   if tokens + max(0.0, now - last) * rate < 1.0)


@dataclass
class UdpCounters:
    """What ``stats`` reports. Updated from the one serving thread only."""

    received: int = 0        # every datagram, whatever happened to it
    replied: int = 0         # replies handed to the kernel
    errors: int = 0          # requests answered (or not) with an error
    too_large: int = 0       # of which: datagram over --max-datagram
    rate_limited: int = 0    # dropped silently by the per-source limit
    unanswered: int = 0      # no reply allowed at all by the amplification cap
    send_failed: int = 0     # reply dropped: send buffer full or send error


class _LazyCounters(Mapping[str, int]):
    """The counters, computed only if the codec reads them (``stats``): the
    other requests do not pay for a snapshot."""

    __slots__ = ("_compute", "_doc")

    def __init__(self, compute: Callable[[], dict[str, int]]) -> None:
        self._compute = compute
        self._doc: dict[str, int] | None = None

    def _get(self) -> dict[str, int]:
        if self._doc is None:
            self._doc = self._compute()
        return self._doc

    def __getitem__(self, key: str) -> int:
        return self._get()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._get())

    def __len__(self) -> int:
        return len(self._get())


class UdpJsonService:
    """One datagram in, at most one datagram out: rate limit, codec, counters.

    Never raises for any datagram content. Not thread-safe (see UdpCounters).
    """

    name = "udp"

    def __init__(self, *, max_datagram: int = udpjson.DEFAULT_MAX_DATAGRAM,
                 rate: float = DEFAULT_RATE, burst: int = DEFAULT_BURST,
                 max_sources: int = DEFAULT_MAX_SOURCES,
                 clock: Callable[[], float] = time.monotonic,
                 wall_clock: Callable[[], datetime] = lambda: datetime.now().astimezone()
                 ) -> None:
        self.max_datagram = max_datagram
        self.limiter = TokenBucketTable(rate, burst, max_sources)
        self.counters = UdpCounters()
        self.started = clock()
        self._clock = clock
        self._wall_clock = wall_clock

    def snapshot(self) -> dict[str, int]:
        doc = asdict(self.counters)
        doc["sources"] = len(self.limiter)
        doc["sources_evicted"] = self.limiter.evicted
        doc["uptime_s"] = int(self._clock() - self.started)
        return doc

    def metrics(self) -> dict[str, int]:
        """:meth:`snapshot` plus the sources being rate-limited now (for
        ``--metrics-port``; read from the metrics thread)."""
        doc = self.snapshot()
        doc["limited_sources"] = self.limiter.limited(self._clock())
        return doc

    def handle(self, datagram: bytes, source: tuple[Any, ...]) -> bytes | None:
        """The reply to send back to ``source``, or None to send nothing."""
        counters = self.counters
        counters.received += 1
        if not self.limiter.allow(source_key(source), self._clock()):
            counters.rate_limited += 1
            return None
        reply = udpjson.respond(datagram, now=self._wall_clock,
                                counters=_LazyCounters(self.snapshot),
                                max_size=self.max_datagram)
        if reply.error is not None:
            counters.errors += 1
            if reply.error == "datagram too large":
                counters.too_large += 1
            logger.debug("%s from %s", reply.error, format_address(source))
        if reply.data is None:
            counters.unanswered += 1
        return reply.data

    def sent(self) -> None:
        self.counters.replied += 1

    def send_failed(self) -> None:
        self.counters.send_failed += 1


def open_udp_socket(host: str, port: int) -> socket.socket:
    """A bound UDP socket for ``host``/``port`` (IPv4 or IPv6, via getaddrinfo).

    No SO_REUSEADDR: on Linux it would let a second server bind the same UDP
    port and silently share (or steal) its datagrams; "address in use" is
    the truthful answer. ``::`` is bound dual-stack.
    """
    return bind_socket(host, port, socket.SOCK_DGRAM, reuse_addr=False)
