"""Server configuration shared by every concurrency model."""

from __future__ import annotations

from dataclasses import dataclass, field

from sockworks.core.service import Service

__all__ = ["Endpoint", "ServerSettings", "DEFAULT_MAX_LINE"]

#: Longest request line accepted, as Redis's PROTO_INLINE_MAX_SIZE (64 KiB):
#: long enough for any sane command, short enough that a client streaming
#: bytes without a newline cannot make the server buffer without bound.
DEFAULT_MAX_LINE = 64 * 1024


@dataclass(slots=True)
class Endpoint:
    """One listening address and the service behind it. A server may have
    several (the KV server's text port and its RESP port share one store)."""

    host: str
    port: int
    service: Service


@dataclass(slots=True)
class ServerSettings:
    """The flags every ``serve`` command shares (see the README)."""

    model: str = "thread"
    workers: int | None = None          # pool threads / prefork processes; None = model default
    max_connections: int = 1024
    idle_timeout: float = 30.0          # seconds; 0 disables
    grace: float = 10.0                 # seconds to finish in-flight requests on shutdown
    backlog: int = 1024
    extra: dict[str, object] = field(default_factory=dict)
