"""Server settings, defined once: their names, defaults, bounds and messages.

Every TCP server shares the settings in :data:`SERVER_SETTINGS`. The command
line builds its flags from this table (``max_connections`` is
``--max-connections``) and :class:`sockworks.Server` checks its keyword
arguments against it, so a default or a bound lives in one place and a bad
value gets the same message from either ("must be >= 1, got 0").
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sockworks.core.limits import OutputLimits, default_maxmemory_clients, memtoull

if TYPE_CHECKING:
    import socket

    from sockworks.core.service import Service
    from sockworks.core.tls import TlsContext

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_MAX_LINE",
    "Endpoint",
    "SERVER_SETTINGS",
    "ServerSettings",
    "Setting",
    "check_int",
    "check_number",
    "parse_int",
    "parse_number",
]

#: Longest request line accepted, as Redis's PROTO_INLINE_MAX_SIZE (64 KiB):
#: long enough for any sane command, short enough that a client streaming
#: bytes without a newline cannot make the server buffer without bound.
DEFAULT_MAX_LINE = 64 * 1024

#: Servers bind loopback unless told otherwise: exposing a port to the
#: network is the user's explicit choice ('::' or 0.0.0.0).
DEFAULT_HOST = "127.0.0.1"


# -- checked numbers (the CLI's argument types wrap these) -------------------

def _range(low: float | None, high: float | None) -> str:
    if low is not None and high is not None:
        return f"between {low:g} and {high:g}"
    return f">= {low:g}" if low is not None else f"<= {high:g}"


def check_int(value: int, low: int | None = None, high: int | None = None,
              shown: object = None) -> int:
    """``value`` if it lies in [low, high], else ValueError saying so."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"must be an integer, got {value!r}")
    if (low is not None and value < low) or (high is not None and value > high):
        shown = shown if shown is not None else repr(value)
        raise ValueError(f"must be {_range(low, high)}, got {shown}")
    return value


def parse_int(text: str, low: int | None = None, high: int | None = None) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"must be an integer, got {text!r}") from None
    return check_int(value, low, high, shown=repr(text))


def check_number(value: float, low: float | None = None, high: float | None = None, *,
                 above: float | None = None, shown: object = None) -> float:
    """A finite float in [low, high], or strictly greater than ``above``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"must be a number, got {value!r}")
    shown = shown if shown is not None else repr(value)
    if not math.isfinite(value):
        raise ValueError(f"must be a finite number, got {shown}")
    if above is not None and not value > above:
        raise ValueError(f"must be > {above:g}, got {shown}")
    if (low is not None and value < low) or (high is not None and value > high):
        raise ValueError(f"must be {_range(low, high)}, got {shown}")
    return float(value)


def parse_number(text: str, low: float | None = None, high: float | None = None, *,
                 above: float | None = None) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"must be a number, got {text!r}") from None
    return check_number(value, low, high, above=above, shown=repr(text))


# -- the settings table -------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Setting:
    """One server setting: keyword ``name``, flag ``--name-with-dashes``."""

    name: str
    kind: type[int] | type[float] | type[OutputLimits]
    default: int | float | OutputLimits | None
    low: float | None
    help: str
    metavar: str | None = None
    high: float | None = None
    #: For values that are not plain numbers (byte counts, Redis's limit
    #: syntax): text -> value, ValueError with the reason otherwise.
    reader: Callable[[str], object] | None = None

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def check(self, value: object) -> object:
        """The value, validated; ValueError "NAME must be ..." otherwise."""
        if value is None and self.default is None:
            return None
        try:
            if self.reader is not None:
                if isinstance(value, str):
                    return self.reader(value)
                if self.kind is OutputLimits:
                    if not isinstance(value, OutputLimits):
                        raise ValueError(f"must be like 'normal 256mb 0 0', got {value!r}")
                    return value
            if self.kind is int:
                low = None if self.low is None else int(self.low)
                high = None if self.high is None else int(self.high)
                return check_int(value, low, high)  # type: ignore[arg-type]
            return check_number(value, self.low, self.high)  # type: ignore[arg-type]
        except ValueError as exc:
            raise ValueError(f"{self.name} {exc}") from None

    def parse(self, text: str) -> object:
        """From a command-line or config string (ValueError with the reason)."""
        if self.reader is not None:
            return self.reader(text)
        if self.kind is int:
            return parse_int(text, None if self.low is None else int(self.low),
                             None if self.high is None else int(self.high))
        return parse_number(text, self.low, self.high)


#: The settings of every TCP server, in --help order. ``model``, ``host``
#: and ``port`` are not here: their defaults belong to each service.
SERVER_SETTINGS: dict[str, Setting] = {s.name: s for s in (
    Setting("workers", int, None, 1,
            "pool threads (pool, default 50) or processes (prefork, default: CPUs)"),
    Setting("max_connections", int, 1024, 1,
            "connections over this get 'server busy' (default 1024)"),
    Setting("idle_timeout", float, 30.0, 0,
            "close connections silent this long; 0 disables (default 30)", "SECONDS"),
    Setting("grace", float, 10.0, 0,
            "on SIGTERM/SIGINT, time given to requests in flight (default 10)", "SECONDS"),
    Setting("send_timeout", float, 10.0, 0,
            "a connection being closed whose peer reads nothing for this long is "
            "aborted (RST); 0 waits forever (default 10)", "SECONDS"),
    Setting("client_output_buffer_limit", OutputLimits, OutputLimits(), None,
            "Redis's CLASS HARD SOFT SOFT-SECONDS: a client whose unsent replies pass HARD, "
            "or stay over SOFT for SOFT-SECONDS, is closed; 0 disables "
            "(default 'normal 256mb 0 0'; pub/sub subscribers: 'pubsub 32mb 8mb 60')",
            "'CLASS HARD SOFT SECONDS'",
            reader=OutputLimits.parse),
    Setting("maxmemory_clients", int, None, 0,
            "cap on memory held by all clients' unfinished requests and unsent replies; "
            "over it the biggest client is closed (Redis units: 100mb, 1gb; "
            "default: a quarter of --maxmemory if set, else 1gb)", "BYTES",
            reader=memtoull),
)}


@dataclass(slots=True)
class Endpoint:
    """One listening address and the service behind it. A server may have
    several (the KV server's text port and its RESP port share one store)."""

    host: str
    port: int
    service: Service
    #: A listening socket to serve instead of binding host:port (systemd
    #: socket activation, sockworks.core.activation).
    listener: socket.socket | None = None
    #: TLS on this listener (sockworks.core.tls): the handshake comes first.
    tls: TlsContext | None = None
    #: A UNIX domain socket path to listen on instead of host:port.
    unix_path: str | None = None
    #: Its file mode (0o700); None leaves it to the umask.
    unix_perm: int | None = None

    @property
    def kind(self) -> str:
        """``tcp``, ``tls`` or ``unix``: what CONFIG and the logs call it."""
        return ("unix" if self.unix_path is not None
                else "tls" if self.tls is not None else "tcp")


def _default(name: str) -> object:
    return SERVER_SETTINGS[name].default


@dataclass(slots=True)
class ServerSettings:
    """The settings in force for one server (validated by :meth:`checked`)."""

    model: str
    workers: int | None = None
    max_connections: int = _default("max_connections")  # type: ignore[assignment]
    idle_timeout: float = _default("idle_timeout")  # type: ignore[assignment]
    grace: float = _default("grace")  # type: ignore[assignment]
    send_timeout: float = _default("send_timeout")  # type: ignore[assignment]
    client_output_buffer_limit: OutputLimits = field(default_factory=OutputLimits)
    #: None: the default rule (limits.default_maxmemory_clients); see
    #: :attr:`client_memory_cap` for the value in force.
    maxmemory_clients: int | None = None
    #: listen() backlog: connections the kernel queues before accept().
    backlog: int = 1024

    @property
    def client_memory_cap(self) -> int:
        """Bytes all clients together may hold (--maxmemory-clients in force)."""
        return self.maxmemory_clients or default_maxmemory_clients(0)

    @classmethod
    def checked(cls, model: str, **values: object) -> ServerSettings:
        """Settings from keyword values, each checked against its Setting;
        unknown names are a TypeError, as for any keyword argument."""
        unknown = sorted(set(values) - set(SERVER_SETTINGS))
        if unknown:
            raise TypeError(f"unknown server setting(s): {', '.join(unknown)}")
        checked = {name: SERVER_SETTINGS[name].check(value) for name, value in values.items()}
        return cls(model, **checked)  # type: ignore[arg-type]
