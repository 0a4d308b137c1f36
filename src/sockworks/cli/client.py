"""``sockworks client``: talk to the KV server, one command or interactively.

``DESCRIPTION`` (the ``--help`` text) says how it behaves and what it exits with.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import ssl
import sys
from collections.abc import Iterator
from typing import Any

from sockworks.cli.args import client_port, positive_float
from sockworks.client import ConnectionClosed, KvClient, KvClientError, parse_stats
from sockworks.services.kv import DEFAULT_PORT

__all__ = ["DESCRIPTION", "HISTORY_FILE", "main", "register"]

EXIT_OK = 0
EXIT_ERROR_REPLY = 1
EXIT_CONNECTION = 2

#: Readline history, kept to the last HISTORY_LENGTH commands.
HISTORY_FILE = "~/.sockworks_history"
HISTORY_LENGTH = 1000

DESCRIPTION = """\
Talk to the key-value server, one command or interactively.

One-shot: "sockworks client SET greeting hello world" prints the reply and
exits 0, or 1 when the reply is an ERROR: line.

With no command it reads commands from the terminal, with line editing and
history in ~/.sockworks_history, until QUIT or Ctrl-D, and exits 0. When
stdin is not a terminal it reads one command per line from stdin until QUIT
or the end of input, and exits 1 if any reply was an ERROR: line (as a
script would want), else 0.

With --password (or the SOCKWORKS_PASSWORD environment variable, which
keeps it out of ps) it sends AUTH [--user NAME] PASSWORD first.

Exit codes: 0 ok, 1 an ERROR reply, 2 cannot connect, connection lost or
authentication refused.
"""


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "client", help="talk to the KV server (one command, or interactive)",
        description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--host", default="127.0.0.1", help="server address (default 127.0.0.1)")
    parser.add_argument("--port", type=client_port, default=DEFAULT_PORT,
                        help="server port (default %(default)s)")
    parser.add_argument("--timeout", type=positive_float, default=10.0, metavar="SECONDS",
                        help="connect and reply timeout (default 10; 0 waits forever)")
    parser.add_argument("--unix", metavar="PATH",
                        help="connect to the server's UNIX socket at PATH instead "
                             "(--unixsocket; default: TCP)")
    parser.add_argument("--tls", action="store_true",
                        help="connect over TLS (the server's --tls-port; default: plain)")
    parser.add_argument("--cacert", metavar="PATH",
                        help="with --tls: CA certificate(s) to verify the server with "
                             "(default: the system's)")
    parser.add_argument("--cert", metavar="PATH",
                        help="with --tls: client certificate, for mutual TLS (default: none)")
    parser.add_argument("--key", metavar="PATH",
                        help="with --tls: the client certificate's key (default: in --cert)")
    parser.add_argument("--user", metavar="NAME",
                        help="ACL user to AUTH as (default: the default user)")
    parser.add_argument("--password", metavar="PASSWORD",
                        help="AUTH with this password on connect (visible in ps: prefer the "
                             "SOCKWORKS_PASSWORD environment variable; default: none)")
    # REMAINDER so that "INCRBY n -5" is a command, not an unknown option.
    parser.add_argument("words", nargs=argparse.REMAINDER, metavar="COMMAND ...",
                        help="the command and its arguments, e.g. GET key")
    parser.set_defaults(func=main)


def _fail(message: str) -> None:
    sys.stderr.write(f"sockworks client: {message}\n")
    sys.stderr.flush()


def _write_reply(reply: bytes) -> None:
    # Values are bytes: write them as they are, not decoded and re-encoded.
    sys.stdout.buffer.write(reply + b"\n")
    sys.stdout.buffer.flush()


def _is_error(reply: bytes) -> bool:
    return reply.startswith(b"ERROR:")


def main(args: argparse.Namespace) -> int:
    words: list[str] = args.words
    # argv arrives decoded with surrogateescape: fsencode gives back the exact
    # bytes typed, so non-UTF-8 keys and values survive.
    line = b" ".join(os.fsencode(word) for word in words)
    if b"\n" in line or b"\r" in line:
        _fail("a command cannot contain a newline (the protocol is one command per line)")
        return EXIT_CONNECTION
    try:
        args.tls_context = _tls_context(args)
    except (OSError, ValueError) as exc:
        _fail(f"cannot load TLS files: {getattr(exc, 'strerror', None) or exc}")
        return EXIT_CONNECTION
    where = f"unix:{args.unix}" if args.unix else f"{args.host}:{args.port}"
    try:
        client = _connect(args)
    except KvClientError as exc:
        _fail(f"{where} refused the session: {exc}")
        return EXIT_CONNECTION
    except TimeoutError:
        _fail(f"no greeting from {where} within {args.timeout} s")
        return EXIT_CONNECTION
    except ssl.SSLError as exc:
        _fail(f"TLS with {where} failed: {exc.reason or exc}")
        return EXIT_CONNECTION
    except OSError as exc:
        _fail(f"cannot connect to {where}: {exc.strerror or exc}")
        return EXIT_CONNECTION
    with client:
        try:
            if line:
                reply = client.execute(line)
                _write_reply(reply)
                return EXIT_ERROR_REPLY if _is_error(reply) else EXIT_OK
            return _interactive(client, args)
        except ConnectionClosed:
            _fail("the server closed the connection")
            return EXIT_CONNECTION
        except TimeoutError:
            _fail(f"no reply within {args.timeout} s")
            return EXIT_CONNECTION
        except (KvClientError, OSError) as exc:
            _fail(f"connection lost: {exc}")
            return EXIT_CONNECTION


def _tls_context(args: argparse.Namespace) -> ssl.SSLContext | None:
    """The client side of --tls (None without it)."""
    if not args.tls:
        if args.cacert or args.cert or args.key:
            raise ValueError("--cacert, --cert and --key need --tls")
        return None
    context = ssl.create_default_context(cafile=args.cacert)
    if args.cert:
        context.load_cert_chain(args.cert, args.key)
    return context


def _connect(args: argparse.Namespace) -> KvClient:
    """A connection (TCP, TLS or UNIX socket), authenticated when a password
    is given (flag or SOCKWORKS_PASSWORD)."""
    password = args.password if args.password is not None else os.environ.get(
        "SOCKWORKS_PASSWORD")
    return KvClient(args.host, args.port, timeout=args.timeout or None,
                    tls=args.tls_context, unix_path=args.unix,
                    password=None if password is None else os.fsencode(password),
                    username=None if args.user is None else os.fsencode(args.user))


@contextlib.contextmanager
def _history() -> Iterator[None]:
    """Line editing and persistent history, when readline is available."""
    try:
        import readline
    except ImportError:  # e.g. a Python built without it: plain input() still works
        yield
        return
    path = os.path.expanduser(HISTORY_FILE)
    with contextlib.suppress(OSError):
        readline.read_history_file(path)
    readline.set_history_length(HISTORY_LENGTH)
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            readline.write_history_file(path)


def _lines(prompt: str) -> Iterator[bytes]:
    """Commands typed at a terminal, or read from a pipe (no prompt)."""
    if sys.stdin.isatty():
        with _history():
            while True:
                try:
                    text = input(prompt)
                except EOFError:
                    sys.stdout.write("\n")
                    return
                yield text.encode("utf-8", "surrogateescape")
    else:
        for raw in sys.stdin.buffer:
            yield raw.rstrip(b"\r\n")


def _interactive(client: KvClient, args: argparse.Namespace) -> int:
    status = EXIT_OK
    # A person at a terminal has seen each error as it came; ending the
    # session with QUIT or Ctrl-D is a success (as redis-cli's prompt). A
    # script piped into stdin gets status 1 if any of its commands failed.
    scripted = not sys.stdin.isatty()
    try:
        prompt = f"{args.unix}> " if args.unix else f"{args.host}:{args.port}> "
        for line in _lines(prompt):
            if not line.strip():
                continue
            if client.peer_closed():
                # The server dropped us while the user was thinking (its
                # --idle-timeout): reconnect before sending, so nothing runs twice.
                client.close()
                client = _connect(args)
                _fail("the server had closed the idle connection; reconnected")
            reply = client.execute(line)
            if reply.startswith(b"STATS ") and sys.stdout.isatty():
                # For a person at a terminal, one field per line; scripts and
                # pipes get the protocol's single line unchanged.
                for name, value in parse_stats(reply).items():
                    sys.stdout.write(f"{name:<28} {value}\n")
                sys.stdout.flush()
            else:
                _write_reply(reply)
            if _is_error(reply) and scripted:
                status = EXIT_ERROR_REPLY
            if reply == b"BYE":
                break
    finally:
        client.close()  # the caller closes the first client; this one may be new
    return status
