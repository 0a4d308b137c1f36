"""FUNCTION libraries in the Lua engine: parse, load, register, look up.

A library is Lua code whose first line is ``#!lua name=<library>``. Loading
it runs the code once, as Redis 7.0 does, in a restricted environment: its
globals are only ``redis.register_function``, ``redis.log``, the ``LOG_*``
levels and ``REDIS_VERSION(_NUM)`` (anything else, ``redis.call``
included, raises ``Script attempted to access nonexistent global variable``);
it must register at least one function, and it is stopped after
:data:`LOAD_TIMEOUT` seconds. Afterwards the same globals table shows the
functions what a script sees (services/lua_engine.py), without ``KEYS`` and
``ARGV``: a function gets its keys and arguments as its two parameters.

:class:`Libraries` holds one engine's compiled libraries, in sync with the
code the store keeps (storage/functions.py): a restarted server or another
service on the same store compiles them on first use. Texts are Redis
7.0's (tests/services/test_functions_differential.py compares them).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from sockworks.protocols.resp import split_inline
from sockworks.services.lua_engine import ScriptError

if TYPE_CHECKING:
    from sockworks.services.lua_engine import LuaEngine
    from sockworks.storage.functions import FunctionLibraries

__all__ = ["LOAD_TIMEOUT", "MAX_LIBRARIES_BYTES", "Function", "Library", "Libraries",
           "parse_metadata"]

logger = logging.getLogger(__name__)

#: Redis's LOAD_TIMEOUT_MS (500 ms): a library's load code running longer fails.
LOAD_TIMEOUT: Final = 0.5
#: Total code of the loaded libraries. Redis has no limit; one here keeps a
#: client from filling memory and the log with libraries (docs/resp.md).
MAX_LIBRARIES_BYTES: Final = 16 * 1024 * 1024
CHUNK: Final = b"@user_function"

_NAME_RULE: Final = (b"Library names can only contain letters, numbers, or underscores(_) "
                     b"and must be at least one character long")

_LOADER: Final = r"""
local env, registered, version, version_num, log = ...
local error, type, tostring, setmetatable, next = error, type, tostring, setmetatable, next
local loading = false

local function deny() error('Attempt to modify a readonly table', 2) end
local function strict(t)
  return setmetatable({}, {
    __index = function(_, name)
      local value = t[name]
      if value == nil then
        error("Script attempted to access nonexistent global variable '" .. tostring(name)
              .. "'", 2)
      end
      return value
    end,
    __newindex = deny, __metatable = false})
end
local function fail(text) error({err = 'ERR ' .. text}) end

local function valid_name(name)
  return #name > 0 and not name:find('[^%w_]')
end
local known_flags = {['no-writes'] = true, ['allow-oom'] = true, ['allow-stale'] = true,
                     ['no-cluster'] = true, ['allow-cross-slot-keys'] = true}

local function register(...)
  if not loading then
    fail('redis.register_function can only be called on FUNCTION LOAD command')
  end
  local n = select('#', ...)
  local name, callback, flags, description
  if n == 1 then
    local args = ...
    if type(args) ~= 'table' then
      fail('calling redis.register_function with a single argument is only applicable to ' ..
           'Lua table (representing named arguments).')
    end
    for key, value in next, args do
      if type(key) ~= 'string' then
        fail('named argument key given to redis.register_function is not a string')
      end
      if key == 'function_name' then
        if type(value) ~= 'string' and type(value) ~= 'number' then
          fail('function_name argument given to redis.register_function must be a string')
        end
        name = tostring(value)
      elseif key == 'description' then
        if type(value) ~= 'string' and type(value) ~= 'number' then
          fail('description argument given to redis.register_function must be a string')
        end
        description = tostring(value)
      elseif key == 'callback' then
        if type(value) ~= 'function' then
          fail('callback argument given to redis.register_function must be a function')
        end
        callback = value
      elseif key == 'flags' then
        if type(value) ~= 'table' then
          fail('flags argument to redis.register_function must be a table representing ' ..
               'function flags')
        end
        flags = {}
        for _, flag in next, value do
          if type(flag) ~= 'string' or not known_flags[flag] then fail('unknown flag given') end
          flags[#flags + 1] = flag
        end
      else
        fail('unknown argument given to redis.register_function')
      end
    end
    if name == nil then fail('redis.register_function must get a function name argument') end
    if callback == nil then fail('redis.register_function must get a callback argument') end
  elseif n == 2 then
    local first, second = ...
    if type(first) ~= 'string' and type(first) ~= 'number' then
      fail('first argument to redis.register_function must be a string')
    end
    if type(second) ~= 'function' then
      fail('second argument to redis.register_function must be a function')
    end
    name, callback = tostring(first), second
  else
    fail('wrong number of arguments to redis.register_function')
  end
  if not valid_name(name) then
    fail('Library names can only contain letters, numbers, or underscores(_) and must be ' ..
         'at least one character long')
  end
  for i = 1, #registered do
    if registered[i].name == name then fail('Function already exists in the library') end
  end
  registered[#registered + 1] = {name = name, callback = callback, flags = flags or {},
                                 description = description}
end

local api = {redis = strict({
  register_function = register, log = log,
  LOG_DEBUG = 0, LOG_VERBOSE = 1, LOG_NOTICE = 2, LOG_WARNING = 3,
  REDIS_VERSION = version, REDIS_VERSION_NUM = version_num})}

-- A library's globals: the loader API while it loads, a script's after.
local globals = setmetatable({}, {
  __index = function(_, name)
    local value
    if loading then value = api[name] else value = env[name] end
    if value == nil then
      error("Script attempted to access nonexistent global variable '" .. tostring(name) .. "'", 2)
    end
    return value
  end,
  __newindex = deny, __metatable = false})

local function prepare(fn)
  setfenv(fn, globals)
  for i = #registered, 1, -1 do registered[i] = nil end
  loading = true
  return function() local ok, err = pcall(fn) loading = false if not ok then error(err, 0) end end
end
local function invoke(callback, keys, args)
  return function() return callback(keys, args) end
end
return prepare, invoke
"""


@dataclass(frozen=True, slots=True)
class Function:
    """One registered function (FUNCTION LIST shows its fields)."""

    name: bytes
    library: bytes
    callback: Any
    flags: tuple[str, ...]
    description: bytes | None


@dataclass(frozen=True, slots=True)
class Library:
    """A loaded library: its code and functions by name."""

    name: bytes
    code: bytes
    functions: dict[bytes, Function]


def parse_metadata(code: bytes) -> tuple[bytes, bytes]:
    """(library name, the code Lua compiles: the first line blanked);
    ScriptError with Redis's text when the ``#!`` line is wrong."""
    if not code.startswith(b"#!"):
        raise ScriptError(b"-ERR Missing library metadata\r\n")
    line, newline, rest = code.partition(b"\n")
    if not newline:
        raise ScriptError(b"-ERR Invalid library metadata\r\n")
    # Split as Redis does (sdssplitargs): quotes allowed, name="foo" is foo.
    parts = split_inline(line)
    if not parts:
        raise ScriptError(b"-ERR Invalid library metadata\r\n")
    engine = parts[0][2:]
    if engine.lower() != b"lua":
        raise ScriptError(b"-ERR Engine '" + engine + b"' not found\r\n")
    name: bytes | None = None
    for part in parts[1:]:
        if part[:5].lower() != b"name=":
            raise ScriptError(b"-ERR Invalid metadata value given: " + part + b"\r\n")
        if name is not None:
            raise ScriptError(b"-ERR Invalid metadata value, name argument was given multiple "
                              b"times\r\n")
        name = part[5:]
    if name is None:
        raise ScriptError(b"-ERR Library name was not given\r\n")
    if not name or not all(c == 0x5F or (chr(c).isalnum() and c < 0x80) for c in name):
        raise ScriptError(b"-ERR " + _NAME_RULE + b"\r\n")
    return name, newline + rest


class Libraries:
    """One engine's compiled libraries (module docstring)."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self._version = -1
        self.libraries: dict[bytes, Library] = {}
        #: Lower-case function name -> function (Redis looks them up
        #: case-insensitively).
        self.functions: dict[bytes, Function] = {}
        self._lua: tuple[Any, Any] | None = None

    def _helpers(self, engine: LuaEngine) -> tuple[Any, Any]:
        if self._lua is None:
            lua = engine.runtime
            self._registered = lua.table()
            redis = engine.env[b"redis"]
            self._lua = lua.execute(_LOADER, engine.env, self._registered,
                                    redis[b"REDIS_VERSION"], redis[b"REDIS_VERSION_NUM"],
                                    redis[b"log"])
        return self._lua

    def compile(self, engine: LuaEngine, code: bytes) -> Library:
        """Run a library's code; ScriptError with Redis's reply on failure."""
        name, source = parse_metadata(code)
        prepare, _ = self._helpers(engine)
        lua = engine.runtime
        with engine.lock:
            compiled = lua.globals().loadstring(source, CHUNK)
            fn, err = compiled if isinstance(compiled, tuple) else (compiled, None)
            if fn is None:
                message = err.decode("utf-8", "replace") if isinstance(err, bytes) else str(err)
                raise ScriptError(b"-ERR Error compiling function: "
                                  + message.replace("\r", " ").replace("\n", " ").encode()
                                  + b"\r\n")
            fn = engine.untail(fn)  # errors name the library's line (lua_engine)
            deadline = time.monotonic() + LOAD_TIMEOUT
            timed_out = False

            def killed() -> bool:
                nonlocal timed_out
                timed_out = time.monotonic() > deadline
                return timed_out
            ok, result = engine.protected(prepare(fn), killed)
            if not ok:
                text = b"ERR FUNCTION LOAD timeout" if timed_out else engine.error_text(result)
                raise ScriptError(b"-ERR Error registering functions: "
                                  + text.replace(b"\r", b" ").replace(b"\n", b" ") + b"\r\n")
            functions: dict[bytes, Function] = {}
            registered = self._registered
            for index in range(1, len(registered) + 1):
                entry = registered[index]
                fname = entry[b"name"]
                given = entry[b"flags"]
                flags = tuple(given[i].decode() for i in range(1, len(given) + 1))
                functions[fname] = Function(fname, name, entry[b"callback"], flags,
                                            entry[b"description"])
        if not functions:
            raise ScriptError(b"-ERR No functions registered\r\n")
        return Library(name, code, functions)

    def invoke(self, engine: LuaEngine, function: Function, keys: list[bytes],
               args: list[bytes]) -> Any:
        """A Lua function calling ``function(keys, args)``."""
        _, invoke = self._helpers(engine)
        lua = engine.runtime
        return invoke(function.callback, lua.table_from(keys), lua.table_from(args))

    # -- the loaded set, in sync with the store's ------------------------------
    def sync(self, engine: LuaEngine, store: FunctionLibraries) -> None:
        """Compile what the store holds if it changed since (lock held)."""
        if store.version == self._version:
            return  # the common case: no copy, no store lock
        version, codes = store.current()
        if version == self._version:
            return
        libraries: dict[bytes, Library] = {}
        for name, code in codes.items():
            known = self.libraries.get(name)
            if known is not None and known.code == code:
                libraries[name] = known
                continue
            try:
                libraries[name] = self.compile(engine, code)
            except ScriptError as exc:  # loaded once; cannot fail unless lupa changed
                logger.error("library %r no longer loads: %s", name,
                                                  exc.reply)
        self._install(libraries)
        self._version = version

    def _install(self, libraries: dict[bytes, Library]) -> None:
        self.libraries = libraries
        self.functions = {fname.lower(): function for library in libraries.values()
                          for fname, function in library.functions.items()}

    def code_size(self) -> int:
        return sum(len(library.code) for library in self.libraries.values())

    def collision(self, library: Library) -> bytes | None:
        """The first function of ``library`` another library has."""
        for fname in library.functions:
            known = self.functions.get(fname.lower())
            if known is not None and known.library != library.name:
                return fname
        return None

    def mark_synced(self, store: FunctionLibraries, libraries: dict[bytes, Library]) -> None:
        """After this engine changed the store itself: its new set."""
        self._install(libraries)
        self._version = store.version
