"""COMMAND and MEMORY: what the RESP port says about its commands and memory.

Everything COMMAND answers (COUNT, LIST [FILTERBY], INFO, DOCS, GETKEYS,
HELP) is generated from the one command table (``resp_table.py``: name,
arity, flags, first/last/step key positions), read through the handler
context, and from the ACL categories (``acl_categories.py``), so no second
list of commands exists. Shapes are Redis 7.0's in RESP2 and RESP3: a
command's entry is ``[name, arity, flags, first, last, step, categories,
tips, key specs, subcommands]``; the last three are empty here (docs/resp.md).

MEMORY USAGE goes to the store: the embedded store answers from its own
accounting (storage/model/keys.py, the same figures as ``used_memory``), a
Redis backend passes it to Redis. :func:`help_reply` builds Redis's HELP
replies (CLIENT HELP uses it too).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from sockworks.protocols.resp import Map, RespSet, SimpleString, encode, encode_integer
from sockworks.services.acl_categories import CATEGORIES, categories_of
from sockworks.services.resp_commands import (
    NOT_INTEGER,
    SYNTAX_ERROR,
    arity_ok,
    int_arg,
    unknown_subcommand,
    wrong_args,
)
from sockworks.services.resp_context import CommandContext as Ctx
from sockworks.services.resp_context import CommandSpec, Plan
from sockworks.storage.glob import compile_glob

__all__ = ["command_keys", "help_reply"]


def help_reply(command: str, lines: Sequence[str], proto: int) -> bytes:
    """Redis's HELP reply: a header, ``lines``, then HELP itself, as
    status strings (addReplyHelp)."""
    return encode([SimpleString(line) for line in (
        f"{command} <subcommand> [<arg> [value] [opt] ...]. Subcommands are:", *lines,
        "HELP", "    Prints this help.")], proto)


# -- COMMAND ----------------------------------------------------------------------

#: COMMAND's subcommands' arities (Redis 7.0's ``command|count`` ...).
_COMMAND_ARITY: Final = {b"COUNT": 2, b"LIST": -2, b"INFO": -2, b"DOCS": -2,
                         b"GETKEYS": -4, b"HELP": 2}

_COMMAND_HELP: Final = (
    "(no subcommand)",
    "    Return details about all Redis commands.",
    "COUNT",
    "    Return the total number of commands in this Redis server.",
    "LIST",
    "    Return a list of all commands in this Redis server.",
    "INFO [<command-name> ...]",
    "    Return details about multiple Redis commands.",
    "    If no command names are given, documentation details for all",
    "    commands are returned.",
    "DOCS [<command-name> ...]",
    "    Return documentation details about multiple Redis commands.",
    "    If no command names are given, documentation details for all",
    "    commands are returned.",
    "GETKEYS <full-command>",
    "    Return the keys from a full Redis command.",
)


def _categories(spec: CommandSpec) -> tuple[str, ...]:
    return categories_of(spec.name, None, spec.flags)


def _command_info(spec: CommandSpec) -> list[Any]:
    first, last, step = spec.keys
    return [spec.name.encode(), spec.arity,
            RespSet([SimpleString(f) for f in spec.flags]),
            first, last, step,
            RespSet([SimpleString("@" + c) for c in _categories(spec)]),
            RespSet([]), RespSet([]), RespSet([])]


#: COMMAND DOCS' group, from the first ACL category that names one (Redis's
#: group names); commands with none of these are "server".
_GROUPS: Final = (("string", "string"), ("hash", "hash"), ("list", "list"), ("set", "set"),
                  ("sortedset", "sorted-set"), ("bitmap", "bitmap"), ("pubsub", "pubsub"),
                  ("scripting", "scripting"), ("transaction", "transactions"),
                  ("keyspace", "generic"), ("connection", "connection"))


def _command_docs(spec: CommandSpec) -> Map:
    categories = _categories(spec)
    group = next((g for c, g in _GROUPS if c in categories), "server")
    return Map([(b"group", group.encode())])


def _filtered(commands: Mapping[bytes, CommandSpec], argv: list[bytes]) -> list[bytes] | None:
    """COMMAND LIST [FILTERBY MODULE name | ACLCAT category | PATTERN glob];
    None: a syntax error."""
    names = list(commands)
    if len(argv) == 2:
        return names
    if len(argv) != 5 or argv[2].upper() != b"FILTERBY":
        return None
    kind, value = argv[3].upper(), argv[4]
    if kind == b"MODULE":
        return []  # no modules here
    if kind == b"ACLCAT":
        category = value.decode("latin-1").lower()
        if category not in CATEGORIES:
            return []
        return [name for name in names if category in _categories(commands[name])]
    if kind == b"PATTERN":
        match = compile_glob(value.lower())  # Redis matches without case
        return [name for name in names if match(name)]
    return None


def cmd_command(s: Ctx, argv: list[bytes]) -> bytes:
    commands = s.commands
    proto = s.proto
    if len(argv) == 1:
        return encode([_command_info(spec) for spec in commands.values()], proto)
    sub = argv[1].upper()
    arity = _COMMAND_ARITY.get(sub)
    if arity is None:
        return unknown_subcommand(argv)
    if not arity_ok(arity, len(argv)):
        return wrong_args(f"command|{sub.decode().lower()}")
    if sub == b"COUNT":
        return encode_integer(len(commands))
    if sub == b"INFO":
        names = [n.lower() for n in argv[2:]] or list(commands)
        return encode([_command_info(commands[n]) if n in commands else None
                       for n in names], proto)
    if sub == b"DOCS":
        names = [n.lower() for n in argv[2:]] or list(commands)
        return encode(Map([(n, _command_docs(commands[n])) for n in names if n in commands]),
                      proto)
    if sub == b"LIST":
        listed = _filtered(commands, argv)
        return SYNTAX_ERROR if listed is None else encode(listed, proto)
    if sub == b"GETKEYS":
        spec = commands.get(argv[2].lower())
        if spec is None:
            return b"-ERR Invalid command specified\r\n"
        target = argv[2:]
        if not _has_keys(spec):
            return b"-ERR The command has no key arguments\r\n"
        if not arity_ok(spec.arity, len(target)):
            return b"-ERR Invalid number of arguments specified for command\r\n"
        keys = command_keys(spec, target)
        if not keys:
            if spec.name in _NO_MANDATORY_KEYS:
                return encode([], proto)  # Redis's no_mandatory_keys flag
            return b"-ERR Invalid arguments specified for command\r\n"
        return encode(keys, proto)
    return help_reply("COMMAND", _COMMAND_HELP, proto)


#: Commands Redis flags no_mandatory_keys: GETKEYS answers an empty array
#: where it finds no key, not an error.
_NO_MANDATORY_KEYS: Final = frozenset({"eval", "evalsha", "eval_ro", "evalsha_ro",
                                       "fcall", "fcall_ro"})


def _numkeys_keys(argv: Sequence[bytes], at: int, before: int) -> list[bytes]:
    """Keys of a command whose key count is argument ``at`` (the keys follow
    it), plus its ``before`` leading keys (ZUNIONSTORE's destination)."""
    count = int_arg(argv[at]) if at < len(argv) else None
    if count is None or count < 1 or count > len(argv) - at - 1:
        return []
    return [*argv[1:1 + before], *argv[at + 1:at + 1 + count]]


def _sort_keys(argv: Sequence[bytes]) -> list[bytes]:
    """SORT's key and its STORE destination (BY and GET patterns are not
    keys), as Redis's sortGetKeys: the last STORE counts, as in SORT."""
    store: bytes | None = None
    i = 2
    while i < len(argv):
        word = argv[i].upper()
        if word == b"LIMIT":
            i += 3
            continue
        if word in (b"GET", b"BY"):
            i += 2
            continue
        if word == b"STORE" and i + 1 < len(argv):
            store = argv[i + 1]  # the word after it is looked at too, as Redis
        i += 1
    return [argv[1]] if store is None else [argv[1], store]


#: Where the movable keys of a command are: (index of the key count, keys before it).
_NUMKEYS: Final = {
    "zunionstore": (2, 1), "zinterstore": (2, 1), "zdiffstore": (2, 1),
    "zunion": (1, 0), "zinter": (1, 0), "zdiff": (1, 0), "zintercard": (1, 0),
    "sintercard": (1, 0), "lmpop": (1, 0), "zmpop": (1, 0),
    "blmpop": (2, 0), "bzmpop": (2, 0),
    "eval": (2, 0), "evalsha": (2, 0), "eval_ro": (2, 0), "evalsha_ro": (2, 0),
    "fcall": (2, 0), "fcall_ro": (2, 0),
}


#: Containers whose subcommands take a key (Redis's memory|usage, object|*):
#: the key is argument 2.
_SUBCOMMAND_KEY: Final = {"memory": frozenset({b"USAGE"}),
                          "object": frozenset({b"ENCODING", b"FREQ", b"IDLETIME", b"REFCOUNT"}),
                          "xgroup": frozenset({b"CREATE", b"SETID", b"DESTROY",
                                               b"CREATECONSUMER", b"DELCONSUMER"}),
                          "xinfo": frozenset({b"CONSUMERS", b"GROUPS", b"STREAM"})}
#: Commands whose keys follow STREAMS (the first half of what follows).
_STREAMS_KEYS: Final = frozenset({"xread", "xreadgroup"})


def _has_keys(spec: CommandSpec) -> bool:
    return (bool(spec.keys[0]) or spec.name in _NUMKEYS or spec.name in _SUBCOMMAND_KEY
            or spec.name in _STREAMS_KEYS)


def _streams_keys(argv: Sequence[bytes]) -> list[bytes]:
    for i, arg in enumerate(argv[1:], 1):
        if arg.upper() == b"STREAMS":
            rest = argv[i + 1:]
            return list(rest[:len(rest) // 2]) if len(rest) % 2 == 0 else []
    return []


def command_keys(spec: CommandSpec, argv: Sequence[bytes]) -> list[bytes]:
    """The key arguments of ``argv`` (arity already checked), as COMMAND
    GETKEYS lists them; [] when there are none or they are malformed."""
    if spec.name in _NUMKEYS:
        return _numkeys_keys(argv, *_NUMKEYS[spec.name])
    if spec.name == "sort":
        return _sort_keys(argv)
    if spec.name in _STREAMS_KEYS:
        return _streams_keys(argv)
    if spec.name in _SUBCOMMAND_KEY:
        wanted = len(argv) > 2 and argv[1].upper() in _SUBCOMMAND_KEY[spec.name]
        return [argv[2]] if wanted else []
    first, last, step = spec.keys
    if not first:
        return []
    end = len(argv) + last if last < 0 else min(last, len(argv) - 1)
    return list(argv[first:end + 1:step])


# -- MEMORY -------------------------------------------------------------------------

_MEMORY_HELP: Final = (
    "USAGE <key> [SAMPLES <count>]",
    "    Return memory in bytes used by <key> and its value. Nested values are",
    "    sampled up to <count> times (default: 5, 0 means sample all).",
)


def cmd_memory(s: Ctx, argv: list[bytes]) -> bytes | Plan[Any]:
    """MEMORY USAGE key [SAMPLES n] and MEMORY HELP. The embedded store
    counts every element exactly, so SAMPLES is checked and then has nothing
    to change (docs/resp.md says how the figure is made)."""
    sub = argv[1].upper()
    proto = s.proto
    if sub == b"HELP":
        if len(argv) != 2:
            return wrong_args("memory|help")
        return help_reply("MEMORY", _MEMORY_HELP, proto)
    if sub != b"USAGE":
        return unknown_subcommand(argv)
    if len(argv) < 3:
        return wrong_args("memory|usage")
    i = 3
    while i < len(argv):
        if argv[i].upper() == b"SAMPLES" and i + 1 < len(argv):
            samples = int_arg(argv[i + 1])
            if samples is None:
                return NOT_INTEGER
            if samples < 0:
                return SYNTAX_ERROR
            i += 2
        else:
            return SYNTAX_ERROR
    return Plan(lambda st: st.execute_command(argv), lambda r: encode(r, proto))
