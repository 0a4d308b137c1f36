"""``sockworks serve echo``: the flags and start-up of the echo server."""

from __future__ import annotations

import argparse

from sockworks.cli.args import positive_int
from sockworks.cli.serve import StartupError, add_tcp_arguments, serve
from sockworks.cli.serve.listeners import (
    add_tls_arguments,
    add_unix_arguments,
    extra_endpoints,
    tls_context,
)
from sockworks.core.config import DEFAULT_MAX_LINE, Endpoint
from sockworks.services.echo import DEFAULT_PORT, TRANSFORMS, EchoService

__all__ = ["DESCRIPTION", "HELP", "add_arguments", "endpoints", "main"]

HELP = "the chapter's uppercase echo server"

DESCRIPTION = """\
The chapter's echo server: every line comes back uppercased.

    sockworks serve echo [--transform upper|none] [--max-line BYTES] [common flags]

Lines end with a newline. A line longer than --max-line gets "ERROR: line
too long" and the connection is closed; its tail is never echoed as a line of
its own. When the client half-closes, a final unterminated line is answered
too (transformed, without a newline added), then the connection closes.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_tcp_arguments(parser, default_port=DEFAULT_PORT,
                      default_model=EchoService.default_model)
    parser.add_argument("--transform", choices=tuple(TRANSFORMS), default="upper",
                        help="what to do to each line (default upper, as the chapter)")
    parser.add_argument("--max-line", type=positive_int, default=DEFAULT_MAX_LINE,
                        metavar="BYTES", help=f"longest line (default {DEFAULT_MAX_LINE})")
    add_tls_arguments(parser, resp=False)
    add_unix_arguments(parser, resp=False)


def endpoints(args: argparse.Namespace) -> list[Endpoint]:
    try:
        tls = tls_context(args)
    except ValueError as exc:
        raise StartupError(f"sockworks serve echo: {exc}", 2) from None
    except OSError as exc:
        raise StartupError(f"sockworks serve echo: {exc}", 1) from None
    service = EchoService(max_line=args.max_line, transform=args.transform)
    return [Endpoint(args.host, args.port, service), *extra_endpoints(args, tls, service)]


def main(args: argparse.Namespace) -> int:
    return serve(args, endpoints)
