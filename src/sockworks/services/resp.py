"""The Redis-protocol (RESP2/RESP3) front end of a :class:`Store`.

``RespService(store, stats)`` is the second listener of ``serve kv
--resp-port``: it shares the store (data, expiry, persistence) with the text
port. Each connection gets a :class:`RespSession` that parses requests with
:class:`sockworks.protocols.resp.RespParser` and answers like Redis 7:
same replies, same error texts and prefixes, RESP3 types after ``HELLO 3``
(docs/resp.md lists the commands and every difference from Redis).

How a command runs: the session looks it up in ``resp_table.COMMANDS`` and
calls its handler with itself as the handler's
:class:`~sockworks.services.resp_context.CommandContext`. The handler
checks the arguments and returns either the reply bytes (no store access,
or an argument error) or a :class:`Plan`: a typed store call plus a
function turning its result into the reply. Outside a transaction the call
runs at once. ``EXEC`` runs the plans of the queued commands as one
``Store.execute_batch`` (atomic on every backend); a plan that is a group
of several calls joins the batch where the store isolates groups (the
embedded store) and runs after it otherwise (Redis).
"""

from __future__ import annotations

import functools
import logging
import os
import platform
import secrets
import sys
import threading
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

from sockworks._version import __version__
from sockworks.core.command_stats import OTHER, CommandStats, OpsRate
from sockworks.core.config import Endpoint, ServerSettings
from sockworks.core.error_stats import ErrorStats, HoldsErrors, failed_reply
from sockworks.core.limits import OutputLimits, default_maxmemory_clients
from sockworks.core.logs import RateLimitedLog
from sockworks.core.service import CLOSE, NOTHING, REPLY_BUDGET, Output, Service, Session
from sockworks.core.stats import ServerStats
from sockworks.protocols.resp import (
    DEFAULT_MAX_BULK,
    NULL_ARRAY,
    OK,
    RespParser,
    encode,
    encode_null,
)
from sockworks.services import keyspace_events
from sockworks.services.accel import FASTPATH
from sockworks.services.acl import User
from sockworks.services.acl_categories import COMMAND_CATEGORIES, CONTAINERS
from sockworks.services.auth import DENIED_TEXT, AccessControl
from sockworks.services.meminfo import cpu_fields, memory_fields
from sockworks.services.pubsub import Broker, Subscriptions
from sockworks.services.renames import NO_RENAMES, CommandRenames
from sockworks.services.resp_blocking import (
    BLOCKING_UNSUPPORTED,
    UNBLOCKED_ERROR,
    BlockRequest,
    Waiter,
    backend_form,
    registry_for,
)
from sockworks.services.resp_commands import (
    BUSY_REPLY,
    DEFAULT_MIN_REPLICAS_MAX_LAG,
    NOREPLICAS,
    OOM_REPLY,
    QUEUED,
    QUEUED_OVERHEAD,
    REDIS_VERSION,
    arity_ok,
    error_quoting,
    store_error,
    unknown_command,
    wrong_args,
)
from sockworks.services.resp_context import CommandSpec, Plan
from sockworks.services.resp_introspect import command_keys
from sockworks.services.resp_scripting import (
    Scripts,
    ScriptTicket,
    busy_allowed,
    busy_reply,
)
from sockworks.services.resp_table import COMMANDS, CONTAINER_COMMANDS
from sockworks.storage.base import (
    BlockedCall,
    Store,
    StoreError,
    StoreWriteError,
    TransactionAborted,
    WatchSet,
)
from sockworks.storage.eviction import bytes_to_human
from sockworks.storage.gate import DEFAULT_BUSY_REPLY_THRESHOLD_MS, ExclusiveRun
from sockworks.storage.memory import MemoryStore

__all__ = ["COMMANDS", "REDIS_VERSION", "RespService", "RespSession"]

logger = logging.getLogger(__name__)

#: Command names that are really an HTTP request line or header (Redis's
#: securityWarningCommand list): the connection is closed at once.
_HTTP_WORDS = frozenset({b"post", b"host:"})
#: What the compiled fast path hands over when it stops early (_fastpath.resp_run):
#: started, replies, executed, errors, reply bytes, GETs, SETs, wrote, calls,
#: failed, seconds by name, rejected, seconds timed, and the indices in
#: replies of write acknowledgements (a failed log batch errs them).
RespSeed = tuple[float, list[bytes], int, int, int, int, int, bool, dict[str, int],
                 dict[str, int], dict[str, float], dict[str, int], float, list[int]]
#: What an unauthenticated client may run (Redis's no-auth commands); they
#: are never subject to ACL rules either.
_NO_AUTH = frozenset({"auth", "hello", "quit", "reset"})
NOAUTH: Final = b"-NOAUTH Authentication required.\r\n"
#: What a RESP2 connection with subscriptions may run (Redis's list).
_SUBSCRIBED_OK = frozenset({"subscribe", "ssubscribe", "psubscribe", "unsubscribe",
                            "sunsubscribe", "punsubscribe", "ping", "quit", "reset"})
#: Commands whose replies are pushes (CLIENT REPLY OFF does not drop them).
_PUSHED_REPLIES = frozenset({b"subscribe", b"ssubscribe", b"psubscribe", b"unsubscribe",
                             b"sunsubscribe", b"punsubscribe"})
#: Commands after which the session re-reads its pub/sub mode.
_MODE_CHANGERS = frozenset({b"subscribe", b"ssubscribe", b"psubscribe", b"unsubscribe",
                            b"sunsubscribe", b"punsubscribe", b"hello", b"reset", b"exec",
                            b"monitor"})
#: Commands that run a script: MONITOR shows them before the script's own calls.
_SCRIPT_COMMANDS = frozenset({"eval", "evalsha", "eval_ro", "evalsha_ro", "fcall", "fcall_ro"})
#: Shutdown waits this long for Redis to answer a client's wait in it.
DEFAULT_STOP_WAIT: Final = 2.0
#: Redis 7.0's denial texts (the version the differential tests run).
NOPERM_KEY: Final = (b"-NOPERM this user has no permissions to access one of the keys used "
                     b"as arguments\r\n")
NOPERM_CHANNEL: Final = (b"-NOPERM this user has no permissions to access one of the channels "
                         b"used as arguments\r\n")
#: Commands whose arguments are channels the ACL checks (&pattern).
_CHANNEL_ARGS = frozenset({"subscribe", "ssubscribe", "psubscribe", "publish", "spublish"})
DENIED_REPLY: Final = b"-DENIED " + DENIED_TEXT.encode() + b"\r\n"


class RespService(Service):
    """The RESP front end of ``store``; ``stats`` are the server's counters
    (shared with the text port). ``port`` is only reported by INFO."""

    name = "resp"

    def __init__(self, store: Store, stats: ServerStats, *, max_bulk: int = DEFAULT_MAX_BULK,
                 port: int = 0, use_hiredis: bool | None = None,
                 owns_store: bool = False, blocking: bool | None = None,
                 idle_timeout: float = 0.0, max_connections: int = 1024,
                 renames: CommandRenames = NO_RENAMES,
                 access: AccessControl | None = None,
                 options: Mapping[str, str] | None = None,
                 busy_reply_threshold: int = DEFAULT_BUSY_REPLY_THRESHOLD_MS) -> None:
        self.store = store
        #: Lua scripts: engine, cache and runner (services/resp_scripting.py).
        self.scripts = Scripts()
        if store.script_gate is not None:
            # Milliseconds, Redis's unit for busy-reply-threshold.
            store.script_gate.threshold = busy_reply_threshold / 1000
        #: Users, passwords and protected mode (shared with the text port).
        self.access = access if access is not None else AccessControl()
        self._stats = stats
        self.max_bulk = max_bulk
        self.port = port
        #: CONFIG GET tls-port / unixsocket / unixsocketperm (Redis's "off" values
        #: until bound_endpoint reports a listener).
        self.listening: dict[str, str] = {"tls-port": "0", "unixsocket": "",
                                          "unixsocketperm": "0"}
        #: Until attached: reported by CONFIG GET timeout / maxclients (the
        #: model enforces the attached settings, which CONFIG SET changes).
        self._idle_timeout = idle_timeout
        self._max_connections = max_connections
        #: CONFIG GET values the command line fixed (dir, appendfsync...).
        self.options: Mapping[str, str] = dict(options or {})
        #: The command table in force (--rename-command applied) and the
        #: spellings the session's GET/SET fast path answers.
        self.renames = renames
        self.commands = renames.table(COMMANDS)
        self.get_words = renames.fast_words("get")
        self.set_words = renames.fast_words("set")
        self.use_hiredis = use_hiredis
        #: The text service that opened the store closes it; a standalone
        #: RESP service passes owns_store=True.
        self.owns_store = owns_store
        # A network-backed store (Redis) blocks: event-loop models must run
        # sessions in worker threads (see Service.blocking).
        self.blocking = store.shared_across_processes if blocking is None else blocking
        #: Clients waiting in blocking pops (None: the store cannot hold them).
        self.waits = registry_for(store)
        self.run_id = secrets.token_hex(20)
        #: At most one line per 5 s however many HTTP requests arrive.
        self.http_log = RateLimitedLog(logger, logging.WARNING)
        #: Clients closed at a limit (requests held while blocked).
        self.limit_log = RateLimitedLog(logger, logging.WARNING)
        #: A command that raised (a bug): with its traceback, bounded because
        #: a client could repeat it.
        self.error_log = RateLimitedLog(logger, logging.ERROR)
        self._lock = threading.Lock()
        #: Live sessions by id(session) (their client ids come later, from the model).
        self._sessions: dict[int, RespSession] = {}
        self._commands = 0
        self._protocol_errors = 0
        #: INFO errorstats and total_error_replies (every error reply, by code).
        self.error_stats = ErrorStats()
        #: CommandStats' figures at the last CONFIG RESETSTAT: INFO
        #: commandstats shows what came since (the metrics, counters that
        #: never go back, show everything).
        self._stats_base: dict[str, float] = {}
        #: The same for the INFO stats counters Redis's RESETSTAT resets.
        self._counters_base: dict[str, int] = {}
        #: Redis's min-replicas-to-write and min-replicas-max-lag (CONFIG SET;
        #: set_min_replicas); writes_refused: both set, so writes get NOREPLICAS.
        self.min_replicas_to_write = 0
        self.min_replicas_max_lag = DEFAULT_MIN_REPLICAS_MAX_LAG
        self.writes_refused = False
        #: instantaneous_ops_per_sec (INFO stats).
        self._rate = OpsRate(time.monotonic())
        self._closed = False
        #: Commands by name, errors by name, per-chunk processing time (metrics).
        self.command_stats = CommandStats(spec.name for spec in COMMANDS.values())
        #: Pub/sub channels and patterns of this process (services/pubsub.py).
        self.broker = Broker()

    def set_keyspace_events(self, flags: int) -> None:
        self.broker.keyspace_flags = flags
        store = self.store
        if isinstance(store, MemoryStore):
            wanted = flags & (keyspace_events.EXPIRED | keyspace_events.EVICTED
                              | keyspace_events.STREAM)
            store.key_events = self._store_event if wanted else None

    def _store_event(self, event: str, key: bytes) -> None:
        """The embedded store expired or evicted ``key``, or a stream
        command fired ``event`` on it (its lock held)."""
        cls = (keyspace_events.EXPIRED if event == "expired" else
               keyspace_events.EVICTED if event == "evicted" else keyspace_events.STREAM)
        self.broker.notify(cls, event, key)

    def attach(self, stats: ServerStats, settings: ServerSettings) -> None:
        super().attach(stats, settings)
        # As KvService.attach: the models flush the sessions' barriers.
        self.store.batch_log_writes()
        stats.counter_sources[self.name] = self.counters
        stats.counter_sources[f"{self.name}.cmd"] = self.command_stats.flat

    @property
    def idle_timeout(self) -> float:
        return self.settings.idle_timeout if self.settings is not None else self._idle_timeout

    @property
    def max_connections(self) -> int:
        return (self.settings.max_connections if self.settings is not None
                else self._max_connections)

    def bound(self, address: tuple[str, int]) -> None:
        self.port = address[1]
        self.access.note_listening("RESP", address[0], address[1])

    def bound_endpoint(self, endpoint: Endpoint, address: tuple[str, int]) -> None:
        super().bound_endpoint(endpoint, address)
        if endpoint.kind == "tls":
            self.listening["tls-port"] = str(address[1])
        elif endpoint.unix_path is not None:
            self.listening["unixsocket"] = endpoint.unix_path
            self.listening["unixsocketperm"] = f"{endpoint.unix_perm or 0:o}"

    @property
    def output_limits(self) -> OutputLimits:
        return (self.settings.client_output_buffer_limit if self.settings is not None
                else OutputLimits())

    @property
    def client_memory_cap(self) -> int:
        return (self.settings.client_memory_cap if self.settings is not None
                else default_maxmemory_clients(0))

    def new_session(self, peer: str) -> RespSession:
        session = RespSession(self, peer)
        with self._lock:
            self._sessions[id(session)] = session
        return session

    def busy_reply(self) -> bytes:
        return BUSY_REPLY

    # -- shared counters (updated once per received chunk) ---------------------
    def count(self, commands: int, errors: int, protocol_errors: int) -> None:
        # ``errors``: the chunk's error replies, which error_stats counted
        # one by one (with their codes) as they were made.
        with self._lock:
            self._commands += commands
            self._protocol_errors += protocol_errors
            self._rate.observe(time.monotonic(), self._commands)

    def counters(self) -> dict[str, int]:
        """This process's INFO counters (prefork publishes them to be summed)."""
        with self._lock:
            return {"commands": self._commands, "errors": self.error_stats.total,
                    "protocol_errors": self._protocol_errors, "clients": len(self._sessions),
                    "ops_per_sec": self._rate.rate(time.monotonic(), self._commands)}

    @property
    def long_way(self) -> bool:
        """Every command must go through execute() (no GET/SET shortcut, no
        compiled fast path): MONITOR or keyspace events see every command,
        or min-replicas-to-write refuses writes."""
        return self.broker.sees_commands or self.writes_refused

    def set_min_replicas(self, to_write: int | None = None, max_lag: int | None = None) -> None:
        """CONFIG SET min-replicas-to-write / min-replicas-max-lag."""
        if to_write is not None:
            self.min_replicas_to_write = to_write
        if max_lag is not None:
            self.min_replicas_max_lag = max_lag
        # No replication here: there are never good replicas, so with both
        # set every write is refused, as Redis refuses them with none
        # connected (checkGoodReplicasStatus).
        self.writes_refused = self.min_replicas_to_write > 0 and self.min_replicas_max_lag > 0

    def count_nested(self, name: str, reply: bytes, rejected: bool, seconds: float) -> None:
        failed = reply[:1] == b"-"
        if failed:
            self.error_stats.note(reply)
        self.command_stats.add_nested(name, failed, rejected, seconds)

    def reset_stats(self) -> None:
        """CONFIG RESETSTAT: commandstats, errorstats and INFO stats'
        counters start again from zero, as Redis's resetServerStats (under
        prefork, errorstats and total_error_replies are per worker: this
        worker's are reset)."""
        self.error_stats.reset()
        store_info, counters, command_stats, conn = self._figures()
        resettable = _resettable(store_info, counters, command_stats, conn)
        with self._lock:
            self._stats_base, self._counters_base = command_stats, resettable

    def _figures(self) -> tuple[dict[str, Any], dict[str, Any], dict[str, float],
                                dict[str, Any]]:
        """What INFO reads: the store's info, this service's counters, its
        CommandStats and the connection counters (under prefork, every
        worker's summed: docs/operations.md)."""
        stats = self.stats
        counters = stats.server_wide(dict(self.counters()), self.name)
        command_stats = {name: float(value) for name, value in stats.server_wide(
            dict(self.command_stats.flat()), f"{self.name}.cmd").items()
            if isinstance(value, (int, float))}
        conn = stats.server_wide({"connections_total": stats.connections_total,
                                  "connections_rejected": stats.connections_rejected,
                                  "evicted_clients": stats.clients.evicted})
        return self.store.info(), counters, command_stats, conn

    def forget(self, session: RespSession) -> None:
        with self._lock:
            self._sessions.pop(id(session), None)

    def sessions(self) -> list[RespSession]:
        with self._lock:
            return list(self._sessions.values())

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        # The script first: it holds the store's lock, which the waits'
        # timer thread and the store's close take.
        if self.store.script_gate is not None:
            self.store.script_gate.stop()  # shutdown stops a script, writes or not
        self.scripts.close()
        if self.waits is not None:
            self.waits.close()
        if self.owns_store:
            self.store.close()

    # -- INFO ------------------------------------------------------------------
    def info(self, sections: Sequence[str]) -> str:
        """INFO's text: ``# Section`` headers, ``key:value`` lines, CRLF.

        The default sections are Redis's; ``commandstats`` is shown for
        ``all``, ``everything`` or by name, as in Redis."""
        wanted = {s.lower() for s in sections} or {"default"}
        everything = bool(wanted & {"all", "everything", "default"})
        every_section = bool(wanted & {"all", "everything"})
        store_info, counters, command_stats, conn = self._figures()
        stats = self.stats
        errors, clients = counters["errors"], counters["clients"]
        with self._lock:
            stats_base, counters_base = self._stats_base, self._counters_base
        # What CONFIG RESETSTAT set back to zero, since then.
        since = {name: value - counters_base.get(name, 0) for name, value in
                 _resettable(store_info, counters, command_stats, conn).items()}
        parts: list[str] = []

        def section(title: str, fields: dict[str, object]) -> None:
            if everything or title.lower() in wanted:
                lines = "".join(f"{k}:{v}\r\n" for k, v in fields.items())
                parts.append(f"# {title}\r\n{lines}")

        uptime = int(stats.uptime)
        section("Server", {
            "redis_version": REDIS_VERSION,
            "redis_mode": "standalone",
            "os": f"{platform.system()} {platform.release()} {platform.machine()}",
            "arch_bits": 64 if sys.maxsize > 2**32 else 32,
            "process_id": os.getpid(),
            "run_id": self.run_id,
            "tcp_port": self.port,
            "server_time_usec": time.time_ns() // 1000,
            "uptime_in_seconds": uptime,
            "uptime_in_days": uptime // 86400,
            "executable": "sockworks",
            "sockworks_version": __version__,
        })
        recent_in, recent_out = stats.clients.recent_max()
        section("Clients", {
            "connected_clients": clients,
            "cluster_connections": 0,
            "maxclients": self.max_connections,
            "client_recent_max_input_buffer": recent_in,
            "client_recent_max_output_buffer": recent_out,
            "blocked_clients": self.waits.blocked if self.waits is not None else 0,
            "tracking_clients": 0,
            "clients_in_timeout_table": 0,
        })
        scripting = self.scripts.counters()
        lua = scripting["used_memory_lua"]
        section("Memory", memory_fields(store_info, {
            "used_memory_lua": lua, "used_memory_lua_human": bytes_to_human(lua),
            "used_memory_scripts_eval": scripting["used_memory_scripts"],
            "number_of_cached_scripts": scripting["number_of_cached_scripts"]}))
        aof = store_info.get("persistence") == "aof"
        persistence: dict[str, object] = {
            "loading": 0,
            "async_loading": 0,
            "rdb_changes_since_last_save": 0,
            "rdb_bgsave_in_progress": 0,
            "rdb_last_save_time": int(stats.started_wall),
            "rdb_last_bgsave_status": "ok",
            "aof_enabled": int(aof),
            "aof_rewrite_in_progress": store_info.get("aof_rewrite_in_progress", 0),
            "aof_last_bgrewrite_status": store_info.get("aof_last_rewrite_status", "ok"),
        }
        for key, value in store_info.items():
            if key.startswith("aof_"):
                persistence.setdefault(key, value)
        section("Persistence", persistence)
        section("Stats", {
            "total_connections_received": since["total_connections_received"],
            "total_commands_processed": since["total_commands_processed"],
            "instantaneous_ops_per_sec": counters["ops_per_sec"],
            "total_net_input_bytes": since["total_net_input_bytes"],
            "total_net_output_bytes": since["total_net_output_bytes"],
            "rejected_connections": since["rejected_connections"],
            "expired_keys": since["expired_keys"],
            "evicted_keys": since["evicted_keys"],
            "evicted_clients": since["evicted_clients"],
            "keyspace_hits": since["keyspace_hits"],
            "keyspace_misses": since["keyspace_misses"],
            "total_error_replies": errors,
            **self.access.counters(),
        })
        # No replication here: a master without replicas, offset 0 (Redis's
        # figures for one that never had any).
        section("Replication", {"role": "master", "connected_slaves": 0,
                                "master_failover_state": "no-failover",
                                "master_repl_offset": 0, "second_repl_offset": -1,
                                "repl_backlog_active": 0})
        section("CPU", cpu_fields())
        if every_section or "commandstats" in wanted:
            section("Commandstats", _commandstats(command_stats, stats_base))
        section("Errorstats", self.error_stats.fields())
        section("Cluster", {"cluster_enabled": 0})
        keyspace: dict[str, object] = {}
        keys = store_info.get("keys")
        if keys is None:
            keys = self.store.dbsize()
        if keys:
            expires = store_info.get("expires", 0)
            avg_ttl = store_info.get("avg_ttl", 0)
            keyspace["db0"] = f"keys={keys},expires={expires},avg_ttl={avg_ttl}"
        section("Keyspace", keyspace)
        return "\r\n".join(parts)


def _resettable(store_info: Mapping[str, Any], counters: Mapping[str, Any],
                command_stats: Mapping[str, float], conn: Mapping[str, Any]) -> dict[str, int]:
    """INFO stats' counters that CONFIG RESETSTAT sets back to zero, as
    they stand (Redis's resetServerStats; total_error_replies is ErrorStats')."""
    return {
        "total_connections_received": int(conn["connections_total"]),
        "total_commands_processed": int(counters["commands"]),
        "total_net_input_bytes": int(command_stats["bytes_in"]),
        "total_net_output_bytes": int(command_stats["bytes_out"]),
        "rejected_connections": int(conn["connections_rejected"]),
        "expired_keys": int(store_info.get("expired_keys", 0)),
        "evicted_keys": int(store_info.get("evicted_keys", 0)),
        "evicted_clients": int(conn["evicted_clients"]),
        "keyspace_hits": int(store_info.get("keyspace_hits", 0)),
        "keyspace_misses": int(store_info.get("keyspace_misses", 0)),
    }


def _commandstats(flat: Mapping[str, float], base: Mapping[str, float]) -> dict[str, object]:
    """INFO commandstats from CommandStats' figures less ``base`` (those at
    CONFIG RESETSTAT). Redis's fields: a rejected call never ran, so
    ``calls`` leaves it out; ``failed_calls`` ran and answered an error.
    Commands never called (since the reset) are not listed."""
    def since(key: str) -> int:
        return int(flat[key] - base.get(key, 0.0))

    fields: dict[str, object] = {}
    for key in flat:
        if not key.startswith("calls.") or key == f"calls.{OTHER}":
            continue
        name = key[6:]
        rejected = since(f"rejected.{name}")
        calls = since(key) - rejected
        failed = since(f"errors.{name}") - rejected
        if not (calls or rejected or failed):
            continue
        usec = since(f"usec.{name}")
        per_call = usec / calls if calls else 0.0
        fields[f"cmdstat_{name}"] = (f"calls={calls},usec={usec},usec_per_call={per_call:.2f},"
                                     f"rejected_calls={rejected},failed_calls={failed}")
    return fields


def _with_write_errors(replies: list[bytes], writes: list[int], error: str) -> bytes:
    """The replies of a chunk whose log batch failed: every write's
    acknowledgement (an EXEC's whole array) becomes the error."""
    failed = list(replies)
    reply = store_error(StoreWriteError(error))
    for index in writes:
        failed[index] = reply
    return b"".join(failed)


def _one_write_error(error: str) -> bytes:
    """The failed-batch reply of a chunk that was one write."""
    return store_error(StoreWriteError(error))


class RespSession(Session):
    """One RESP connection: requests in, replies out, in order."""

    def __init__(self, service: RespService, peer: str) -> None:
        self.service = service
        self.store = service.store
        self._commands = service.commands
        self._get_words = service.get_words
        self._set_words = service.set_words
        self.peer = peer
        self._own_id = service.stats.next_client_id()
        self.proto = 2
        self.name = b""
        self.lib_name = b""
        self.lib_ver = b""
        self.created = self.last_active = time.monotonic()
        self.last_command = b"NULL"
        access = service.access
        self._access = access
        #: The ACL user this connection runs as (None: must AUTH first), and
        #: whether it may run anything on any key (then nothing is checked).
        self.user: User | None = access.initial_user()
        self._acl_generation = access.generation
        self._open = self.user is not None and self.user.unrestricted
        self._refused = access.refuses(peer)
        #: Queued commands while in MULTI (None outside a transaction).
        self.queued: list[list[bytes]] | None = None
        self.queued_bytes = 0
        #: A command was refused while queueing: EXEC answers EXECABORT.
        self.multi_failed = False
        #: WATCHed keys (None: none) and what they cost, bounded like a
        #: transaction's queue (see watch()).
        self._watch: WatchSet | None = None
        self._watched_bytes = 0
        #: With a Redis backend, from WATCH to EXEC/DISCARD/UNWATCH: the
        #: store on this client's own connection (``self.store`` meanwhile).
        self._pinned: Store | None = None
        self._parser = RespParser(service.max_bulk, use_hiredis=service.use_hiredis)
        #: The store's script gate (None: it runs no scripts), the script
        #: handed to the runner and not yet answered, whether an EXEC is
        #: running (a script inside it runs in its batch, in this thread)
        #: and whether a script is: in either, a blocking command does not
        #: block (may_block).
        self._gate = self.store.script_gate
        self._ticket: ScriptTicket | None = None
        self._in_exec = False
        self._in_script = False
        #: The compiled hot path (services/fastpath.py), used while the
        #: session is plain; None: the reference code below runs everything.
        #: --rename-command changes what the fast words mean: none then.
        self._fast = FASTPATH.resp_run if FASTPATH is not None and not service.renames else None
        self._done = False
        self._wrote = False
        #: A command was refused before it ran (INFO's rejected_calls); set
        #: with its error reply, cleared when that reply is counted.
        self._rejected = False
        #: Commands that wrote, ever (tells _execute which replies acknowledge a write).
        self._writes = 0
        #: Commands received but held back (their replies would pass
        #: REPLY_BUDGET), and the protocol error after them, if any.
        self._backlog: list[list[bytes]] | None = None
        self._backlog_violation: Any = None
        #: Bytes received and not yet reported to the service's CommandStats.
        self._received = 0
        #: The wait of a blocking command (resp_blocking.py; on a Redis
        #: backend, the call waiting there); None: not waiting.
        self._blocked: Waiter | BlockedCall | None = None
        #: Shutdown is answering a wait in the backend: its reply goes here.
        self._stopping = False
        self._stop_reply = b""
        #: Set by park() in the call that started the wait: the rest is held.
        self._parked = False
        #: Guards the end of a wait (another thread serves it) against our calls.
        self._block_lock = threading.Lock()
        self._in_call = False
        #: A wait served while one of our calls ran: its reply goes out with
        #: that call's replies, after them.
        self._stash = b""
        #: Pub/sub: this connection's subscriptions and ordered push path.
        self.subs = Subscriptions()
        #: CLIENT REPLY: "on", "off"; skipping: drop the reply of the command
        #: running (SKIP was the one before it); skip_next: SKIP just ran.
        self._reply_mode = "on"
        self._skipping = self._skip_next = False
        #: Bytes held when the current on_data call started (0: none runs).
        self._qbuf = 0
        #: CLIENT NO-EVICT ON (CLIENT LIST flag e).
        self.no_evict = False

    def set_reply_mode(self, mode: str) -> None:
        # As Redis's clientCommand: SKIP under OFF changes nothing, and ON
        # also ends a SKIP, so its own OK is sent (CLIENT REPLY SKIP then
        # CLIENT REPLY ON answers OK).
        if mode == "skip":
            self._skip_next = self._reply_mode != "off"
        else:
            self._reply_mode = mode
            if mode == "on":
                self._skipping = self._skip_next = False
        self._update_mode()

    def _silenced(self, name: bytes, reply: bytes) -> bytes:
        """CLIENT REPLY OFF/SKIP: the reply is dropped; (un)subscribe
        confirmations are not (Redis sends them as pushes in RESP2 too)."""
        drop = self._skipping or self._reply_mode == "off"
        self._skipping, self._skip_next = self._skip_next, False
        if drop and name not in _PUSHED_REPLIES:
            return b""
        return reply

    @property
    def subscriptions(self) -> Subscriptions:
        return self.subs

    def _update_mode(self) -> None:
        """RESP2 with subscriptions: only the pub/sub commands run, and
        MONITOR refuses data commands, so the GET/SET fast path is off."""
        self.subs.proto = self.proto
        subscribed = ((self.proto == 2 and self.subs.active) or self.subs.monitoring
                      or self._reply_mode != "on" or self._skip_next)
        client = self.client
        if client is not None:
            # Redis's class for a subscriber: deliveries held to its limits.
            client.output_class = "pubsub" if self.subs.active else "normal"
        service = self.service
        self._get_words = frozenset() if subscribed else service.get_words
        self._set_words = frozenset() if subscribed else service.set_words

    @property
    def client_id(self) -> int:
        """CLIENT ID: the model's handle id (the same CLIENT KILL ID takes)."""
        return self.client.id if self.client is not None else self._own_id

    @property
    def busy(self) -> bool:
        # A waiting client is idle for shutdown: on_stop answers its wait.
        return (not self._done and self._blocked is None
                and (self._parser.busy or self._backlog is not None))

    @property
    def backlog(self) -> bool:
        return self._backlog is not None and not self._done and self._blocked is None

    @property
    def expects_deliveries(self) -> bool:
        # Waiting in a blocking command, or others push to it (pub/sub, MONITOR).
        return self._blocked is not None or self.subs.pushed_to

    @property
    def input_bytes(self) -> int:
        # Subscriptions count as held input: they are memory the client
        # makes the server keep (maxmemory-clients, CLIENT LIST tot-mem).
        held = self._parser.buffered + self.subs.memory
        if self._backlog:
            held += sum(len(arg) for argv in self._backlog for arg in argv)
        return held

    def on_data(self, data: bytes) -> Output:
        if self._done:
            return CLOSE  # QUIT or a protocol error ended the conversation
        if self._refused:
            # Protected mode: say why, then close. Redis says it at accept;
            # a RESP client speaks first, and answering its first request
            # (now read) means the close does not reset the connection
            # under the reply, so the client does see why.
            self._done = True
            return Output(DENIED_REPLY, True)
        self.last_active = time.monotonic()  # CLIENT LIST idle=
        self._received += len(data)
        if self._acl_generation != self._access.generation:
            self._refresh_user()
        parser = self._parser
        # CLIENT LIST qbuf= while this call runs: what Redis's query buffer
        # holds while it processes a read (the running command included).
        self._qbuf = parser.buffered + len(data)
        with self._block_lock:
            self._in_call = True
            waiting = self._blocked is not None
        # The plain state (docs/architecture.md): new per-connection state that
        # changes how a command runs must be added to this test. (No script
        # of this session waits for its reply: its backlog is set then.)
        # Subscriptions, MONITOR and CLIENT REPLY empty the GET/SET words
        # (_update_mode); MONITOR, keyspace events and min-replicas-to-write
        # anywhere need every command to go the long way, as in _run_commands.
        if (self._fast is not None and self._open and self.queued is None and not waiting
                and self._backlog is None and not parser.busy and type(data) is bytes
                and self._get_words and not self.subs.pushed_to
                and not self.service.long_way):
            # Compiled: the whole chunk, or the requests up to the first it
            # does not handle, from which the reference goes on; behind the
            # script gate as the reference is (_execute).
            return self._end_call(self._execute([], None, data))
        parser.receive_data(data)
        if waiting or self._ticket is not None:
            # A blocking command, or a script on the runner, has not answered
            # yet (an event loop reads on meanwhile): these wait behind it,
            # run by resume() once the model has its reply.
            return self._end_call(self._hold())
        if self._backlog is not None:
            # Earlier requests still wait: these queue up behind them.
            if self._backlog_violation is None:
                more, self._backlog_violation = parser.next_commands()
                self._backlog.extend(more)
            return self._end_call(self._resume())
        commands, violation = parser.next_commands()
        return self._end_call(self._execute(commands, violation))

    def resume(self) -> Output:
        with self._block_lock:
            self._in_call = True
        return self._end_call(self._resume())

    def _resume(self) -> Output:
        ticket = self._ticket
        if self._blocked is not None or (ticket is not None and not ticket.answered):
            # Its script's reply is not in yet: the model resumes again when
            # the output holding the ticket goes out.
            return NOTHING
        commands, violation = self._backlog or [], self._backlog_violation
        self._backlog = self._backlog_violation = None
        if self._done:
            return CLOSE
        return self._execute(commands, violation)

    def _end_call(self, out: Output) -> Output:
        """A wait served while the call ran: its reply follows the call's."""
        self._qbuf = 0
        with self._block_lock:
            self._in_call = False
            stash, self._stash = self._stash, b""
        if stash:
            failed = out.failed
            return Output(out.data + stash, out.close, out.barrier,
                          None if failed is None else lambda error: failed(error) + stash)
        return out

    def _hold(self) -> Output:
        """Requests that arrive while a blocking command waits run after it,
        as in Redis; what they may hold is the query buffer limit."""
        if self._backlog_violation is None:
            more, self._backlog_violation = self._parser.next_commands()
            if self._backlog is None:
                self._backlog = []
            self._backlog.extend(more)
        if self.input_bytes > self._parser.max_query:
            self._cancel_wait()
            self._done = True
            self.service.limit_log("closing %s: %d bytes of requests sent while blocked, "
                                  "over the query buffer limit %d", self.peer,
                                  self.input_bytes, self._parser.max_query)
            return CLOSE
        return NOTHING

    def _execute(self, commands: list[list[bytes]], violation: Any,
                 chunk: bytes | None = None) -> Output:
        """:meth:`_run_commands` behind the store's script gate
        (storage/gate.py): while a script has run past busy-reply-threshold,
        they are answered -BUSY without touching the store. ``chunk``: a
        plain session's received bytes, for the compiled path to run first
        inside the gate (``commands`` is empty then); while the gate is
        busy the reference parses and refuses them."""
        gate = self._gate
        if gate is None or not (commands or chunk):
            return self._run_fast(chunk) if chunk else self._run_commands(
                commands, violation, False)
        if not gate.enter():
            if chunk is not None:
                self._parser.receive_data(chunk)
                commands, violation = self._parser.next_commands()
            return self._run_commands(commands, violation, True)
        try:
            return self._run_fast(chunk) if chunk else self._run_commands(
                commands, violation, False)
        finally:
            gate.leave()

    def _run_fast(self, chunk: bytes) -> Output:
        """The compiled fast path on ``chunk``: it answers it all, or hands
        over the rest for the parser and a seed (its figures, and the
        requests it ran) from which :meth:`_run_commands` goes on."""
        parser = self._parser
        outcome = self._fast(self, chunk, parser.max_bulk)  # type: ignore[misc]
        if type(outcome) is Output:
            return outcome
        offset, seed = outcome
        parser.receive_data(chunk[offset:])
        commands, violation = parser.next_commands()
        return self._run_commands(commands, violation, False, seed)

    def _run_commands(self, commands: list[list[bytes]], violation: Any,
                      busy: bool, seed: RespSeed | None = None) -> Output:
        """Run parsed commands in order; one Output for them all. ``seed``:
        the compiled fast path ran the requests before ``commands``, and
        these are its figures."""
        perf_counter = time.perf_counter
        if seed is None:
            started = perf_counter()
            replies: list[bytes] = []
            self._wrote = False
            errors = executed = size = gets = sets = 0
            # Commands off the GET/SET fast path, their time (s), error
            # replies, and the refusals among them, by name.
            calls: dict[str, int] = {}
            spent: dict[str, float] = {}
            failed: dict[str, int] = {}
            rejected: dict[str, int] = {}
            timed = 0.0  # seconds spent in the commands timed one by one
            # Where the writes' acknowledgements are in replies: a failed log
            # batch turns each into an error reply (Output.failed).
            writes: list[int] = []
        else:
            (started, replies, executed, errors, size, gets, sets, self._wrote, calls, failed,
             spent, rejected, timed, writes) = seed
        append = replies.append
        # One clock read per timed command: each starts where the last ended,
        # unless fast-path commands ran in between (their count moved).
        mark, fast = started, 0
        # Every error reply is counted by its code as it is made (INFO errorstats).
        noted = self.service.error_stats.note
        ticket = self._ticket
        if ticket is not None:
            # A script answered: its reply comes before what followed it;
            # its command is counted now, with the script's run time and
            # its error, if any (INFO commandstats).
            self._ticket = None
            append(ticket.reply)
            size += len(ticket.reply)
            self._wrote = ticket.wrote
            calls[ticket.name] = 1
            spent[ticket.name] = ticket.overhead + ticket.seconds
            if failed_reply(ticket.reply):
                errors += 1
                failed[ticket.name] = 1
                if ticket.reply[:1] == b"-":
                    noted(ticket.reply)
        store = self.store
        # Commands before this call's (run by the compiled fast path).
        seeded = executed
        subs = self.subs
        if subs.pushed_to:
            subs.start()  # pushes wait for this chunk's replies (services/pubsub.py)
        # MONITOR, keyspace events and min-replicas-to-write need every
        # command to go the long way.
        plain = self._open and not self.service.long_way
        for argv in commands:
            if size >= REPLY_BUDGET:
                # Back-pressure (core/service.py): the rest waits for resume().
                self._backlog = commands[executed - seeded:]
                self._backlog_violation, violation = violation, None
                break
            executed += 1
            if busy:
                reply = self._refuse_busy(argv)
                spec = self._commands.get(argv[0].lower())
                name = spec.name if spec is not None else OTHER
                calls[name] = calls.get(name, 0) + 1
                if reply[:1] == b"-":
                    errors += 1
                    noted(reply)
                    failed[name] = failed.get(name, 0) + 1
                    if self._rejected:  # BUSY: Redis counts it as rejected_calls
                        self._rejected = False
                        rejected[name] = rejected.get(name, 0) + 1
                size += len(reply)
                append(reply)
                continue
            # GET and SET without options, outside MULTI: most of any
            # workload, answered here without the command table's Plan
            # machinery (same replies, same errors).
            nargs = len(argv)
            if nargs == 2 and argv[0] in self._get_words and self.queued is None and plain:
                self.last_command = b"get"
                gets += 1
                try:
                    value = store.get(argv[1])
                except StoreError as exc:
                    errors += 1
                    failed["get"] = failed.get("get", 0) + 1
                    append(store_error(exc))
                    noted(replies[-1])
                    continue
                if value is None:
                    append(encode_null(self.proto))
                else:
                    size += len(value)
                    append(b"$%d\r\n%s\r\n" % (len(value), value))
                continue
            if nargs == 3 and argv[0] in self._set_words and self.queued is None and plain:
                self.last_command = b"set"
                sets += 1
                if not store.make_room(len(argv[0]) + len(argv[1]) + len(argv[2])):
                    # The denyoom check execute() makes (a no-op without a limit).
                    errors += 1
                    failed["set"] = failed.get("set", 0) + 1
                    rejected["set"] = rejected.get("set", 0) + 1
                    append(OOM_REPLY)
                    noted(OOM_REPLY)
                    continue
                try:
                    store.set(argv[1], argv[2])
                except StoreError as exc:
                    errors += 1
                    failed["set"] = failed.get("set", 0) + 1
                    append(store_error(exc))
                    noted(replies[-1])
                    continue
                self._wrote = True
                writes.append(len(replies))
                append(OK)
                continue
            if argv[0].lower() in _HTTP_WORDS:
                # An HTTP request on the Redis port (a browser made to POST
                # here could smuggle commands in its body): close without
                # running anything, as Redis does ("Possible SECURITY ATTACK").
                self.service.http_log("HTTP request from %s on the RESP port (wrong port, "
                                      "or a cross-protocol attack); closing", self.peer)
                self._done = True
                break
            if gets + sets != fast:
                fast = gets + sets
                mark = perf_counter()
            before = self._writes
            reply = self.execute(argv)
            if self._reply_mode != "on" or self._skipping or self._skip_next:
                reply = self._silenced(argv[0].lower(), reply)
            now = perf_counter()
            took, mark = now - mark, now
            timed += took
            wrote = self._writes != before and reply != b""
            spec = self._commands.get(argv[0].lower())
            name = spec.name if spec is not None else OTHER
            if self._ticket is not None:
                # A script went to the runner: the rest waits for its reply
                # (resume(), once the model has waited on the ticket), and
                # the call is counted then, with the script's run time.
                self._ticket.name, self._ticket.overhead = name, took
                self._backlog = commands[executed - seeded:]
                self._backlog_violation, violation = violation, None
                break
            if reply is not QUEUED:  # a queued command is counted when EXEC runs it
                calls[name] = calls.get(name, 0) + 1
                spent[name] = spent.get(name, 0.0) + took
            if reply[:1] == b"-":
                errors += 1
                noted(reply)
                failed[name] = failed.get(name, 0) + 1
                if self._rejected:
                    self._rejected = False
                    rejected[name] = rejected.get(name, 0) + 1
            elif type(reply) is HoldsErrors:  # a script's array with errors in it
                failed[name] = failed.get(name, 0) + 1
            size += len(reply)
            if subs.waiting:
                # Pushed while it ran: its own PUBLISH's message goes before
                # the reply (as in Redis), everybody else's after.
                own, others = subs.take()
                replies.extend(own)
                if wrote:
                    writes.append(len(replies))
                append(reply)
                replies.extend(others)
            else:
                if wrote:
                    writes.append(len(replies))
                append(reply)
            if self._parked:
                # A blocking command waits: what follows runs after its reply.
                self._parked = False
                rest = commands[executed - seeded:]
                if rest or violation is not None:
                    self._backlog = rest
                    self._backlog_violation, violation = violation, None
                break
            if self._done:  # QUIT: nothing after it may run
                break
        if violation is not None and not self._done:
            logger.debug("protocol error from %s: %s", self.peer, violation.message)
            replies.append(error_quoting("ERR " + violation.message))
            noted(replies[-1])
            self._done = True
        # A command refused before it ran is not a command processed (Redis
        # counts them in call()).
        self.service.count(executed - sum(rejected.values()), errors, int(violation is not None))
        elapsed = perf_counter() - started
        if gets or sets:
            # The fast path is not timed per command (CommandStats says why):
            # the rest of the chunk's time is shared among its GETs and SETs.
            share = max(elapsed - timed, 0.0) / (gets + sets)
            if gets:
                calls["get"] = calls.get("get", 0) + gets
                spent["get"] = spent.get("get", 0.0) + share * gets
            if sets:
                calls["set"] = calls.get("set", 0) + sets
                spent["set"] = spent.get("set", 0.0) + share * sets
        data = b"".join(replies)
        barrier = self.store.durability_barrier() if self._wrote else None
        if subs.running:
            # Subscribed: the replies join the pushes' queue (services/pubsub.py).
            sent = len(data)
            data = subs.finish(data, direct=barrier is not None)
        else:
            sent = len(data)
        received, self._received = self._received, 0
        self.service.command_stats.add(calls, failed, elapsed, received, sent,
                                       rejected, spent)
        if self._ticket is not None:
            # A script went to the runner: its reply follows this chunk's,
            # after the chunk's log batch (the ticket waits for both).
            self._ticket.after = barrier
            return Output(data, self._done, self._ticket)
        if not data and not self._done and not self._wrote:
            return NOTHING
        if not self._wrote:
            return Output(data, self._done)
        return self._written(data, self._done, replies, writes, barrier, sent)

    def _written(self, data: bytes, close: bool, replies: list[bytes], writes: list[int],
                 barrier: Any = None, sent: int = -1) -> Output:
        """The Output of a chunk that wrote (here or in the compiled path):
        after its log batch (``barrier``, if taken already), and if that
        fails, with each write's acknowledgement (``writes``: indices in
        ``replies``) an error. ``sent``: where the replies end in ``data``
        when pushes held to the end of the chunk follow them."""
        if barrier is None:
            barrier = self.store.durability_barrier()
        if sent < 0:
            sent = len(data)
        on_failure: Callable[[str], bytes] | None = None
        if len(replies) == 1 and writes and len(data) == sent:
            on_failure = _one_write_error
        elif writes:
            if len(data) != sent:
                # Pushes held to the end of the chunk follow the replies.
                replies = [*replies, data[sent:]]
            on_failure = functools.partial(_with_write_errors, replies, writes)
        return Output(data, close, barrier, on_failure)

    def _refuse_busy(self, argv: list[bytes]) -> bytes:
        """A command while a script is busy: argument errors as usual, the
        few commands Redis lets through, BUSY for the rest."""
        spec = self._commands.get(argv[0].lower())
        if spec is None or not arity_ok(spec.arity, len(argv)) or busy_allowed(spec, argv):
            return self.execute(argv)
        self._rejected = True
        reply = busy_reply(self._gate.running if self._gate is not None else None)
        if self.queued is not None:
            if spec.name == "exec":
                # Redis's execCommandAbort: a refused EXEC discards the
                # transaction (and its watches) and says why.
                self.end_multi()
                self._outside_script(self.unwatch)
                return (b"-EXECABORT Transaction discarded because of: "
                        + reply[1:])
            self.multi_failed = True  # Redis: a refused command fails the transaction
        return reply

    def on_eof(self) -> Output:
        self._cancel_wait()  # Redis frees a blocked client whose peer closed
        self._done = True
        return CLOSE

    def on_close(self) -> None:
        self._cancel_wait()
        self._done = True
        if self._watch is not None or self._pinned is not None:
            # A disconnected client watches nothing (Redis's freeClient).
            self._outside_script(self.unwatch)
        self.service.broker.drop(self.subs)
        self.service.forget(self)

    def on_stop(self) -> Output:
        """Shutdown: a waiting client gets the timeout's null array (if no
        script holds the store: then it is closed without it)."""
        waiter, waits, gate = self._blocked, self.service.waits, self._gate
        if isinstance(waiter, BlockedCall):
            return self._stop_backend_wait(waiter)
        if waiter is None or waits is None:
            return NOTHING
        if gate is not None and not gate.try_enter():
            return NOTHING
        try:
            if not waits.cancel(waiter):
                return NOTHING
        finally:
            if gate is not None:
                gate.leave()
        with self._block_lock:
            self._blocked = None
        self._done = True
        return Output(encode(NULL_ARRAY, self.proto), True)

    def _stop_backend_wait(self, call: BlockedCall) -> Output:
        """Shutdown of a client waiting in the Redis backend: Redis times
        the wait out (CLIENT UNBLOCK), so an element it popped meanwhile is
        still answered, not lost; the null array if Redis cannot say."""
        self._stopping = True
        try:
            call.unblock(False)
            call.join(DEFAULT_STOP_WAIT)
        except StoreError:
            call.cancel()
        call.cancel()  # if it has not answered by now, drop it
        reply = self._stop_reply or encode(NULL_ARRAY, self.proto)
        with self._block_lock:
            self._blocked = None
        self._done = True
        return Output(reply, True)

    # -- blocking commands (resp_blocking.py) -------------------------------------------
    @property
    def may_block(self) -> bool:
        # Redis: in MULTI/EXEC a blocking command is its non-blocking form
        # (CLIENT_DENY_BLOCKING); a script cannot call one (Redis 7.0 flags
        # them noscript), and were it let through it would not block either.
        return not (self._in_exec or self._in_script)

    @property
    def in_script(self) -> bool:
        return self._in_script

    def block(self, request: BlockRequest) -> bytes:
        waits = self.service.waits
        if waits is None:
            if self.service.store.passthrough:
                return self._block_in_backend(request)
            return BLOCKING_UNSUPPORTED
        outcome = waits.pop_or_wait(self, request)
        if outcome is None:
            return b""  # parked: the reply is delivered when the wait ends
        reply, wrote = outcome
        if wrote:
            self._wrote = True
            self._writes += 1  # its reply acknowledges a write (a failed batch errs it)
        return reply

    def _block_in_backend(self, request: BlockRequest) -> bytes:
        """Redis backend: the command waits in Redis, on a connection of
        this client's; its reply comes from that connection's thread."""
        proto = self.proto

        def done(result: Any, error: StoreError | None) -> None:
            if error is not None:
                reply = store_error(error)
            elif result is None or result is NULL_ARRAY:
                reply = encode(NULL_ARRAY, proto)   # timed out or unblocked
            else:
                reply = request.reply(result, proto)
            if self._stopping:
                self._stop_reply = reply
                return
            self.unblocked(reply)
        try:
            call = self.service.store.open_blocking(backend_form(request), request.keys,
                                                    request.attempt, done)
        except StoreError as exc:
            return store_error(exc)
        self.park(call)  # before it can answer: unblocked() ends the wait
        call.start()
        return b""

    def park(self, waiter: Waiter | BlockedCall) -> None:
        with self._block_lock:
            self._blocked = waiter
        self._parked = True

    def unblocked(self, reply: bytes) -> None:
        """The wait is over (another thread, or the timer): send the reply,
        then have the model run what was held behind it."""
        if reply[:1] == b"-":
            # CLIENT UNBLOCK ... ERROR (or the backend's error): an error
            # reply, and a failed call of the blocking command, as in Redis.
            self.service.error_stats.note(reply)
            self.service.command_stats.add_failure(self.last_command.decode("latin-1"))
        client = self.client
        with self._block_lock:
            if self._in_call:
                self._stash += reply
                self._blocked = None
                return
            if client is not None:
                client.deliver(reply)  # before the held requests can run
            self._blocked = None
        if client is not None:
            client.wake()

    def served(self, command: list[bytes], result: Any, *, woken: bool) -> None:
        """Keyspace events of a blocking pop (at once, or when woken; at
        once, ``new`` for BLMOVE's destination came from the key snapshot)."""
        broker, subs = self.service.broker, self.subs
        if broker.keyspace_flags:
            created = (woken and command[0] == b"LMOVE" and command[1] != command[2]
                       and self.store.execute_command([b"LLEN", command[2]]) == 1)
            keyspace_events.served(lambda cls, event, key: broker.pop_event(cls, event, key, subs),
                                   command, result, self._exists, created=created)

    def unblock(self, error: bool) -> bool:
        waiter, waits = self._blocked, self.service.waits
        if isinstance(waiter, BlockedCall):
            try:
                return waiter.unblock(error)  # Redis answers the wait
            except StoreError:
                return False
        if waiter is None or waits is None:
            return False
        reply = UNBLOCKED_ERROR if error else encode(NULL_ARRAY, self.proto)
        return waits.unblock(waiter, reply)

    def _cancel_wait(self) -> None:
        waiter, waits = self._blocked, self.service.waits
        if isinstance(waiter, BlockedCall):
            waiter.cancel()  # the client left: drop the wait in Redis with it
        elif waiter is not None and waits is not None:
            self._outside_script(lambda: waits.cancel(waiter))

    def _outside_script(self, fn: Callable[[], object]) -> None:
        """``fn`` (it takes the store's lock) now, or, while a script holds
        the store, on the script runner once the script is over: a
        disconnect must not wait for a script (on an event loop every
        connection would)."""
        gate = self._gate
        if gate is None:
            fn()
        elif gate.try_enter():
            try:
                fn()
            finally:
                gate.leave()
        else:
            self.service.scripts.submit(fn)

    # -- dispatch ----------------------------------------------------------------
    def execute(self, argv: list[bytes]) -> bytes:
        """Run (or queue) one command; its reply bytes."""
        name = argv[0].lower()
        spec = self._commands.get(name)
        refusal = None
        if spec is None:
            refusal = unknown_command(argv)
        elif not arity_ok(spec.arity, len(argv)):
            refusal = wrong_args(spec.name)
        elif not self._open and spec.name not in _NO_AUTH:
            refusal = self._check_access(spec, argv)
            if refusal is not None and spec.name == "exec":
                self.end_multi()  # Redis: the rejected EXEC ends the transaction
                self.unwatch()
                return b"-EXECABORT Transaction discarded because of: " + refusal[1:]
        elif self.subs.monitoring and ("write" in spec.flags or "readonly" in spec.flags):
            refusal = b"-ERR Replica can't interact with the keyspace\r\n"  # Redis's words
        elif self.proto == 2 and self.subs.active and spec.name not in _SUBSCRIBED_OK:
            shown = (f"{spec.name}|{argv[1].decode('latin-1').lower()}"
                     if spec.name.encode() in CONTAINER_COMMANDS and len(argv) > 1
                     else spec.name)
            refusal = error_quoting(f"ERR Can't execute '{shown}': only (P|S)SUBSCRIBE / "
                                    "(P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in "
                                    "this context")
        if (refusal is None and spec is not None and self.service.writes_refused
                and "write" in spec.flags):
            refusal = NOREPLICAS  # min-replicas-to-write (RespService.set_min_replicas)
        if refusal is not None:
            if self.queued is not None:
                self.multi_failed = True
            self._rejected = True
            return refusal
        assert spec is not None
        if self.queued is not None and spec.queueable:
            if not self.store.make_room(sum(map(len, argv))):
                # Redis refuses to queue any command at the limit (queueing
                # takes memory too), and the transaction is discarded.
                self.multi_failed = True
                self._rejected = True
                return OOM_REPLY
            self.queued_bytes += sum(map(len, argv)) + QUEUED_OVERHEAD * len(argv)
            if self.queued_bytes > self._parser.max_query:
                # Redis lets a transaction grow until memory runs out; here
                # it may hold as much as one request may (the query limit).
                self.multi_failed = True
                return b"-ERR Transaction discarded: queued commands exceed %d bytes\r\n" % (
                    self._parser.max_query)
            self.queued.append(argv)
            return QUEUED
        self.last_command = (name + b"|" + argv[1].lower()
                             if spec.name.encode() in CONTAINER_COMMANDS and len(argv) > 1
                             else name)
        if "denyoom" in spec.flags and not self.store.make_room(sum(map(len, argv))):
            # Checked before the command runs, as Redis does: at the limit
            # nothing that may add data runs, even if it would not have.
            self._rejected = True
            return OOM_REPLY
        broker = self.service.broker
        flags = broker.keyspace_flags
        before: dict[bytes, bool] = {}
        if flags and "write" in spec.flags and spec.keys[0]:
            before = self._key_snapshot(spec, argv)
        if flags:
            broker.defer_pops()
        # SMOVE: Redis tells the destination only if the member was added to
        # it, and a move onto the same set tells nobody (smoveCommand).
        held = flags and spec.name == "smove" and self._smove_is_noop(argv)
        # A script is shown before the commands it runs (Redis's evalCommand
        # feeds MONITOR first); everything else once it has run.
        fed = broker.monitored and spec.name in _SCRIPT_COMMANDS
        if fed:
            self._feed_monitors(spec, argv)
        try:
            outcome = spec.handler(self, argv)
            if name in _MODE_CHANGERS:
                self._update_mode()
            reply = self.run_plan(outcome) if isinstance(outcome, Plan) else outcome
        except Exception:  # a bug must cost one reply, not the connection
            # Not the client's doing: it gets an error reply and keeps its
            # connection and the rest of its pipeline; the traceback is logged.
            self.service.error_log("%s: command '%s' failed:\n%s", self.peer, spec.name,
                                   traceback.format_exc())
            if flags:
                broker.flush_pops()
            return error_quoting(f"ERR internal error running '{spec.name}' (logged by the "
                                 "server)")
        try:
            if flags and reply[:1] != b"-":
                subs = self.subs
                # A key a served blocked client popped empty still counts as
                # made and not emptied here (its del is the pop's event).
                popped = broker.popped_keys()
                exists = self._exists if not popped else (
                    lambda key: key in popped or self._exists(key))

                def publish(cls: int, event: str, key: bytes) -> None:
                    if not (held and event == "sadd"):
                        broker.notify(cls, event, key, subs)
                if not (held and argv[1] == argv[2]):  # SMOVE onto itself: none
                    keyspace_events.emit(publish, flags, spec.name, argv, reply, before,
                                         exists)
        finally:
            if flags:
                broker.flush_pops()  # the blocked clients it served, after it
        if broker.monitored and not fed:
            self._feed_monitors(spec, argv)
        return reply

    def _exists(self, key: bytes) -> bool:
        return bool(self.store.exists([key]))

    def _smove_is_noop(self, argv: list[bytes]) -> bool:
        """SMOVE's destination already holds the member (keyspace events)."""
        try:
            return bool(self.store.execute_command([b"SISMEMBER", argv[2], argv[3]]))
        except StoreError:
            return False  # not a set: SMOVE will answer WRONGTYPE

    def _key_snapshot(self, spec: CommandSpec, argv: list[bytes]) -> dict[bytes, bool]:
        """Which of the command's keys exist now (keyspace events)."""
        first, last, step = spec.keys
        end = len(argv) + last if last < 0 else last
        try:
            return {key: self._exists(key) for key in argv[first:end + 1:step]}
        except StoreError:
            return {}

    def _feed_monitors(self, spec: CommandSpec, argv: list[bytes]) -> None:
        """MONITOR shows the command unless it is an admin one (Redis)."""
        categories = None
        if spec.name in CONTAINERS and len(argv) > 1:
            categories = COMMAND_CATEGORIES.get(f"{spec.name}|{argv[1].decode('latin-1').lower()}")
        if categories is None:
            categories = COMMAND_CATEGORIES.get(spec.name, ())
        if "admin" not in categories:
            self.service.broker.feed_monitors(argv, self.peer)

    def _check_access(self, spec: CommandSpec, argv: list[bytes],
                      count: bool = True) -> bytes | None:
        """NOAUTH, or a NOPERM for the command or one of its keys; None:
        allowed. ``count=False``: a question (redis.acl_check_cmd), not a
        refusal, so the denied counters stay as they are."""
        user = self.user
        if user is None:
            return NOAUTH
        name = spec.name
        sub = None
        if name in CONTAINERS and len(argv) > 1:
            sub = argv[1].decode("latin-1").lower()
            if f"{name}|{sub}" not in COMMAND_CATEGORIES:
                sub = None
        if not user.may_run(name, sub, spec.flags):
            if count:
                self._access.count_denied(key=False)
            shown = f"{name}|{sub}" if sub is not None else name
            return error_quoting(f"NOPERM this user has no permissions to run the '{shown}' "
                                 "command")
        if name in _CHANNEL_ARGS and not user.all_channels:
            channels = argv[1:] if name != "publish" and name != "spublish" else argv[1:2]
            if not user.may_use_channels(channels, patterns=name == "psubscribe"):
                if count:
                    self._access.count_denied(key=False)
                return NOPERM_CHANNEL
        if not user.all_keys:
            # The keys COMMAND GETKEYS names: key positions, numkeys
            # (ZUNIONSTORE, LMPOP...), SORT's STORE, MEMORY USAGE's key.
            keys = command_keys(spec, argv)
            if keys and not user.may_access(keys):
                if count:
                    self._access.count_denied(key=True)
                return NOPERM_KEY
        return None

    def _refresh_user(self) -> None:
        """The users changed (ACL LOAD, CONFIG SET requirepass): this
        connection's user is re-read by name; gone or disabled, it must AUTH
        again."""
        access = self._access
        self._acl_generation = access.generation
        if self.user is not None:
            fresh = access.user(self.user.name)
            self.user = fresh if fresh is not None and fresh.enabled else None
        self._open = self.user is not None and self.user.unrestricted

    def run_plan(self, plan: Plan[Any]) -> bytes:
        try:
            reply = plan.finish(plan.call(self.store))
        except StoreError as exc:
            return store_error(exc)
        if plan.write:
            self._wrote = True
            self._writes += 1
        return reply

    # -- the handlers' view of the connection (CommandContext) ---------------------
    @property
    def server(self) -> RespService:
        return self.service

    @property
    def commands(self) -> Mapping[bytes, CommandSpec]:
        return self._commands

    @property
    def max_query(self) -> int:
        return self._parser.max_query

    def set_protocol(self, proto: int) -> None:
        self.proto = proto
        self.subs.proto = proto

    def set_name(self, name: bytes) -> None:
        self.name = name

    def set_no_evict(self, on: bool) -> None:
        self.no_evict = on
        if self.client is not None:
            self.client.no_evict = on

    def set_library(self, *, name: bytes | None = None, version: bytes | None = None) -> None:
        if name is not None:
            self.lib_name = name
        if version is not None:
            self.lib_ver = version

    @property
    def in_multi(self) -> bool:
        return self.queued is not None

    def begin_multi(self) -> None:
        self.queued = []
        self.queued_bytes = 0
        self.multi_failed = False

    def end_multi(self) -> tuple[list[list[bytes]], bool]:
        queued, failed = self.queued or [], self.multi_failed
        self.queued = None
        self.multi_failed = False
        return queued, failed

    def reset(self) -> None:
        self.end_multi()
        self.unwatch()
        self.service.broker.drop(self.subs)
        self.set_protocol(2)
        self._reply_mode = "on"
        self._skipping = self._skip_next = False
        self.name = b""
        self._set_user(self._access.initial_user())

    def _set_user(self, user: User | None) -> None:
        self.user = user
        self._acl_generation = self._access.generation
        self._open = user is not None and user.unrestricted

    @property
    def username(self) -> str | None:
        return None if self.user is None else self.user.name

    def authenticate(self, username: str, password: bytes) -> bool:
        user = self._access.authenticate(username, password, self.peer)
        if user is not None:
            self._set_user(user)
        return user is not None

    def close_after_reply(self) -> None:
        self._done = True

    def watch(self, keys: list[bytes]) -> bytes:
        watch = self._watch if self._watch is not None else WatchSet()
        added = sum(len(key) + QUEUED_OVERHEAD for key in dict.fromkeys(keys)
                    if key not in watch.keys)
        if self._watched_bytes + added > self._parser.max_query:
            # Redis lets a client watch keys until memory runs out; here it
            # may watch as many key bytes as one request may hold.
            return b"-ERR watched keys exceed %d bytes: UNWATCH first\r\n" % (
                self._parser.max_query)
        pinned_now = self._pinned is None and self.store.passthrough
        try:
            if pinned_now:
                # Redis's WATCH lives on a connection: this client gets its
                # own until EXEC/DISCARD/UNWATCH (storage/redis_pinned.py).
                self._pinned = self.store = self.service.store.pinned()
            self.store.watch(watch, keys)
        except StoreError as exc:
            if pinned_now:
                self._unpin()
            return store_error(exc)
        self._watch = watch
        self._watched_bytes += added
        return OK

    def run_script(self, job: Callable[[ExclusiveRun], bytes]) -> bytes | Plan[bytes]:
        if self._in_exec or self._gate is None:
            # Inside EXEC: in this thread, as part of the transaction's
            # batch (in its order, after its WATCH check, under its hold of
            # the lock), not now, while EXEC is still collecting the plans.
            run = ExclusiveRun()

            def body(st: Store) -> bytes:
                reply = self._run_isolated(job, run)
                if run.wrote:
                    self._wrote = True
                return reply
            return Plan.group(body)
        gate, ticket = self._gate, ScriptTicket()

        def work() -> None:
            run = gate.begin()
            started = time.perf_counter()
            try:
                reply = self._run_isolated(job, run)
            except Exception:
                logger.exception("script from %s failed", self.peer)
                reply = b"-ERR internal error running the script\r\n"
            finally:
                gate.end()
            ticket.seconds = time.perf_counter() - started
            ticket.resolve(reply, run.wrote)
        self._ticket = ticket
        self.service.scripts.submit(work)
        return b""

    def _run_isolated(self, job: Callable[[ExclusiveRun], bytes], run: ExclusiveRun) -> bytes:
        self._in_script = True  # a blocking command in it does not block
        try:
            return self.store.run_isolated(lambda st: job(run))
        except StoreError as exc:
            return store_error(exc)
        finally:
            self._in_script = False

    def rejected(self, reply: bytes) -> bytes:
        if not self._in_exec:  # inside EXEC, EXEC is the call counted
            self._rejected = True
        return reply

    def script_access(self, spec: CommandSpec, argv: list[bytes],
                      count: bool = True) -> bytes | None:
        return None if self._open else self._check_access(spec, argv, count)

    def unwatch(self) -> None:
        watch, self._watch = self._watch, None
        self._watched_bytes = 0
        if watch is not None:
            try:
                self.store.unwatch(watch)
            except StoreError:
                pass  # a closed store forgets its watchers anyway
        self._unpin()

    def _unpin(self) -> None:
        """Hand a pinned backend connection back (its WATCH is over)."""
        pinned, self._pinned = self._pinned, None
        if pinned is not None:
            self.store = self.service.store
            pinned.close()

    def run_transaction(self, queued: list[list[bytes]]) -> bytes:
        """EXEC: the queued commands as one unit, one reply array (or the
        null array when a WATCHed key changed)."""
        # Detached first: an UNWATCH queued in the transaction runs below
        # (its handler), and must not clear what this EXEC checks.
        watch, self._watch = self._watch, None
        self._watched_bytes = 0
        self._in_exec = True
        try:
            return self._run_transaction(queued, watch)
        finally:
            self._in_exec = False
            if watch is not None:
                self.store.unwatch(watch)

    def _run_transaction(self, queued: list[list[bytes]], watch: WatchSet | None) -> bytes:
        if self.service.broker.monitored:
            for argv in queued:
                self._feed_monitors(self._commands[argv[0].lower()], argv)
        outcomes = [self._commands[argv[0].lower()].handler(self, argv) for argv in queued]
        store = self.store
        # One batch: every single-call plan, and the groups too where the
        # store isolates them (the embedded store runs the whole batch under
        # its lock, so other clients see all of it or none of it).
        batched = [o for o in outcomes if isinstance(o, Plan)
                   and (o.single or store.isolates_groups)]
        calls = [plan.call for plan in batched]

        def guarded(st: Store) -> list[Any] | None:
            # The WATCH check and the batch under one hold of the store's
            # lock: nothing can change a watched key in between.
            if watch is not None and st.watch_broken(watch):
                return None
            return st.execute_batch(calls)
        try:
            results = store.run_isolated(guarded)
        except TransactionAborted:
            results = None  # the backend's EXEC said a watched key changed
        except StoreError as exc:
            return store_error(exc)
        if results is None:
            return encode_null(self.proto, array=True)
        by_plan = {id(plan): result for plan, result in zip(batched, results)}
        replies: list[bytes] = []
        for outcome in outcomes:
            if not isinstance(outcome, Plan):
                replies.append(outcome)
            elif id(outcome) not in by_plan:
                replies.append(self.run_plan(outcome))  # a group, after the batch
            else:
                result = by_plan[id(outcome)]
                if isinstance(result, StoreError):
                    replies.append(store_error(result))
                else:
                    if outcome.write:
                        self._wrote = True
                        self._writes += 1
                    replies.append(outcome.finish(result))
        # Each command is a call (INFO commandstats; the transaction's time
        # is EXEC's), each error in the array an error reply Redis counts
        # (errorstats) and its command's failed call.
        noted, stats = self.service.error_stats.note, self.service.command_stats
        for argv, reply in zip(queued, replies, strict=True):
            if reply[:1] == b"-":
                noted(reply)
            stats.add_nested(self._commands[argv[0].lower()].name, failed_reply(reply), False,
                             0.0)
        return b"*%d\r\n" % len(replies) + b"".join(replies)

    def client_info(self) -> str:
        """One CLIENT INFO / CLIENT LIST line (Redis's field names)."""
        multi = -1 if self.queued is None else len(self.queued)
        now = time.monotonic()
        age, idle = int(now - self.created), int(now - self.last_active)
        qbuf = self._qbuf or self._parser.buffered
        # Unsent replies and everything held, as the model counts them for
        # --client-output-buffer-limit and --maxmemory-clients.
        omem = self.client.output_bytes() if self.client is not None else 0
        tot_mem = self.client.memory if self.client is not None else qbuf
        subs = self.subs
        laddr, fd = (self.client.local, self.client.fd) if self.client is not None else ("?", -1)
        # Redis's flag letters, in its order (catClientInfoString): N: none.
        in_multi = self.queued is not None or self._in_exec  # EXEC runs in MULTI too
        flags = ("P" if subs.active else "") + ("x" if in_multi else "") \
            + ("b" if self._blocked is not None else "") + ("e" if self.no_evict else "")
        return (f"id={self.client_id} addr={self.peer} laddr={laddr} fd={fd} "
                f"name={self.name.decode('utf-8', 'replace')} age={age} idle={idle} "
                f"flags={flags or 'N'} "
                f"db=0 sub={len(subs.channels)} psub={len(subs.patterns)} "
                f"ssub={len(subs.shard)} multi={multi} qbuf={qbuf} "
                f"qbuf-free=0 argv-mem=0 multi-mem=0 rbs=0 rbp=0 obl=0 oll=0 omem={omem} "
                f"tot-mem={tot_mem} events=r cmd={self.last_command.decode('latin-1')} "
                f"user={self.username or 'default'} "
                f"redir=-1 resp={self.proto} "
                f"lib-name={self.lib_name.decode('utf-8', 'replace')} "
                f"lib-ver={self.lib_ver.decode('utf-8', 'replace')}\n")
