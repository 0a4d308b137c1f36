"""CONFIG GET / SET on the RESP port: the settings in force, never made up.

``CONFIG GET`` answers from what runs: the store's figures (memory limit,
persistence), the attached :class:`~sockworks.core.config.ServerSettings`
(timeout, maxclients, output limits), the addresses actually bound, the
access control (requirepass, aclfile, protected-mode), the log level and
the values the command line fixed (``RespService.options``). ``CONFIG SET``
changes ``requirepass``, ``timeout``, ``maxclients``, ``loglevel``,
``protected-mode``, the maxmemory ones and, on the embedded store, Redis's
encoding thresholds (``hash-max-listpack-entries`` ... and their 7.0
``ziplist`` aliases: they change what OBJECT ENCODING reports, see
storage/model/values.py); ``save`` takes only ``""`` (there are no RDB
snapshots to schedule). Every pair is checked before any is applied, as
Redis; other known parameters answer Redis's immutable-parameter error,
unknown ones its unknown-option error.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import Any, Final

from sockworks.core.limits import MemoryOverflow
from sockworks.core.logs import set_log_level
from sockworks.protocols.resp import OK, encode
from sockworks.services.keyspace_events import BAD_FLAGS, flags_to_string, parse_flags
from sockworks.services.resp_commands import (
    error_quoting,
    int_arg,
    quoted,
    store_error,
    unknown_subcommand,
    wrong_args,
)
from sockworks.services.resp_context import CommandContext as Ctx
from sockworks.storage.base import StoreError
from sockworks.storage.eviction import (
    DEFAULT_SAMPLES,
    MAX_SAMPLES,
    check_policy,
    check_samples,
    parse_memory,
)
from sockworks.storage.glob import compile_glob
from sockworks.storage.memory import MemoryStore
from sockworks.storage.model.values import Encodings

__all__: list[str] = []  # resp_table.py imports cmd_config by name

#: Redis 7.0's log levels, and the Python level each sets / is shown as.
_LOG_LEVELS: Final = {"debug": "DEBUG", "verbose": "INFO", "notice": "INFO",
                      "warning": "WARNING"}


def _loglevel() -> bytes:
    level = logging.getLogger().getEffectiveLevel()
    if level <= logging.DEBUG:
        return b"debug"
    return b"notice" if level <= logging.INFO else b"warning"


def _bind(s: Ctx) -> bytes:
    hosts: list[str] = []
    for host in s.server.access.listening:
        if host not in hosts:
            hosts.append(host)
    return " ".join(hosts).encode()


def _keyspace_events(s: Ctx) -> bytes:
    """notify-keyspace-events in force: the Redis backend's, where pub/sub is."""
    store = s.server.store
    if store.passthrough:
        try:
            reply = store.execute_command([b"CONFIG", b"GET", b"notify-keyspace-events"])
            return bytes(reply[1])
        except (StoreError, IndexError, TypeError):
            pass  # unreachable or refused: what this process would use
    return flags_to_string(s.server.broker.keyspace_flags).encode()


def _config_values(s: Ctx) -> dict[bytes, bytes]:
    """Every parameter CONFIG GET knows, with the value in force."""
    info = s.store.info()
    server = s.server
    access = server.access
    options = server.options
    persistent = info.get("persistence") == "aof"
    aof_path = info.get("aof_path")
    values = {
        b"save": b"",
        b"appendonly": b"yes" if persistent else b"no",
        b"appendfsync": str(info.get("aof_fsync", options.get("appendfsync", "everysec"))
                            ).encode(),
        b"dir": os.fsencode(os.path.dirname(os.path.abspath(aof_path)) if aof_path
                            else os.getcwd()),
        b"databases": b"1",
        # The embedded store's limit; a Redis backend's is Redis's own (ask it).
        b"maxmemory": b"%d" % info.get("maxmemory", 0),
        b"maxmemory-policy": str(info.get("maxmemory_policy", "noeviction")).encode(),
        b"maxmemory-samples": b"%d" % info.get("maxmemory_samples", DEFAULT_SAMPLES),
        b"timeout": b"%d" % int(server.idle_timeout),
        b"maxclients": b"%d" % server.max_connections,
        b"client-output-buffer-limit": server.output_limits.redis_format().encode(),
        b"maxmemory-clients": b"%d" % server.client_memory_cap,
        b"port": b"%d" % server.port,
        b"bind": _bind(s),
        b"proto-max-bulk-len": b"%d" % server.max_bulk,
        b"client-query-buffer-limit": b"%d" % s.max_query,
        b"cluster-enabled": b"no",
        b"daemonize": b"no",  # the service manager's job (docs/operations.md)
        b"protected-mode": b"yes" if access.protected_mode else b"no",
        b"requirepass": access.requirepass or b"",
        b"aclfile": os.fsencode(access.aclfile or ""),
        b"loglevel": _loglevel(),
        b"notify-keyspace-events": _keyspace_events(s),
        **dict.fromkeys(_MIN_REPLICAS_TO_WRITE, b"%d" % server.min_replicas_to_write),
        **dict.fromkeys(_MIN_REPLICAS_MAX_LAG, b"%d" % server.min_replicas_max_lag),
        # The listeners in force (TLS, UNIX socket): issue #11 items 3-4.
        **{name.encode(): value.encode() for name, value in server.listening.items()},
    }
    if isinstance(s.store, MemoryStore):
        encodings = s.store.encodings
        for parameter in (*_ENCODING_LIMITS, *_ENCODING_ALIASES):
            values[parameter] = b"%d" % getattr(encodings, _encoding_field(parameter))
    gate = s.store.script_gate
    if gate is not None:
        threshold = b"%d" % round(gate.threshold * 1000)
        values[b"busy-reply-threshold"] = values[b"lua-time-limit"] = threshold
    for name, value in options.items():
        values.setdefault(name.encode(), os.fsencode(value))
    return values


_LLONG_MAX: Final = (1 << 63) - 1
_INT_MIN, _INT_MAX = -(1 << 31), (1 << 31) - 1
#: Redis's encoding thresholds: name -> (a memory value?, low, high). The
#: field of :class:`Encodings` is the name with underscores.
_ENCODING_LIMITS: Final = {
    b"hash-max-listpack-entries": (False, 0, _LLONG_MAX),
    b"hash-max-listpack-value": (True, 0, _LLONG_MAX),
    b"zset-max-listpack-entries": (False, 0, _LLONG_MAX),
    b"zset-max-listpack-value": (True, 0, _LLONG_MAX),
    b"set-max-intset-entries": (False, 0, _LLONG_MAX),
    b"list-max-listpack-size": (False, _INT_MIN, _INT_MAX),
    b"list-compress-depth": (False, 0, _INT_MAX),
    b"stream-node-max-bytes": (True, 0, _LLONG_MAX),
    b"stream-node-max-entries": (False, 0, _LLONG_MAX),
}
#: Redis 7.0's aliases (the names before listpack replaced ziplist).
_ENCODING_ALIASES: Final = {name.replace(b"listpack", b"ziplist"): name
                            for name in _ENCODING_LIMITS if b"listpack" in name}


def _encoding_field(name: bytes) -> str:
    """The Encodings field a parameter (or its ziplist alias) sets."""
    return _ENCODING_ALIASES.get(name, name).decode().replace("-", "_")


assert {f.name for f in dataclasses.fields(Encodings)} == {
    _encoding_field(n) for n in _ENCODING_LIMITS}


def _check_encoding(name: bytes, canonical: bytes, raw: bytes) -> tuple[bytes | None, int]:
    """(error reply, 0) or (None, the value) for an encoding threshold
    (``name`` as given, which may be an alias of ``canonical``)."""
    memory, low, high = _ENCODING_LIMITS[canonical]
    if memory:
        try:
            number: int | None = parse_memory(raw.decode("latin-1"))
        except MemoryOverflow:
            number = high + 1
        except ValueError:
            return _failed(name, "argument must be a memory value"), 0
    else:
        number = int_arg(raw)
        if number is None:
            return _failed(name, "argument couldn't be parsed into an integer"), 0
    assert number is not None
    if not low <= number <= high:
        return _failed(name, f"argument must be between {low} and {high} inclusive"), 0
    return None, number


def cmd_config(s: Ctx, argv: list[bytes]) -> bytes:
    sub = argv[1].upper()
    if sub == b"GET":
        if len(argv) < 3:
            return wrong_args("config|get")
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
            return wrong_args("config|set")
        return _config_set(s, argv[2:])
    if sub == b"RESETSTAT":
        s.server.reset_stats()
        return OK
    return unknown_subcommand(argv)


_MEMORY_PARAMETERS: Final = (b"maxmemory", b"maxmemory-policy", b"maxmemory-samples")
#: Parameters Redis itself never changes at run time (its IMMUTABLE_CONFIG):
#: refused whatever the value. The others this server cannot change accept
#: their current value (a no-op, as in Redis) and refuse any other.
_IMMUTABLE: Final = frozenset({b"databases", b"cluster-enabled", b"aclfile", b"unixsocket",
                               b"unixsocketperm", b"daemonize"})
#: Redis's PROTECTED_CONFIG ones (enable-protected-configs is "no" by default).
_PROTECTED: Final = frozenset({b"dir"})
#: Redis's names of the script time limit (lua-time-limit is the old one).
_SCRIPT_TIME_LIMITS: Final = (b"busy-reply-threshold", b"lua-time-limit")
#: Redis's names (and their old aliases) of the good-replicas check: with
#: no replication here, setting both refuses every write (NOREPLICAS).
_MIN_REPLICAS_TO_WRITE: Final = (b"min-replicas-to-write", b"min-slaves-to-write")
_MIN_REPLICAS_MAX_LAG: Final = (b"min-replicas-max-lag", b"min-slaves-max-lag")
#: Parameters CONFIG SET changes on this server (besides the memory ones).
_SERVER_PARAMETERS: Final = (b"requirepass", b"timeout", b"maxclients", b"loglevel",
                             b"protected-mode", b"busy-reply-threshold", b"lua-time-limit",
                             *_MIN_REPLICAS_TO_WRITE, *_MIN_REPLICAS_MAX_LAG)


def _failed(name: bytes, reason: str) -> bytes:
    return error_quoting(f"ERR CONFIG SET failed (possibly related to argument "
                         f"'{quoted(name)}') - {reason}")


def _check_server(name: bytes, raw: bytes) -> tuple[bytes | None, Any]:
    """(error reply, None) or (None, the parsed value) for a server parameter."""
    if name == b"requirepass":
        return None, raw
    if name in (b"timeout", b"maxclients", b"busy-reply-threshold", b"lua-time-limit",
                *_MIN_REPLICAS_TO_WRITE, *_MIN_REPLICAS_MAX_LAG):
        number = int_arg(raw)
        if number is None:
            return _failed(name, "argument couldn't be parsed into an integer"), None
        low, high = ((0, 2147483647) if name == b"timeout" or name in _MIN_REPLICAS_TO_WRITE
                     or name in _MIN_REPLICAS_MAX_LAG else (1, 4294967295)
                     if name == b"maxclients" else (0, 9223372036854775807))
        if not low <= number <= high:
            return _failed(name, f"argument must be between {low} and {high} inclusive"), None
        return None, number
    text = raw.decode("latin-1").lower()
    if name == b"loglevel":
        if text not in _LOG_LEVELS:
            return _failed(name, "argument(s) must be one of the following: "
                           + ", ".join(_LOG_LEVELS)), None
        return None, _LOG_LEVELS[text]
    if text not in ("yes", "no"):
        return _failed(name, "argument must be 'yes' or 'no'"), None
    return None, text == "yes"


def _apply_server(s: Ctx, name: bytes, value: Any) -> None:
    server = s.server
    settings = server.settings
    if name == b"requirepass":
        server.access.set_requirepass(value or None)
    elif name == b"timeout" and settings is not None:
        settings.idle_timeout = float(value)
    elif name == b"maxclients" and settings is not None:
        settings.max_connections = value
    elif name == b"loglevel":
        set_log_level(value)
    elif name == b"protected-mode":
        server.access.protected_mode = value
    elif name in (b"busy-reply-threshold", b"lua-time-limit") and s.store.script_gate:
        s.store.script_gate.threshold = value / 1000
    elif name == b"notify-keyspace-events":
        server.set_keyspace_events(value)
    elif name in _MIN_REPLICAS_TO_WRITE:
        server.set_min_replicas(to_write=value)
    elif name in _MIN_REPLICAS_MAX_LAG:
        server.set_min_replicas(max_lag=value)


def _config_set(s: Ctx, pairs: list[bytes]) -> bytes:
    """CONFIG SET: every pair checked before any is applied, as Redis."""
    memory: dict[str, Any] = {}
    server_changes: list[tuple[bytes, Any]] = []
    encoding_changes: list[tuple[str, int]] = []
    #: Set in the Redis backend (its keyspace events, with pub/sub there;
    #: its memory limit; its script time limit, scripts running there).
    backend_changes: list[tuple[bytes, bytes]] = []
    store = s.store
    known = _config_values(s)
    seen: set[bytes] = set()
    for name, raw_value in zip(pairs[::2], pairs[1::2], strict=True):
        lname = name.lower()
        if lname in seen:
            return _failed(name, "duplicate parameter")
        seen.add(lname)
        if lname in _SCRIPT_TIME_LIMITS and s.server.store.passthrough:
            backend_changes.append((lname, raw_value))
            continue
        if lname in _SERVER_PARAMETERS:
            error, parsed = _check_server(lname, raw_value)
            if error is not None:
                return error
            server_changes.append((lname, parsed))
            continue
        canonical = _ENCODING_ALIASES.get(lname, lname)
        if canonical in _ENCODING_LIMITS and isinstance(store, MemoryStore):
            error, threshold = _check_encoding(lname, canonical, raw_value)
            if error is not None:
                return error
            encoding_changes.append((_encoding_field(canonical), threshold))
            continue
        if lname == b"save" and not raw_value.strip():
            continue  # no snapshots, and none asked for
        if lname == b"notify-keyspace-events":
            flags = parse_flags(raw_value.decode("latin-1"))
            if flags is None:
                return _failed(lname, BAD_FLAGS)
            if s.server.store.passthrough:
                # Pub/sub is the backend's: so are its keyspace events.
                backend_changes.append((lname, raw_value))
                continue
            server_changes.append((lname, flags))
            continue
        if lname in _MEMORY_PARAMETERS and s.server.store.passthrough:
            # A Redis backend's memory is governed by its own maxmemory.
            backend_changes.append((lname, raw_value))
            continue
        if lname not in _MEMORY_PARAMETERS or not isinstance(store, MemoryStore):
            if lname in _PROTECTED:
                return _failed(lname, "can't set protected config")
            if lname in known and lname not in _IMMUTABLE and raw_value == known[lname]:
                continue  # its value already: nothing to change
            if lname in known:
                return _failed(lname, "can't set immutable config")
            return error_quoting("ERR Unknown option or number of arguments for CONFIG SET - "
                                 f"'{quoted(name)}'")
        value = raw_value.decode("latin-1")
        try:
            if lname == b"maxmemory":
                memory["maxmemory"] = parse_memory(value)
            elif lname == b"maxmemory-policy":
                memory["policy"] = check_policy(value.lower())
            else:
                number = int_arg(raw_value)
                if number is None:
                    return _failed(lname, "argument couldn't be parsed into an integer")
                memory["samples"] = check_samples(number)
        except ValueError:
            if lname == b"maxmemory":
                return _failed(lname, "argument must be a memory value")
            if lname == b"maxmemory-policy":
                return _failed(lname, "argument(s) must be one of the following: "
                               + ", ".join(_REDIS_POLICY_ORDER))
            return _failed(lname, f"argument must be between 1 and {MAX_SAMPLES} inclusive")
    if backend_changes:
        # One CONFIG SET: Redis applies all of it or none, and checks it.
        try:
            s.server.store.execute_command(
                [b"CONFIG", b"SET", *[part for pair in backend_changes for part in pair]])
        except StoreError as exc:
            return store_error(exc)
    if memory:
        assert isinstance(store, MemoryStore)  # checked with each name above
        store.configure_memory(**memory)
        # Redis evicts at once when the limit drops below what is used (and
        # tells keyspace subscribers), rather than at the next write.
        store.make_room()
    for name, parsed in server_changes:
        _apply_server(s, name, parsed)
    for field, number in encoding_changes:
        assert isinstance(store, MemoryStore)  # checked with each name above
        setattr(store.encodings, field, number)
    return OK


#: The order Redis's CONFIG SET error lists the policies in.
_REDIS_POLICY_ORDER: Final = ("volatile-lru", "volatile-lfu", "volatile-random", "volatile-ttl",
                              "allkeys-lru", "allkeys-lfu", "allkeys-random", "noeviction")
