"""``sockworks mcast send|recv``: the chapter's multicast sender and receiver.

The ``--help`` texts (``DESCRIPTION``, ``SEND_DESCRIPTION``,
``RECV_DESCRIPTION``) say what each does; docs/udp.md has the details.
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import sys
from typing import Any

from sockworks.cli.args import integer, number, port_number, positive_int
from sockworks.cli.serve import add_logging_arguments
from sockworks.core.logs import configure_logging
from sockworks.core.net import format_address
from sockworks.services.mcast import (
    DEFAULT_GROUP,
    DEFAULT_PORT,
    DEFAULT_TTL,
    Message,
    MulticastError,
    MulticastReceiver,
    MulticastSender,
)

logger = logging.getLogger(__name__)

__all__ = ["format_message", "register"]

EXIT_OK = 0
EXIT_FAILED = 1

DESCRIPTION = """\
Send or receive multicast datagrams (the chapter's sender and receiver).

    sockworks mcast send [--group 239.1.1.1] [--port 5007] [--ttl 1]
                         [--interface ADDR|NAME] [--loop|--no-loop]
                         [--bind-address ADDR] MESSAGE...
    sockworks mcast recv [--group 239.1.1.1] [--port 5007] [--interface ADDR|NAME]
                         [--source ADDR] [--count N] [--timeout S] [--json]

--interface picks the interface by address (127.0.0.1) or by name (lo,
eth0); without it the kernel uses the default route's. The TTL defaults to 1
(this link only); the chapter used 2. recv --source ADDR accepts only ADDR's
datagrams (source-specific multicast); send --bind-address ADDR sends from
the local address ADDR, which is what such a receiver filters on. See
docs/udp.md.
"""

SEND_DESCRIPTION = """\
Send each MESSAGE (UTF-8) as one datagram to a multicast group, through the
interface --interface names, with hop limit --ttl (1: this link only).
Exit 0 once every message is sent, 1 with a one-line reason otherwise.
"""

RECV_DESCRIPTION = """\
Join a multicast group and print each datagram that arrives, as
"SENDER: TEXT" (bytes that are not UTF-8 shown as escapes) or, with --json,
one object a line: group, port (the group's), sender (host:port), size, data
and encoding (utf-8, or base64 when the bytes are not valid UTF-8).

Logs "joined GROUP port PORT on INTERFACE" to stderr once it is ready.
Runs until interrupted, or until --count datagrams have arrived; --timeout
ends it after that many seconds of silence (exit 1 if --count was not reached).
"""


def format_message(message: Message, as_json: bool) -> str:
    sender = format_address(message.sender)
    if not as_json:
        return f"{sender}: {message.data.decode('utf-8', 'backslashreplace')}"
    try:
        data, encoding = message.data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        data, encoding = base64.b64encode(message.data).decode("ascii"), "base64"
    return json.dumps({"group": message.group, "port": message.port, "sender": sender,
                       "size": len(message.data), "data": data, "encoding": encoding},
                      ensure_ascii=False)


def _fail(message: str) -> int:
    print(f"sockworks mcast: {message}", file=sys.stderr, flush=True)
    return EXIT_FAILED


def run_send(args: argparse.Namespace) -> int:
    configure_logging(args.log_level, args.log_file, args.log_format)
    try:
        with MulticastSender(args.group, args.port, interface=args.interface, ttl=args.ttl,
                             loop=args.loop, source=args.bind_address) as sender:
            for text in args.messages:
                size = sender.send(text.encode("utf-8"))
                logger.info("sent %d bytes to %s port %d via %s", size, sender.group,
                            args.port, sender.interface)
    except (MulticastError, ValueError) as exc:
        return _fail(str(exc))
    except OSError as exc:
        return _fail(f"cannot send to {args.group} port {args.port}: {exc.strerror or exc}")
    return EXIT_OK


def run_recv(args: argparse.Namespace) -> int:
    configure_logging(args.log_level, args.log_file, args.log_format)
    try:
        receiver = MulticastReceiver(args.group, args.port, interface=args.interface,
                                     source=args.source)
    except (MulticastError, ValueError) as exc:
        return _fail(str(exc))
    except OSError as exc:
        return _fail(f"cannot join {args.group} port {args.port}: {exc.strerror or exc}")
    with receiver:
        logger.info("joined %s port %d on %s%s", receiver.group, receiver.port,
                    receiver.interface, f" from source {args.source}" if args.source else "")
        received = 0
        while args.count is None or received < args.count:
            message = receiver.recv(args.timeout)
            if message is None:
                if args.count is not None:
                    return _fail(f"timed out after {args.timeout:g} s of silence with "
                                 f"{received} of {args.count} messages")
                return EXIT_OK
            print(format_message(message, args.json), flush=True)
            received += 1
    return EXIT_OK


class _RenamedFlag(argparse.Action):
    """A flag that was renamed: using it is an error that names the new one."""

    def __init__(self, option_strings: list[str], dest: str, *, new: str,
                 **kwargs: Any) -> None:
        super().__init__(option_strings, dest, **kwargs)
        self.new = new

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        parser.error(f"{option_string} was renamed {self.new} (the local address to send "
                     "from); 'recv --source' is the sender a receiver accepts")


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--group", default=DEFAULT_GROUP,
                        help=f"multicast group, IPv4 or IPv6 (default {DEFAULT_GROUP})")
    parser.add_argument("--port", type=port_number, default=DEFAULT_PORT,
                        help=f"UDP port (default {DEFAULT_PORT})")
    parser.add_argument("--interface", metavar="ADDR|NAME",
                        help="interface by address or name (default: the kernel's choice)")


def register(sub: Any) -> None:
    mcast = sub.add_parser("mcast", help="send or receive multicast datagrams",
                           description=DESCRIPTION,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = mcast.add_subparsers(dest="action", metavar="ACTION", required=True)

    send = actions.add_parser("send", help="send each MESSAGE as one datagram",
                              description=SEND_DESCRIPTION,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    _common(send)
    send.add_argument("--ttl", type=integer(0, 255), default=DEFAULT_TTL,
                      help=f"hop limit (default {DEFAULT_TTL}: this link only)")
    send.add_argument("--loop", action=argparse.BooleanOptionalAction, default=True,
                      help="deliver to receivers on this host too (default on)")
    send.add_argument("--bind-address", metavar="ADDR",
                      help="send from this local address (what 'recv --source' filters on; "
                           "default: the interface's)")
    # The flag was called --source until it was renamed for meaning the
    # opposite of recv's --source; say so instead of "unrecognized arguments".
    send.add_argument("--source", action=_RenamedFlag, help=argparse.SUPPRESS,
                      new="--bind-address")
    send.add_argument("messages", metavar="MESSAGE", nargs="+",
                      help="text to send, one datagram each")
    add_logging_arguments(send)
    send.set_defaults(func=run_send)

    recv = actions.add_parser("recv", help="join a group and print what arrives",
                              description=RECV_DESCRIPTION,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    _common(recv)
    recv.add_argument("--source", metavar="ADDR",
                      help="only accept datagrams from this sender (source-specific membership; "
                           "default: any sender)")
    recv.add_argument("--count", type=positive_int, default=None,
                      help="exit after N messages (exit 1 if --timeout passes first; "
                           "default: run until interrupted)")
    recv.add_argument("--timeout", type=number(above=0), default=None, metavar="SECONDS",
                      help="give up after this long without a datagram (default: wait forever)")
    recv.add_argument("--json", action="store_true", help="one JSON object per message")
    add_logging_arguments(recv)
    recv.set_defaults(func=run_recv)
