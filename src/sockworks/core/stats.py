"""Counters every TCP server keeps; services read them for STATS/INFO."""

from __future__ import annotations

import itertools
import threading
import time
from dataclasses import dataclass, field

from sockworks.core.clients import ClientRegistry

__all__ = ["ServerStats"]


@dataclass
class ServerStats:
    """Connection counters, updated by the concurrency model.

    Updates go through a lock: they happen once per connection, not per
    request, so the cost is negligible and the numbers are exact.
    """

    started_monotonic: float = field(default_factory=time.monotonic)
    started_wall: float = field(default_factory=time.time)
    connections_current: int = 0
    connections_total: int = 0
    connections_rejected: int = 0
    idle_closed: int = 0
    #: Live connections' handles (CLIENT KILL, INFO clients, client eviction).
    clients: ClientRegistry = field(default_factory=ClientRegistry, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1), repr=False)

    def next_client_id(self) -> int:
        return next(self._ids)

    def opened(self) -> None:
        with self._lock:
            self.connections_current += 1
            self.connections_total += 1

    def closed(self) -> None:
        with self._lock:
            self.connections_current -= 1

    def rejected(self) -> None:
        with self._lock:
            self.connections_rejected += 1

    def idle_timeout(self) -> None:
        with self._lock:
            self.idle_closed += 1

    @property
    def uptime(self) -> float:
        return time.monotonic() - self.started_monotonic
