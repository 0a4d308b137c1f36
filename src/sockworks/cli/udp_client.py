"""``sockworks udp-client``: send one JSON request to ``serve udp``, print the reply.

``DESCRIPTION`` (the ``--help`` text) says how requests are built, matched to
replies and retried, and what the command exits with.
"""

from __future__ import annotations

import argparse
import json
import random
import socket
import sys
import time
from typing import Any

from sockworks.cli.args import client_port, integer, number
from sockworks.core.net import format_address
from sockworks.protocols.udpjson import MAX_REPLY, PAD_TO, REQUEST_TYPES
from sockworks.services.udp import DEFAULT_PORT

__all__ = ["build_request", "parse_field", "register", "request"]

EXIT_OK = 0
EXIT_NO_REPLY = 1
EXIT_ERROR_REPLY = 1   # as `sockworks client`; the reply is on stdout, so it tells

DESCRIPTION = f"""\
Send one JSON request to "sockworks serve udp" and print the reply.

    sockworks udp-client [--host 127.0.0.1] [--port 9001] [--timeout 1] [--retries 3]
                         TYPE [key=value | key:=json ...]

key=value adds a string field, key:=json a field holding any JSON value
(httpie's convention): sockworks udp-client echo data:='[1, 2]'.

The request carries a random id; only a reply from the server's address with
that id is accepted (anything else is ignored), so a late reply to an earlier
attempt still counts and a stray datagram never does. Each retry waits twice
as long as the one before (RFC 8085 section 3.1.3: a UDP application
retransmitting must back off). The request is padded with trailing spaces to
{PAD_TO} bytes so the server's anti-amplification rule allows any reply
(--no-pad to see it refuse).

A reply without an id that is an error ({{"error": "datagram too large"}}:
the server could not read the id) is accepted too, since this is the only
request outstanding.

Exit 0 with the reply JSON on stdout; exit 1 with an error reply (printed on
stdout too) or when no reply came (a message on stderr, nothing on stdout).
"""

#: Receive buffer: larger than any reply the server may send, so a bigger
#: datagram (not from our server) cannot be mistaken for a truncated one.
RECV_SIZE = 65536


class NoReply(Exception):
    """No matching reply arrived; the message says why."""


def parse_field(text: str) -> tuple[str, object]:
    """``key=value`` -> (key, "value"); ``key:=json`` -> (key, parsed json)."""
    key, sep, value = text.partition("=")
    if not sep or not key or key == ":":
        raise argparse.ArgumentTypeError(f"expected key=value or key:=json, got {text!r}")
    if key.endswith(":"):
        try:
            return key[:-1], json.loads(value)
        except json.JSONDecodeError as exc:
            raise argparse.ArgumentTypeError(f"{key[:-1]}: invalid JSON ({exc.msg})") from None
    return key, value


def build_request(kind: str, fields: list[tuple[str, object]], request_id: int,
                  pad: bool = True) -> bytes:
    doc: dict[str, object] = {"type": kind, "id": request_id}
    doc.update(fields)
    data = json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    if pad and len(data) < PAD_TO:
        data += b" " * (PAD_TO - len(data))
    return data


def request(host: str, port: int, payload: bytes, request_id: object, *,
            timeout: float, retries: int) -> dict[str, Any]:
    """Send ``payload`` until a reply with ``request_id`` arrives; return it."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    except socket.gaierror as exc:
        raise NoReply(f"cannot resolve {host!r}: {exc.strerror}") from None
    family, socktype, proto, _, address = infos[0]
    where = format_address(address)
    with socket.socket(family, socktype, proto) as sock:
        # connect(): the kernel drops datagrams from other addresses, and an
        # ICMP port-unreachable comes back as ConnectionRefusedError.
        sock.connect(address)
        wait = timeout
        for _attempt in range(retries + 1):
            try:
                sock.send(payload)
                reply = _await_reply(sock, request_id, time.monotonic() + wait)
            except ConnectionRefusedError:
                raise NoReply(f"no UDP server at {where} (connection refused)") from None
            if reply is not None:
                return reply
            wait *= 2
    raise NoReply(f"no reply from {where} after {retries + 1} attempt(s) "
                  f"(first timeout {timeout:g} s, doubled each retry)")


def _await_reply(sock: socket.socket, request_id: object,
                 deadline: float) -> dict[str, Any] | None:
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        sock.settimeout(remaining)
        try:
            data = sock.recv(RECV_SIZE)
        except TimeoutError:
            return None
        if len(data) > MAX_REPLY:
            continue  # not something our server sends
        try:
            doc = json.loads(data)
        except ValueError:
            continue
        if not isinstance(doc, dict):
            continue
        if doc.get("id") == request_id:
            return doc
        if "id" not in doc and "error" in doc:
            # The server could not read our id (a datagram too large, not
            # JSON): its error can only be about our request, the one we have
            # outstanding on this connected socket.
            return doc


def run(args: argparse.Namespace) -> int:
    request_id = random.getrandbits(31)
    payload = build_request(args.type, args.fields, request_id, pad=not args.no_pad)
    try:
        reply = request(args.host, args.port, payload, request_id,
                        timeout=args.timeout, retries=args.retries)
    except NoReply as exc:
        print(f"sockworks udp-client: {exc}", file=sys.stderr)
        return EXIT_NO_REPLY
    except OSError as exc:
        print(f"sockworks udp-client: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_NO_REPLY
    print(json.dumps(reply, ensure_ascii=False))
    return EXIT_ERROR_REPLY if "error" in reply else EXIT_OK


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "udp-client", help="send one request to 'serve udp' and print the reply",
        description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1", help="server address (default 127.0.0.1)")
    parser.add_argument("--port", type=client_port, default=DEFAULT_PORT,
                        help="server port, 1-65535 (default %(default)s)")
    parser.add_argument("--timeout", type=number(above=0), default=1.0, metavar="SECONDS",
                        help="wait this long for the first reply, doubling per retry (default 1)")
    parser.add_argument("--retries", type=integer(0, 10), default=3,
                        help="resend this many times before giving up (default 3)")
    parser.add_argument("--no-pad", action="store_true",
                        help="do not pad the request (the server may then refuse large replies)")
    parser.add_argument("type", metavar="TYPE",
                        help=f"request type ({', '.join(REQUEST_TYPES)}; others get an error)")
    parser.add_argument("fields", metavar="key=value", nargs="*", type=parse_field,
                        help="extra request fields: key=string or key:=json")
    parser.set_defaults(func=run)
