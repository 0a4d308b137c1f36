"""The RESP command table: every command the RESP port knows, in one place.

Like Redis's command definitions (``src/commands.def``), one literal list
names each command's handler, arity (n exact, -n at least n), flags (shown
by COMMAND), key positions (first, last, step) and whether MULTI may queue
it. Handlers live in ``resp_commands.py`` (string commands),
``services/commands/`` (hashes, lists, sets, sorted sets, bitmaps and
keyspace commands across types, one module per family) and
``resp_admin.py`` (connection, transaction and server commands),
``resp_introspect.py`` (COMMAND, MEMORY) and ``resp_config.py`` (CONFIG); nothing
registers itself, so importing this module gives the whole table and
importing the handler modules gives none of it. The session looks commands
up here by lower-case name; COMMAND reads it through the handler context.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from sockworks.services.commands import bitmaps, hashes, keys, lists, sets, streams, zsets
from sockworks.services.resp_acl import cmd_acl
from sockworks.services.resp_admin import (
    cmd_auth,
    cmd_client,
    cmd_compact,
    cmd_discard,
    cmd_echo,
    cmd_exec,
    cmd_hello,
    cmd_info,
    cmd_lastsave,
    cmd_multi,
    cmd_ping,
    cmd_quit,
    cmd_reset,
    cmd_select,
    cmd_time,
    cmd_unwatch,
    cmd_watch,
)
from sockworks.services.resp_commands import (
    cmd_append,
    cmd_dbsize,
    cmd_decr,
    cmd_decrby,
    cmd_del,
    cmd_exists,
    cmd_expire,
    cmd_expireat,
    cmd_flushdb,
    cmd_get,
    cmd_getdel,
    cmd_getex,
    cmd_getrange,
    cmd_getset,
    cmd_incr,
    cmd_incrby,
    cmd_incrbyfloat,
    cmd_keys,
    cmd_mget,
    cmd_mset,
    cmd_msetnx,
    cmd_persist,
    cmd_pexpire,
    cmd_pexpireat,
    cmd_psetex,
    cmd_pttl,
    cmd_scan,
    cmd_set,
    cmd_setex,
    cmd_setnx,
    cmd_setrange,
    cmd_strlen,
    cmd_ttl,
)
from sockworks.services.resp_config import cmd_config
from sockworks.services.resp_context import CommandSpec
from sockworks.services.resp_functions import cmd_fcall, cmd_fcall_ro, cmd_function
from sockworks.services.resp_introspect import cmd_command, cmd_memory
from sockworks.services.resp_pubsub import (
    cmd_monitor,
    cmd_psubscribe,
    cmd_publish,
    cmd_pubsub,
    cmd_punsubscribe,
    cmd_spublish,
    cmd_ssubscribe,
    cmd_subscribe,
    cmd_sunsubscribe,
    cmd_unsubscribe,
)
from sockworks.services.resp_scripting import (
    cmd_eval,
    cmd_eval_ro,
    cmd_evalsha,
    cmd_evalsha_ro,
    cmd_script,
)

__all__ = ["COMMANDS", "CONTAINER_COMMANDS", "SPECS"]

#: Key positions of a command with one key, the first argument.
ONE_KEY: Final = (1, 1, 1)

#: Every command, in the order COMMAND lists them.
SPECS: Final[tuple[CommandSpec, ...]] = (
    # -- data commands (resp_commands.py) --------------------------------------
    CommandSpec("get", cmd_get, 2, ("readonly", "fast"), ONE_KEY),
    CommandSpec("mget", cmd_mget, -2, ("readonly", "fast"), (1, -1, 1)),
    CommandSpec("set", cmd_set, -3, ("write", "denyoom"), ONE_KEY),
    CommandSpec("setnx", cmd_setnx, 3, ("write", "denyoom", "fast"), ONE_KEY),
    CommandSpec("setex", cmd_setex, 4, ("write", "denyoom"), ONE_KEY),
    CommandSpec("psetex", cmd_psetex, 4, ("write", "denyoom"), ONE_KEY),
    CommandSpec("mset", cmd_mset, -3, ("write", "denyoom"), (1, -1, 2)),
    CommandSpec("del", cmd_del, -2, ("write",), (1, -1, 1)),
    CommandSpec("unlink", cmd_del, -2, ("write", "fast"), (1, -1, 1)),
    CommandSpec("exists", cmd_exists, -2, ("readonly", "fast"), (1, -1, 1)),
    CommandSpec("incr", cmd_incr, 2, ("write", "denyoom", "fast"), ONE_KEY),
    CommandSpec("decr", cmd_decr, 2, ("write", "denyoom", "fast"), ONE_KEY),
    CommandSpec("incrby", cmd_incrby, 3, ("write", "denyoom", "fast"), ONE_KEY),
    CommandSpec("decrby", cmd_decrby, 3, ("write", "denyoom", "fast"), ONE_KEY),
    CommandSpec("expire", cmd_expire, -3, ("write", "fast"), ONE_KEY),
    CommandSpec("pexpire", cmd_pexpire, -3, ("write", "fast"), ONE_KEY),
    CommandSpec("ttl", cmd_ttl, 2, ("readonly", "fast"), ONE_KEY),
    CommandSpec("pttl", cmd_pttl, 2, ("readonly", "fast"), ONE_KEY),
    CommandSpec("persist", cmd_persist, 2, ("write", "fast"), ONE_KEY),
    CommandSpec("expireat", cmd_expireat, -3, ("write", "fast"), ONE_KEY),
    CommandSpec("pexpireat", cmd_pexpireat, -3, ("write", "fast"), ONE_KEY),
    CommandSpec("getset", cmd_getset, 3, ("write", "denyoom", "fast"), ONE_KEY),
    CommandSpec("getdel", cmd_getdel, 2, ("write", "fast"), ONE_KEY),
    CommandSpec("getex", cmd_getex, -2, ("write", "fast"), ONE_KEY),
    CommandSpec("strlen", cmd_strlen, 2, ("readonly", "fast"), ONE_KEY),
    CommandSpec("append", cmd_append, 3, ("write", "denyoom", "fast"), ONE_KEY),
    CommandSpec("getrange", cmd_getrange, 4, ("readonly",), ONE_KEY),
    CommandSpec("substr", cmd_getrange, 4, ("readonly",), ONE_KEY),
    CommandSpec("setrange", cmd_setrange, 4, ("write", "denyoom"), ONE_KEY),
    CommandSpec("incrbyfloat", cmd_incrbyfloat, 3, ("write", "denyoom", "fast"), ONE_KEY),
    CommandSpec("msetnx", cmd_msetnx, -3, ("write", "denyoom"), (1, -1, 2)),
    CommandSpec("dbsize", cmd_dbsize, 1, ("readonly", "fast")),
    CommandSpec("flushdb", cmd_flushdb, -1, ("write",)),
    CommandSpec("flushall", cmd_flushdb, -1, ("write",)),
    CommandSpec("keys", cmd_keys, 2, ("readonly",)),
    CommandSpec("scan", cmd_scan, -2, ("readonly",)),
    # -- the data model (services/commands/*.py -> Store.execute_command) -------
    *keys.SPECS,
    *hashes.SPECS,
    *lists.SPECS,
    *sets.SPECS,
    *zsets.SPECS,
    *bitmaps.SPECS,
    *streams.SPECS,
    # -- connection, transaction and server commands (resp_admin.py) -----------
    CommandSpec("ping", cmd_ping, -1, ("fast",)),
    CommandSpec("echo", cmd_echo, 2, ("fast",)),
    CommandSpec("select", cmd_select, 2, ("loading", "stale", "fast")),
    CommandSpec("info", cmd_info, -1, ("loading", "stale")),
    CommandSpec("time", cmd_time, 1, ("loading", "stale", "fast")),
    CommandSpec("lastsave", cmd_lastsave, 1, ("loading", "stale", "fast")),
    CommandSpec("compact", cmd_compact, 1, ("admin", "noscript")),
    CommandSpec("bgrewriteaof", cmd_compact, 1, ("admin", "noscript")),
    CommandSpec("client", cmd_client, -2, ("loading", "stale")),
    CommandSpec("config", cmd_config, -2, ("admin", "loading", "stale")),
    CommandSpec("acl", cmd_acl, -2, ("loading", "stale")),
    CommandSpec("command", cmd_command, -1, ("loading", "stale")),
    # As Redis's container entry: no key positions (memory|usage's key,
    # argument 2, is found by resp_introspect.command_keys for ACL checks).
    CommandSpec("memory", cmd_memory, -2),
    CommandSpec("hello", cmd_hello, -1, ("noscript", "loading", "stale", "fast")),
    CommandSpec("auth", cmd_auth, -2, ("noscript", "loading", "stale", "fast")),
    CommandSpec("multi", cmd_multi, 1, ("noscript", "loading", "stale", "fast"),
                queueable=False),
    CommandSpec("exec", cmd_exec, 1, ("noscript", "loading", "stale"),
                queueable=False),
    CommandSpec("discard", cmd_discard, 1, ("noscript", "loading", "stale", "fast"),
                queueable=False),
    CommandSpec("watch", cmd_watch, -2, ("noscript", "loading", "stale", "fast"),
                queueable=False),
    CommandSpec("unwatch", cmd_unwatch, 1, ("noscript", "loading", "stale", "fast")),
    CommandSpec("quit", cmd_quit, -1, ("noscript", "loading", "stale", "fast"),
                queueable=False),
    CommandSpec("reset", cmd_reset, 1, ("noscript", "loading", "stale", "fast"),
                queueable=False),
    # -- Lua scripting (resp_scripting.py) --------------------------------------
    # No fixed key positions: numkeys says which arguments are keys.
    CommandSpec("eval", cmd_eval, -3, ("noscript", "stale", "movablekeys")),
    CommandSpec("evalsha", cmd_evalsha, -3, ("noscript", "stale", "movablekeys")),
    CommandSpec("eval_ro", cmd_eval_ro, -3, ("readonly", "noscript", "stale", "movablekeys")),
    CommandSpec("evalsha_ro", cmd_evalsha_ro, -3,
                ("readonly", "noscript", "stale", "movablekeys")),
    CommandSpec("script", cmd_script, -2),
    # -- Redis 7 Functions (resp_functions.py) --------------------------------------
    CommandSpec("fcall", cmd_fcall, -3, ("noscript", "stale", "movablekeys")),
    CommandSpec("fcall_ro", cmd_fcall_ro, -3, ("readonly", "noscript", "stale", "movablekeys")),
    CommandSpec("function", cmd_function, -2),
    # -- pub/sub (resp_pubsub.py); shard channels are not keys to the ACL here --
    CommandSpec("subscribe", cmd_subscribe, -2, ("pubsub", "noscript", "loading", "stale")),
    CommandSpec("ssubscribe", cmd_ssubscribe, -2, ("pubsub", "noscript", "loading", "stale")),
    CommandSpec("psubscribe", cmd_psubscribe, -2, ("pubsub", "noscript", "loading", "stale")),
    CommandSpec("unsubscribe", cmd_unsubscribe, -1, ("pubsub", "noscript", "loading", "stale")),
    CommandSpec("sunsubscribe", cmd_sunsubscribe, -1,
                ("pubsub", "noscript", "loading", "stale")),
    CommandSpec("punsubscribe", cmd_punsubscribe, -1,
                ("pubsub", "noscript", "loading", "stale")),
    CommandSpec("publish", cmd_publish, 3, ("pubsub", "loading", "stale", "fast")),
    CommandSpec("spublish", cmd_spublish, 3, ("pubsub", "loading", "stale", "fast")),
    CommandSpec("pubsub", cmd_pubsub, -2, ()),
    CommandSpec("monitor", cmd_monitor, 1, ("admin", "noscript", "loading", "stale")),
)

#: Lower-case name -> spec (read-only by type; built once from SPECS).
COMMANDS: Final[Mapping[bytes, CommandSpec]] = {spec.name.encode(): spec for spec in SPECS}

#: Commands whose first argument is a subcommand (Redis's container
#: commands): CLIENT LIST and the like name them ``client|list``.
CONTAINER_COMMANDS: Final = frozenset(
    name for name in (b"acl", b"client", b"command", b"config", b"memory", b"object",
                      b"pubsub", b"script", b"function", b"xgroup", b"xinfo")
    if name in COMMANDS)
