"""EVAL, EVALSHA, EVAL_RO, EVALSHA_RO and SCRIPT on the RESP port.

:class:`Scripts` is a service's scripting state: the Lua engine
(services/lua_engine.py, created on first use), the script cache and the
runner thread. A script runs like this:

* the handler checks the arguments (Redis's order and texts), finds or
  compiles the script and asks the connection to run it
  (``CommandContext.run_script``);
* outside a transaction the connection hands it to the runner thread and
  answers later (an Output whose barrier is the run, see
  ``RespSession.run_script``): the runner waits at the store's gate
  (storage/gate.py) until no session is using the store, then runs the
  script inside ``Store.run_isolated``: holding the store's lock, so no
  other command interleaves, and logging its writes as one record, so a
  crash replays all of them or none. Meanwhile the other connections are
  still served: after busy-reply-threshold they get ``-BUSY ...`` and
  ``SCRIPT KILL`` reaches the script;
* inside ``EXEC`` the script runs in the connection's own thread, in the
  transaction's batch, in its order (then SCRIPT KILL cannot reach it).

``redis.call`` runs a command through the same command table as a client
(:func:`call_command`), with Redis's refusals: unknown command, wrong
arity, commands a script may not run, writes from a read-only script.
"""

from __future__ import annotations

import collections
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from sockworks.protocols.resp import OK, encode, encode_integer
from sockworks.services.acl_categories import COMMAND_CATEGORIES, CONTAINERS
from sockworks.services.lua_engine import (
    DEFAULT_LUA_MEMORY,
    LUA_AVAILABLE,
    LuaEngine,
    ScriptError,
    sha1hex,
)
from sockworks.services.lua_functions import Libraries
from sockworks.services.resp_commands import (
    NOREPLICAS,
    NOT_INTEGER,
    OOM_REPLY,
    arity_ok,
    int_arg,
    unknown_subcommand,
    wrong_args,
)
from sockworks.services.resp_context import CommandContext as Ctx
from sockworks.services.resp_context import Plan
from sockworks.storage.gate import ExclusiveRun

if TYPE_CHECKING:
    from sockworks.services.resp_context import CommandSpec

__all__ = ["BUSY_FUNCTION", "BUSY_SCRIPT", "NO_LUA", "SLOW_EVAL", "busy_reply", "forwarded",
           "scripting", "Scripts", "ScriptTicket", "call_command", "parse_numkeys",
           "SCRIPT_COMMANDS"]

logger = logging.getLogger(__name__)

#: Without lupa (an optional extra).
NO_LUA: Final = (b"-ERR scripting is not available: install sockworks[lua] "
                 b"(pip install 'sockworks[lua]')\r\n")
#: A store that neither runs scripts nor passes them through.
NO_SCRIPTING_BACKEND: Final = b"-ERR scripting is not supported by this store\r\n"
#: Redis 7's texts (from a real redis-server).
NOSCRIPT: Final = b"-NOSCRIPT No matching script. Please use EVAL.\r\n"
BUSY_SCRIPT: Final = (b"-BUSY Redis is busy running a script. You can only call SCRIPT KILL "
                      b"or SHUTDOWN NOSAVE.\r\n")
#: Redis's "slowevalerr" (an EVAL runs) and "slowscripterr" (a FUNCTION runs).
SLOW_EVAL: Final = BUSY_SCRIPT
BUSY_FUNCTION: Final = (b"-BUSY Redis is busy running a script. You can only call FUNCTION KILL "
                        b"or SHUTDOWN NOSAVE.\r\n")
NOTBUSY: Final = b"-NOTBUSY No scripts in execution right now.\r\n"
UNKILLABLE: Final = (b"-UNKILLABLE Sorry the script already executed write commands against "
                     b"the dataset. You can either wait the script termination or kill the "
                     b"server in a hard way using the SHUTDOWN NOSAVE command.\r\n")
_NEGATIVE_KEYS: Final = b"-ERR Number of keys can't be negative\r\n"
_TOO_MANY_KEYS: Final = b"-ERR Number of keys can't be greater than number of args\r\n"
_UNKNOWN: Final = b"-ERR Unknown Redis command called from script\r\n"
_ARITY: Final = b"-ERR Wrong number of args calling Redis command from script\r\n"
_NOT_ALLOWED: Final = b"-ERR This Redis command is not allowed from script\r\n"
_READ_ONLY: Final = b"-ERR Write commands are not allowed from read-only scripts.\r\n"
_FLUSH_OPTION: Final = b"-ERR SCRIPT FLUSH only support SYNC|ASYNC option\r\n"

#: The scripting commands themselves, and the container commands Redis
#: marks ``noscript`` per subcommand (the table's flags are per command).
SCRIPT_COMMANDS: Final = frozenset({"eval", "evalsha", "eval_ro", "evalsha_ro", "script"})
_FORBIDDEN: Final = SCRIPT_COMMANDS | {"client", "config", "acl"}

#: Scripts kept compiled. Redis keeps every script until SCRIPT FLUSH; here
#: the least recently used are dropped past these bounds (as Redis 7.4 does
#: for EVAL scripts): an EVALSHA of a dropped one gets NOSCRIPT, and clients
#: (redis-py's Script, Lock) then send the script again.
MAX_CACHED_SCRIPTS: Final = 10_000
MAX_CACHED_BYTES: Final = 64 * 1024 * 1024

#: Script flags a ``#!lua flags=...`` first line may give (Redis 7).
SHEBANG_FLAGS: Final = frozenset({"no-writes", "allow-oom", "allow-stale", "no-cluster",
                                  "allow-cross-slot-keys"})

_SCRIPT_HELP: Final = (
    "SCRIPT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "DEBUG (YES|SYNC|NO)",
    "    Set the debug mode for subsequent scripts executed.",
    "EXISTS <sha1> [<sha1> ...]",
    "    Return information about the existence of the scripts in the script cache.",
    "FLUSH [ASYNC|SYNC]",
    "    Flush the Lua scripts cache. Very dangerous on replicas.",
    "    When called without the optional mode argument, the behavior is determined by the",
    "    lazyfree-lazy-user-flush configuration directive. Valid modes are:",
    "    * ASYNC: Asynchronously flush the scripts cache.",
    "    * SYNC: Synchronously flush the scripts cache.",
    "KILL",
    "    Kill the currently executing Lua script.",
    "LOAD <script>",
    "    Load a script into the scripts cache without executing it.",
    "HELP",
    "    Prints this help.",
)


@dataclass(frozen=True, slots=True)
class Script:
    sha: bytes
    body: bytes
    fn: Any
    flags: frozenset[str]


def _shebang(body: bytes) -> tuple[bytes, frozenset[str]]:
    """The body Lua compiles (a ``#!`` first line blanked, keeping line
    numbers) and its flags; ScriptError with Redis's text if malformed."""
    if not body.startswith(b"#!"):
        return body, frozenset()
    line, newline, rest = body.partition(b"\n")
    words = line.split()
    if words[0] != b"#!lua":
        raise ScriptError(b"-ERR Unexpected engine in script shebang: " + words[0] + b"\r\n")
    flags: set[str] = set()
    for word in words[1:]:
        if not word.startswith(b"flags="):
            raise ScriptError(b"-ERR Unknown lua shebang option: " + word + b"\r\n")
        for flag in word[6:].split(b","):
            name = flag.decode("latin-1")
            if name and name not in SHEBANG_FLAGS:
                raise ScriptError(b"-ERR Unexpected flag in script shebang: " + flag + b"\r\n")
            flags.add(name)
    return newline + rest, frozenset(flags)


class ScriptTicket:
    """A script handed to the runner: the Barrier the model waits on before
    it sends the replies in front of it; then the session emits ``reply``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._event = threading.Event()
        self._callbacks: list[Callable[[bool], None]] = []
        self._ok = True
        self._answered = False
        self.reply = b""
        self.wrote = False
        #: Barrier.error: why the writes in front of the script were not logged.
        self.error = ""
        #: A durability barrier of writes made before the script in the same
        #: chunk: the ticket resolves once both are done.
        self.after: Any = None
        #: For INFO commandstats: the command (EVAL, EVALSHA...), the
        #: seconds its handler took (the session's thread) and the seconds
        #: the script ran (the runner's).
        self.name = "eval"
        self.overhead = 0.0
        self.seconds = 0.0

    def resolve(self, reply: bytes, wrote: bool) -> None:
        self.reply, self.wrote = reply, wrote
        self._answered = True
        after = self.after
        if after is not None:
            after.add_done_callback(self._finish)
        else:
            self._finish(True)

    def _finish(self, ok: bool) -> None:
        if not ok and self.after is not None:
            self.error = self.after.error
        with self._lock:
            self._ok = ok
            self._event.set()
            callbacks, self._callbacks = self._callbacks, []
        for fn in callbacks:
            fn(ok)

    @property
    def answered(self) -> bool:
        """The script has run (its reply is set), whatever its log batch."""
        return self._answered

    def flush(self) -> bool | None:
        """Barrier.flush: write this chunk's log batch (the writes in front
        of the script) with the loop iteration's; the result once the script
        answered, None until then (``add_done_callback`` says when)."""
        after = self.after
        if after is not None:
            after.flush()
        with self._lock:
            return self._ok if self._event.is_set() else None

    def wait(self, timeout: float | None = None) -> bool:
        after = self.after
        if after is not None:
            after.flush()  # a thread model: its chunk's batch, written now
        return self._event.wait(timeout) and self._ok

    def add_done_callback(self, fn: Callable[[bool], None]) -> None:
        with self._lock:
            if not self._event.is_set():
                self._callbacks.append(fn)
                return
        fn(self._ok)


class Scripts:
    """One service's scripting: engine, cache, runner (module docstring)."""

    def __init__(self, lua_memory: int = DEFAULT_LUA_MEMORY) -> None:
        self._lua_memory = lua_memory
        self._engine: LuaEngine | None = None
        self._lock = threading.Lock()
        self._cache: collections.OrderedDict[bytes, Script] = collections.OrderedDict()
        self._cached_bytes = 0
        self._queue: queue.SimpleQueue[Callable[[], object] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._closed = False
        #: Scripts dropped from the cache by its bounds (INFO).
        self.evicted = 0
        #: FUNCTION libraries compiled in this engine (resp_functions.py).
        self.libraries = Libraries()

    @property
    def engine(self) -> LuaEngine:
        with self._lock:
            if self._engine is None:
                self._engine = LuaEngine(self._lua_memory)
            return self._engine

    # -- the cache ---------------------------------------------------------------
    def get(self, sha: bytes) -> Script | None:
        with self._lock:
            script = self._cache.get(sha.lower())
            if script is not None:
                self._cache.move_to_end(script.sha)
            return script

    def load(self, body: bytes) -> Script:
        """The cached script with this body, compiled now if new."""
        sha = sha1hex(body)
        script = self.get(sha)
        if script is not None:
            return script
        source, flags = _shebang(body)
        fn = self.engine.compile(source)
        script = Script(sha, body, fn, flags)
        with self._lock:
            if sha not in self._cache:
                self._cache[sha] = script
                self._cached_bytes += len(body)
                while len(self._cache) > 1 and (len(self._cache) > MAX_CACHED_SCRIPTS
                                                or self._cached_bytes > MAX_CACHED_BYTES):
                    _, dropped = self._cache.popitem(last=False)
                    self._cached_bytes -= len(dropped.body)
                    self.evicted += 1
        return script

    def exists(self, sha: bytes) -> bool:
        with self._lock:
            return sha.lower() in self._cache

    def flush(self) -> None:
        with self._lock:
            self._cache.clear()
            self._cached_bytes = 0
            engine = self._engine
        if engine is not None:
            engine.flush()

    def counters(self) -> dict[str, int]:
        with self._lock:
            engine = self._engine
            return {"number_of_cached_scripts": len(self._cache),
                    "used_memory_scripts": self._cached_bytes,
                    "used_memory_lua": engine.memory() if engine is not None else 0,
                    "evicted_scripts": self.evicted}

    # -- the runner thread ------------------------------------------------------------
    def submit(self, work: Callable[[], object]) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._serve, name="sockworks-scripts",
                                                daemon=True)
                self._thread.start()
        self._queue.put(work)

    def _serve(self) -> None:
        while True:
            work = self._queue.get()
            if work is None:
                return
            try:
                work()
            except Exception:  # one job's failure must not stop the runner
                logger.exception("script runner job failed")

    def close(self, timeout: float = 5.0) -> None:
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(None)
            thread.join(timeout)


def call_command(s: Ctx, argv: list[bytes], read_only: bool, run: ExclusiveRun,
                 resp: int, oom: bool = False) -> bytes:
    """``redis.call(*argv)``: the command's reply, in RESP ``resp``,
    counted as Redis counts a script's command (INFO commandstats:
    a refusal is a rejected call, an error a failed one; errorstats).
    ``oom``: memory was over the limit when the script started (Redis's
    pre_command_oom_state), so a ``denyoom`` command is refused until the
    script has written (after a write, a script is let finish, as Redis)."""
    server = s.server
    spec: CommandSpec | None = s.commands.get(argv[0].lower())
    if spec is None:
        server.error_stats.note(_UNKNOWN)  # no command to count it against
        return _UNKNOWN
    refusal = _refusal(s, spec, argv, read_only, run, oom)
    if refusal is not None:
        server.count_nested(spec.name, refusal, True, 0.0)
        return refusal
    started = time.perf_counter()
    reply = _call(s, spec, argv, run, resp)
    server.count_nested(spec.name, reply, False, time.perf_counter() - started)
    return reply


def _refusal(s: Ctx, spec: CommandSpec, argv: list[bytes], read_only: bool,
             run: ExclusiveRun, oom: bool) -> bytes | None:
    """Why a script may not run this command now (Redis's order), or None."""
    if not arity_ok(spec.arity, len(argv)):
        return _ARITY
    if "noscript" in spec.flags or spec.name in _FORBIDDEN:
        return _NOT_ALLOWED
    write = "write" in spec.flags
    if write and read_only:
        return _READ_ONLY
    # Before the script's first write only: a script that wrote is not
    # failed on the server's state (Redis's SCRIPT_WRITE_DIRTY).
    if write and not run.wrote and s.server.writes_refused:
        return NOREPLICAS
    if oom and not run.wrote and not run.allow_oom and "denyoom" in spec.flags:
        return OOM_REPLY  # Redis's scriptVerifyOOM
    if write:
        run.wrote = True
    return s.script_access(spec, argv)


def _call(s: Ctx, spec: CommandSpec, argv: list[bytes], run: ExclusiveRun, resp: int) -> bytes:
    shown = s.proto
    s.set_protocol(resp)
    try:
        if run.allow_oom:
            with s.store.memory_limit_lifted():
                return _run(s, spec, argv)
        return _run(s, spec, argv)
    finally:
        s.set_protocol(shown)
        broker = s.server.broker
        if broker.monitored:
            # Redis shows a script's calls as its Lua client's: "[0 lua]".
            broker.feed_monitors(argv, "lua")


def acl_allows(s: Ctx, argv: list[bytes]) -> bool | None:
    """redis.acl_check_cmd(*argv): may this connection's user run it (the
    command, its keys, its channels; nothing counted)? None: no such
    command (Redis's lookupCommand: a container's subcommand must exist)."""
    spec: CommandSpec | None = s.commands.get(argv[0].lower())
    if spec is None:
        return None
    if (spec.name in CONTAINERS and len(argv) > 1
            and f"{spec.name}|{argv[1].decode('latin-1').lower()}" not in COMMAND_CATEGORIES):
        return None
    return s.script_access(spec, argv, count=False) is None


def _run(s: Ctx, spec: CommandSpec, argv: list[bytes]) -> bytes:
    outcome = spec.handler(s, argv)
    return s.run_plan(outcome) if isinstance(outcome, Plan) else outcome


def refused_to_start(s: Ctx, flags: frozenset[str] | tuple[str, ...],
                     argv: list[bytes]) -> bytes | None:
    """Why a script or function with declared flags may not start, as the
    rejected call's reply; None: it may. Redis 7 derives ``write`` and
    ``denyoom`` from the flags: without no-writes, min-replicas-to-write
    refuses it (NOREPLICAS), and without allow-oom too, maxmemory (OOM). One
    without declared flags (EVAL with no ``#!``) is left to its writes."""
    if "no-writes" in flags:
        return None
    if s.server.writes_refused:
        return s.rejected(NOREPLICAS)
    if "allow-oom" not in flags and not s.store.make_room(sum(map(len, argv))):
        return s.rejected(OOM_REPLY)
    return None


# -- the commands ---------------------------------------------------------------------

def forwarded(s: Ctx, argv: list[bytes], *, write: bool) -> Plan[bytes]:
    """With a Redis backend: the command run by that Redis as it is (its
    replies and errors; routed by the keys' slot on Redis Cluster)."""
    proto = s.proto
    return Plan(lambda st: st.execute_command(argv), lambda reply: encode(reply, proto), write)


def scripting(s: Ctx) -> Scripts | bytes:
    """The service's scripting, or the reply saying why there is none."""
    if s.store.script_gate is None:
        return NO_SCRIPTING_BACKEND
    if not LUA_AVAILABLE:
        return NO_LUA
    return s.server.scripts


def parse_numkeys(argv: list[bytes], not_integer: bytes) -> int | bytes:
    """EVAL's and FCALL's ``numkeys`` (argv[2]), or the error reply: Redis
    answers a non-integer differently for each (``not_integer``)."""
    numkeys = int_arg(argv[2])
    if numkeys is None:
        return not_integer
    if numkeys < 0:
        return _NEGATIVE_KEYS
    if numkeys > len(argv) - 3:
        return _TOO_MANY_KEYS
    return numkeys


def _eval(s: Ctx, argv: list[bytes], *, by_sha: bool,
          read_only: bool) -> bytes | Plan[bytes]:
    if s.store.passthrough:
        return forwarded(s, argv, write=not read_only)
    numkeys = parse_numkeys(argv, NOT_INTEGER)
    if isinstance(numkeys, bytes):
        return numkeys
    scripts = scripting(s)
    if isinstance(scripts, bytes):
        return scripts
    if by_sha:
        found = scripts.get(argv[1])
        if found is None:
            return NOSCRIPT
        script = found
    else:
        try:
            script = scripts.load(argv[1])
        except ScriptError as exc:
            return exc.reply
    oom = False
    if script.body.startswith(b"#!"):
        refusal = refused_to_start(s, script.flags, argv)
        if refusal is not None:
            return refusal
    else:  # no flags: its first write is refused instead (Redis's scriptVerifyOOM)
        oom = not s.store.make_room(sum(map(len, argv)))
    keys, args = argv[3:3 + numkeys], argv[3 + numkeys:]
    no_writes = read_only or "no-writes" in script.flags
    engine = scripts.engine
    allow_oom = "allow-oom" in script.flags

    def job(run: ExclusiveRun) -> bytes:
        run.allow_oom = allow_oom

        def dispatch(call: list[bytes]) -> bytes:
            return call_command(s, call, no_writes, run, engine.resp, oom)
        return engine.run(script.fn, script.sha, keys, args, s.proto, dispatch,
                          lambda: run.killed, acl_check=lambda call: acl_allows(s, call),
                          note=s.server.error_stats.note)
    return s.run_script(job)


def cmd_eval(s: Ctx, argv: list[bytes]) -> bytes | Plan[bytes]:
    return _eval(s, argv, by_sha=False, read_only=False)


def cmd_evalsha(s: Ctx, argv: list[bytes]) -> bytes | Plan[bytes]:
    return _eval(s, argv, by_sha=True, read_only=False)


def cmd_eval_ro(s: Ctx, argv: list[bytes]) -> bytes | Plan[bytes]:
    return _eval(s, argv, by_sha=False, read_only=True)


def cmd_evalsha_ro(s: Ctx, argv: list[bytes]) -> bytes | Plan[bytes]:
    return _eval(s, argv, by_sha=True, read_only=True)


def cmd_script(s: Ctx, argv: list[bytes]) -> bytes | Plan[bytes]:
    sub = argv[1].lower()
    n = len(argv)
    if sub == b"help" and n == 2:
        return b"*%d\r\n" % len(_SCRIPT_HELP) + b"".join(
            b"+" + line.encode() + b"\r\n" for line in _SCRIPT_HELP)
    arity = {b"load": n == 3, b"exists": n >= 3, b"flush": True, b"kill": n == 2}
    if sub not in arity:
        return unknown_subcommand(argv)
    if not arity[sub]:
        return wrong_args(f"script|{sub.decode()}")
    if s.store.passthrough:
        return forwarded(s, argv, write=sub == b"flush")
    scripts = scripting(s)
    if isinstance(scripts, bytes):
        return scripts
    if sub == b"load":
        try:
            script = scripts.load(argv[2])
        except ScriptError as exc:
            return exc.reply
        return b"$40\r\n" + script.sha + b"\r\n"
    if sub == b"exists":
        return b"*%d\r\n" % (n - 2) + b"".join(
            encode_integer(int(scripts.exists(sha))) for sha in argv[2:])
    if sub == b"flush":
        if n > 3 or (n == 3 and argv[2].lower() not in (b"sync", b"async")):
            return _FLUSH_OPTION
        scripts.flush()
        return OK
    gate = s.store.script_gate
    run = gate.running if gate is not None else None
    if run is None:
        return NOTBUSY
    if run.wrote:
        return UNKILLABLE
    if run.function is not None:
        return BUSY_FUNCTION  # a function: FUNCTION KILL stops it
    run.killed = True
    return OK


def busy_reply(run: ExclusiveRun | None) -> bytes:
    """The BUSY error for a command refused while ``run`` holds the store."""
    return BUSY_FUNCTION if run is not None and run.function is not None else BUSY_SCRIPT


def busy_allowed(spec: CommandSpec, argv: list[bytes]) -> bool:
    """Whether a command runs while a script is busy (Redis's allow-busy
    commands that touch no data; SCRIPT KILL)."""
    if spec.name == "script":
        return len(argv) > 1 and argv[1].lower() == b"kill"
    if spec.name == "function":
        return len(argv) > 1 and argv[1].lower() in (b"kill", b"stats")
    return spec.name in _BUSY_ALLOWED


#: Redis also lets MULTI, DISCARD, WATCH, UNWATCH and RESET through; here
#: the last four touch the store's WATCH state under its lock, so they get
#: BUSY (docs/resp.md).
_BUSY_ALLOWED: Final = frozenset({"auth", "hello", "multi", "quit"})

