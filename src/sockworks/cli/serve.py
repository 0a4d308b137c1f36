"""``sockworks serve SERVICE``: the flags every server shares, then the service's own.

Each service module in :data:`SERVICES` exposes ``add_arguments(parser)`` for
its own flags and ``main(args) -> int`` to run. TCP services get the common
TCP flags from :func:`add_tcp_arguments`; every service gets the logging flags.
"""

from __future__ import annotations

import argparse
import importlib
from typing import Any

from sockworks.cli.args import port_number, positive_float, positive_int
from sockworks.core.logs import LOG_FORMATS, LOG_LEVELS

__all__ = ["SERVICES", "add_logging_arguments", "add_tcp_arguments", "register",
           "port_number", "positive_float", "positive_int"]

#: service name -> module implementing it
SERVICES = {
    "echo": "sockworks.services.echo",
    "kv": "sockworks.services.kv",
    "udp": "sockworks.services.udp",
}


def add_logging_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("logging")
    group.add_argument("--log-level", default="INFO", type=str.upper, choices=LOG_LEVELS)
    group.add_argument("--log-file", metavar="PATH",
                       help="also log to PATH (rotated at 10 MiB, 5 files kept)")
    group.add_argument("--log-format", default="text", choices=LOG_FORMATS)


def add_tcp_arguments(parser: argparse.ArgumentParser, *, default_port: int,
                      models: tuple[str, ...], default_model: str) -> None:
    """The flags of every TCP ``serve`` command (README: "Common flags")."""
    group = parser.add_argument_group("server")
    group.add_argument("--host", default="127.0.0.1",
                       help="address to bind (default 127.0.0.1; "
                            "'::' or 0.0.0.0 for all interfaces)")
    group.add_argument("--port", type=port_number, default=default_port,
                       help=f"port (default {default_port}; 0 picks a free one)")
    group.add_argument("--model", default=default_model, choices=models,
                       help=f"concurrency model (default {default_model})")
    group.add_argument("--workers", type=positive_int, default=None,
                       help="pool threads (pool, default 50) or processes (prefork, default: CPUs)")
    group.add_argument("--max-connections", type=positive_int, default=1024,
                       help="connections over this get 'server busy' (default 1024)")
    group.add_argument("--idle-timeout", type=positive_float, default=30.0, metavar="SECONDS",
                       help="close connections silent this long; 0 disables (default 30)")
    group.add_argument("--grace", type=positive_float, default=10.0, metavar="SECONDS",
                       help="on SIGTERM/SIGINT, time given to requests in flight (default 10)")
    add_logging_arguments(parser)


def register(sub: Any) -> None:
    serve = sub.add_parser("serve", help="run a server", description="Run a server.")
    services = serve.add_subparsers(dest="service", metavar="SERVICE", required=True)
    for name, module_name in SERVICES.items():
        module = importlib.import_module(module_name)
        parser = services.add_parser(name, help=module.HELP, description=module.__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(parser)
        parser.set_defaults(func=module.main)
