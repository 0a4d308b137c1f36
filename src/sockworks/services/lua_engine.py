"""Redis 7's Lua environment on ``lupa``: sandbox, type conversions, errors.

One :class:`LuaEngine` holds one Lua state (Redis has one too) built with
lupa's Lua 5.1 runtime when the wheel has it (``lupa.lua51``; Redis embeds
Lua 5.1), else lupa's default one (:data:`LUA_VERSION` says which). lupa is
an optional extra (``pip install sockworks[lua]``): without it
:data:`LUA_AVAILABLE` is False and the RESP port answers the scripting
commands with :data:`sockworks.services.resp_scripting.NO_LUA`.

What a script sees, as in Redis 7.0 (the texts come from a real
redis-server, tests/services/test_scripting.py compares them):

* globals are read-only: reading a missing one raises ``Script attempted to
  access nonexistent global variable 'x'``, writing any raises ``Attempt to
  modify a readonly table`` (``rawset`` too), and so do writes into
  ``redis``, ``string``, ``table``, ``math``, ``coroutine``;
* no ``os``, ``io``, ``debug``, ``loadfile``, ``dofile``, ``require``,
  ``print``, ``setfenv``/``getfenv``; ``loadstring``/``load`` compile in the
  sandbox and refuse bytecode; ``pcall`` returns a Redis error's message as
  a string (Redis 7's own ``pcall``), ``xpcall`` the error table;
* ``redis.call/pcall/error_reply/status_reply/sha1hex/log/setresp/
  acl_check_cmd`` and the constants; ``KEYS`` and ``ARGV``.

Conversions both ways follow Redis's rules (:meth:`LuaEngine.to_lua`,
:meth:`LuaEngine.to_resp`): a Lua number becomes an integer by truncation
(non-finite or out of range: -2^63, as Redis's C cast), false a null,
``{ok=...}`` a status, ``{err=...}`` an error, an array stops at its first
nil; RESP3 maps, sets, doubles, booleans and big numbers after
``redis.setresp(3)``.

A script is stopped by a count hook (every :data:`HOOK_INSTRUCTIONS` VM
instructions) that asks ``run.killed``; once killed the hook fires on every
line, so a ``pcall`` cannot swallow the kill. Lua's memory is capped
(lupa's ``max_memory``): past it the script fails with ``not enough memory``.
"""

from __future__ import annotations

import hashlib
import importlib
import logging
import math
import threading
from collections.abc import Callable, Sequence
from typing import Any, Final, NoReturn

from sockworks.core.error_stats import HoldsErrors, PreCounted
from sockworks.core.logs import RateLimitedLog
from sockworks.services import lua_bytecode, lua_libs
from sockworks.services.resp_commands import REDIS_VERSION

__all__ = ["HOOK_INSTRUCTIONS", "LUA_AVAILABLE", "LUA_VERSION", "DEFAULT_LUA_MEMORY",
           "LuaEngine", "ScriptError", "sha1hex"]

logger = logging.getLogger(__name__)

# The optional extra (lupa ships no type stubs, hence Any). Its Lua 5.1
# runtime when the wheel has it, else the default one.
_lupa: Any = None
for _module in ("lupa.lua51", "lupa"):
    try:
        _lupa = importlib.import_module(_module)
        break
    except ImportError:
        continue
#: Whether scripting can run here (lupa installed).
LUA_AVAILABLE: Final[bool] = _lupa is not None

#: VM instructions between two kill checks: about a millisecond of Lua, so
#: SCRIPT KILL acts at once while the check costs nothing measurable.
HOOK_INSTRUCTIONS: Final = 100_000
#: Lua's memory (compiled scripts plus what running ones allocate). Redis
#: sets no limit; one here keeps a script building a huge table from taking
#: the server's memory. 256 MiB is far above any sane script.
DEFAULT_LUA_MEMORY: Final = 256 * 1024 * 1024
#: Nesting of a table returned to the client (a self-referencing table would
#: recurse forever); Redis stops at its Lua C stack limit (deeper), Python
#: recursion here.
MAX_REPLY_DEPTH: Final = 200
#: Scripts between two incremental steps of Lua's collector, and the step's
#: size: Redis's LUA_GC_CYCLE_PERIOD (eval.c), so what scripts leave behind
#: is collected as they run instead of waiting for Lua's doubling threshold.
GC_CYCLE_PERIOD: Final = 50
_INT64_MIN: Final = -(1 << 63)
_INT64_MAX: Final = (1 << 63) - 1
#: Arguments from which redis.call passes them to Python as one table:
#: lupa's call into Python checks for 2 free slots within LUAI_MAXCSTACK
#: (8000) and fails from about 7996 arguments.
PACK_AT: Final = 7000
#: The chunk name Redis gives scripts: errors read ``user_script:1: ...``.
CHUNK: Final = b"@user_script"
#: Redis 7's texts for misuse of the redis library (from a real server).
KILLED: Final = b"ERR Script killed by user with SCRIPT KILL..."

# The sandbox, written for this module (Redis builds the same environment
# in C). It receives the Python callbacks and returns what Python needs.
_PRELUDE: Final = r"""
-- The redis.* functions that can fail are Python callables; they raise a
-- Python exception carrying the error table, unwrap() gets it back.
-- redis.call/pcall are Lua wrappers around them: lupa refuses a call from
-- Lua into Python with close to LUAI_MAXCSTACK (8000) arguments, which
-- Redis's C redis.call takes, so past PACK_AT the arguments go as a table.
-- (A wrapper tail-called by `return redis.call(...)` would replace the
-- script's frame and lose the error's line: scripts are compiled without
-- tail calls, see LuaEngine.untail.)
local py_call, py_pcall, py_sha1, py_log, py_setresp, unwrap, py_killed, chunk_name,
      hook_count, version, version_num, py_call_packed, py_pcall_packed, pack_at,
      py_acl_check = ...
local G = _G
local error, type, tostring, select, unpack = error, type, tostring, select, unpack
local setmetatable, rawget, rawset, setfenv = setmetatable, rawget, rawset, setfenv
local loadstring, load, xpcall, pcall = loadstring, load, xpcall, pcall
local sethook, getinfo = debug.sethook, debug.getinfo
-- Scripts' and FUNCTION libraries' chunks (services/lua_functions.py).
local chunk_names = {[chunk_name] = true, ['@user_function'] = true}

local readonly = setmetatable({}, {__mode = 'k'})
local function deny() error('Attempt to modify a readonly table', 2) end
local function protect(t)
  local proxy = setmetatable({}, {__index = t, __newindex = deny, __metatable = false})
  readonly[proxy] = true
  return proxy
end

-- Redis's rules for turning an error text into the table's err field.
local function error_table(msg)
  local code, text = 'ERR', msg
  if msg:sub(1, 1) == '-' then
    local space = msg:find(' ', 1, true)
    if space then code, text = msg:sub(2, space - 1), msg:sub(space + 1)
    else text = msg:sub(2) end
  end
  text = text:gsub('^[\r\n]+', ''):gsub('[\r\n]+$', '')
  return {err = code .. ' ' .. text}
end

local function call(...)
  if select('#', ...) < pack_at then return py_call(...) end
  return py_call_packed(select('#', ...), {...})
end
local function pcall_(...)
  if select('#', ...) < pack_at then return py_pcall(...) end
  return py_pcall_packed(select('#', ...), {...})
end
local redis = {call = call, pcall = pcall_, sha1hex = py_sha1, log = py_log,
               setresp = py_setresp, acl_check_cmd = py_acl_check}
function redis.error_reply(...)
  local msg = ...
  if select('#', ...) ~= 1 or type(msg) ~= 'string' then
    return error_table('wrong number or type of arguments')
  end
  if msg:sub(1, 1) ~= '-' then msg = '-' .. msg end
  return error_table(msg)
end
function redis.status_reply(...)
  local msg = ...
  if select('#', ...) ~= 1 or type(msg) ~= 'string' then
    return error_table('wrong number or type of arguments')
  end
  return {ok = msg}
end
function redis.replicate_commands() return true end
function redis.set_repl() end
function redis.breakpoint() return false end
function redis.debug() end
redis.REDIS_VERSION, redis.REDIS_VERSION_NUM = version, version_num
redis.LOG_DEBUG, redis.LOG_VERBOSE, redis.LOG_NOTICE, redis.LOG_WARNING = 0, 1, 2, 3
redis.REPL_NONE, redis.REPL_AOF, redis.REPL_SLAVE = 0, 1, 2
redis.REPL_REPLICA, redis.REPL_ALL = 2, 3

local env = {}
for _, name in ipairs({'assert', 'error', 'ipairs', 'next', 'pairs', 'rawequal', 'rawget',
                       'select', 'setmetatable', 'getmetatable', 'tonumber', 'tostring',
                       'type', 'unpack', 'xpcall', 'collectgarbage', 'gcinfo', '_VERSION'}) do
  env[name] = G[name]
end
-- Lua 5.1's unpack computes its count in a C int: a range past INT_MAX
-- (unpack(t, -2, 2147483647)) overflows it and crashes the whole process
-- in the build lupa ships. Redis patched its copy; here a wrapper refuses
-- such ranges before the C code sees them, and raises the argument errors
-- itself, so every message is the one Redis's unpack gives.
local raw_unpack, getinfo = G.unpack, G.debug.getinfo
local function argerror(n, expected, got)
  local info = getinfo(2, 'n')
  G.error("bad argument #" .. n .. " to '" .. (info and info.name or '?') .. "' (" ..
          expected .. " expected, got " .. got .. ")", 3)
end
env.unpack = function(...)
  local t, i, j = ...
  local count = G.select('#', ...)
  if G.type(t) ~= 'table' then
    argerror(1, 'table', count == 0 and 'no value' or G.type(t))
  end
  if i ~= nil and tonumber(i) == nil then argerror(2, 'number', G.type(i)) end
  if j ~= nil and tonumber(j) == nil then argerror(3, 'number', G.type(j)) end
  local first, last = tonumber(i) or 1, tonumber(j) or #t
  -- Lua's check: the arguments and the results within LUAI_MAXCSTACK (8000).
  if first <= last and last - first + count >= 8000 then
    G.error('too many results to unpack', 2)
  end
  -- As called: each argument passed on counts against the C function's
  -- stack (LUAI_MAXCSTACK), so unpack(t) of 7999 items fits, as in Redis.
  return raw_unpack(...)
end
env.string, env.table, env.math = protect(string), protect(table), protect(math)
env.coroutine = protect(coroutine)
env.redis = protect(redis)

-- Metatables are read-only too, as Redis 7.0.15 makes them: the strings'
-- one is shared by the whole state (a script setting its __index would
-- break every later script), so getmetatable('') gives a read-only view
-- whose __index is the (read-only) string library; our read-only tables'
-- own metatables are shown as an empty read-only table.
local debug_getmetatable, string_mt = G.debug.getmetatable, G.getmetatable('')
string_mt.__index = env.string
local string_mt_view, locked_view = protect(string_mt), protect({})
env.getmetatable = function(...)
  local value = ...
  if readonly[value] then return locked_view end
  local mt = getmetatable(...)
  if mt == string_mt then return string_mt_view end
  return mt
end
env.setmetatable = function(...)
  local t = ...
  if readonly[t] then error('Attempt to modify a readonly table', 0) end
  return setmetatable(...)
end

local sandbox = {}
readonly[sandbox] = true
env._G = sandbox
setmetatable(sandbox, {
  __index = function(_, name)
    local value = env[name]
    if value == nil then
      error("Script attempted to access nonexistent global variable '" .. tostring(name) .. "'", 2)
    end
    return value
  end,
  __newindex = deny,
  __metatable = false,
})

function env.rawset(t, k, v)
  if readonly[t] then error('Attempt to modify a readonly table', 0) end
  return rawset(t, k, v)
end
-- Redis 7's pcall: an error raised by redis.call comes back as its message.
function env.pcall(...)
  local results = {pcall(...)}
  if not results[1] then
    local err = unwrap(results[2])
    if type(err) == 'table' and type(err.err) == 'string' then err = err.err end
    results[2] = err
  end
  return unpack(results, 1, table.maxn(results))
end
function env.xpcall(fn, handler)
  return xpcall(fn, function(err) return handler(unwrap(err)) end)
end
local function compile(code, name)
  if type(code) == 'string' and code:byte(1) == 27 then
    return nil, 'loading binary chunks is not allowed'
  end
  local fn, err = loadstring(code, name)
  if fn then setfenv(fn, sandbox) end
  return fn, err
end
env.loadstring = compile
function env.load(source, name)
  if type(source) == 'string' then return compile(source, name) end
  local fn, err = load(source, name)
  if fn then setfenv(fn, sandbox) end
  return fn, err
end

-- The innermost frame of the script itself names the error's place.
local function on_error(err)
  err = unwrap(err)
  local level, place = 2, nil
  while true do
    local info = getinfo(level, 'Sl')
    if not info then break end
    if chunk_names[info.source] then place = info break end
    level = level + 1
  end
  if type(err) ~= 'table' or readonly[err] then err = {err = 'ERR ' .. tostring(err)} end
  if place then rawset(err, 'source', place.source) rawset(err, 'line', place.currentline) end
  return err
end

-- Raises only in the script's own code (not in this file's helpers, nor
-- while the error handler or run() itself executes).
local function kill_hook()
  if py_killed() then
    local info = getinfo(2, 'S')
    if info and chunk_names[info.source] then
      sethook(kill_hook, 'l')  -- every line from now on: pcall cannot swallow it
      error({err = 'ERR Script killed by user with SCRIPT KILL...'})
    end
  end
end

local function run(fn)
  sethook(kill_hook, '', hook_count)
  local ok, result = xpcall(fn, on_error)
  sethook()
  return ok, result
end

-- A function recompiled from bytecode (LuaEngine.untail), with its globals.
local function reload(fn, code)
  local new = loadstring(code)
  setfenv(new, getfenv(fn))
  return new
end

return compile, run, env, protect, string.dump, reload
"""


class ScriptError(Exception):
    """A script could not be compiled: ``reply`` is the RESP error reply."""

    def __init__(self, reply: bytes) -> None:
        super().__init__(reply)
        self.reply = reply


def _version_num() -> int:
    """REDIS_VERSION as Redis's REDIS_VERSION_NUM (0x00MMmmpp)."""
    major, minor, patch = (int(part) for part in REDIS_VERSION.split("."))
    return (major << 16) | (minor << 8) | patch


def sha1hex(body: bytes) -> bytes:
    return hashlib.sha1(body, usedforsecurity=False).hexdigest().encode()


def lua_version() -> str:
    if not LUA_AVAILABLE:
        return ""
    runtime = _lupa.LuaRuntime(encoding=None)
    return str(runtime.eval("_VERSION").decode())


#: "Lua 5.1" when lupa has the 5.1 runtime (docs/resp.md), "" without lupa.
LUA_VERSION: Final = lua_version()

_LOG_LEVELS: Final = (logging.DEBUG, logging.INFO, logging.INFO, logging.WARNING)


def _format_number(value: float) -> bytes:
    """A Lua number as redis.call passes it: ``%.17g``, as Redis does."""
    if isinstance(value, int):
        return b"%d" % value
    return b"%.17g" % value


def _integer(value: float) -> int:
    """Redis's ``(long long)`` cast of a Lua number (x86-64 semantics)."""
    if isinstance(value, int):
        return value if _INT64_MIN <= value <= _INT64_MAX else _INT64_MIN
    if not math.isfinite(value):
        return _INT64_MIN
    number = int(value)  # truncates toward zero
    return number if _INT64_MIN <= number <= _INT64_MAX else _INT64_MIN


class LuaEngine:
    """One Lua state; thread-safe (one script or compile at a time).

    ``dispatch(argv)`` runs a command for ``redis.call`` and returns its
    RESP reply bytes, in the protocol version :attr:`resp` says (2 unless
    the script called ``redis.setresp(3)``); it is given per run.
    """

    def __init__(self, max_memory: int = DEFAULT_LUA_MEMORY) -> None:
        if not LUA_AVAILABLE:
            raise RuntimeError("lupa is not installed")
        self.lock = threading.RLock()
        self._max_memory = max_memory
        self._lua = _lupa.LuaRuntime(encoding=None, register_eval=False,
                                     register_builtins=False, unpack_returned_tuples=True,
                                     max_memory=0)
        #: redis.log, by level: a script logging in a loop costs a line per 5 s.
        self._logs = tuple(RateLimitedLog(logger, level) for level in _LOG_LEVELS)
        self._dispatch: Callable[[list[bytes]], bytes] | None = None
        self._acl_check: Callable[[list[bytes]], bool | None] | None = None
        #: While a script runs: how errors inside its reply are counted, and
        #: whether it had any (run()).
        self._note: Callable[[bytes], None] | None = None
        self._nested_errors = False
        self._killed: Callable[[], bool] = lambda: False
        #: The RESP version redis.call replies are converted from (setresp).
        self.resp = 2
        lua = self._lua
        self._gc_step = lua.eval("function(size) collectgarbage('step', size) end")
        self._runs = 0
        prelude = lua.execute(_PRELUDE, self._py_call, self._py_pcall, self._py_sha1,
                              self._py_log, self._py_setresp, _unwrap, self._py_killed, CHUNK,
                              HOOK_INSTRUCTIONS, REDIS_VERSION.encode(), _version_num(),
                              self._py_call_packed, self._py_pcall_packed, PACK_AT,
                              self._py_acl_check)
        self._compile, self._run, self._env, protect, self._dump, self._reload = prelude
        self._reset_libs = lua_libs.install(lua, self._env, protect, _lupa.lua_type, _raising)
        self._rawget = lua.globals().rawget
        self._lua_type = _lupa.lua_type
        self._table_from = lua.table_from
        # Nothing of Python stays reachable from Lua's globals.
        lua.globals().python = None

    # -- compiling and running ----------------------------------------------------------
    def compile(self, body: bytes) -> Any:
        """The script as a Lua function; ScriptError with Redis's reply if
        it does not compile."""
        with self.lock:
            fn, err = self._compile(body, CHUNK)
        if fn is None:
            text = err.decode("utf-8", "replace") if isinstance(err, bytes) else str(err)
            raise ScriptError(b"-ERR Error compiling script (new function): "
                              + text.replace("\r", " ").replace("\n", " ").encode() + b"\r\n")
        return self.untail(fn)

    def untail(self, fn: Any) -> Any:
        """``fn`` with every tail call made a plain call (same results).

        Lua replaces the caller's frame on ``return f(...)`` when ``f`` is a
        Lua function; redis.call is one here (see the prelude), so without
        this a script's ``return redis.call('bad')`` would lose its frame and
        its error the line Redis names. Costs a recompile from bytecode, once
        per script; the price is that unbounded tail recursion in a script
        stops at Lua's call depth (about 20000) as plain recursion does.
        """
        with self.lock:
            code = self._dump(fn)
            patched = lua_bytecode.untail(code)
            if patched == code:
                return fn
            return self._reload(fn, patched)

    def run(self, fn: Any, sha: bytes, keys: Sequence[bytes], args: Sequence[bytes],
            proto: int, dispatch: Callable[[list[bytes]], bytes],
            killed: Callable[[], bool], *, globals_: bool = True,
            acl_check: Callable[[list[bytes]], bool | None] | None = None,
            note: Callable[[bytes], None] | None = None) -> bytes:
        """Run a compiled script; its reply in the caller's ``proto``.
        ``globals_=False`` (a FUNCTION): no KEYS and ARGV globals.
        ``acl_check(argv)`` answers redis.acl_check_cmd: whether the caller's
        user may run it, None for no such command (None: always allowed).
        ``note``: counts an error reply inside the reply (errorstats); the
        reply is then :class:`HoldsErrors`."""
        with self.lock:
            self._dispatch, self._killed, self.resp = dispatch, killed, 2
            self._acl_check = acl_check
            self._note, self._nested_errors = note, False
            env = self._env
            if globals_:
                env[b"KEYS"] = self._table_from(list(keys))
                env[b"ARGV"] = self._table_from(list(args))
            # The cap holds while the script runs, where running out is a Lua
            # error the script's pcall-protected frame turns into its reply;
            # lifted outside it, where lupa's own calls are unprotected and a
            # failed allocation would abort the process (Lua's panic).
            lua = self._lua
            lua.set_max_memory(self._max_memory)
            try:
                try:
                    ok, result = self._run(fn)
                finally:
                    lua.set_max_memory(0)
                if lua.get_memory_used() > self._max_memory // 2:
                    lua.execute("collectgarbage()")  # what the script left behind
                self._runs += 1
                if self._runs % GC_CYCLE_PERIOD == 0:
                    self._gc_step(GC_CYCLE_PERIOD)
                if ok:
                    reply = self.to_resp(result, proto)
                    return HoldsErrors(reply) if self._nested_errors else reply
                return self._error_reply(result, sha)
            except _lupa.LuaError as exc:  # out of memory inside the runner itself
                text = str(exc).replace("\r", " ").replace("\n", " ")
                return f"-ERR {text} script: {sha.decode()}\r\n".encode()
            finally:
                self._dispatch, self._killed = None, lambda: False
                self._acl_check, self._note = None, None
                env[b"KEYS"] = env[b"ARGV"] = None

    def _error_reply(self, err: Any, sha: bytes) -> bytes:
        rawget = self._rawget
        if self._lua_type(err) == "table":
            message = rawget(err, b"err")
            source = rawget(err, b"source")
            line = rawget(err, b"line")
        else:  # Lua raised a string without the handler (out of memory)
            message, source, line = b"ERR %s" % _lua_text_or_bytes(err), None, None
        text = (message if isinstance(message, bytes)
                else _format_number(message) if isinstance(message, (int, float))
                else b"ERR unknown error")
        where = b""
        if source is not None:
            where = b", on %s:%s" % (source, _format_number(line) if line is not None else b"?")
        reply = b"%s script: %s%s." % (text, sha, where)
        reply = b"-" + reply.replace(b"\r", b" ").replace(b"\n", b" ") + b"\r\n"
        if self._lua_type(err) == "table" and rawget(err, _PRE_COUNTED) is True:
            return PreCounted(reply)
        return reply

    def protected(self, fn: Any, killed: Callable[[], bool]) -> tuple[bool, Any]:
        """Run ``fn`` (no redis.call) as a script runs, under the kill hook
        and the memory cap: (True, its result) or (False, its error table
        or a string). For FUNCTION LOAD (services/lua_functions.py)."""
        with self.lock:
            self._killed = killed
            lua = self._lua
            lua.set_max_memory(self._max_memory)
            try:
                ok, result = self._run(fn)
            except _lupa.LuaError as exc:
                return False, str(exc).encode()
            finally:
                lua.set_max_memory(0)
                self._killed = lambda: False
            return bool(ok), result

    def error_text(self, err: Any) -> bytes:
        """The err field of an error table (``ERR <text>`` for a string)."""
        if self._lua_type(err) == "table":
            field = self._rawget(err, b"err")
            if isinstance(field, bytes):
                return field
        return b"ERR " + _lua_text_or_bytes(err)

    @property
    def runtime(self) -> Any:
        """The lupa LuaRuntime (for services/lua_functions.py)."""
        return self._lua

    @property
    def env(self) -> Any:
        """What scripts see as their globals (a Lua table)."""
        return self._env

    def flush(self) -> None:
        """SCRIPT FLUSH: collect what dropped scripts held."""
        with self.lock:
            self._reset_libs()
            self._lua.execute("collectgarbage()")

    def memory(self) -> int:
        """Bytes Lua holds (INFO used_memory_lua)."""
        return int(self._lua.get_memory_used() or 0)

    # -- callbacks from Lua -----------------------------------------------------------------
    def _py_killed(self) -> bool:
        return self._killed()

    def _raise(self, text: bytes) -> NoReturn:
        raise _RedisError(self._table_from({b"err": b"ERR " + text}))

    def _py_log(self, *args: Any) -> None:
        if len(args) < 2:
            self._raise(b"redis.log() requires two arguments or more.")
        level = args[0]
        if not isinstance(level, (int, float)) or isinstance(level, bool):
            self._raise(b"First argument must be a number (log level).")
        if not 0 <= level <= 3:
            self._raise(b"Invalid debug level.")
        text = b" ".join(a if isinstance(a, bytes) else _lua_text(a) for a in args[1:])
        self._logs[int(level)]("script: %s", text.decode("utf-8", "replace"))

    def _py_sha1(self, *args: Any) -> bytes:
        if len(args) != 1:
            self._raise(b"wrong number of arguments")
        arg = args[0]
        return sha1hex(arg if isinstance(arg, bytes) else _lua_text(arg))

    def _py_setresp(self, *args: Any) -> None:
        if len(args) != 1:
            self._raise(b"redis.setresp() requires one argument.")
        if args[0] not in (2, 3) or isinstance(args[0], bool):
            self._raise(b"RESP version must be 2 or 3.")
        self.resp = int(args[0])

    def _py_call(self, *args: Any) -> Any:
        """redis.call: the reply as Lua, or raise its {err=...} table."""
        ok, value = self._call(args)
        if not ok:
            raise _RedisError(value)
        return value

    def _py_pcall(self, *args: Any) -> Any:
        """redis.pcall: the reply as Lua, an error as its {err=...} table."""
        return self._call(args)[1]

    def _py_call_packed(self, count: int, packed: Any) -> Any:
        """redis.call with PACK_AT arguments or more, given as a table."""
        return self._py_call(*(packed[index] for index in range(1, count + 1)))

    def _py_pcall_packed(self, count: int, packed: Any) -> Any:
        return self._py_pcall(*(packed[index] for index in range(1, count + 1)))

    def _py_acl_check(self, *args: Any) -> bool:
        """redis.acl_check_cmd: may the script's caller run this command?"""
        argv = self._argv(args)
        if isinstance(argv, tuple):
            raise _RedisError(argv[1])
        allowed = True if self._acl_check is None else self._acl_check(argv)
        if allowed is None:
            self._raise(b"Invalid command passed to redis.acl_check_cmd()")
        return allowed

    def _error(self, text: bytes) -> tuple[bool, Any]:
        return False, self._table_from({b"err": text})

    def _call(self, args: tuple[Any, ...]) -> tuple[bool, Any]:
        """(True, the reply as Lua) or (False, {err=...})."""
        argv = self._argv(args)
        if isinstance(argv, tuple):
            return argv
        assert self._dispatch is not None
        reply = self._dispatch(argv)
        value, _ = self._parse(reply, 0, top=True)
        if isinstance(value, _Failure):
            # Counted when the command answered it (dispatch): the script
            # passing it on is not counted again (Redis's field of that name).
            return False, self._table_from({b"err": value.text, _PRE_COUNTED: True})
        return True, value

    def _argv(self, args: tuple[Any, ...]) -> list[bytes] | tuple[bool, Any]:
        """A redis lib call's arguments as a command, or (False, {err=...})."""
        if not args:
            return self._error(b"ERR Please specify at least one argument for this redis lib "
                               b"call")
        argv: list[bytes] = []
        for arg in args:
            if isinstance(arg, bytes):
                argv.append(arg)
            elif isinstance(arg, (int, float)) and not isinstance(arg, bool):
                argv.append(_format_number(arg))
            else:
                return self._error(b"ERR Lua redis lib command arguments must be strings or "
                                   b"integers")
        return argv

    # -- Redis -> Lua ----------------------------------------------------------------
    def _parse(self, data: bytes, pos: int, top: bool = False) -> tuple[Any, int]:
        """One RESP reply at ``pos`` as a Lua value (Redis's conversion)."""
        kind = data[pos:pos + 1]
        end = data.index(b"\r\n", pos)
        head = data[pos + 1:end]
        pos = end + 2
        resp3 = self.resp == 3
        if kind == b"+":
            return self._table_from({b"ok": head}), pos
        if kind == b"-":
            text = _error_text(head)
            if top:
                return _Failure(text), pos
            return self._table_from({b"err": text}), pos
        if kind == b":":
            return int(head), pos
        if kind in (b"$", b"="):
            size = int(head)
            if size < 0:
                return (None if resp3 else False), pos
            body = data[pos:pos + size]
            pos += size + 2
            if kind == b"=":
                fmt, _, text = body.partition(b":")
                inner = self._table_from({b"format": fmt, b"string": text})
                return self._table_from({b"verbatim_string": inner}), pos
            return body, pos
        if kind == b"_":
            return None, pos
        if kind == b"#":
            return head == b"t", pos
        if kind == b",":
            return self._table_from({b"double": float(head)}), pos
        if kind == b"(":
            return self._table_from({b"big_number": head}), pos
        count = int(head)
        if count < 0:
            return (None if resp3 else False), pos
        if kind in (b"*", b">"):
            items = []
            for _ in range(count):
                item, pos = self._parse(data, pos)
                items.append(item)
            return self._table_from(items), pos
        if kind == b"%":
            mapping = {}
            for _ in range(count):
                key, pos = self._parse(data, pos)
                mapping[key], pos = self._parse(data, pos)
            return self._table_from({b"map": self._table_from(mapping)}), pos
        if kind == b"~":
            members = {}
            for _ in range(count):
                member, pos = self._parse(data, pos)
                members[member] = True
            return self._table_from({b"set": self._table_from(members)}), pos
        raise ValueError(f"unexpected RESP type {kind!r}")

    # -- Lua -> Redis --------------------------------------------------------------------
    def to_resp(self, value: Any, proto: int, depth: int = 0) -> bytes:
        """A script's result as the caller's reply (Redis's conversion)."""
        if value is None:
            return b"_\r\n" if proto >= 3 else b"$-1\r\n"
        if value is True or value is False:
            if self.resp == 2:
                if value:
                    return b":1\r\n"
                return b"_\r\n" if proto >= 3 else b"$-1\r\n"
            if proto >= 3:
                return b"#t\r\n" if value else b"#f\r\n"
            return b":1\r\n" if value else b":0\r\n"
        if isinstance(value, (int, float)):
            return b":%d\r\n" % _integer(value)
        if isinstance(value, bytes):
            return b"$%d\r\n%b\r\n" % (len(value), value)
        if self._lua_type(value) != "table":
            return b"_\r\n" if proto >= 3 else b"$-1\r\n"  # functions, userdata
        if depth >= MAX_REPLY_DEPTH:
            return b"-ERR reached lua stack limit\r\n"
        rawget = self._rawget
        field = rawget(value, b"err")
        if isinstance(field, bytes):
            reply = b"-" + field.replace(b"\r", b" ").replace(b"\n", b" ") + b"\r\n"
            counted = rawget(value, _PRE_COUNTED) is True
            if depth == 0:
                return PreCounted(reply) if counted else reply
            # An error inside the reply: Redis counts it too.
            self._nested_errors = True
            if not counted and self._note is not None:
                self._note(reply)
            return reply
        field = rawget(value, b"ok")
        if isinstance(field, bytes):
            return b"+" + field.replace(b"\r", b" ").replace(b"\n", b" ") + b"\r\n"
        field = rawget(value, b"double")
        if isinstance(field, (int, float)) and not isinstance(field, bool):
            text = _format_double(float(field))
            if proto >= 3:
                return b",%b\r\n" % text
            return b"$%d\r\n%b\r\n" % (len(text), text)
        field = rawget(value, b"big_number")
        if isinstance(field, bytes):
            if proto >= 3:
                return b"(%b\r\n" % field
            return b"$%d\r\n%b\r\n" % (len(field), field)
        field = rawget(value, b"map")
        if self._lua_type(field) == "table":
            pairs = list(field.items())
            parts = [b"%%%d\r\n" % len(pairs) if proto >= 3 else b"*%d\r\n" % (2 * len(pairs))]
            for key, item in pairs:
                parts.append(self.to_resp(key, proto, depth + 1))
                parts.append(self.to_resp(item, proto, depth + 1))
            return b"".join(parts)
        field = rawget(value, b"set")
        if self._lua_type(field) == "table":
            members = list(field.keys())
            parts = [(b"~%d\r\n" if proto >= 3 else b"*%d\r\n") % len(members)]
            parts.extend(self.to_resp(member, proto, depth + 1) for member in members)
            return b"".join(parts)
        items = []
        index = 1
        while True:
            item = rawget(value, index)
            if item is None:
                break
            items.append(self.to_resp(item, proto, depth + 1))
            index += 1
        return b"*%d\r\n" % len(items) + b"".join(items)


class _RedisError(Exception):
    """Raised by a callback to make Lua raise ``value`` (an error table, or
    a string as a C library's luaL_error raises)."""

    def __init__(self, value: Any) -> None:
        super().__init__("redis error")
        self.value = value


def _unwrap(err: Any) -> Any:
    """The error value a callback raised; anything else as is."""
    return err.value if isinstance(err, _RedisError) else err


def _raising(fn: Callable[..., Any]) -> Callable[..., Any]:
    """A library function whose LibError becomes a Lua string error."""
    def call(*args: Any) -> Any:
        try:
            return fn(*args)
        except lua_libs.LibError as exc:
            raise _RedisError(str(exc).encode()) from None
    return call


def _lua_text_or_bytes(value: Any) -> bytes:
    return value if isinstance(value, bytes) else _lua_text(value)


def _lua_text(value: Any) -> bytes:
    """Lua's tostring of a non-string value (numbers: %.14g)."""
    if value is None:
        return b"nil"
    if value is True or value is False:
        return b"true" if value else b"false"
    if isinstance(value, int):
        return b"%d" % value
    if isinstance(value, float):
        return b"%.14g" % value
    return repr(value).encode()


#: The field Redis sets in the error table of a command's error reply
#: (script_lua.c): that error was counted already (core/error_stats.py).
_PRE_COUNTED = b"ignore_error_stats_update"


class _Failure:
    """An error reply at the top of a redis.call result."""

    __slots__ = ("text",)

    def __init__(self, text: bytes) -> None:
        self.text = text


def _error_text(line: bytes) -> bytes:
    """A command's error reply (without its '-') as the err field: Redis's
    luaPushErrorBuff keeps the code, or adds ERR when there is none."""
    code, space, text = line.partition(b" ")
    if not space:
        return b"ERR " + line
    return code + b" " + text


def _format_double(value: float) -> bytes:
    if math.isnan(value):
        return b"nan"
    if math.isinf(value):
        return b"inf" if value > 0 else b"-inf"
    return b"%.17g" % value
