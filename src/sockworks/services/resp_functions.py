"""FCALL, FCALL_RO and FUNCTION on the RESP port (Redis 7 Functions).

The libraries' code lives in the store (storage/functions.py: logged, so
they survive a restart and a log compaction); each service compiles them
in its Lua engine (services/lua_functions.py). FCALL shares EVAL's
machinery (services/resp_scripting.py): the function runs alone on the
store through ``CommandContext.run_script``, its writes logged as one
record, BUSY after busy-reply-threshold, FUNCTION KILL while it has not
written. FCALL_RO and functions flagged ``no-writes`` refuse writes.
Replies and error texts are Redis 7.0's
(tests/services/test_functions_differential.py).
"""

from __future__ import annotations

import time
from typing import Any, Final

from sockworks.protocols.resp import OK, Map, RespSet, SimpleString, encode
from sockworks.services import function_dump
from sockworks.services.lua_engine import ScriptError
from sockworks.services.lua_functions import (
    MAX_LIBRARIES_BYTES,
    Libraries,
    Library,
    parse_metadata,
)
from sockworks.services.resp_commands import (
    OOM_REPLY,
    error_quoting,
    quoted,
    unknown_subcommand,
    wrong_args,
)
from sockworks.services.resp_context import CommandContext as Ctx
from sockworks.services.resp_context import Plan
from sockworks.services.resp_scripting import (
    NOTBUSY,
    SLOW_EVAL,
    UNKILLABLE,
    Scripts,
    acl_allows,
    call_command,
    forwarded,
    parse_numkeys,
    refused_to_start,
    scripting,
)
from sockworks.storage.functions import FunctionLibraries
from sockworks.storage.gate import ExclusiveRun
from sockworks.storage.glob import compile_glob

__all__ = ["cmd_fcall", "cmd_fcall_ro", "cmd_function"]

_NOT_FOUND: Final = b"-ERR Function not found\r\n"
_BAD_KEYS: Final = b"-ERR Bad number of keys provided\r\n"
_WRITE_FLAG: Final = b"-ERR Can not execute a script with write flag using *_ro command.\r\n"
_LIBRARY_NOT_FOUND: Final = b"-ERR Library not found\r\n"
_FLUSH_OPTION: Final = b"-ERR FUNCTION FLUSH only supports SYNC|ASYNC option\r\n"
_CODE_MISSING: Final = b"-ERR Function code is missing\r\n"
_TOO_BIG: Final = (b"-ERR the loaded libraries would exceed %d bytes of code "
                   b"(FUNCTION DELETE or FLUSH some first)\r\n" % MAX_LIBRARIES_BYTES)

_HELP: Final = (
    "FUNCTION <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "LOAD [REPLACE] <FUNCTION CODE>",
    "    Create a new library with the given library name and code.",
    "DELETE <LIBRARY NAME>",
    "    Delete the given library.",
    "LIST [LIBRARYNAME PATTERN] [WITHCODE]",
    "    Return general information on all the libraries:",
    "    * Library name",
    "    * The engine used to run the Library",
    "    * Library description",
    "    * Functions list",
    "    * Library code (if WITHCODE is given)",
    "    It also possible to get only function that matches a pattern using LIBRARYNAME "
    "argument.",
    "STATS",
    "    Return information about the current function running:",
    "    * Function name",
    "    * Command used to run the function",
    "    * Duration in MS that the function is running",
    "    If no function is running, return nil",
    "    In addition, returns a list of available engines.",
    "KILL",
    "    Kill the current running function.",
    "FLUSH [ASYNC|SYNC]",
    "    Delete all the libraries.",
    "    When called without the optional mode argument, the behavior is determined by the",
    "    lazyfree-lazy-user-flush configuration directive. Valid modes are:",
    "    * ASYNC: Asynchronously flush the libraries.",
    "    * SYNC: Synchronously flush the libraries.",
    "DUMP",
    "    Return a serialized payload representing the current libraries, can be restored "
    "using FUNCTION RESTORE command",
    "RESTORE <PAYLOAD> [FLUSH|APPEND|REPLACE]",
    "    Restore the libraries represented by the given payload, it is possible to give a "
    "restore policy to",
    "    control how to handle existing libraries (default APPEND):",
    "    * FLUSH: delete all existing libraries.",
    "    * APPEND: appends the restored libraries to the existing libraries. On collision, "
    "abort.",
    "    * REPLACE: appends the restored libraries to the existing libraries, On collision, "
    "replace the old",
    "      libraries with the new libraries (notice that even on this option there is a "
    "chance of failure",
    "      in case of functions name collision with another library).",
    "HELP",
    "    Prints this help.",
)

#: FUNCTION's subcommands and their arities (Redis's).
_ARITY: Final = {b"load": -3, b"delete": 3, b"flush": -2, b"list": -2, b"stats": 2,
                 b"kill": 2, b"help": 2, b"dump": 2, b"restore": -3}


def _libraries(s: Ctx) -> tuple[Scripts, Libraries, FunctionLibraries] | bytes:
    """The engine's libraries synced with the store's, or why there are none."""
    scripts = scripting(s)
    if isinstance(scripts, bytes):
        return scripts
    store = s.store.function_libraries
    assert store is not None  # a store with a script gate keeps libraries
    libraries = scripts.libraries
    with libraries.lock:
        libraries.sync(scripts.engine, store)
    return scripts, libraries, store


def _fcall(s: Ctx, argv: list[bytes], *, read_only: bool) -> bytes | Plan[bytes]:
    if s.store.passthrough:
        return forwarded(s, argv, write=not read_only)
    found = _libraries(s)
    if isinstance(found, bytes):
        return found
    scripts, libraries, _ = found
    function = libraries.functions.get(argv[1].lower())
    if function is None:
        return _NOT_FOUND
    refusal = refused_to_start(s, function.flags, argv)
    if refusal is not None:
        return refusal
    numkeys = parse_numkeys(argv, _BAD_KEYS)
    if isinstance(numkeys, bytes):
        return numkeys
    no_writes = "no-writes" in function.flags
    if read_only and not no_writes:
        return _WRITE_FLAG
    keys, args = argv[3:3 + numkeys], argv[3 + numkeys:]
    engine = scripts.engine
    command = list(argv)

    def job(run: ExclusiveRun) -> bytes:
        run.function = (function.name, command)
        run.allow_oom = "allow-oom" in function.flags

        def dispatch(call: list[bytes]) -> bytes:
            return call_command(s, call, no_writes, run, engine.resp)
        with engine.lock:
            fn = libraries.invoke(engine, function, keys, args)
            return engine.run(fn, function.name, keys, args, s.proto, dispatch,
                              lambda: run.killed, globals_=False,
                              acl_check=lambda call: acl_allows(s, call),
                              note=s.server.error_stats.note)
    return s.run_script(job)


def cmd_fcall(s: Ctx, argv: list[bytes]) -> bytes | Plan[bytes]:
    return _fcall(s, argv, read_only=False)


def cmd_fcall_ro(s: Ctx, argv: list[bytes]) -> bytes | Plan[bytes]:
    return _fcall(s, argv, read_only=True)


def cmd_function(s: Ctx, argv: list[bytes]) -> bytes | Plan[bytes]:
    sub = argv[1].lower()
    n = len(argv)
    arity = _ARITY.get(sub)
    if arity is None:
        return unknown_subcommand(argv)
    if n != arity if arity >= 0 else n < -arity:
        return wrong_args(f"function|{sub.decode()}")
    if sub == b"help":
        return b"*%d\r\n" % len(_HELP) + b"".join(
            b"+" + line.encode() + b"\r\n" for line in _HELP)
    if s.store.passthrough:
        return forwarded(s, argv, write=sub in (b"load", b"delete", b"flush", b"restore"))
    if sub in (b"stats", b"kill"):
        # Answered while a function holds the store (and its lock): neither
        # touches the store; STATS counts what this engine compiled.
        scripts = scripting(s)
        if isinstance(scripts, bytes):
            return scripts
        return _stats(s, scripts.libraries) if sub == b"stats" else _kill(s)
    found = _libraries(s)
    if isinstance(found, bytes):
        return found
    scripts, libraries, store = found
    if sub in (b"load", b"restore") and not s.store.make_room(sum(map(len, argv))):
        return OOM_REPLY  # Redis's denyoom (this store's used memory counts the code)
    if sub == b"load":
        return _load(scripts, libraries, store, argv)
    if sub == b"delete":
        with libraries.lock:
            if argv[2] not in libraries.libraries:
                return _LIBRARY_NOT_FOUND
            remaining = dict(libraries.libraries)
            del remaining[argv[2]]
            store.delete(argv[2])
            libraries.mark_synced(store, remaining)
        return OK
    if sub == b"flush":
        if n > 3:
            return error_quoting(f"ERR unknown subcommand or wrong number of arguments for "
                                 f"'{quoted(argv[1])}'. Try FUNCTION HELP.")
        if n == 3 and argv[2].lower() not in (b"sync", b"async"):
            return _FLUSH_OPTION
        with libraries.lock:
            store.flush()
            libraries.mark_synced(store, {})
        return OK
    if sub == b"list":
        return _list(s, libraries, argv)
    if sub == b"dump":
        with libraries.lock:
            payload = function_dump.dump(lib.code for lib in libraries.libraries.values())
        return b"$%d\r\n%b\r\n" % (len(payload), payload)

    return _restore(s, scripts, libraries, store, argv)


def _load(scripts: Scripts, libraries: Libraries, store: FunctionLibraries,
          argv: list[bytes]) -> bytes:
    replace = False
    pos = 2
    while pos < len(argv) - 1:
        option = argv[pos]
        pos += 1
        if option.lower() == b"replace":
            replace = True
            continue
        return encode_error_text(b"ERR Unknown option given: " + option)
    if pos >= len(argv):
        return _CODE_MISSING
    code = argv[pos]
    with libraries.lock:
        try:
            name, _ = parse_metadata(code)
            old = libraries.libraries.get(name)
            if old is not None and not replace:
                return encode_error_text(b"ERR Library '" + name + b"' already exists")
            library = libraries.compile(scripts.engine, code)
        except ScriptError as exc:
            return exc.reply
        clash = libraries.collision(library)
        if clash is not None:
            return encode_error_text(b"ERR Function " + clash + b" already exists")
        size = libraries.code_size() - (len(old.code) if old is not None else 0)
        if size + len(code) > MAX_LIBRARIES_BYTES:
            return _TOO_BIG
        updated: dict[bytes, Library] = dict(libraries.libraries)
        updated[library.name] = library
        store.load(library.name, code)
        libraries.mark_synced(store, updated)
    return b"$%d\r\n%b\r\n" % (len(library.name), library.name)


def _restore(s: Ctx, scripts: Scripts, libraries: Libraries, store: FunctionLibraries,
             argv: list[bytes]) -> bytes:
    if len(argv) > 4:
        return error_quoting(f"ERR unknown subcommand or wrong number of arguments for "
                             f"'{quoted(argv[1])}'. Try FUNCTION HELP.")
    policy = argv[3].lower() if len(argv) == 4 else b"append"
    if policy not in (b"append", b"replace", b"flush"):
        return (b"-ERR Wrong restore policy given, value should be either FLUSH, APPEND or "
                b"REPLACE.\r\n")
    try:
        codes = function_dump.parse(argv[2])
    except function_dump.PayloadError as exc:
        return encode_error_text(b"ERR " + str(exc).encode())
    with libraries.lock:
        # Compiled into a set of their own first (Redis's new library context).
        restored: dict[bytes, Library] = {}
        names: set[bytes] = set()
        for code in codes:
            try:
                name, _ = parse_metadata(code)
                if name in restored:
                    return encode_error_text(b"ERR Library '" + name + b"' already exists")
                library = libraries.compile(scripts.engine, code)
            except ScriptError as exc:
                return exc.reply
            for fname in library.functions:
                if fname.lower() in names:
                    return encode_error_text(b"ERR Function " + fname + b" already exists")
                names.add(fname.lower())
            restored[name] = library
        updated: dict[bytes, Library] = {} if policy == b"flush" else dict(libraries.libraries)
        for name in restored:
            if name in updated:
                if policy == b"append":
                    return encode_error_text(b"ERR Library " + name + b" already exists")
                del updated[name]
        for library in restored.values():
            for fname in library.functions:
                for other in updated.values():
                    if any(known.lower() == fname.lower() for known in other.functions):
                        return encode_error_text(b"ERR Function " + fname
                                                 + b" already exists")
        updated.update(restored)
        if sum(len(lib.code) for lib in updated.values()) > MAX_LIBRARIES_BYTES:
            return _TOO_BIG

        def apply(_: object) -> None:
            if policy == b"flush":
                store.flush()
            for library in restored.values():
                store.load(library.name, library.code)
        s.store.run_isolated(apply)  # one log record: all of it or none
        libraries.mark_synced(store, updated)
    return OK


def encode_error_text(text: bytes) -> bytes:
    return b"-" + text.replace(b"\r", b" ").replace(b"\n", b" ") + b"\r\n"


def _list(s: Ctx, libraries: Libraries, argv: list[bytes]) -> bytes:
    with_code = False
    pattern: bytes | None = None
    pos = 2
    while pos < len(argv):
        arg = argv[pos]
        if not with_code and arg.lower() == b"withcode":
            with_code = True
        elif pattern is None and arg.lower() == b"libraryname":
            if pos >= len(argv) - 1:
                return b"-ERR library name argument was not given\r\n"
            pos += 1
            pattern = argv[pos]
        else:
            return encode_error_text(b"ERR Unknown argument " + arg)
        pos += 1
    match = compile_glob(pattern) if pattern is not None else None
    reply: list[Any] = []
    with libraries.lock:
        for library in libraries.libraries.values():
            if match is not None and not match(library.name):
                continue
            fields: list[tuple[Any, Any]] = [
                ("library_name", library.name), ("engine", "LUA"),
                ("functions", [Map([("name", f.name), ("description", f.description),
                                    ("flags", RespSet([SimpleString(flag) for flag in f.flags]))])
                               for f in library.functions.values()]),
            ]
            if with_code:
                fields.append(("library_code", library.code))
            reply.append(Map(fields))
    return encode(reply, s.proto)


def _stats(s: Ctx, libraries: Libraries) -> bytes:
    gate = s.store.script_gate
    run = gate.running if gate is not None else None
    running: Any = None
    if run is not None and run.function is not None:
        name, command = run.function
        running = Map([("name", name), ("command", command),
                       ("duration_ms", int((time.monotonic() - run.started) * 1000))])
    counts = Map([("libraries_count", len(libraries.libraries)),
                  ("functions_count", len(libraries.functions))])
    return encode(Map([("running_script", running), ("engines", Map([("LUA", counts)]))]),
                  s.proto)


def _kill(s: Ctx) -> bytes:
    gate = s.store.script_gate
    run = gate.running if gate is not None else None
    if run is None:
        return NOTBUSY
    if run.wrote:
        return UNKILLABLE
    if run.function is None:
        return SLOW_EVAL
    run.killed = True
    return OK
