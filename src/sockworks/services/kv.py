"""The key-value store over the chapter's text protocol: :class:`KvService`.

    Server(KvService(), port=0)                    # in memory
    Server(KvService(open_store(None, "data", "everysec")), port=9000, resp_port=6379)

On connect the server says READY; then one request per line, one reply line
per request, pipelining allowed (every command, reply, error and limit is in
docs/protocol.md). ``KvService(store)`` serves any :class:`Store`; without
one it makes an embedded in-memory store of its own. :meth:`KvService.resp_service`
is the same store over RESP (``Server(..., resp_port=N)`` uses it).
"""

# KvService is the Service; KvSession frames lines (protocols/lines.py),
# parses them (protocols/kvtext.py) and runs them against the Store.

from __future__ import annotations

import functools
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Final, cast

from sockworks._version import __version__
from sockworks.core.command_stats import CommandStats
from sockworks.core.config import DEFAULT_MAX_LINE, ServerSettings
from sockworks.core.logs import RateLimitedLog
from sockworks.core.service import CLOSE, NOTHING, REPLY_BUDGET, Output, Service, Session
from sockworks.core.stats import ServerStats
from sockworks.protocols import kvtext
from sockworks.protocols.kvtext import (
    BYE,
    DELETED,
    GREETING,
    LINE_TOO_LONG,
    LINE_TOO_LONG_REPLY,
    MAX_KEY_LENGTH,
    NEED_DATA,
    NOT_FOUND,
    OK,
    PONG,
    UNFRAMABLE_VALUE_REPLY,
    BadRequest,
    Get,
    HttpRequest,
    Quit,
    Set,
    error_reply,
    integer_reply,
    parse_line,
    stats_reply,
    status_reply,
    value_reply,
)
from sockworks.protocols.lines import LineFramer
from sockworks.protocols.resp import DEFAULT_MAX_BULK
from sockworks.services.accel import FASTPATH
from sockworks.services.acl import User
from sockworks.services.auth import DENIED_TEXT, AccessControl
from sockworks.services.meminfo import memory_fields
from sockworks.services.renames import CommandRenames
from sockworks.services.resp_table import COMMANDS as RESP_COMMANDS
from sockworks.storage.aof import DEFAULT_FSYNC
from sockworks.storage.base import OutOfMemory, Store, StoreError, WrongType
from sockworks.storage.factory import open_store

if TYPE_CHECKING:
    from sockworks.services.resp import RespService

__all__ = ["DEFAULT_PORT", "KvService", "KvSession"]

#: What the compiled fast path hands over when it stops early (_fastpath.text_run):
#: started, lines done, replies, reply bytes, GETs, SETs, the indices in
#: replies of write acknowledgements (Output.failed errs them), calls, errors.
TextSeed = tuple[float, int, list[bytes], int, int, int, list[int], dict[str, int],
                 dict[str, int]]
#: What a renamed-away or disabled command answers (as an unknown one does).
UNKNOWN_COMMAND_REPLY = error_reply("unknown command")

logger = logging.getLogger(__name__)

#: The chapter's port (the command line's default).
DEFAULT_PORT = 9000

#: STATS names of the per-session counters (KvSession.counts), in order.
_SESSION_COUNTERS = ("commands_processed", "get_hits", "get_misses", "protocol_errors")
_COMMANDS, _HITS, _MISSES, _ERRORS = range(4)
#: A write refused at --maxmemory (RESP sends Redis's OOM text instead).
OUT_OF_MEMORY_REPLY = b"ERROR: out of memory\n"
#: Access control on the text port (docs/protocol.md, docs/security.md).
AUTH_REQUIRED_REPLY = error_reply("authentication required")
INVALID_PASSWORD_REPLY = error_reply("invalid password")
NO_PASSWORD_REPLY = error_reply(
    "AUTH <password> called without any password configured for the default user. Are you "
    "sure your configuration is correct?")
DENIED_REPLY = error_reply("protected mode: " + DENIED_TEXT)
NO_KEY_PERMISSION_REPLY = error_reply(
    "no permission: this user has no permissions to access one of the keys used as arguments")
#: Each text command as the RESP command ACL rules name (STATS is INFO,
#: COMPACT is BGREWRITEAOF).
TEXT_TO_RESP: Mapping[bytes, str] = {
    b"GET": "get", b"SET": "set", b"DEL": "del", b"INCR": "incr", b"INCRBY": "incrby",
    b"EXISTS": "exists", b"EXPIRE": "expire", b"TTL": "ttl", b"PERSIST": "persist",
    b"PING": "ping", b"DBSIZE": "dbsize", b"STATS": "info", b"COMPACT": "bgrewriteaof",
    b"QUIT": "quit"}
WRONG_TYPE_REPLY = b"ERROR: wrong type\n"
#: STATS names of the service's rare-event counters.
_EVENT_COUNTERS = ("http_requests_refused", "lines_too_long")


def _with_write_errors(replies: list[bytes], writes: list[int], error: str) -> bytes:
    """The replies of a chunk whose log batch failed: every write's
    acknowledgement becomes the error (reads keep their replies)."""
    failed = list(replies)
    reply = error_reply(error)
    for index in writes:
        failed[index] = reply
    return b"".join(failed)


def _one_write_error(error: str) -> bytes:
    """The failed-batch reply of a chunk that was one write (no allocation
    per request on the pipeline-1 write path)."""
    return error_reply(error)


class KvService(Service):
    """The text-protocol front end of a :class:`Store` (shared by all sessions).

    Per-request counters live in each session (only its own thread writes
    them, so the hot path takes no lock); STATS adds up the live sessions and
    the totals folded in when sessions closed. That is exact under every
    model: a model calls ``on_close`` once per connection.
    """

    name = "kv"
    #: asyncio: one thread multiplexes thousands of connections (the
    #: thread-per-connection model needs a thread, and its stack, per client,
    #: and the pool model queues clients beyond its workers), and the embedded
    #: store's calls are in-memory and never block, so running them inline on
    #: the event loop costs nothing (uvloop is used when installed).
    default_model = "asyncio"

    def __init__(self, store: Store | None = None, *, data_dir: str | None = None,
                 fsync: str = DEFAULT_FSYNC, url: str | None = None, maxmemory: int = 0,
                 maxmemory_policy: str = "noeviction", max_line: int = DEFAULT_MAX_LINE,
                 max_bulk: int = DEFAULT_MAX_BULK, blocking: bool | None = None,
                 rename_commands: Mapping[str, str] | Iterable[tuple[str, str]] = (),
                 access: AccessControl | None = None,
                 options: Mapping[str, str] | None = None) -> None:
        renames = CommandRenames.of(
            rename_commands.items() if isinstance(rename_commands, Mapping) else rename_commands)
        if renames:
            renames.check([name.decode() for name in (*RESP_COMMANDS, *kvtext.COMMAND_NAMES)])
        if store is None:
            # The embedded store (persisted when data_dir is given), or the
            # one url names; StoreError/OSError/ValueError say why not.
            store = open_store(url, data_dir, fsync, maxmemory=maxmemory,
                               maxmemory_policy=maxmemory_policy)
        elif data_dir is not None or url is not None or maxmemory:
            raise TypeError("give either store= or data_dir=/url=/maxmemory=, not both")
        self.store = store
        #: Users, passwords and protected mode, shared with the RESP port.
        self.access = access if access is not None else AccessControl()
        #: CONFIG GET values fixed by the command line (for the RESP port).
        self.options = dict(options or {})
        self.max_line = max_line
        #: Largest bulk string the RESP front end accepts (resp_service()).
        self.max_bulk = max_bulk
        #: --rename-command, for this port and the RESP one: the GET/SET
        #: fast-path spellings, and the words that differ from the protocol's.
        self.renames = renames
        self.get_words = renames.fast_words("get")
        self.set_words = renames.fast_words("set")
        self.renamed_words = renames.text_words(kvtext.COMMAND_NAMES)
        # A store shared across processes lives behind a network hop (Redis):
        # its calls block, so event-loop models must run sessions in threads.
        self.blocking = store.shared_across_processes if blocking is None else blocking
        self._lock = threading.Lock()
        self._retired = [0] * len(_SESSION_COUNTERS)
        self._events = dict.fromkeys(_EVENT_COUNTERS, 0)
        # Weak, so a session a model forgets to close cannot leak.
        self._live: weakref.WeakSet[KvSession] = weakref.WeakSet()
        self._closed = False
        self.http_log = RateLimitedLog(logger, logging.WARNING)
        #: Commands by name, errors by name, per-chunk processing time (metrics).
        self.command_stats = CommandStats(
            [*(name.decode().lower() for name in kvtext.COMMAND_NAMES), "auth"])

    def resp_service(self, *, busy_reply_threshold: int | None = None) -> RespService:
        """The same store over RESP (the Redis protocol), sharing the counters;
        this service opened the store and closes it. ``busy_reply_threshold``:
        milliseconds a Lua script runs before other clients get -BUSY."""
        from sockworks.services.resp import RespService
        from sockworks.storage.gate import DEFAULT_BUSY_REPLY_THRESHOLD_MS

        settings = self.settings
        threshold = (DEFAULT_BUSY_REPLY_THRESHOLD_MS if busy_reply_threshold is None
                     else busy_reply_threshold)
        return RespService(self.store, self.stats, max_bulk=self.max_bulk, renames=self.renames,
                           access=self.access, options=self.options,
                           busy_reply_threshold=threshold,
                           idle_timeout=settings.idle_timeout if settings else 0.0,
                           max_connections=settings.max_connections if settings else 1024)

    def bound(self, address: tuple[str, int]) -> None:
        self.access.note_listening("KV text", address[0], address[1])

    def new_session(self, peer: str) -> KvSession:
        session = KvSession(self, peer)
        with self._lock:
            self._live.add(session)
        return session

    def retire(self, session: KvSession) -> None:
        """Fold a closing session's counters into the totals (once)."""
        with self._lock:
            if session in self._live:
                self._live.discard(session)
                for index, value in enumerate(session.counts):
                    self._retired[index] += value

    def bump(self, counter: str) -> None:
        with self._lock:
            self._events[counter] += 1

    def attach(self, stats: ServerStats, settings: ServerSettings) -> None:
        super().attach(stats, settings)
        # Every model waits on or flushes the sessions' barriers before it
        # replies: the log can batch a loop iteration's (or a chunk's) writes.
        self.store.batch_log_writes()
        stats.counter_sources[self.name] = self.counters
        stats.counter_sources[f"{self.name}.cmd"] = self.command_stats.flat

    def counters(self) -> dict[str, int]:
        """This process's request counters (live sessions + closed ones)."""
        with self._lock:
            totals = list(self._retired)
            for session in self._live:
                for index, value in enumerate(session.counts):
                    totals[index] += value
            events = dict(self._events)
        return {**dict(zip(_SESSION_COUNTERS, totals, strict=True)), **events}

    def snapshot(self) -> dict[str, object]:
        """Every STATS field, in the documented order (docs/protocol.md);
        under prefork the counters are the sums over every worker."""
        stats = self.stats
        recent_in, recent_out = stats.clients.recent_max()
        counters = stats.server_wide(dict(self.counters()), self.name)
        conn = stats.server_wide({
            "connections_current": stats.connections_current,
            "connections_total": stats.connections_total,
            "connections_rejected": stats.connections_rejected,
            "idle_closed": stats.idle_closed,
            "evicted_clients": stats.clients.evicted,
        })
        fields: dict[str, object] = {
            "version": __version__,
            "pid": os.getpid(),
            "uptime_seconds": int(stats.uptime),
            "connections_current": conn["connections_current"],
            "connections_total": conn["connections_total"],
            "connections_rejected": conn["connections_rejected"],
            "connections_idle_closed": conn["idle_closed"],
            # The same as INFO clients / INFO stats on the RESP port.
            "connected_clients": conn["connections_current"],
            "maxclients": self.settings.max_connections if self.settings else 0,
            "client_recent_max_input_buffer": recent_in,
            "client_recent_max_output_buffer": recent_out,
            "rejected_connections": conn["connections_rejected"],
            "evicted_clients": conn["evicted_clients"],
            **counters,
            # Per process (prefork: the answering worker's).
            **self.access.counters(),
            "keys": self.store.dbsize(),
        }
        store_info = self.store.info()
        # Memory under Redis's INFO names (used_memory ... mem_fragmentation_ratio).
        fields.update(memory_fields(store_info))
        if "evicted_keys" in store_info:
            fields["evicted_keys"] = store_info["evicted_keys"]
        # The store's own counters and persistence state (expired keys, log
        # size, last fsync, write errors...): whatever its info() reports.
        for name, value in store_info.items():
            fields.setdefault(name, value)
        return fields

    def close(self) -> None:
        """Close the store (once): flushes its log under every fsync policy."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self.store.close()  # waits for a rewrite in progress


#: The text port's answer while a Lua script holds the store (RESP's -BUSY).
BUSY_SCRIPT_REPLY: Final = b"ERROR: busy running a script (SCRIPT KILL on the RESP port stops it)\n"


class KvSession(Session):
    """One text-protocol connection: bytes in, replies out, in order.

    ``on_data`` is the server's hot path: GET and SET are dispatched inline
    on the event's exact type, the other commands through a table of
    methods; each returns its reply bytes.
    """

    __slots__ = ("_access", "_backlog", "_done", "_fast", "_framer", "_framing", "_generation",
                 "_get_words", "_max_line", "_open", "_peer", "_refused", "_renamed", "_service",
                 "_received", "_set_words", "_store", "_user", "counts")

    def __init__(self, service: KvService, peer: str) -> None:
        self._service = service
        self._store = service.store
        self._get_words = service.get_words
        self._set_words = service.set_words
        self._renamed = service.renamed_words
        #: The compiled hot path (services/fastpath.py), used while the
        #: session is plain; None: the reference code below runs everything.
        #: --rename-command changes what the fast words mean: none then.
        self._fast = FASTPATH.text_run if FASTPATH is not None and not service.renames else None
        self._peer = peer
        self._framer = LineFramer(service.max_line)
        self._max_line = service.max_line
        #: The framer holds part of a line (so the next chunk must go through it).
        self._framing = False
        self._done = False
        #: Bytes received and not yet reported to the service's CommandStats.
        self._received = 0
        #: commands, GET hits, GET misses, protocol errors (see _SESSION_COUNTERS)
        self.counts = [0, 0, 0, 0]
        #: Lines received but held back (their replies would pass
        #: REPLY_BUDGET), and how the input ended after them.
        self._backlog: tuple[list[bytes], object] | None = None
        access = self._access = service.access
        self._refused = access.refuses(peer)
        self._set_user(access.initial_user())

    def _set_user(self, user: User | None) -> None:
        """Run as ``user`` (None: must AUTH); open: nothing to check."""
        self._user = user
        self._generation = self._access.generation
        self._open = user is not None and user.unrestricted

    @property
    def busy(self) -> bool:
        return not self._done and (self._framer.buffered > 0 or self._backlog is not None)

    @property
    def backlog(self) -> bool:
        return self._backlog is not None and not self._done

    @property
    def input_bytes(self) -> int:
        held = self._framer.buffered
        if self._backlog is not None:
            held += sum(map(len, self._backlog[0]))
        return held

    def resume(self) -> Output:
        if self._backlog is None or self._done:
            self._backlog = None
            return NOTHING
        lines, end = self._backlog
        self._backlog = None
        return self._run(lines, end)

    def on_connect(self) -> Output:
        if self._refused:
            self._done = True
            return Output(DENIED_REPLY, True)
        self._service.command_stats.add({}, None, 0.0, 0, len(GREETING))
        return Output(GREETING)

    def on_data(self, data: bytes) -> Output:
        if self._done:
            # QUIT, HTTP or an over-long line already ended the conversation:
            # nothing the peer sends afterwards may run.
            return CLOSE
        self._received += len(data)
        if self._generation != self._access.generation:
            user = self._user and self._access.user(self._user.name)
            self._set_user(user if user is not None and user.enabled else None)
        end: object = NEED_DATA
        if self._backlog is not None:
            # Earlier lines still wait: these queue up behind them.
            held, held_end = self._backlog
            if held_end is NEED_DATA:
                more, held_end = self._frame(data)
                held.extend(more)
            else:
                self._framer.receive_data(data)
            self._backlog = (held, held_end)
            return self.resume()
        if not self._framing and len(data) <= self._max_line:
            # Fast path (the usual case: whole requests, nothing pending):
            # no line in a chunk this short can be over the limit, so split
            # it in one C call. An unterminated tail waits in the framer,
            # which then enforces the limit on that line as it grows.
            lines = data.split(b"\n")
            tail = lines.pop()
            if tail:
                self._framer.receive_data(tail)
                self._framing = True
            # The plain state (docs/architecture.md): new per-connection state that
            # changes how a command runs must be added to this test.
            if self._fast is not None and self._open and type(data) is bytes:
                # Compiled: the whole chunk, or the lines up to the first it
                # does not handle, from which the reference below goes on.
                return self._run(lines, end, self._fast)
        else:
            lines, end = self._frame(data)
        return self._run(lines, end)

    def _frame(self, data: bytes) -> tuple[list[bytes], object]:
        """Complete lines through the framer, and NEED_DATA or LINE_TOO_LONG."""
        framer = self._framer
        framer.receive_data(data)
        lines = []
        while True:
            line = framer.next_event()
            if type(line) is not bytes:
                end = line
                break
            lines.append(line)
        self._framing = framer.buffered > 0
        return lines, end

    def _run(self, lines: list[bytes], end: object,
             fast: Callable[[KvSession, list[bytes]], Output | TextSeed] | None = None
             ) -> Output:
        """:meth:`_run_lines` behind the store's script gate (storage/gate.py):
        while a Lua script has run past busy-reply-threshold, every line is
        answered BUSY_REPLY at once instead of waiting on the store. ``fast``:
        the compiled path (services/_fastpath.pyx) runs the lines first, as
        far as it goes, inside the gate like the reference."""
        gate = self._store.script_gate
        if gate is None or not lines:
            return self._run_first(lines, end, fast)
        if not gate.enter():
            return Output(BUSY_SCRIPT_REPLY * sum(1 for line in lines if line.strip()))
        try:
            return self._run_first(lines, end, fast)
        finally:
            gate.leave()

    def _run_first(self, lines: list[bytes], end: object,
                   fast: Callable[[KvSession, list[bytes]], Output | TextSeed] | None
                   ) -> Output:
        """The compiled path (if given) on ``lines``, then the reference
        from where it stopped, with its figures."""
        if fast is None:
            return self._run_lines(lines, end)
        outcome = fast(self, lines)
        if type(outcome) is Output:
            return outcome
        return self._run_lines(lines, end, cast("TextSeed", outcome))

    def _run_lines(self, lines: list[bytes], end: object, seed: TextSeed | None = None) -> Output:
        """Execute complete request lines in order; one Output for them all.

        GET and SET, most of any workload, are dispatched right here on the
        split words (the same rules as kvtext.parse_line's fast path); every
        other line goes through the parser and the handler table. ``seed``:
        the compiled fast path ran ``lines[:done]`` and these are its figures.
        """
        store = self._store
        counts = self.counts
        get_words, set_words, renamed = self._get_words, self._set_words, self._renamed
        close = False
        todo = lines
        if seed is None:
            started = time.perf_counter()
            replies: list[bytes] = []
            # Where the writes' acknowledgements are in replies: a failed log
            # batch turns each into an error reply (Output.failed).
            writes: list[int] = []
            size = done = gets = sets = 0
            # Commands off the GET/SET fast path, and error replies, by name.
            calls: dict[str, int] = {}
            errors: dict[str, int] = {}
        else:
            started, done, replies, size, gets, sets, writes, calls, errors = seed
            todo = lines[done:]
        append = replies.append
        name = ""
        for line in todo:
            if size >= REPLY_BUDGET:
                # Back-pressure (core/service.py): the rest waits for resume().
                self._backlog = (lines[done:], end)
                end = NEED_DATA
                break
            done += 1
            parts = line.split(None, 2)
            nparts = len(parts)
            try:
                if not self._open:
                    # Not authenticated, or a restricted ACL user: AUTH, and
                    # the checks, before anything runs.
                    refusal = self._gate(parts, line)
                    if refusal is not None:
                        append(refusal)
                        continue
                if nparts == 2 and parts[0] in get_words and len(parts[1]) <= MAX_KEY_LENGTH:
                    counts[_COMMANDS] += 1
                    gets += 1
                    value = store.get(parts[1])
                    if value is None:
                        counts[_MISSES] += 1
                        append(NOT_FOUND)
                    else:
                        counts[_HITS] += 1
                        # value_reply(), inlined: is the value framable?
                        if b"\n" in value or value[-1:] == b"\r":
                            append(UNFRAMABLE_VALUE_REPLY)
                        else:
                            size += len(value)
                            append(value + b"\n")
                    continue
                if nparts == 3 and parts[0] in set_words and len(parts[1]) <= MAX_KEY_LENGTH:
                    counts[_COMMANDS] += 1
                    sets += 1
                    store.set(parts[1], parts[2].rstrip())
                    writes.append(len(replies))
                    append(OK)
                    continue
                if parts and parts[0].upper() == b"AUTH":
                    reply = self._auth(line.split())
                    calls["auth"] = calls.get("auth", 0) + 1
                    if reply[:6] == b"ERROR:":
                        errors["auth"] = errors.get("auth", 0) + 1
                    append(reply)
                    continue
                if renamed and parts:
                    # --rename-command: the command this word runs, if any.
                    word = parts[0].upper()
                    if word in renamed:
                        runs = renamed[word]
                        if runs is None:
                            counts[_ERRORS] += 1
                            append(UNKNOWN_COMMAND_REPLY)
                            continue
                        line = runs + line.lstrip()[len(word):]
                name = line.split(None, 1)[0].decode("latin-1").lower() if parts else ""
                calls[name] = calls.get(name, 0) + 1
                event = parse_line(line)
                kind = type(event)
                if kind in _HANDLERS:
                    counts[_COMMANDS] += 1
                    handler, is_write = _HANDLERS[kind]
                    reply = handler(self, event)
                    if reply[:6] == b"ERROR:":
                        errors[name] = errors.get(name, 0) + 1
                    size += len(reply)
                    if is_write and reply[:6] != b"ERROR:":
                        writes.append(len(replies))
                    append(reply)
                elif kind is BadRequest:
                    counts[_ERRORS] += 1
                    errors[name] = errors.get(name, 0) + 1
                    append(error_reply(cast(BadRequest, event).reason))
                else:  # QUIT or HTTP: the conversation ends here
                    close = True
                    self._finish(event, append)
                    break
            except OutOfMemory:
                name = self._failed(parts, name)
                errors[name] = errors.get(name, 0) + 1
                append(OUT_OF_MEMORY_REPLY)
            except WrongType:
                # A hash, list, set or sorted set made on the RESP port:
                # the text protocol's commands work on strings only.
                append(WRONG_TYPE_REPLY)
            except StoreError as exc:
                name = self._failed(parts, name)
                errors[name] = errors.get(name, 0) + 1
                append(error_reply(str(exc)))
        if gets:
            calls["get"] = calls.get("get", 0) + gets
        if sets:
            calls["set"] = calls.get("set", 0) + sets
        if not close and end is LINE_TOO_LONG:
            close = True
            self._finish(end, append)
        data = replies[0] if len(replies) == 1 else b"".join(replies)
        received, self._received = self._received, 0
        self._service.command_stats.add(calls, errors, time.perf_counter() - started,
                                        received, len(data))
        if close:
            self._done = True
        elif not replies:
            return NOTHING
        if not writes:
            return Output(data, close)
        return self._written(data, close, replies, writes)

    def _written(self, data: bytes, close: bool, replies: list[bytes],
                 writes: list[int]) -> Output:
        """The Output of a chunk that wrote (here or in the compiled path):
        after its log batch, and if that fails, with each write's
        acknowledgement (``writes``: indices in ``replies``) an error."""
        return Output(data, close, self._store.durability_barrier(),
                      _one_write_error if len(replies) == 1 else
                      functools.partial(_with_write_errors, replies, writes))

    def _finish(self, event: object, append: Callable[[bytes], None]) -> None:
        """The events that end the conversation: QUIT, HTTP, too long."""
        if type(event) is Quit:
            self.counts[_COMMANDS] += 1
            append(BYE)
        elif type(event) is HttpRequest:
            self._service.bump("http_requests_refused")
            self._service.http_log(
                "HTTP request from %s on the KV text port (wrong port?); closing: %r",
                self._peer, event.line[:80])
        elif event is LINE_TOO_LONG:
            self._service.bump("lines_too_long")
            logger.info("line longer than %d bytes from %s; closing",
                        self._framer.max_line, self._peer)
            append(LINE_TOO_LONG_REPLY)
        # CLOSED (only after on_eof): nothing to say.

    def _failed(self, parts: list[bytes], name: str) -> str:
        """The command name of a line whose store call raised (rare): the
        fast path's GET/SET, or the slow path's ``name``."""
        word = parts[0] if parts else b""
        if word in self._set_words:
            return "set"
        return "get" if word in self._get_words else name

    def _gate(self, parts: list[bytes], line: bytes) -> bytes | None:
        """AUTH's reply, or the refusal of a command this user may not run;
        None: run it (the slow path, taken only by restricted users)."""
        word = parts[0].upper() if parts else b""
        if word == b"AUTH":
            return self._auth(line.split())
        user = self._user
        if user is None:
            return None if word in (b"QUIT", b"") else AUTH_REQUIRED_REPLY
        if self._renamed and word in self._renamed:
            runs = self._renamed[word]  # --rename-command: judge what it runs
            if runs is None:
                return None
            line = runs + line.lstrip()[len(word):]
            word = runs.upper()
        name = TEXT_TO_RESP.get(word)
        if name is None or name == "quit":
            return None  # unknown or malformed: the parser says why
        if not user.may_run(name):
            self._access.count_denied(key=False)
            return error_reply(f"no permission: this user has no permissions to run the "
                               f"'{name}' command")
        event = parse_line(line)
        keys = getattr(event, "keys", None) or (
            (event.key,) if hasattr(event, "key") else ())
        if keys and not user.may_access(keys):
            self._access.count_denied(key=True)
            return NO_KEY_PERMISSION_REPLY
        return None

    def _auth(self, words: list[bytes]) -> bytes:
        """AUTH password / AUTH user password -> OK or ERROR."""
        if len(words) not in (2, 3):
            return error_reply("usage: AUTH [user] password")
        name = words[1].decode("utf-8", "surrogateescape") if len(words) == 3 else "default"
        access = self._access
        if name == "default" and access.passwordless_default:
            return NO_PASSWORD_REPLY
        user = access.authenticate(name, words[-1], self._peer)
        if user is None:
            return INVALID_PASSWORD_REPLY
        self._set_user(user)
        return OK

    def on_eof(self) -> Output:
        if not self._done:
            self._framer.receive_data(b"")
            if self._framer.next_event() is kvtext.CLOSED and self._framer.trailing:
                # An unterminated last line may be half a command: never run it.
                logger.debug("%s closed with %d bytes of an unterminated line",
                             self._peer, len(self._framer.trailing))
            self._done = True
        return CLOSE

    def on_close(self) -> None:
        self._done = True
        self._service.retire(self)

    # -- the other commands: each returns its reply --------------------------
    # (GET and SET are inlined in _run; these two serve the parser's events,
    # which carry the same rules, so the table is complete on its own.)

    def _get(self, event: Get) -> bytes:
        return value_reply(self._store.get(event.key))

    def _set(self, event: Set) -> bytes:
        self._store.set(event.key, event.value)
        return OK

    def _delete(self, event: kvtext.Delete) -> bytes:
        return DELETED if self._store.delete((event.key,)) else NOT_FOUND

    def _incrby(self, event: kvtext.IncrBy) -> bytes:
        return integer_reply(self._store.incrby(event.key, event.delta))

    def _exists(self, event: kvtext.Exists) -> bytes:
        return integer_reply(self._store.exists(event.keys))

    def _expire(self, event: kvtext.Expire) -> bytes:
        return integer_reply(int(self._store.pexpire(event.key, event.seconds * 1000)))

    def _ttl(self, event: kvtext.Ttl) -> bytes:
        ms = self._store.pttl(event.key)
        # Redis rounds the remaining time to the nearest second.
        return integer_reply(ms if ms < 0 else (ms + 500) // 1000)

    def _persist(self, event: kvtext.Persist) -> bytes:
        return integer_reply(int(self._store.persist(event.key)))

    def _ping(self, event: kvtext.Ping) -> bytes:
        return PONG

    def _dbsize(self, event: kvtext.DbSize) -> bytes:
        return integer_reply(self._store.dbsize())

    def _stats(self, event: kvtext.Stats) -> bytes:
        return stats_reply(self._service.snapshot())

    def _compact(self, event: kvtext.Compact) -> bytes:
        # The store rewrites in the background: an event-loop model must not
        # stall for the whole rewrite.
        return status_reply(self._store.start_compaction())


#: event type -> (method, is it a write). GET and SET are inlined in _run.
_HANDLERS: dict[type, tuple[Callable[[KvSession, Any], bytes], bool]] = {
    Get: (KvSession._get, False),
    Set: (KvSession._set, True),
    kvtext.Delete: (KvSession._delete, True),
    kvtext.IncrBy: (KvSession._incrby, True),
    kvtext.Exists: (KvSession._exists, False),
    kvtext.Expire: (KvSession._expire, True),
    kvtext.Ttl: (KvSession._ttl, False),
    kvtext.Persist: (KvSession._persist, True),
    kvtext.Ping: (KvSession._ping, False),
    kvtext.DbSize: (KvSession._dbsize, False),
    kvtext.Stats: (KvSession._stats, False),
    kvtext.Compact: (KvSession._compact, False),
}
