"""Counters every TCP server keeps; services read them for STATS/INFO."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from sockworks.core.clients import ClientRegistry
from sockworks.core.worker_sums import WorkerSums

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
    #: Closed at the idle timeout holding part of a request (a deadline).
    deadline_closed: int = 0
    #: Closed over --client-output-buffer-limit.
    output_limit_closed: int = 0
    #: Aborted: the peer stopped reading for --send-timeout.
    send_timeout_aborted: int = 0
    #: Live connections' handles (CLIENT KILL, INFO clients, client eviction).
    clients: ClientRegistry = field(default_factory=ClientRegistry, repr=False)
    #: prefork: every worker's counters in shared memory (None elsewhere).
    shared: WorkerSums | None = field(default=None, repr=False)
    #: A service's summable counters by name (``kv`` -> its STATS counters),
    #: published to :attr:`shared` under ``service.field``.
    counter_sources: dict[str, Callable[[], Mapping[str, float]]] = field(
        default_factory=dict, repr=False)
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

    def deadline(self) -> None:
        with self._lock:
            self.deadline_closed += 1

    def output_limit(self) -> None:
        with self._lock:
            self.output_limit_closed += 1

    def send_timeout(self) -> None:
        with self._lock:
            self.send_timeout_aborted += 1

    def local_counters(self) -> dict[str, float]:
        """This process's summable counters, by the names :attr:`shared` uses."""
        values: dict[str, float] = {
            "connections_current": self.connections_current,
            "connections_total": self.connections_total,
            "connections_rejected": self.connections_rejected,
            "idle_closed": self.idle_closed,
            "evicted_clients": self.clients.evicted,
            "deadline_closed": self.deadline_closed,
            "output_limit_closed": self.output_limit_closed,
            "send_timeout_aborted": self.send_timeout_aborted,
        }
        for service, source in self.counter_sources.items():
            for name, value in source().items():
                values[f"{service}.{name}"] = value
        return values

    def server_wide(self, fields: dict[str, object], service: str = "") -> dict[str, object]:
        """``fields`` with the other workers' figures added (prefork); as is
        elsewhere. ``service`` names the counter source the fields come from
        (its fields are looked up as ``service.field``); without it, the
        connection counters."""
        if self.shared is None:
            return fields
        return self.shared.add_others(fields, f"{service}." if service else "")

    @property
    def uptime(self) -> float:
        return time.monotonic() - self.started_monotonic
