"""What a bench run is asked to do and what it measured.

:class:`BenchConfig` is one run's parameters (picklable: it is sent to the
client processes); :class:`BenchResult` is what a run measured, mergeable
across processes and sent between them as plain data; the error kinds are the
names the reports count failures under.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from sockworks.bench.histogram import Histogram
from sockworks.bench.workloads import RING_MIN, WorkloadSpec

__all__ = ["ERROR_KINDS", "BenchConfig", "BenchResult"]

#: Error kinds, in the order reports list them.
CONNECT_REFUSED = "connect_refused"
CONNECT_TIMEOUT = "connect_timeout"
CONNECT_FAILED = "connect_failed"
RESET = "reset"
CLOSED = "closed"
TIMEOUT = "timeout"
PROTOCOL_MISMATCH = "protocol_mismatch"
SERVER_BUSY = "server_busy"
ERROR_REPLY = "error_reply"
IDLE_CLOSED = "idle_closed"
ERROR_KINDS = (CONNECT_REFUSED, CONNECT_TIMEOUT, CONNECT_FAILED, RESET, CLOSED, TIMEOUT,
               PROTOCOL_MISMATCH, SERVER_BUSY, ERROR_REPLY, IDLE_CLOSED)


@dataclass(frozen=True, slots=True)
class BenchConfig:
    """One run: where, what, how hard, how long."""

    host: str = "127.0.0.1"
    port: int = 9000
    workload: WorkloadSpec = field(default_factory=WorkloadSpec)
    connections: int = 50
    duration: float = 5.0
    pipeline: int = 1
    idle: int = 0
    procs: int = 1
    timeout: float = 10.0          # reply timeout (UDP: resend after it)
    connect_timeout: float = 5.0   # connect + greeting
    warmup: float = 0.0            # run this long first, recording nothing

    def __post_init__(self) -> None:
        if self.connections < 1:
            raise ValueError("connections must be >= 1")
        if not 1 <= self.pipeline <= RING_MIN:
            raise ValueError(f"pipeline must be between 1 and {RING_MIN}")
        if self.duration <= 0:
            raise ValueError("duration must be > 0")
        if self.idle < 0:
            raise ValueError("idle must be >= 0")
        if self.idle and self.workload.name == "udp":
            raise ValueError("idle connections are TCP only")
        if not 1 <= self.procs <= self.connections:
            raise ValueError("procs must be between 1 and the number of connections")
        if self.timeout <= 0 or self.connect_timeout <= 0 or self.warmup < 0:
            raise ValueError("timeouts must be > 0 and warmup >= 0")


@dataclass(slots=True)
class BenchResult:
    """What a run measured; results of several processes merge."""

    requests: int = 0
    elapsed: float = 0.0
    errors: Counter[str] = field(default_factory=Counter)
    histogram: Histogram = field(default_factory=Histogram)
    connected: int = 0          # busy connections (UDP: sockets) answered at least once
    idle_connected: int = 0     # idle connections open when the clock started
    #: UDP: requests the server dropped under its per-source rate limit while
    #: the run lasted (its ``stats`` counter, read before and after); None
    #: when unknown (TCP, or a server without that counter).
    rate_limited: int | None = None

    @property
    def requests_per_second(self) -> float:
        return self.requests / self.elapsed if self.elapsed > 0 else 0.0

    def merge(self, other: BenchResult) -> None:
        self.requests += other.requests
        # Processes run side by side: the run lasted as long as the longest.
        self.elapsed = max(self.elapsed, other.elapsed)
        self.errors.update(other.errors)
        self.histogram.merge(other.histogram)
        self.connected += other.connected
        self.idle_connected += other.idle_connected
        if other.rate_limited is not None:
            self.rate_limited = (self.rate_limited or 0) + other.rate_limited

    def to_wire(self) -> dict[str, Any]:
        return {"requests": self.requests, "elapsed": self.elapsed, "errors": dict(self.errors),
                "histogram": self.histogram.to_dict(), "connected": self.connected,
                "idle_connected": self.idle_connected, "rate_limited": self.rate_limited}

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> BenchResult:
        return cls(int(data["requests"]), float(data["elapsed"]), Counter(data["errors"]),
                   Histogram.from_dict(data["histogram"]), int(data["connected"]),
                   int(data["idle_connected"]), data.get("rate_limited"))
