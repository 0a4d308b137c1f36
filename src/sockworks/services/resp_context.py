"""What a RESP command handler sees, and what it returns.

A handler is ``Callable[[CommandContext, list[bytes]], bytes | Plan]``: it
gets the connection's :class:`CommandContext` (protocol version, store, client
identity, transaction state, the server's figures) and the arguments, arity
already checked against its :class:`CommandSpec`. It never touches the
session's own fields: every change of connection state (HELLO, CLIENT
SETNAME, MULTI/EXEC/DISCARD, RESET, QUIT) is a named method here.

It returns the reply bytes (no store access, or an argument error) or a
:class:`Plan`: a store call, given the store (``lambda st: st.get(key)``, so
mypy checks its arguments), plus how its result becomes the reply. The
session runs a plan at once, or at ``EXEC`` as part of one
``Store.execute_batch``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

if TYPE_CHECKING:
    from sockworks.core.clients import ClientHandle
    from sockworks.core.config import ServerSettings
    from sockworks.core.error_stats import ErrorStats
    from sockworks.core.limits import OutputLimits
    from sockworks.core.stats import ServerStats
    from sockworks.services.auth import AccessControl
    from sockworks.services.pubsub import Broker, Subscriptions
    from sockworks.services.resp_blocking import BlockRequest
    from sockworks.services.resp_scripting import Scripts
    from sockworks.storage.base import Store
    from sockworks.storage.gate import ExclusiveRun

__all__ = ["CommandContext", "CommandSpec", "Handler", "Plan", "RespServer"]

T = TypeVar("T")


def _as_is(reply: bytes) -> bytes:
    return reply


@dataclass(slots=True)
class Plan(Generic[T]):
    """A command's store access: ``call(store)`` and how its result is shown.

    ``single``: ``call`` makes exactly one Store call and returns its result,
    so a Redis MULTI/EXEC can queue it. Otherwise (:meth:`group`) it is a
    function of any number of calls returning the reply itself: inside
    ``EXEC`` it joins the batch only where the store isolates groups (the
    embedded store), else it runs after the batch.
    """

    call: Callable[[Store], T]
    finish: Callable[[T], bytes]
    write: bool = False
    single: bool = True

    @staticmethod
    def group(body: Callable[[Store], bytes], write: bool = False) -> Plan[bytes]:
        """A function making several calls (or none) that returns the reply."""
        return Plan(body, _as_is, write, single=False)


class RespServer(Protocol):
    """The service-wide figures handlers report (INFO, CONFIG, CLIENT LIST)."""

    @property
    def max_bulk(self) -> int: ...

    @property
    def store(self) -> Store:
        """The service's store (a session's own may be a pinned view of it)."""

    @property
    def port(self) -> int: ...

    @property
    def listening(self) -> Mapping[str, str]:
        """CONFIG GET tls-port, unixsocket, unixsocketperm: the values in force."""

    @property
    def max_connections(self) -> int: ...

    @property
    def stats(self) -> ServerStats: ...

    @property
    def access(self) -> AccessControl:
        """Users, passwords and protected mode in force."""

    @property
    def idle_timeout(self) -> float: ...

    @property
    def settings(self) -> ServerSettings | None:
        """The server's settings in force (CONFIG SET changes some of them)."""

    @property
    def options(self) -> Mapping[str, str]:
        """CONFIG GET values fixed at start-up by the command line (dir,
        appendfsync, aclfile...)."""

    @property
    def output_limits(self) -> OutputLimits:
        """client-output-buffer-limit in force."""

    @property
    def client_memory_cap(self) -> int:
        """maxmemory-clients in force (bytes)."""

    @property
    def broker(self) -> Broker:
        """The pub/sub channels and patterns of this server process."""

    def set_keyspace_events(self, flags: int) -> None:
        """CONFIG SET notify-keyspace-events (and the store's expiry and
        eviction hook)."""

    def info(self, sections: Sequence[str]) -> str: ...

    @property
    def scripts(self) -> Scripts:
        """Lua scripting: engine, script cache, runner."""

    def sessions(self) -> Sequence[CommandContext]: ...

    @property
    def error_stats(self) -> ErrorStats:
        """INFO errorstats and total_error_replies (core/error_stats.py)."""

    def count_nested(self, name: str, reply: bytes, rejected: bool, seconds: float) -> None:
        """A command a script ran (``redis.call``): INFO commandstats and
        errorstats count it as Redis does, ``rejected`` if it was refused
        before it ran."""

    def reset_stats(self) -> None:
        """CONFIG RESETSTAT."""

    @property
    def writes_refused(self) -> bool:
        """min-replicas-to-write is set: writes get NOREPLICAS (no replicas here)."""

    @property
    def min_replicas_to_write(self) -> int: ...

    @property
    def min_replicas_max_lag(self) -> int: ...

    def set_min_replicas(self, to_write: int | None = None, max_lag: int | None = None) -> None:
        """CONFIG SET min-replicas-to-write / min-replicas-max-lag."""


class CommandContext(Protocol):
    """One connection as its command handlers see it."""

    @property
    def proto(self) -> int:
        """RESP version of the replies: 2, or 3 after ``HELLO 3``."""

    @property
    def store(self) -> Store: ...

    @property
    def server(self) -> RespServer: ...

    @property
    def commands(self) -> Mapping[bytes, CommandSpec]:
        """The command table (for COMMAND)."""

    @property
    def client_id(self) -> int: ...

    @property
    def name(self) -> bytes:
        """CLIENT SETNAME's name (b"" none)."""

    @property
    def max_query(self) -> int:
        """Longest request the parser accepts (client-query-buffer-limit)."""

    @property
    def username(self) -> str | None:
        """The ACL user this connection runs as (None: not authenticated)."""

    def authenticate(self, username: str, password: bytes) -> bool:
        """AUTH: become ``username`` if ``password`` is theirs (counted if not)."""

    def set_protocol(self, proto: int) -> None: ...

    def set_name(self, name: bytes) -> None: ...

    def set_library(self, *, name: bytes | None = None, version: bytes | None = None) -> None:
        """CLIENT SETINFO LIB-NAME / LIB-VER."""

    def client_info(self) -> str:
        """This connection's CLIENT INFO / CLIENT LIST line."""

    def set_reply_mode(self, mode: str) -> None:
        """CLIENT REPLY on / off / skip (pushes are sent regardless)."""

    def set_no_evict(self, on: bool) -> None:
        """CLIENT NO-EVICT: exempt this connection from maxmemory-clients."""

    # -- transactions ----------------------------------------------------------
    @property
    def in_multi(self) -> bool: ...

    def begin_multi(self) -> None:
        """MULTI: queue the following commands."""

    def end_multi(self) -> tuple[list[list[bytes]], bool]:
        """Leave MULTI: the queued commands, and whether one was refused."""

    def run_transaction(self, queued: list[list[bytes]]) -> bytes:
        """EXEC's reply: the queued commands run as one unit, or the null
        array if a WATCHed key changed (checked atomically with the run)."""

    def watch(self, keys: list[bytes]) -> bytes:
        """WATCH ``keys`` (the store supports it); the reply."""

    def unwatch(self) -> None:
        """Forget every WATCHed key (UNWATCH, EXEC, DISCARD, RESET)."""

    def reset(self) -> None:
        """RESET: leave MULTI, RESP2, no name."""

    # -- scripting -------------------------------------------------------------
    def run_script(self, job: Callable[[ExclusiveRun], bytes]) -> bytes | Plan[bytes]:
        """Run ``job`` (a script) alone on the store, its writes logged as
        one record: inside EXEC, the plan that runs it in the transaction's
        batch; otherwise b"" and the reply later (the session hands it to
        the runner thread)."""

    def run_plan(self, plan: Plan[Any]) -> bytes:
        """A command's plan, run now (redis.call): its reply."""

    def script_access(self, spec: CommandSpec, argv: list[bytes],
                      count: bool = True) -> bytes | None:
        """The ACL refusal of ``argv`` for this connection's user, or None
        (``count=False``: not counted in the denied counters)."""

    def rejected(self, reply: bytes) -> bytes:
        """``reply``, an error refusing the command before it ran (a
        script's declared flags against the server's state): INFO
        commandstats counts it as Redis's rejected_calls."""

    def close_after_reply(self) -> None:
        """QUIT: nothing after this command runs; the connection closes."""

    @property
    def client(self) -> ClientHandle | None:
        """The model's handle of this connection (None outside a server)."""

    @property
    def subscriptions(self) -> Subscriptions:
        """This connection's pub/sub subscriptions and push path."""

    # -- blocking commands (resp_blocking.py) ------------------------------------------
    @property
    def may_block(self) -> bool:
        """False inside EXEC: a blocking command then runs as its plain one."""

    @property
    def in_script(self) -> bool:
        """A Lua script or function is running this command."""

    def block(self, request: BlockRequest) -> bytes:
        """Serve ``request`` now, or wait for a push (the reply comes later)."""

    def unblock(self, error: bool) -> bool:
        """CLIENT UNBLOCK: end this connection's wait (null reply, or the
        UNBLOCKED error); False if it was not waiting."""


Handler = Callable[[CommandContext, list[bytes]], "bytes | Plan[Any]"]


@dataclass(frozen=True, slots=True)
class CommandSpec:
    """A command: Redis's arity (n exact, -n at least n), flags for COMMAND,
    key positions (first, last, step) and whether MULTI may queue it."""

    name: str
    handler: Handler
    arity: int
    flags: tuple[str, ...] = ()
    keys: tuple[int, int, int] = (0, 0, 0)
    queueable: bool = True
