"""``sockworks serve kv``: the flags and start-up of the key-value server."""

from __future__ import annotations

import argparse
import logging
import os

from sockworks.cli.args import port_number, positive_int, seconds
from sockworks.cli.serve import StartupError, add_tcp_arguments, serve
from sockworks.cli.serve.listeners import (
    add_tls_arguments,
    add_unix_arguments,
    extra_endpoints,
    tls_context,
)
from sockworks.core.config import DEFAULT_MAX_LINE, Endpoint
from sockworks.core.limits import default_maxmemory_clients
from sockworks.models import FORKING_MODELS
from sockworks.models.pool import DEFAULT_WORKERS as DEFAULT_POOL_WORKERS
from sockworks.protocols.kvtext import COMMAND_NAMES
from sockworks.protocols.resp import DEFAULT_MAX_BULK
from sockworks.services.acl import AclError
from sockworks.services.auth import AccessControl
from sockworks.services.kv import DEFAULT_PORT, KvService
from sockworks.services.renames import CommandRenames
from sockworks.services.resp_table import COMMANDS
from sockworks.storage.aof import DEFAULT_FSYNC, FSYNC_POLICIES
from sockworks.storage.base import Store, StoreError
from sockworks.storage.eviction import DEFAULT_SAMPLES, MAX_SAMPLES, POLICIES, parse_memory
from sockworks.storage.factory import is_embedded, open_store
from sockworks.storage.gate import DEFAULT_BUSY_REPLY_THRESHOLD_MS
from sockworks.storage.redis_store import DEFAULT_MAX_PINNED

__all__ = ["DESCRIPTION", "HELP", "add_arguments", "endpoints", "main"]

logger = logging.getLogger(__name__)

#: How long start-up waits for an unreachable Redis backend (--store-timeout).
DEFAULT_STORE_TIMEOUT = 10.0

HELP = "the key-value store server (text protocol, embedded durable store)"

DESCRIPTION = """\
Serve the key-value store over the chapter's text protocol (port 9000 by default).

On connect the server says READY; then one request per line, one reply line
per request, pipelining allowed:

  SET key value   -> OK                GET key      -> value | NOT_FOUND
  DEL key         -> DELETED|NOT_FOUND QUIT         -> BYE, then close
  PING -> PONG    EXISTS key...  INCR key  INCRBY key n  EXPIRE key seconds
  TTL key  PERSIST key  DBSIZE  STATS  COMPACT

Every command, reply, error and limit is in docs/protocol.md. Data lives in
memory; with --data-dir DIR every write is also appended to a log in DIR that
is replayed on start (--fsync always|everysec|no, as Redis's appendfsync).
With --store redis://HOST:PORT/DB the data lives in Redis instead, so several
servers (including the forking models) share one dataset.

Examples:
  sockworks serve kv --data-dir ./data
  sockworks client SET greeting hello world
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_tcp_arguments(parser, default_port=DEFAULT_PORT,
                      default_model=KvService.default_model)
    group = parser.add_argument_group("key-value store")
    group.add_argument("--max-line", type=positive_int, default=DEFAULT_MAX_LINE,
                       metavar="BYTES",
                       help=f"longest request line (default {DEFAULT_MAX_LINE}); "
                            "longer gets 'ERROR: line too long' and the connection closes")
    group.add_argument("--data-dir", metavar="DIR",
                       help="persist to an append-only log in DIR (default: memory only)")
    group.add_argument("--fsync", choices=FSYNC_POLICIES, default=None,
                       help="when the log is fsynced: after every write (always), once a "
                            f"second ({DEFAULT_FSYNC}, default) or when the OS decides (no)")
    group.add_argument("--store", metavar="URL",
                       help="storage backend: memory:// (default, the embedded store), or "
                            "redis://HOST:PORT/DB, rediss://... (TLS), redis+cluster://HOST:PORT "
                            "to share one dataset between servers of any model")
    group.add_argument("--store-timeout", type=seconds, default=DEFAULT_STORE_TIMEOUT,
                       metavar="SECONDS",
                       help="at start-up, wait this long for a Redis backend to answer, then "
                            f"give up (default {DEFAULT_STORE_TIMEOUT:g}); a misconfigured one "
                            "(credentials, database index) stops start-up at once")
    group.add_argument("--store-pinned-connections", type=positive_int,
                       default=DEFAULT_MAX_PINNED, metavar="N",
                       help="Redis backend: dedicated connections one process may hold, one "
                            "per client in WATCH or a blocking command and one per client and "
                            f"node subscribed (default {DEFAULT_MAX_PINNED}); past it those "
                            "commands get an error (docs/resp.md)")
    group.add_argument("--resp-port", type=port_number, metavar="PORT",
                       help="also serve the same store over RESP (Redis protocol) on PORT "
                            "(default: no RESP port)")
    group.add_argument("--max-bulk", type=positive_int, default=DEFAULT_MAX_BULK,
                       metavar="BYTES",
                       help=f"RESP port: largest bulk string accepted, and the largest value "
                            f"SETRANGE/APPEND/SETBIT/BITFIELD may make (proto-max-bulk-len; "
                            f"default {DEFAULT_MAX_BULK}; see docs/resp.md)")
    group.add_argument("--maxmemory", type=_memory_size, default=0, metavar="BYTES",
                       help="embedded store: memory limit for keys and values, Redis's units "
                            "(100mb = 100*1024*1024, 100m = 100*1000*1000, 1gb, 1k...); at the "
                            "limit writes evict keys by --maxmemory-policy or get an out of "
                            "memory error (default 0: no limit; docs/storage.md)")
    group.add_argument("--maxmemory-policy", choices=POLICIES, default="noeviction",
                       metavar="POLICY",
                       help="what a write does at --maxmemory: noeviction (refuse it, default), "
                            "allkeys-lru, allkeys-lfu, allkeys-random, volatile-lru, "
                            "volatile-lfu, volatile-random, volatile-ttl (evict, as Redis)")
    group.add_argument("--maxmemory-samples", type=positive_int, default=DEFAULT_SAMPLES,
                       metavar="N",
                       help=f"keys sampled per eviction, 1..{MAX_SAMPLES} "
                            f"(default {DEFAULT_SAMPLES}, as Redis)")

    group.add_argument("--busy-reply-threshold", type=positive_int,
                       default=DEFAULT_BUSY_REPLY_THRESHOLD_MS, metavar="MS",
                       help="RESP port: once a Lua script has run this long, other clients "
                            "get -BUSY and SCRIPT KILL may stop it (Redis's "
                            f"busy-reply-threshold, formerly lua-time-limit; default "
                            f"{DEFAULT_BUSY_REPLY_THRESHOLD_MS})")

    security = parser.add_argument_group("security (docs/security.md)")
    security.add_argument("--requirepass", metavar="PASSWORD",
                          help="clients must AUTH with this password (Redis's requirepass; "
                               "visible in ps: prefer --requirepass-file; default: none)")
    security.add_argument("--requirepass-file", metavar="PATH",
                          help="the password is the first line of PATH (default: none)")
    security.add_argument("--aclfile", metavar="PATH",
                          help="ACL users in Redis's syntax, one 'user NAME rules...' line "
                               "each (default: none, only the default user)")
    security.add_argument("--protected-mode", choices=("yes", "no"), default="yes",
                          help="while no password is needed, refuse clients that are not on "
                               "loopback (default yes, as Redis)")

    group.add_argument("--rename-command", nargs=2, action="append", metavar=("NAME", "NEWNAME"),
                       help="run command NAME as NEWNAME instead, on both ports; NEWNAME \"\" "
                            "disables it (Redis's rename-command; repeatable; default: none)")
    add_tls_arguments(parser, resp=True)
    add_unix_arguments(parser, resp=True)


def _memory_size(text: str) -> int:
    try:
        return parse_memory(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _access(args: argparse.Namespace) -> AccessControl:
    """The users and rules the security flags give; StartupError (exit 2)."""
    password: bytes | None = None
    if args.requirepass is not None and args.requirepass_file is not None:
        raise _fail("give --requirepass or --requirepass-file, not both", 2)
    if args.requirepass is not None:
        password = os.fsencode(args.requirepass)
    elif args.requirepass_file is not None:
        try:
            with open(args.requirepass_file, "rb") as file:
                password = file.readline().rstrip(b"\r\n")
        except OSError as exc:
            raise _fail(f"--requirepass-file: {exc.strerror or exc}: "
                        f"{args.requirepass_file}", 2) from None
        if not password:
            raise _fail(f"--requirepass-file: the first line of {args.requirepass_file} "
                        "is empty", 2)
    try:
        return AccessControl(requirepass=password or None, aclfile=args.aclfile,
                             protected_mode=args.protected_mode == "yes")
    except AclError as exc:
        raise _fail(f"--aclfile: {exc}", 2) from None
    except ValueError as exc:
        raise _fail(str(exc), 2) from None


def _fail(message: str, status: int) -> StartupError:
    return StartupError(f"sockworks serve kv: {message}", status)


def _pool_size(args: argparse.Namespace) -> int:
    """Redis connections one process may need at once: one per thread that
    can be inside a store call (pool workers, else one per connection)."""
    if args.model == "pool":
        return int(args.workers or DEFAULT_POOL_WORKERS)
    return int(args.max_connections)


def _open_store(args: argparse.Namespace) -> Store:
    """The store --store names; raises StoreError/OSError with a reason."""
    if is_embedded(args.store) and args.data_dir is None:
        if args.fsync is not None:
            logger.warning("--fsync %s has no effect without --data-dir", args.fsync)
        logger.info("no --data-dir: the data lives in memory only and is lost on exit")
    # Any other URL (redis://, rediss://, redis+cluster://...) goes through
    # the factory too, which names the supported schemes when it refuses one.
    store = open_store(args.store, args.data_dir, args.fsync or DEFAULT_FSYNC,
                       max_connections=_pool_size(args), maxmemory=args.maxmemory,
                       maxmemory_policy=args.maxmemory_policy,
                       maxmemory_samples=args.maxmemory_samples,
                       max_pinned=args.store_pinned_connections)
    try:
        store.wait_ready(args.store_timeout)
    except BaseException:
        store.close()
        raise
    return store


def endpoints(args: argparse.Namespace) -> list[Endpoint]:
    """The text port (and the RESP port) on the store the flags name."""
    if args.model in FORKING_MODELS and is_embedded(args.store):
        raise _fail(f"--model {args.model} runs connections in separate processes, which "
                    "cannot share the embedded in-memory store; use --model asyncio, thread, "
                    "pool or socketserver-thread, or a store shared across processes (the "
                    "Redis backend, --store redis://HOST:PORT)", 2)
    if args.resp_port is not None and args.resp_port == args.port != 0:
        raise _fail(f"--port and --resp-port are both {args.port}: give the RESP port "
                    "its own", 2)
    if not args.maxmemory_clients and args.maxmemory:
        # Redis 7's rule: clients may hold a quarter of --maxmemory.
        args.maxmemory_clients = default_maxmemory_clients(args.maxmemory)
    try:
        tls = tls_context(args)
    except ValueError as exc:
        raise _fail(str(exc), 2) from None
    except OSError as exc:
        raise _fail(str(exc), 1) from None
    access = _access(args)
    renames = [(old, new) for old, new in args.rename_command or ()]
    try:
        CommandRenames.of(renames).check([n.decode() for n in (*COMMANDS, *COMMAND_NAMES)])
    except ValueError as exc:
        raise _fail(f"--rename-command: {exc}", 2) from None
    try:
        store = _open_store(args)
    except (StoreError, OSError, ValueError) as exc:
        where = f" in {args.data_dir}" if args.data_dir and is_embedded(args.store) else ""
        reason = str(exc)
        if isinstance(exc, OSError) and exc.strerror:
            reason = exc.strerror + (f": {exc.filename}" if exc.filename else "")
        raise _fail(f"cannot open the store{where}: {reason}", 1) from None
    # The text service opened the store; the Server closes it (both ports).
    service = KvService(store, max_line=args.max_line, max_bulk=args.max_bulk,
                        rename_commands=renames, access=access,
                        options={"appendfsync": args.fsync or DEFAULT_FSYNC})
    made = [Endpoint(args.host, args.port, service)]
    wants_resp = any(v is not None for v in (args.resp_port, args.tls_resp_port,
                                            args.unixsocket_resp))
    resp = (service.resp_service(busy_reply_threshold=args.busy_reply_threshold)
            if wants_resp else None)
    if args.resp_port is not None and resp is not None:
        made.append(Endpoint(args.host, args.resp_port, resp))
    return made + extra_endpoints(args, tls, service, resp)


def main(args: argparse.Namespace) -> int:
    return serve(args, endpoints)
