"""The Redis-protocol (RESP2/RESP3) front end of a :class:`Store`.

``RespService(store, stats)`` is the second listener of ``serve kv
--resp-port``: it shares the store (data, expiry, persistence) with the text
port. Each connection gets a :class:`RespSession` that parses requests with
:class:`sockworks.protocols.resp.RespParser` and answers like Redis 7:
same replies, same error texts and prefixes, RESP3 types after ``HELLO 3``
(docs/resp.md lists the commands and every difference from Redis).

How a command runs: its handler checks the arguments and returns either the
reply bytes (no store access, or an argument error) or a :class:`_Plan`: at
most one store call plus a function turning the call's result into the reply.
Outside a transaction the call runs at once. ``EXEC`` runs the plans of the
queued commands as one unit: inside ``store.atomic()`` on the embedded
store, or as one ``execute_batch`` on a store that provides it (the Redis
backend, whose ``atomic()`` cannot return results).
"""

from __future__ import annotations

import logging
import os
import platform
import re
import secrets
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from typing import Any, Final

from sockworks import __version__
from sockworks.core.service import CLOSE, NOTHING, Output, Service, Session
from sockworks.core.stats import ServerStats
from sockworks.protocols import resp
from sockworks.protocols.resp import (
    DEFAULT_MAX_BULK,
    OK,
    PONG,
    Map,
    RespParser,
    Verbatim,
    encode,
    encode_bulk,
    encode_error,
    encode_integer,
    encode_null,
)
from sockworks.storage.base import Store, StoreError, StoreUnavailable
from sockworks.storage.factory import StoreCall, execute_batch
from sockworks.storage.glob import compile_glob

__all__ = ["COMMANDS", "REDIS_VERSION", "RespService", "RespSession"]

logger = logging.getLogger(__name__)

#: What INFO and HELLO report as ``redis_version``: clients enable features
#: by version, and everything implemented here behaves as in Redis 7.2.
REDIS_VERSION: Final = "7.2.0"

I64_MIN: Final = -(1 << 63)
I64_MAX: Final = (1 << 63) - 1

#: Longest argument quoted back in "unknown command" errors, as Redis.
_ERROR_ARG_LIMIT: Final = 128

_QUEUED: Final = b"+QUEUED\r\n"
_EXECABORT: Final = b"-EXECABORT Transaction discarded because of previous errors.\r\n"
_NOT_INTEGER: Final = b"-ERR value is not an integer or out of range\r\n"
_SYNTAX: Final = b"-ERR syntax error\r\n"
_BUSY: Final = b"-ERR max number of clients reached\r\n"
#: What a queued argument costs beyond its bytes (PyBytes header + list slot).
_QUEUED_OVERHEAD: Final = 48

#: Error prefixes a store message may already carry (the Redis backend passes
#: Redis's own errors through); anything else gets Redis's generic "ERR".
_PREFIXED: Final = ("WRONGTYPE ", "LOADING ", "READONLY ", "BUSY ", "CROSSSLOT ", "OOM ",
                    "NOSCRIPT ", "MOVED ", "ASK ", "TRYAGAIN ", "CLUSTERDOWN ", "MASTERDOWN ")


def _store_error(exc: StoreError) -> bytes:
    message = str(exc)
    return encode_error(message if message.startswith(_PREFIXED) else "ERR " + message)


def _int_arg(value: bytes) -> int | None:
    """A Redis integer argument (string2ll rules), or None."""
    if len(value) > 20:
        return None
    try:
        number = int(value)
    except ValueError:
        return None
    # int() also accepts "+1", " 1", "1_0" and "01": Redis does not.
    if b"%d" % number != value or not I64_MIN <= number <= I64_MAX:
        return None
    return number


def _wrong_args(name: str) -> bytes:
    return b"-ERR wrong number of arguments for '%b' command\r\n" % name.encode()


def _quoted(arg: bytes) -> str:
    """An argument as Redis prints it in an error (``%.128s``): cut at the
    first NUL and at 128 bytes; bytes kept as they are (latin-1 round trip,
    see :func:`_err`)."""
    nul = arg.find(b"\x00")
    return (arg if nul < 0 else arg[:nul])[:_ERROR_ARG_LIMIT].decode("latin-1")


def _err(text: str) -> bytes:
    """An error reply whose text quotes client bytes (via :func:`_quoted`):
    encoded back byte for byte, CR/LF turned into blanks as Redis does."""
    return b"-" + text.replace("\r", " ").replace("\n", " ").encode("latin-1") + b"\r\n"


def _unknown_command(argv: Sequence[bytes]) -> bytes:
    shown = ""
    for arg in argv[1:]:
        if len(shown) >= _ERROR_ARG_LIMIT:
            break
        shown += "'" + _quoted(arg)[: _ERROR_ARG_LIMIT - len(shown)] + "' "
    return _err(f"ERR unknown command '{_quoted(argv[0])}', with args beginning with: {shown}")


def _unknown_subcommand(argv: Sequence[bytes]) -> bytes:
    return _err(f"ERR unknown subcommand '{_quoted(argv[1])}'. "
                        f"Try {argv[0].decode('latin-1').upper()} HELP.")


@dataclass(slots=True)
class _Plan:
    """One store call (``method`` None: none) and how its result is shown."""

    method: str | None
    args: tuple[Any, ...]
    finish: Callable[[Any], bytes]
    write: bool = False
    kwargs: dict[str, Any] = field(default_factory=dict)


Handler = Callable[["RespSession", list[bytes]], "bytes | _Plan"]


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


#: Filled in at the end of the module: lower-case name -> spec.
COMMANDS: dict[bytes, CommandSpec] = {}


class RespService(Service):
    """The RESP front end of ``store``; ``stats`` are the server's counters
    (shared with the text port). ``port`` is only reported by INFO."""

    name = "resp"

    def __init__(self, store: Store, stats: ServerStats, *, max_bulk: int = DEFAULT_MAX_BULK,
                 port: int = 0, use_hiredis: bool | None = None,
                 owns_store: bool = False, blocking: bool | None = None,
                 idle_timeout: float = 0.0, max_connections: int = 1024) -> None:
        self.store = store
        self.stats = stats
        self.max_bulk = max_bulk
        self.port = port
        #: Only reported (CONFIG GET timeout / maxclients): the model enforces them.
        self.idle_timeout = idle_timeout
        self.max_connections = max_connections
        self.use_hiredis = use_hiredis
        #: The text service that opened the store closes it; a standalone
        #: RESP service passes owns_store=True.
        self.owns_store = owns_store
        # A network-backed store (Redis) blocks: event-loop models must run
        # sessions in worker threads (see Service.blocking).
        self.blocking = store.shared_across_processes if blocking is None else blocking
        self.run_id = secrets.token_hex(20)
        self._lock = threading.Lock()
        self._sessions: dict[int, RespSession] = {}
        self._commands = 0
        self._errors = 0
        self._protocol_errors = 0
        self._compactor: threading.Thread | None = None
        self._closed = False

    def new_session(self, peer: str) -> RespSession:
        session = RespSession(self, peer)
        with self._lock:
            self._sessions[session.client_id] = session
        return session

    def busy_reply(self) -> bytes:
        return _BUSY

    # -- shared counters (updated once per received chunk) ---------------------
    def count(self, commands: int, errors: int, protocol_errors: int) -> None:
        with self._lock:
            self._commands += commands
            self._errors += errors
            self._protocol_errors += protocol_errors

    def forget(self, session: RespSession) -> None:
        with self._lock:
            self._sessions.pop(session.client_id, None)

    def sessions(self) -> list[RespSession]:
        with self._lock:
            return list(self._sessions.values())

    def start_compaction(self) -> str:
        """COMPACT / BGREWRITEAOF: rewrite the log in a background thread, so
        an event-loop model is never stalled for the whole rewrite."""
        with self._lock:
            if self._closed:
                raise StoreError("server is shutting down")
            if self._compactor is not None and self._compactor.is_alive():
                return "Background append only file rewriting already in progress"
            self._compactor = threading.Thread(target=self._compact, daemon=True,
                                               name="sockworks-resp-compact")
            self._compactor.start()
        return "Background append only file rewriting started"

    def _compact(self) -> None:
        try:
            logger.info("COMPACT: %s", self.store.compact())
        except StoreError as exc:
            logger.error("COMPACT failed: %s", exc)

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            compactor = self._compactor
        if compactor is not None:
            compactor.join()
        if self.owns_store:
            self.store.close()

    # -- INFO ------------------------------------------------------------------
    def info(self, sections: Sequence[str]) -> str:
        """INFO's text: ``# Section`` headers, ``key:value`` lines, CRLF."""
        wanted = {s.lower() for s in sections} or {"default"}
        everything = bool(wanted & {"all", "everything", "default"})
        store_info = self.store.info()
        stats = self.stats
        with self._lock:
            commands, errors = self._commands, self._errors
            clients = len(self._sessions)
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
        section("Clients", {
            "connected_clients": clients,
            "blocked_clients": 0,
            "tracking_clients": 0,
        })
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
            "total_connections_received": stats.connections_total,
            "total_commands_processed": commands,
            "instantaneous_ops_per_sec": 0,
            "rejected_connections": stats.connections_rejected,
            "expired_keys": store_info.get("expired_keys", 0),
            "evicted_keys": 0,
            "keyspace_hits": store_info.get("keyspace_hits", 0),
            "keyspace_misses": store_info.get("keyspace_misses", 0),
            "total_error_replies": errors,
        })
        section("Replication", {"role": "master", "connected_slaves": 0})
        section("Cluster", {"cluster_enabled": 0})
        keyspace: dict[str, object] = {}
        keys = store_info.get("keys")
        if keys is None:
            keys = self.store.dbsize()
        if keys:
            expires = store_info.get("expires", 0)
            keyspace["db0"] = f"keys={keys},expires={expires},avg_ttl=0"
        section("Keyspace", keyspace)
        return "\r\n".join(parts)


class RespSession(Session):
    """One RESP connection: requests in, replies out, in order."""

    def __init__(self, service: RespService, peer: str) -> None:
        self.service = service
        self.store = service.store
        self.peer = peer
        self.client_id = service.stats.next_client_id()
        self.proto = 2
        self.name = b""
        self.lib_name = b""
        self.lib_ver = b""
        self.created = time.monotonic()
        self.last_command = b"NULL"
        #: Queued commands while in MULTI (None outside a transaction).
        self.queued: list[list[bytes]] | None = None
        self.queued_bytes = 0
        self.multi_failed = False
        self._parser = RespParser(service.max_bulk, use_hiredis=service.use_hiredis)
        self._done = False
        self._wrote = False

    @property
    def busy(self) -> bool:
        return not self._done and self._parser.busy

    def on_data(self, data: bytes) -> Output:
        if self._done:
            return CLOSE  # QUIT or a protocol error ended the conversation
        parser = self._parser
        parser.receive_data(data)
        commands, violation = parser.next_commands()
        replies: list[bytes] = []
        self._wrote = False
        errors = 0
        executed = 0
        for argv in commands:
            reply = self.execute(argv)
            executed += 1
            if reply[:1] == b"-":
                errors += 1
            replies.append(reply)
            if self._done:  # QUIT: nothing after it may run
                break
        if violation is not None and not self._done:
            logger.debug("protocol error from %s: %s", self.peer, violation.message)
            replies.append(_err("ERR " + violation.message))
            self._done = True
        self.service.count(executed, errors, int(violation is not None))
        barrier = self.store.durability_barrier() if self._wrote else None
        if not replies and not self._done:
            return NOTHING
        return Output(b"".join(replies), self._done, barrier)

    def on_eof(self) -> Output:
        self._done = True
        return CLOSE

    def on_close(self) -> None:
        self._done = True
        self.service.forget(self)

    # -- dispatch ----------------------------------------------------------------
    def execute(self, argv: list[bytes]) -> bytes:
        """Run (or queue) one command; its reply bytes."""
        name = argv[0].lower()
        spec = COMMANDS.get(name)
        if self.queued is not None and (spec is None or spec.queueable):
            if spec is None:
                self.multi_failed = True
                return _unknown_command(argv)
            if not _arity_ok(spec.arity, len(argv)):
                self.multi_failed = True
                return _wrong_args(spec.name)
            self.queued_bytes += sum(map(len, argv)) + _QUEUED_OVERHEAD * len(argv)
            if self.queued_bytes > self._parser.max_query:
                # Redis lets a transaction grow until memory runs out; here
                # it may hold as much as one request may (the query limit).
                self.multi_failed = True
                return b"-ERR Transaction discarded: queued commands exceed %d bytes\r\n" % (
                    self._parser.max_query)
            self.queued.append(argv)
            return _QUEUED
        if spec is None:
            return _unknown_command(argv)
        if not _arity_ok(spec.arity, len(argv)):
            return _wrong_args(spec.name)
        self.last_command = name
        outcome = spec.handler(self, argv)
        if type(outcome) is bytes:
            return outcome
        assert isinstance(outcome, _Plan)
        return self.run_plan(outcome)

    def run_plan(self, plan: _Plan) -> bytes:
        try:
            if plan.method is None:
                reply = plan.finish(None)  # the function makes its own calls
            else:
                reply = plan.finish(
                    getattr(self.store, plan.method)(*plan.args, **plan.kwargs))
        except StoreError as exc:
            return _store_error(exc)
        if plan.write:
            self._wrote = True
        return reply

    def exec_transaction(self, queued: list[list[bytes]]) -> bytes:
        """EXEC: the queued commands as one unit, one reply array."""
        outcomes: list[bytes | _Plan] = []
        for argv in queued:
            spec = COMMANDS[argv[0].lower()]
            outcomes.append(spec.handler(self, argv))
        replies: list[bytes] = []
        batch = getattr(self.store, "execute_batch", None)
        if batch is None:
            # The embedded store: hold its lock across the whole transaction,
            # so other clients see all of it or none of it.
            try:
                with self.store.atomic():
                    for outcome in outcomes:
                        replies.append(outcome if type(outcome) is bytes
                                       else self.run_plan(outcome))  # type: ignore[arg-type]
            except StoreUnavailable as exc:
                return _store_error(exc)
        else:
            plans = [o for o in outcomes if isinstance(o, _Plan) and o.method is not None]
            try:
                results = execute_batch(self.store, [
                    StoreCall(p.method, p.args, p.kwargs) for p in plans  # type: ignore[arg-type]
                ])
            except StoreError as exc:
                return _store_error(exc)
            by_plan = {id(p): r for p, r in zip(plans, results)}
            for outcome in outcomes:
                if type(outcome) is bytes:
                    replies.append(outcome)
                    continue
                assert isinstance(outcome, _Plan)
                if outcome.method is None:
                    replies.append(self.run_plan(outcome))
                    continue
                result = by_plan[id(outcome)]
                if isinstance(result, StoreError):
                    replies.append(_store_error(result))
                else:
                    self._wrote = self._wrote or outcome.write
                    replies.append(outcome.finish(result))
        return b"*%d\r\n" % len(replies) + b"".join(replies)

    def client_info(self) -> str:
        """One CLIENT INFO / CLIENT LIST line (Redis's field names)."""
        multi = -1 if self.queued is None else len(self.queued)
        age = int(time.monotonic() - self.created)
        return (f"id={self.client_id} addr={self.peer} laddr=? fd=-1 "
                f"name={self.name.decode('utf-8', 'replace')} age={age} idle=0 flags=N "
                f"db=0 sub=0 psub=0 ssub=0 multi={multi} qbuf={self._parser.buffered} "
                f"qbuf-free=0 argv-mem=0 multi-mem=0 rbs=0 rbp=0 obl=0 oll=0 omem=0 "
                f"tot-mem=0 events=r cmd={self.last_command.decode('latin-1')} user=default "
                f"redir=-1 resp={self.proto} "
                f"lib-name={self.lib_name.decode('utf-8', 'replace')} "
                f"lib-ver={self.lib_ver.decode('utf-8', 'replace')}\n")

    def null(self) -> bytes:
        return encode_null(self.proto)


def _arity_ok(arity: int, argc: int) -> bool:
    return argc == arity if arity >= 0 else argc >= -arity


# -- reply helpers ---------------------------------------------------------------

def _ok(_: Any) -> bytes:
    return OK


def _integer(result: Any) -> bytes:
    return b":%d\r\n" % int(result)


def _bulk_or_null(session: RespSession) -> Callable[[Any], bytes]:
    def finish(value: Any) -> bytes:
        return encode_null(session.proto) if value is None else encode_bulk(value)
    return finish


def _array_of_values(session: RespSession) -> Callable[[Any], bytes]:
    null = encode_null(session.proto)

    def finish(values: Any) -> bytes:
        return b"*%d\r\n" % len(values) + b"".join(
            null if v is None else b"$%d\r\n%b\r\n" % (len(v), v) for v in values)
    return finish


# -- command handlers ---------------------------------------------------------------

def cmd_ping(s: RespSession, argv: list[bytes]) -> bytes:
    if len(argv) > 2:
        return _wrong_args("ping")
    return PONG if len(argv) == 1 else encode_bulk(argv[1])


def cmd_echo(s: RespSession, argv: list[bytes]) -> bytes:
    return encode_bulk(argv[1])


def cmd_get(s: RespSession, argv: list[bytes]) -> _Plan:
    return _Plan("get", (argv[1],), _bulk_or_null(s))


def cmd_mget(s: RespSession, argv: list[bytes]) -> _Plan:
    return _Plan("mget", (argv[1:],), _array_of_values(s))


def _parse_set_options(s: RespSession, argv: list[bytes], start: int,
                       command: str) -> dict[str, Any] | bytes:
    """SET's options from argv[start:] as Store.set keywords, or an error."""
    options: dict[str, Any] = {}
    expiry_seen = False
    i = start
    while i < len(argv):
        opt = argv[i].upper()
        if opt == b"NX" and not options.get("xx"):
            options["nx"] = True
        elif opt == b"XX" and not options.get("nx"):
            options["xx"] = True
        elif opt == b"GET":
            options["get"] = True
        elif opt == b"KEEPTTL" and not expiry_seen:
            options["keepttl"] = True
            expiry_seen = True
        elif opt in (b"EX", b"PX", b"EXAT", b"PXAT") and not expiry_seen \
                and i + 1 < len(argv):
            number = _int_arg(argv[i + 1])
            if number is None:
                return _NOT_INTEGER
            if number <= 0:
                return encode_error(f"ERR invalid expire time in '{command}' command")
            if opt in (b"EX", b"EXAT"):
                if number > I64_MAX // 1000:
                    return encode_error(f"ERR invalid expire time in '{command}' command")
                number *= 1000
            if opt in (b"EXAT", b"PXAT"):
                # Absolute time, made relative now (<= 0: already past).
                number -= time.time_ns() // 1_000_000
            options["px"] = number
            expiry_seen = True
            i += 1
        else:
            return _SYNTAX
        i += 1
    return options


def cmd_set(s: RespSession, argv: list[bytes]) -> bytes | _Plan:
    options = _parse_set_options(s, argv, 3, "set")
    if isinstance(options, bytes):
        return options
    get = bool(options.get("get"))
    null = encode_null(s.proto)

    def finish(result: Any) -> bytes:
        if get:
            return null if result.old is None else encode_bulk(result.old)
        return OK if result.written else null

    px = options.get("px")
    if px is not None and px <= 0:
        return _set_already_expired(s, argv[1], argv[2], options, finish)
    return _Plan("set", (argv[1], argv[2]), finish, True, options)


def _set_already_expired(s: RespSession, key: bytes, value: bytes, options: dict[str, Any],
                         finish: Callable[[Any], bytes]) -> _Plan:
    """SET with EXAT/PXAT in the past: Redis writes the key and it expires at
    once, so the key is gone afterwards (GET and NX/XX still see the old
    state first)."""
    if not (options.get("nx") or options.get("xx") or options.get("get")):
        return _Plan("delete", ([key],), _ok, True)
    store = s.store
    options = dict(options, px=1)

    def run(_: Any) -> bytes:
        if getattr(store, "execute_batch", None) is not None:
            # A backend without atomic() (Redis): the shortest TTL instead.
            return finish(store.set(key, value, **options))
        with store.atomic():
            result = store.set(key, value, **options)
            if result.written:
                store.delete([key])
        return finish(result)
    return _Plan(None, (), run, True)


def cmd_setnx(s: RespSession, argv: list[bytes]) -> _Plan:
    return _Plan("set", (argv[1], argv[2]), lambda r: b":1\r\n" if r.written else b":0\r\n",
                 True, {"nx": True})


def _setex(s: RespSession, argv: list[bytes], scale: int, command: str) -> bytes | _Plan:
    number = _int_arg(argv[2])
    if number is None:
        return _NOT_INTEGER
    if number <= 0 or number > I64_MAX // scale:
        return encode_error(f"ERR invalid expire time in '{command}' command")
    return _Plan("set", (argv[1], argv[3]), _ok, True, {"px": number * scale})


def cmd_setex(s: RespSession, argv: list[bytes]) -> bytes | _Plan:
    return _setex(s, argv, 1000, "setex")


def cmd_psetex(s: RespSession, argv: list[bytes]) -> bytes | _Plan:
    return _setex(s, argv, 1, "psetex")


def cmd_mset(s: RespSession, argv: list[bytes]) -> bytes | _Plan:
    if len(argv) % 2 == 0:
        return _wrong_args("mset")
    pairs = list(zip(argv[1::2], argv[2::2]))
    return _Plan("mset", (pairs,), _ok, True)


def cmd_del(s: RespSession, argv: list[bytes]) -> _Plan:
    return _Plan("delete", (argv[1:],), _integer, True)


def cmd_exists(s: RespSession, argv: list[bytes]) -> _Plan:
    return _Plan("exists", (argv[1:],), _integer)


def _incr(key: bytes, delta: int) -> _Plan:
    return _Plan("incrby", (key, delta), _integer, True)


def cmd_incr(s: RespSession, argv: list[bytes]) -> _Plan:
    return _incr(argv[1], 1)


def cmd_decr(s: RespSession, argv: list[bytes]) -> _Plan:
    return _incr(argv[1], -1)


def cmd_incrby(s: RespSession, argv: list[bytes]) -> bytes | _Plan:
    delta = _int_arg(argv[2])
    if delta is None:
        return _NOT_INTEGER
    return _incr(argv[1], delta)


def cmd_decrby(s: RespSession, argv: list[bytes]) -> bytes | _Plan:
    delta = _int_arg(argv[2])
    if delta is None:
        return _NOT_INTEGER
    if delta == I64_MIN:  # -delta does not fit: Redis's own message
        return b"-ERR decrement would overflow\r\n"
    return _incr(argv[1], -delta)


def _expire(s: RespSession, argv: list[bytes], scale: int, command: str,
            absolute: bool = False) -> bytes | _Plan:
    number = _int_arg(argv[2])
    if number is None:
        return _NOT_INTEGER
    flags: set[bytes] = set()
    for arg in argv[3:]:
        flag = arg.upper()
        if flag not in (b"NX", b"XX", b"GT", b"LT"):
            return _err(f"ERR Unsupported option {_quoted(arg)}")
        flags.add(flag)
    if b"NX" in flags and len(flags) > 1:
        return b"-ERR NX and XX, GT or LT options at the same time are not compatible\r\n"
    if b"GT" in flags and b"LT" in flags:
        return b"-ERR GT and LT options at the same time are not compatible\r\n"
    if not I64_MIN // scale <= number <= I64_MAX // scale:
        return encode_error(f"ERR invalid expire time in '{command}' command")
    ms = number * scale
    now = time.time_ns() // 1_000_000
    if absolute:
        ms -= now  # EXPIREAT/PEXPIREAT: a time already past deletes the key
    elif ms > I64_MAX - now:
        return encode_error(f"ERR invalid expire time in '{command}' command")
    if flags:
        return _conditional_expire(s, argv[1], ms, flags)
    return _Plan("pexpire", (argv[1], ms), _integer, True)


def _conditional_expire(s: RespSession, key: bytes, ms: int, flags: set[bytes]) -> _Plan:
    """EXPIRE with NX/XX/GT/LT: read the TTL and set it as one unit on the
    embedded store (its atomic()); two calls on a backend without atomic()."""
    store = s.store

    def decide() -> bytes:
        current = store.pttl(key)
        if current == -2:
            return b":0\r\n"
        # A key without a TTL counts as an infinite one, as in Redis.
        if (b"NX" in flags and current != -1) or (b"XX" in flags and current == -1) \
                or (b"GT" in flags and (current == -1 or ms <= current)) \
                or (b"LT" in flags and current != -1 and ms >= current):
            return b":0\r\n"
        return _integer(store.pexpire(key, ms))

    def run(_: Any) -> bytes:
        if getattr(store, "execute_batch", None) is not None:
            return decide()
        with store.atomic():
            return decide()
    return _Plan(None, (), run, True)


def cmd_expire(s: RespSession, argv: list[bytes]) -> bytes | _Plan:
    return _expire(s, argv, 1000, "expire")


def cmd_pexpire(s: RespSession, argv: list[bytes]) -> bytes | _Plan:
    return _expire(s, argv, 1, "pexpire")


def _ttl_seconds(ms: Any) -> bytes:
    # Redis rounds to the nearest second: (ttl + 500) / 1000.
    return b":%d\r\n" % (ms if ms < 0 else (ms + 500) // 1000)


def cmd_ttl(s: RespSession, argv: list[bytes]) -> _Plan:
    return _Plan("pttl", (argv[1],), _ttl_seconds)


def cmd_pttl(s: RespSession, argv: list[bytes]) -> _Plan:
    return _Plan("pttl", (argv[1],), _integer)


def cmd_persist(s: RespSession, argv: list[bytes]) -> _Plan:
    return _Plan("persist", (argv[1],), _integer, True)


def cmd_expireat(s: RespSession, argv: list[bytes]) -> bytes | _Plan:
    return _expire(s, argv, 1000, "expireat", absolute=True)


def cmd_pexpireat(s: RespSession, argv: list[bytes]) -> bytes | _Plan:
    return _expire(s, argv, 1, "pexpireat", absolute=True)


# -- read-modify-write string commands ------------------------------------------------
#
# The Store interface has no APPEND, GETDEL, ...: these read, compute and
# write inside store.atomic() on the embedded store, so they are as atomic as
# in Redis. A backend without atomic() (Redis, which has execute_batch) runs
# the calls one after the other: correct alone, racy under concurrent writers
# to the same key (docs/resp.md).

def _read_modify_write(s: RespSession, body: Callable[[Store], bytes],
                       write: bool = True) -> _Plan:
    store = s.store

    def run(_: Any) -> bytes:
        if getattr(store, "execute_batch", None) is not None:
            return body(store)
        with store.atomic():
            return body(store)
    return _Plan(None, (), run, write)


_TOO_BIG: Final = b"-ERR string exceeds maximum allowed size (proto-max-bulk-len)\r\n"


def cmd_getset(s: RespSession, argv: list[bytes]) -> _Plan:
    null = encode_null(s.proto)
    return _Plan("set", (argv[1], argv[2]),
                 lambda r: null if r.old is None else encode_bulk(r.old), True, {"get": True})


def cmd_getdel(s: RespSession, argv: list[bytes]) -> _Plan:
    key, null = argv[1], encode_null(s.proto)

    def body(store: Store) -> bytes:
        value = store.get(key)
        if value is None:
            return null
        store.delete([key])
        return encode_bulk(value)
    return _read_modify_write(s, body)


def cmd_strlen(s: RespSession, argv: list[bytes]) -> _Plan:
    return _Plan("get", (argv[1],), lambda v: b":%d\r\n" % (0 if v is None else len(v)))


def cmd_append(s: RespSession, argv: list[bytes]) -> _Plan:
    key, extra, limit = argv[1], argv[2], s.service.max_bulk

    def body(store: Store) -> bytes:
        value = (store.get(key) or b"") + extra
        if len(value) > limit:
            return _TOO_BIG
        store.set(key, value, keepttl=True)
        return b":%d\r\n" % len(value)
    return _read_modify_write(s, body)


def _range_indexes(start: int, end: int, size: int) -> tuple[int, int] | None:
    """GETRANGE's index rules (getrangeCommand): negatives count from the end."""
    if start < 0 and end < 0 and start > end:
        return None
    if start < 0:
        start = max(0, size + start)
    if end < 0:
        end = max(0, size + end)
    end = min(end, size - 1)
    if start > end or size == 0:
        return None
    return start, end


def cmd_getrange(s: RespSession, argv: list[bytes]) -> bytes | _Plan:
    start, end = _int_arg(argv[2]), _int_arg(argv[3])
    if start is None or end is None:
        return _NOT_INTEGER

    def finish(value: Any) -> bytes:
        span = _range_indexes(start, end, len(value or b""))
        return b"$0\r\n\r\n" if span is None else encode_bulk(value[span[0]:span[1] + 1])
    return _Plan("get", (argv[1],), finish)


def cmd_setrange(s: RespSession, argv: list[bytes]) -> bytes | _Plan:
    offset = _int_arg(argv[2])
    if offset is None:
        return _NOT_INTEGER
    if offset < 0:
        return b"-ERR offset is out of range\r\n"
    key, patch, limit = argv[1], argv[3], s.service.max_bulk
    if patch and offset + len(patch) > limit:
        return _TOO_BIG

    def body(store: Store) -> bytes:
        value = store.get(key)
        if not patch:  # nothing to write: Redis creates no key
            return b":%d\r\n" % (0 if value is None else len(value))
        old = value or b""
        new = old[:offset].ljust(offset, b"\x00") + patch + old[offset + len(patch):]
        store.set(key, new, keepttl=True)
        return b":%d\r\n" % len(new)
    return _read_modify_write(s, body)


# INCRBYFLOAT computes in C's long double (x87: 64-bit significand) and
# prints "%.17Lf" with trailing zeros removed. Fractions rounded to that
# significand reproduce Redis's digits exactly, e.g. 10.6 + 1e3 ->
# "1005.59999999999999998", where a double would say "1005.6".
_LD_DIGITS: Final = 64
_LD_MIN_EXP: Final = -16382          # smallest normal exponent
_LD_OVERFLOW: Final = 2**16384        # first value that rounds to infinity
_FLOAT_SYNTAX: Final = re.compile(rb"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_INF_SYNTAX: Final = re.compile(rb"[+-]?inf(?:inity)?", re.IGNORECASE)
#: Sentinel results of :func:`_long_double`.
_INFINITE: Final = "inf"


def _round_long_double(value: Fraction) -> Fraction | None:
    """``value`` rounded (half to even) to a long double; None on overflow."""
    if value == 0:
        return value
    magnitude = abs(value)
    exponent = magnitude.numerator.bit_length() - magnitude.denominator.bit_length()
    if Fraction(2) ** exponent > magnitude:
        exponent -= 1
    shift = _LD_DIGITS - 1 - max(exponent, _LD_MIN_EXP)
    rounded = Fraction(round(magnitude * Fraction(2) ** shift)) / Fraction(2) ** shift
    if rounded >= _LD_OVERFLOW:
        return None
    return rounded if value > 0 else -rounded


def _long_double(text: bytes) -> Fraction | str | None:
    """What Redis's strtold-based parsing accepts: a finite value, the
    :data:`_INFINITE` marker (``inf``/``infinity``) or None (not a valid
    float: blanks, garbage, NaN, overflow, underflow to zero)."""
    if _INF_SYNTAX.fullmatch(text):
        return _INFINITE
    if text[:2].lower() in (b"0x", b"+0", b"-0") and b"x" in text[:3].lower():
        try:
            return _round_long_double(Fraction(float.fromhex(text.decode("ascii"))))
        except (ValueError, OverflowError, UnicodeDecodeError):
            return None
    if len(text) > 5000 or not _FLOAT_SYNTAX.fullmatch(text):
        return None
    number = Decimal(text.decode("ascii"))
    if number.is_zero():
        return Fraction(0)
    if number.adjusted() > 4933:
        return None       # ERANGE, HUGE_VAL
    if number.adjusted() < -4952:
        return None       # ERANGE, underflow to zero
    return _round_long_double(Fraction(number))


def _format_long_double(value: Fraction) -> bytes:
    """C's "%.17Lf", then trailing zeros (and a bare '.') removed."""
    scaled = round(abs(value) * 10**17)
    digits = str(scaled).rjust(18, "0")
    text = digits[:-17] + "." + digits[-17:]
    text = text.rstrip("0").rstrip(".")
    return ("-" + text if value < 0 and text != "0" else text).encode()


def cmd_incrbyfloat(s: RespSession, argv: list[bytes]) -> bytes | _Plan:
    delta = _long_double(argv[2])
    if delta is None:
        return b"-ERR value is not a valid float\r\n"
    key = argv[1]

    def body(store: Store) -> bytes:
        old = store.get(key)
        current = Fraction(0) if old is None else _long_double(old)
        if current is None:
            return b"-ERR value is not a valid float\r\n"
        if isinstance(current, str) or isinstance(delta, str):
            return b"-ERR increment would produce NaN or Infinity\r\n"
        total = _round_long_double(current + delta)
        if total is None:
            return b"-ERR increment would produce NaN or Infinity\r\n"
        text = _format_long_double(total)
        store.set(key, text, keepttl=True)
        return encode_bulk(text)
    return _read_modify_write(s, body)


def cmd_msetnx(s: RespSession, argv: list[bytes]) -> bytes | _Plan:
    if len(argv) % 2 == 0:
        return _wrong_args("msetnx")
    pairs = list(zip(argv[1::2], argv[2::2]))

    def body(store: Store) -> bytes:
        if store.exists([key for key, _ in pairs]):
            return b":0\r\n"
        store.mset(pairs)
        return b":1\r\n"
    return _read_modify_write(s, body)


def cmd_rename(s: RespSession, argv: list[bytes]) -> _Plan:
    source, target = argv[1], argv[2]
    only_new = argv[0].lower() == b"renamenx"

    def body(store: Store) -> bytes:
        value = store.get(source)
        if value is None:
            return b"-ERR no such key\r\n"
        if source == target:
            return b":0\r\n" if only_new else OK
        if only_new and store.exists([target]):
            return b":0\r\n"
        ttl = store.pttl(source)
        store.set(target, value, px=ttl if ttl > 0 else None)
        store.delete([source])
        return b":1\r\n" if only_new else OK
    return _read_modify_write(s, body)


def cmd_getex(s: RespSession, argv: list[bytes]) -> bytes | _Plan:
    key = argv[1]
    persist = False
    px: int | None = None
    i = 2
    while i < len(argv):
        opt = argv[i].upper()
        if opt == b"PERSIST" and px is None and not persist:
            persist = True
        elif opt in (b"EX", b"PX", b"EXAT", b"PXAT") and px is None and not persist \
                and i + 1 < len(argv):
            number = _int_arg(argv[i + 1])
            if number is None:
                return _NOT_INTEGER
            if number <= 0 or (opt in (b"EX", b"EXAT") and number > I64_MAX // 1000):
                return b"-ERR invalid expire time in 'getex' command\r\n"
            px = number * (1000 if opt in (b"EX", b"EXAT") else 1)
            if opt in (b"EXAT", b"PXAT"):
                px -= time.time_ns() // 1_000_000
            i += 1
        else:
            return _SYNTAX
        i += 1
    null = encode_null(s.proto)
    if px is None and not persist:
        return _Plan("get", (key,), _bulk_or_null(s))

    def body(store: Store) -> bytes:
        value = store.get(key)
        if value is None:
            return null
        if persist:
            store.persist(key)
        elif px is not None:
            store.pexpire(key, px)
        return encode_bulk(value)
    return _read_modify_write(s, body)


def cmd_type(s: RespSession, argv: list[bytes]) -> _Plan:
    return _Plan("exists", ([argv[1]],), lambda n: b"+string\r\n" if n else b"+none\r\n")


def cmd_dbsize(s: RespSession, argv: list[bytes]) -> _Plan:
    return _Plan("dbsize", (), _integer)


def cmd_flushdb(s: RespSession, argv: list[bytes]) -> bytes | _Plan:
    if len(argv) > 2 or (len(argv) == 2 and argv[1].upper() not in (b"ASYNC", b"SYNC")):
        return _SYNTAX
    return _Plan("flushdb", (), _ok, True)


def cmd_keys(s: RespSession, argv: list[bytes]) -> _Plan:
    return _Plan("keys", (argv[1],), lambda keys: encode(list(keys)))


def cmd_scan(s: RespSession, argv: list[bytes]) -> bytes | _Plan:
    cursor = _scan_cursor(argv[1])
    if cursor is None:
        return b"-ERR invalid cursor\r\n"
    match: bytes | None = None
    count = 10
    only_strings = True
    i = 2
    while i < len(argv):
        opt = argv[i].upper()
        if i + 1 >= len(argv):
            return _SYNTAX
        if opt == b"MATCH":
            match = argv[i + 1]
            if match == b"*":
                match = None
        elif opt == b"COUNT":
            number = _int_arg(argv[i + 1])
            if number is None:
                return _NOT_INTEGER
            if number < 1:
                return _SYNTAX
            count = number
        elif opt == b"TYPE":
            # Every value here is a string: TYPE string changes nothing,
            # any other type matches no key (the cursor still advances).
            only_strings = argv[i + 1].lower() == b"string"
        else:
            return _SYNTAX
        i += 2

    def finish(result: Any) -> bytes:
        next_cursor, keys = result
        return encode([b"%d" % next_cursor, list(keys) if only_strings else []])
    return _Plan("scan", (cursor, match, count), finish)


def _scan_cursor(text: bytes) -> int | None:
    """Redis reads the cursor with strtoull(): an optional sign, decimal
    digits (leading zeros and the empty string allowed), no blanks, at most
    2**64 - 1; a negative number wraps around."""
    digits = text[1:] if text[:1] in (b"+", b"-") else text
    if digits and not digits.isdigit():
        return None
    value = int(digits) if digits else 0
    if value >= 2**64:
        return None
    return (2**64 - value) % 2**64 if text[:1] == b"-" else value


def cmd_select(s: RespSession, argv: list[bytes]) -> bytes:
    index = _int_arg(argv[1])
    if index is None:
        return _NOT_INTEGER
    return OK if index == 0 else b"-ERR DB index is out of range\r\n"


def cmd_info(s: RespSession, argv: list[bytes]) -> _Plan:
    sections = [a.decode("latin-1") for a in argv[1:]]
    return _Plan(None, (), lambda _: encode(Verbatim(s.service.info(sections)), s.proto))


def cmd_time(s: RespSession, argv: list[bytes]) -> bytes:
    now = time.time_ns() // 1000
    return encode([b"%d" % (now // 1_000_000), b"%d" % (now % 1_000_000)])


def cmd_compact(s: RespSession, argv: list[bytes]) -> _Plan:
    def finish(_: Any) -> bytes:
        try:
            return encode(resp.SimpleString(s.service.start_compaction()))
        except StoreError as exc:
            return _store_error(exc)
    return _Plan(None, (), finish)


def cmd_lastsave(s: RespSession, argv: list[bytes]) -> bytes:
    return encode_integer(int(s.service.stats.started_wall))


# -- connection and transaction commands ---------------------------------------------

def cmd_quit(s: RespSession, argv: list[bytes]) -> bytes:
    s._done = True
    return OK


def cmd_reset(s: RespSession, argv: list[bytes]) -> bytes:
    s.queued = None
    s.multi_failed = False
    s.proto = 2
    s.name = b""
    return b"+RESET\r\n"


def cmd_multi(s: RespSession, argv: list[bytes]) -> bytes:
    if s.queued is not None:
        return b"-ERR MULTI calls can not be nested\r\n"
    s.queued = []
    s.queued_bytes = 0
    s.multi_failed = False
    return OK


def cmd_exec(s: RespSession, argv: list[bytes]) -> bytes:
    queued = s.queued
    if queued is None:
        return b"-ERR EXEC without MULTI\r\n"
    failed = s.multi_failed
    s.queued = None
    s.multi_failed = False
    if failed:
        return _EXECABORT
    return s.exec_transaction(queued)


def cmd_discard(s: RespSession, argv: list[bytes]) -> bytes:
    if s.queued is None:
        return b"-ERR DISCARD without MULTI\r\n"
    s.queued = None
    s.multi_failed = False
    return OK


def cmd_watch(s: RespSession, argv: list[bytes]) -> bytes:
    if s.queued is not None:
        return b"-ERR WATCH inside MULTI is not allowed\r\n"
    # Optimistic locking is not implemented: refuse rather than pretend, so a
    # client's check-and-set loop fails loudly instead of racing silently.
    return b"-ERR WATCH is not supported by this server\r\n"


def cmd_unwatch(s: RespSession, argv: list[bytes]) -> bytes:
    return OK


def _hello_map(s: RespSession) -> bytes:
    return encode(Map([
        (b"server", b"redis"),
        (b"version", REDIS_VERSION.encode()),
        (b"proto", s.proto),
        (b"id", s.client_id),
        (b"mode", b"standalone"),
        (b"role", b"master"),
        (b"modules", []),
    ]), s.proto)


def _auth_check(username: bytes, password: bytes) -> bytes | None:
    """No users are configured: the 'default' user has no password (Redis's
    out-of-the-box nopass), so any password for it is accepted."""
    if username == b"default":
        return None
    return b"-WRONGPASS invalid username-password pair or user is disabled.\r\n"


def cmd_hello(s: RespSession, argv: list[bytes]) -> bytes:
    proto = s.proto
    i = 1
    if len(argv) > 1:
        version = _int_arg(argv[1])
        if version is None:
            return b"-ERR Protocol version is not an integer or out of range\r\n"
        if version < 2 or version > 3:
            return b"-NOPROTO unsupported protocol version\r\n"
        proto = version
        i = 2
    name: bytes | None = None
    while i < len(argv):
        opt = argv[i].upper()
        if opt == b"AUTH" and i + 2 < len(argv):
            error = _auth_check(argv[i + 1], argv[i + 2])
            if error is not None:
                return error
            i += 3
        elif opt == b"SETNAME" and i + 1 < len(argv):
            name = argv[i + 1]
            if not _valid_client_name(name):
                return _BAD_NAME
            i += 2
        else:
            return _err(f"ERR Syntax error in HELLO option '{_quoted(argv[i])}'")
    s.proto = proto
    if name is not None:
        s.name = name
    return _hello_map(s)


def cmd_auth(s: RespSession, argv: list[bytes]) -> bytes:
    if len(argv) > 3:
        return _SYNTAX
    if len(argv) == 2:
        return (b"-ERR AUTH <password> called without any password configured for the "
                b"default user. Are you sure your configuration is correct?\r\n")
    error = _auth_check(argv[1], argv[2])
    return OK if error is None else error


_BAD_NAME: Final = (b"-ERR Client names cannot contain spaces, newlines or special "
                    b"characters.\r\n")


def _valid_client_name(name: bytes) -> bool:
    return all(33 <= c <= 126 for c in name)


def cmd_client(s: RespSession, argv: list[bytes]) -> bytes:
    sub = argv[1].upper()
    argc = len(argv)
    if sub == b"SETNAME":
        if argc != 3:
            return _wrong_args("client|setname")
        if not _valid_client_name(argv[2]):
            return _BAD_NAME
        s.name = argv[2]
        return OK
    if sub == b"GETNAME":
        if argc != 2:
            return _wrong_args("client|getname")
        return encode_bulk(s.name) if s.name else s.null()
    if sub == b"ID":
        if argc != 2:
            return _wrong_args("client|id")
        return encode_integer(s.client_id)
    if sub == b"SETINFO":
        if argc != 4:
            return _wrong_args("client|setinfo")
        attr = argv[2].upper()
        if attr not in (b"LIB-NAME", b"LIB-VER"):
            return _err(f"ERR Unrecognized option '{_quoted(argv[2])}'")
        if not all(33 <= c <= 126 for c in argv[3]):
            return encode_error(f"ERR {attr.decode().lower()} cannot contain spaces, "
                                "newlines or special characters.")
        if attr == b"LIB-NAME":
            s.lib_name = argv[3]
        else:
            s.lib_ver = argv[3]
        return OK
    if sub == b"INFO":
        if argc != 2:
            return _wrong_args("client|info")
        return encode(Verbatim(s.client_info()), s.proto)
    if sub == b"LIST":
        listing = "".join(other.client_info() for other in s.service.sessions())
        return encode(Verbatim(listing), s.proto)
    if sub in (b"NO-EVICT", b"NO-TOUCH"):
        if argc != 3 or argv[2].upper() not in (b"ON", b"OFF"):
            return _SYNTAX
        return OK
    return _unknown_subcommand(argv)


def _config_values(s: RespSession) -> dict[bytes, bytes]:
    """The CONFIG GET parameters clients ask about, with truthful values."""
    persistent = s.store.info().get("persistence") == "aof"
    return {
        b"save": b"",
        b"appendonly": b"yes" if persistent else b"no",
        b"databases": b"1",
        b"maxmemory": b"0",
        b"maxmemory-policy": b"noeviction",
        b"timeout": b"%d" % int(s.service.idle_timeout),
        b"maxclients": b"%d" % s.service.max_connections,
        b"port": b"%d" % s.service.port,
        b"bind": b"127.0.0.1",
        b"proto-max-bulk-len": b"%d" % s.service.max_bulk,
        b"client-query-buffer-limit": b"%d" % s._parser.max_query,
        b"cluster-enabled": b"no",
        b"protected-mode": b"no",
    }


def cmd_config(s: RespSession, argv: list[bytes]) -> bytes:
    sub = argv[1].upper()
    if sub == b"GET":
        if len(argv) < 3:
            return _wrong_args("config|get")
        values = _config_values(s)
        found: dict[bytes, bytes] = {}
        for pattern in argv[2:]:
            match = compile_glob(pattern.lower())
            for key, value in values.items():
                if match(key):
                    found[key] = value
        return encode(found, s.proto)
    if sub == b"SET":
        if len(argv) < 4 or len(argv) % 2:
            return _wrong_args("config|set")
        return _err("ERR Unknown option or number of arguments for CONFIG SET - "
                            f"'{_quoted(argv[2])}'")
    if sub == b"RESETSTAT":
        return OK
    return _unknown_subcommand(argv)


def _command_info(spec: CommandSpec) -> list[Any]:
    first, last, step = spec.keys
    return [spec.name.encode(), spec.arity,
            resp.RespSet([resp.SimpleString(f) for f in spec.flags]),
            first, last, step, resp.RespSet([]), resp.RespSet([]), [], []]


def cmd_command(s: RespSession, argv: list[bytes]) -> bytes:
    if len(argv) == 1:
        return encode([_command_info(spec) for spec in COMMANDS.values()], s.proto)
    sub = argv[1].upper()
    if sub == b"COUNT":
        return encode_integer(len(COMMANDS))
    if sub == b"DOCS":
        # redis-cli asks at start-up for its hints; it works with none.
        return encode({}, s.proto)
    if sub == b"INFO":
        names = argv[2:] or list(COMMANDS)
        return encode([_command_info(COMMANDS[n.lower()]) if n.lower() in COMMANDS else None
                       for n in names], s.proto)
    if sub == b"LIST":
        return encode([spec.name.encode() for spec in COMMANDS.values()], s.proto)
    return _unknown_subcommand(argv)


def _register(name: str, handler: Handler, arity: int, *flags: str,
              keys: tuple[int, int, int] = (0, 0, 0), queueable: bool = True) -> None:
    COMMANDS[name.encode()] = CommandSpec(name, handler, arity, flags, keys, queueable)


_ONE_KEY = (1, 1, 1)
_register("ping", cmd_ping, -1, "fast")
_register("echo", cmd_echo, 2, "fast")
_register("get", cmd_get, 2, "readonly", "fast", keys=_ONE_KEY)
_register("mget", cmd_mget, -2, "readonly", "fast", keys=(1, -1, 1))
_register("set", cmd_set, -3, "write", "denyoom", keys=_ONE_KEY)
_register("setnx", cmd_setnx, 3, "write", "denyoom", "fast", keys=_ONE_KEY)
_register("setex", cmd_setex, 4, "write", "denyoom", keys=_ONE_KEY)
_register("psetex", cmd_psetex, 4, "write", "denyoom", keys=_ONE_KEY)
_register("mset", cmd_mset, -3, "write", "denyoom", keys=(1, -1, 2))
_register("del", cmd_del, -2, "write", keys=(1, -1, 1))
_register("unlink", cmd_del, -2, "write", "fast", keys=(1, -1, 1))
_register("exists", cmd_exists, -2, "readonly", "fast", keys=(1, -1, 1))
_register("incr", cmd_incr, 2, "write", "denyoom", "fast", keys=_ONE_KEY)
_register("decr", cmd_decr, 2, "write", "denyoom", "fast", keys=_ONE_KEY)
_register("incrby", cmd_incrby, 3, "write", "denyoom", "fast", keys=_ONE_KEY)
_register("decrby", cmd_decrby, 3, "write", "denyoom", "fast", keys=_ONE_KEY)
_register("expire", cmd_expire, -3, "write", "fast", keys=_ONE_KEY)
_register("pexpire", cmd_pexpire, -3, "write", "fast", keys=_ONE_KEY)
_register("ttl", cmd_ttl, 2, "readonly", "fast", keys=_ONE_KEY)
_register("pttl", cmd_pttl, 2, "readonly", "fast", keys=_ONE_KEY)
_register("persist", cmd_persist, 2, "write", "fast", keys=_ONE_KEY)
_register("expireat", cmd_expireat, -3, "write", "fast", keys=_ONE_KEY)
_register("pexpireat", cmd_pexpireat, -3, "write", "fast", keys=_ONE_KEY)
_register("getset", cmd_getset, 3, "write", "denyoom", "fast", keys=_ONE_KEY)
_register("getdel", cmd_getdel, 2, "write", "fast", keys=_ONE_KEY)
_register("getex", cmd_getex, -2, "write", "fast", keys=_ONE_KEY)
_register("strlen", cmd_strlen, 2, "readonly", "fast", keys=_ONE_KEY)
_register("append", cmd_append, 3, "write", "denyoom", "fast", keys=_ONE_KEY)
_register("getrange", cmd_getrange, 4, "readonly", keys=_ONE_KEY)
_register("substr", cmd_getrange, 4, "readonly", keys=_ONE_KEY)
_register("setrange", cmd_setrange, 4, "write", "denyoom", keys=_ONE_KEY)
_register("incrbyfloat", cmd_incrbyfloat, 3, "write", "denyoom", "fast", keys=_ONE_KEY)
_register("msetnx", cmd_msetnx, -3, "write", "denyoom", keys=(1, -1, 2))
_register("rename", cmd_rename, 3, "write", keys=(1, 2, 1))
_register("renamenx", cmd_rename, 3, "write", "fast", keys=(1, 2, 1))
_register("type", cmd_type, 2, "readonly", "fast", keys=_ONE_KEY)
_register("dbsize", cmd_dbsize, 1, "readonly", "fast")
_register("flushdb", cmd_flushdb, -1, "write")
_register("flushall", cmd_flushdb, -1, "write")
_register("keys", cmd_keys, 2, "readonly")
_register("scan", cmd_scan, -2, "readonly")
_register("select", cmd_select, 2, "loading", "stale", "fast")
_register("info", cmd_info, -1, "loading", "stale")
_register("time", cmd_time, 1, "loading", "stale", "fast")
_register("lastsave", cmd_lastsave, 1, "loading", "stale", "fast")
_register("compact", cmd_compact, 1, "admin", "noscript")
_register("bgrewriteaof", cmd_compact, 1, "admin", "noscript")
_register("client", cmd_client, -2, "loading", "stale")
_register("config", cmd_config, -2, "admin", "loading", "stale")
_register("command", cmd_command, -1, "loading", "stale")
_register("hello", cmd_hello, -1, "noscript", "loading", "stale", "fast")
_register("auth", cmd_auth, -2, "noscript", "loading", "stale", "fast")
_register("multi", cmd_multi, 1, "noscript", "loading", "stale", "fast", queueable=False)
_register("exec", cmd_exec, 1, "noscript", "loading", "stale", queueable=False)
_register("discard", cmd_discard, 1, "noscript", "loading", "stale", "fast", queueable=False)
_register("watch", cmd_watch, -2, "noscript", "loading", "stale", "fast", queueable=False)
_register("unwatch", cmd_unwatch, 1, "noscript", "loading", "stale", "fast")
_register("quit", cmd_quit, -1, "noscript", "loading", "stale", "fast", queueable=False)
_register("reset", cmd_reset, 1, "noscript", "loading", "stale", "fast", queueable=False)
