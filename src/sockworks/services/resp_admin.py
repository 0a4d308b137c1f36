"""The RESP service's connection, transaction and server commands.

PING, ECHO, SELECT, INFO, TIME, LASTSAVE, COMPACT, QUIT, RESET, MULTI/EXEC/
DISCARD/WATCH, HELLO, AUTH and CLIENT (COMMAND and MEMORY are in
resp_introspect.py, CONFIG in resp_config.py). Handlers see the
connection only through :class:`~sockworks.services.resp_context.CommandContext`
(state changes are its named methods); ``resp_table.py`` lists them.
"""

from __future__ import annotations

import time
from typing import Any, Final

from sockworks.protocols import resp
from sockworks.protocols.resp import (
    OK,
    PONG,
    Map,
    Verbatim,
    encode,
    encode_bulk,
    encode_error,
    encode_integer,
    encode_null,
)
from sockworks.services.pubsub import push_frame
from sockworks.services.resp_commands import (
    EXECABORT,
    EXECABORT_OOM,
    NOT_INTEGER,
    REDIS_VERSION,
    SYNTAX_ERROR,
    error_quoting,
    int_arg,
    quoted,
    store_error,
    unknown_subcommand,
    wrong_args,
)
from sockworks.services.resp_context import CommandContext as Ctx
from sockworks.services.resp_context import Plan
from sockworks.services.resp_introspect import help_reply
from sockworks.storage.base import Store, StoreError

__all__: list[str] = []  # resp_table.py imports the cmd_* handlers by name

#: WATCH on a store that can neither track it nor pass it to a backend.
WATCH_UNSUPPORTED: Final = b"-ERR WATCH is not supported by this store\r\n"


def cmd_ping(s: Ctx, argv: list[bytes]) -> bytes:
    if len(argv) > 2:
        return wrong_args("ping")
    if s.proto == 2 and s.subscriptions.active:
        # Redis: in RESP2 subscribed mode PING answers in the pub/sub shape.
        return push_frame(2, b"pong", argv[1] if len(argv) > 1 else b"")
    return PONG if len(argv) == 1 else encode_bulk(argv[1])


def cmd_echo(s: Ctx, argv: list[bytes]) -> bytes:
    return encode_bulk(argv[1])


def cmd_select(s: Ctx, argv: list[bytes]) -> bytes:
    index = int_arg(argv[1])
    if index is None:
        return NOT_INTEGER
    return OK if index == 0 else b"-ERR DB index is out of range\r\n"


def cmd_info(s: Ctx, argv: list[bytes]) -> Plan[bytes]:
    sections = [a.decode("latin-1") for a in argv[1:]]
    server, proto = s.server, s.proto
    return Plan.group(lambda _: encode(Verbatim(server.info(sections)), proto))


def cmd_time(s: Ctx, argv: list[bytes]) -> bytes:
    now = time.time_ns() // 1000
    return encode([b"%d" % (now // 1_000_000), b"%d" % (now % 1_000_000)])


#: What COMPACT's "compaction started" is as BGREWRITEAOF (Redis's text).
_REWRITE_STARTED: Final = b"+Background append only file rewriting started\r\n"


def cmd_compact(s: Ctx, argv: list[bytes]) -> Plan[bytes]:
    """COMPACT / BGREWRITEAOF: start a background rewrite of the log. While
    one runs: ``-ERR Background append only file rewriting already in
    progress`` (the store raises RewriteInProgress), as Redis."""
    as_redis = argv[0].lower() == b"bgrewriteaof"

    def body(store: Store) -> bytes:
        try:
            status = store.start_compaction()
        except StoreError as exc:
            return store_error(exc)
        if as_redis and status == "compaction started":
            return _REWRITE_STARTED
        return encode(resp.SimpleString(status))
    return Plan.group(body)


def cmd_lastsave(s: Ctx, argv: list[bytes]) -> bytes:
    return encode_integer(int(s.server.stats.started_wall))


# -- connection and transaction commands ---------------------------------------------

def cmd_quit(s: Ctx, argv: list[bytes]) -> bytes:
    s.close_after_reply()
    return OK


def cmd_reset(s: Ctx, argv: list[bytes]) -> bytes:
    s.reset()
    return b"+RESET\r\n"


def cmd_multi(s: Ctx, argv: list[bytes]) -> bytes:
    if s.in_multi:
        return b"-ERR MULTI calls can not be nested\r\n"
    s.begin_multi()
    return OK


def cmd_exec(s: Ctx, argv: list[bytes]) -> bytes:
    if not s.in_multi:
        return b"-ERR EXEC without MULTI\r\n"
    queued, failed = s.end_multi()
    try:
        if failed:
            return EXECABORT
        if any("denyoom" in s.commands[argv[0].lower()].flags for argv in queued) \
                and not s.store.make_room(sum(len(arg) for argv in queued for arg in argv)):
            return EXECABORT_OOM
        return s.run_transaction(queued)
    finally:
        s.unwatch()  # Redis: EXEC, whatever its outcome, unwatches everything


def cmd_discard(s: Ctx, argv: list[bytes]) -> bytes:
    if not s.in_multi:
        return b"-ERR DISCARD without MULTI\r\n"
    s.end_multi()
    s.unwatch()
    return OK


def cmd_watch(s: Ctx, argv: list[bytes]) -> bytes:
    if s.in_multi:
        return b"-ERR WATCH inside MULTI is not allowed\r\n"
    if not s.store.supports_watch:
        # Refuse rather than pretend, so a client's check-and-set loop fails
        # loudly instead of racing silently (docs/resp.md).
        return WATCH_UNSUPPORTED
    return s.watch(argv[1:])


def cmd_unwatch(s: Ctx, argv: list[bytes]) -> bytes:
    s.unwatch()
    return OK


def _hello_map(s: Ctx) -> bytes:
    return encode(Map([
        (b"server", b"redis"),
        (b"version", REDIS_VERSION.encode()),
        (b"proto", s.proto),
        (b"id", s.client_id),
        (b"mode", b"standalone"),
        (b"role", b"master"),
        (b"modules", []),
    ]), s.proto)


#: AUTH/HELLO AUTH naming a default user that has no password (Redis's text;
#: sockworks also answers it to the two-argument form, see docs/security.md).
NO_PASSWORD: Final = (b"-ERR AUTH <password> called without any password configured for the "
                      b"default user. Are you sure your configuration is correct?\r\n")
WRONGPASS: Final = b"-WRONGPASS invalid username-password pair or user is disabled.\r\n"
#: HELLO from a client that is not authenticated (Redis 7.0's text).
HELLO_NOAUTH: Final = (b"-NOAUTH HELLO must be called with the client already authenticated, "
                       b"otherwise the HELLO AUTH <user> <pass> option can be used to "
                       b"authenticate the client and select the RESP protocol version at the "
                       b"same time\r\n")


def _authenticate(s: Ctx, username: bytes, password: bytes) -> bytes | None:
    """None when ``s`` is now ``username``; else the error reply."""
    name = username.decode("utf-8", "surrogateescape")
    if name == "default" and s.server.access.passwordless_default:
        return NO_PASSWORD
    return None if s.authenticate(name, password) else WRONGPASS


def cmd_hello(s: Ctx, argv: list[bytes]) -> bytes:
    proto = s.proto
    i = 1
    if len(argv) > 1:
        version = int_arg(argv[1])
        if version is None:
            return b"-ERR Protocol version is not an integer or out of range\r\n"
        if version < 2 or version > 3:
            return b"-NOPROTO unsupported protocol version\r\n"
        proto = version
        i = 2
    name: bytes | None = None
    credentials: tuple[bytes, bytes] | None = None
    while i < len(argv):
        opt = argv[i].upper()
        if opt == b"AUTH" and i + 2 < len(argv):
            credentials = (argv[i + 1], argv[i + 2])
            i += 3
        elif opt == b"SETNAME" and i + 1 < len(argv):
            name = argv[i + 1]
            if not _valid_client_name(name):
                return _BAD_NAME
            i += 2
        else:
            return error_quoting(f"ERR Syntax error in HELLO option '{quoted(argv[i])}'")
    if credentials is not None:
        error = _authenticate(s, *credentials)
        if error is not None:
            return error
    elif s.username is None:
        return HELLO_NOAUTH
    s.set_protocol(proto)
    if name is not None:
        s.set_name(name)
    return _hello_map(s)


def cmd_auth(s: Ctx, argv: list[bytes]) -> bytes:
    if len(argv) > 3:
        return SYNTAX_ERROR
    username, password = (b"default", argv[1]) if len(argv) == 2 else (argv[1], argv[2])
    error = _authenticate(s, username, password)
    return OK if error is None else error


_BAD_NAME: Final = (b"-ERR Client names cannot contain spaces, newlines or special "
                    b"characters.\r\n")


def _valid_client_name(name: bytes) -> bool:
    return all(33 <= c <= 126 for c in name)


def _client_unblock(s: Ctx, argv: list[bytes]) -> bytes:
    """CLIENT UNBLOCK id [TIMEOUT|ERROR] (Redis 7.0's checks and texts)."""
    if len(argv) < 3:
        return wrong_args("client|unblock")
    if len(argv) > 4:
        return error_quoting("ERR unknown subcommand or wrong number of arguments for "
                             f"'{quoted(argv[1])}'. Try CLIENT HELP.")
    client_id = int_arg(argv[2])
    if client_id is None:
        return b"-ERR value is not an integer or out of range\r\n"
    error = False
    if len(argv) == 4:
        reason = argv[3].upper()
        if reason not in (b"TIMEOUT", b"ERROR"):
            return b"-ERR CLIENT UNBLOCK reason should be TIMEOUT or ERROR\r\n"
        error = reason == b"ERROR"
    for other in s.server.sessions():
        if other.client_id == client_id:
            return encode_integer(int(other.unblock(error)))
    return encode_integer(0)


def cmd_client(s: Ctx, argv: list[bytes]) -> bytes:
    sub = argv[1].upper()
    argc = len(argv)
    if sub == b"REPLY":
        if argc != 3:
            return wrong_args("client|reply")
        mode = argv[2].lower()
        if mode not in (b"on", b"off", b"skip"):
            return SYNTAX_ERROR
        s.set_reply_mode(mode.decode())
        return OK if mode == b"on" else b""
    if sub == b"SETNAME":
        if argc != 3:
            return wrong_args("client|setname")
        if not _valid_client_name(argv[2]):
            return _BAD_NAME
        s.set_name(argv[2])
        return OK
    if sub == b"GETNAME":
        if argc != 2:
            return wrong_args("client|getname")
        return encode_bulk(s.name) if s.name else encode_null(s.proto)
    if sub == b"ID":
        if argc != 2:
            return wrong_args("client|id")
        return encode_integer(s.client_id)
    if sub == b"SETINFO":
        if argc != 4:
            return wrong_args("client|setinfo")
        attr = argv[2].upper()
        if attr not in (b"LIB-NAME", b"LIB-VER"):
            return error_quoting(f"ERR Unrecognized option '{quoted(argv[2])}'")
        if not all(33 <= c <= 126 for c in argv[3]):
            return encode_error(f"ERR {attr.decode().lower()} cannot contain spaces, "
                                "newlines or special characters.")
        if attr == b"LIB-NAME":
            s.set_library(name=argv[3])
        else:
            s.set_library(version=argv[3])
        return OK
    if sub == b"INFO":
        if argc != 2:
            return wrong_args("client|info")
        return encode(Verbatim(s.client_info()), s.proto)
    if sub == b"LIST":
        return _client_list(s, argv)
    if sub == b"KILL":
        return _client_kill(s, argv)
    if sub == b"UNBLOCK":
        return _client_unblock(s, argv)
    if sub in (b"NO-EVICT", b"NO-TOUCH"):
        if argc != 3:
            return wrong_args(f"client|{sub.decode().lower()}")
        if argv[2].upper() not in (b"ON", b"OFF"):
            return SYNTAX_ERROR
        if sub == b"NO-EVICT":
            s.set_no_evict(argv[2].upper() == b"ON")
        return OK
    if sub == b"HELP":
        if argc != 2:
            return wrong_args("client|help")
        return help_reply("CLIENT", _CLIENT_HELP, s.proto)
    return unknown_subcommand(argv)


#: CLIENT HELP: Redis 7.0's lines for the subcommands served here (and
#: the options of KILL served here), plus SETINFO and NO-TOUCH (Redis 7.2).
_CLIENT_HELP: Final = (
    "GETNAME",
    "    Return the name of the current connection.",
    "ID",
    "    Return the ID of the current connection.",
    "INFO",
    "    Return information about the current client connection.",
    "KILL <ip:port>",
    "    Kill connection made from <ip:port>.",
    "KILL <option> <value> [<option> <value> [...]]",
    "    Kill connections. Options are:",
    "    * ADDR (<ip:port>|<unixsocket>:0)",
    "      Kill connections made from the specified address",
    "    * LADDR (<ip:port>|<unixsocket>:0)",
    "      Kill connections made to specified local address",
    "    * ID <client-id>",
    "      Kill connections by client id.",
    "    * TYPE (NORMAL|MASTER|REPLICA|PUBSUB)",
    "      Kill connections by type.",
    "    * USER <username>",
    "      Kill connections authenticated by <username>.",
    "    * SKIPME (YES|NO)",
    "      Skip killing current connection (default: yes).",
    "LIST",
    "    Return information about client connections.",
    "SETNAME <name>",
    "    Assign the name <name> to the current connection.",
    "SETINFO <option> <value>",
    "    Set the library name (LIB-NAME) or version (LIB-VER) of this connection.",
    "NO-EVICT (ON|OFF)",
    "    Protect current client connection from eviction.",
    "NO-TOUCH (ON|OFF)",
    "    Accepted; keys' access times are not tracked per command here.",
)


_NO_SUCH_CLIENT: Final = b"-ERR No such client\r\n"
#: CLIENT KILL TYPE's names (Redis's getClientTypeByName).
_CLIENT_TYPES: Final = frozenset({b"normal", b"master", b"replica", b"slave", b"pubsub"})


def _client_type(session: Ctx) -> bytes:
    """Redis's getClientType: no masters or replicas here (MONITOR counts
    as normal, as in Redis); a subscriber, in RESP2 or 3, is pubsub."""
    return b"pubsub" if session.subscriptions.active else b"normal"


def _client_list(s: Ctx, argv: list[bytes]) -> bytes:
    """CLIENT LIST [TYPE type | ID id...], Redis 7.0's arguments and errors.
    A client being closed (CLIENT KILL) is gone already, as in Redis."""
    sessions = [other for other in s.server.sessions()
                if other.client is None or not other.client.closing]
    if len(argv) == 4 and argv[2].upper() == b"TYPE":
        kind = argv[3].lower()
        if kind not in _CLIENT_TYPES:
            return error_quoting(f"ERR Unknown client type '{quoted(argv[3])}'")
        chosen = [other for other in sessions
                  if _client_type(other) == (b"replica" if kind == b"slave" else kind)]
    elif len(argv) > 3 and argv[2].upper() == b"ID":
        by_id = {other.client_id: other for other in sessions}
        chosen = []
        for raw in argv[3:]:
            wanted = int_arg(raw)
            if wanted is None:
                return b"-ERR Invalid client ID\r\n"
            if wanted in by_id:
                chosen.append(by_id[wanted])
    elif len(argv) != 2:
        return SYNTAX_ERROR
    else:
        chosen = list(sessions)
    return encode(Verbatim("".join(other.client_info() for other in chosen)), s.proto)


def _client_kill(s: Ctx, argv: list[bytes]) -> bytes:
    """CLIENT KILL ip:port (old form: +OK) or filters ID / ADDR / LADDR /
    TYPE / USER / SKIPME (new form: how many were closed), as Redis 7.0
    answers them."""
    argc = len(argv)
    if argc < 3:
        return wrong_args("client|kill")
    registry = s.server.stats.clients
    if argc == 3:
        addr = argv[2].decode("latin-1")
        targets = registry.by_addr(addr)
        if not targets:
            return _NO_SUCH_CLIENT
        _kill(s, targets)
        return OK
    if argc % 2:
        return SYNTAX_ERROR
    handles = registry.handles()
    skipme = True
    for i in range(2, argc, 2):
        option, value = argv[i].upper(), argv[i + 1]
        if option == b"ID":
            try:
                wanted = int(value)
            except ValueError:
                wanted = 0
            if wanted <= 0:
                return b"-ERR client-id should be greater than 0\r\n"
            handles = [h for h in handles if h.id == wanted]
        elif option == b"ADDR":
            handles = [h for h in handles if h.peer == value.decode("latin-1")]
        elif option == b"LADDR":
            handles = [h for h in handles if h.local == value.decode("latin-1")]
        elif option == b"TYPE":
            kind = value.lower()
            if kind not in _CLIENT_TYPES:
                return error_quoting(f"ERR Unknown client type '{quoted(value)}'")
            kind = b"replica" if kind == b"slave" else kind
            types = {other.client_id: _client_type(other) for other in s.server.sessions()}
            handles = [h for h in handles if types.get(h.id) == kind]
        elif option == b"USER":
            name = value.decode("utf-8", "surrogateescape")
            if s.server.access.user(name) is None:
                return error_quoting(f"ERR No such user '{quoted(value)}'")
            ids = {other.client_id for other in s.server.sessions()
                   if other.username == name}
            handles = [h for h in handles if h.id in ids]
        elif option == b"SKIPME":
            choice = value.lower()
            if choice not in (b"yes", b"no"):
                return SYNTAX_ERROR
            skipme = choice == b"yes"
        else:
            return SYNTAX_ERROR
    if skipme:
        handles = [h for h in handles if h.id != s.client_id]
    _kill(s, handles)
    return encode_integer(len(handles))


def _kill(s: Ctx, handles: list[Any]) -> None:
    for handle in handles:
        if handle.id == s.client_id:
            s.close_after_reply()  # Redis answers the killer first
        else:
            handle.close("killed by CLIENT KILL from " + str(s.client_id))
