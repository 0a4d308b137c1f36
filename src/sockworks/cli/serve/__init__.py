"""``sockworks serve SERVICE``: the flags every server shares, then the service's own.

Each module in :data:`SERVICES` (one per service) exposes ``HELP``,
``DESCRIPTION``, ``add_arguments(parser)`` for its flags and ``main(args) ->
int`` to run; a TCP service's module also has ``endpoints(args)``, what
:func:`build_server` serves (the test suite builds in-process servers from
command lines the same way). TCP services get the common flags from
:func:`add_tcp_arguments` (built from the core's settings table, so defaults
and checks are the library's); every service gets the logging flags.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any

from sockworks.cli.args import port_number, setting_type
from sockworks.core.command_stats import CommandStats
from sockworks.core.config import DEFAULT_HOST, SERVER_SETTINGS, Endpoint
from sockworks.core.logs import LOG_FORMATS, LOG_LEVELS, configure_logging, set_log_level
from sockworks.core.metrics import MetricsServer, MetricsUnavailable
from sockworks.core.notify import Notifier
from sockworks.models import FORKING_MODELS, MODELS
from sockworks.server import Server

__all__ = ["SERVICES", "EXIT_OK", "EXIT_STARTUP", "StartupError", "add_listen_arguments",
           "add_logging_arguments", "add_tcp_arguments", "build_server", "register", "serve",
           "startup_error", "start_logging"]

#: service name -> module implementing its sub-command
SERVICES = {
    "echo": "sockworks.cli.serve.echo",
    "kv": "sockworks.cli.serve.kv",
    "udp": "sockworks.cli.serve.udp",
}

logger = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_STARTUP = 1


def add_logging_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("logging")
    group.add_argument("--log-level", default="INFO", type=str.upper, choices=LOG_LEVELS,
                       help="least severe level logged (default %(default)s)")
    group.add_argument("--log-file", metavar="PATH",
                       help="also log to PATH, rotated at 10 MiB, 5 files kept "
                            "(default: stderr only)")
    group.add_argument("--log-format", default="text", choices=LOG_FORMATS,
                       help="text, or json: one object per line (default %(default)s)")


def start_logging(args: argparse.Namespace) -> None:
    configure_logging(args.log_level, args.log_file, args.log_format)


def add_listen_arguments(parser: argparse.ArgumentParser, *, default_port: int,
                         default_model: str, models: Sequence[str]) -> argparse._ArgumentGroup:
    """--host, --port and --model, in a "server" group (returned)."""
    group = parser.add_argument_group("server")
    group.add_argument("--host", default=DEFAULT_HOST,
                       help=f"address to bind (default {DEFAULT_HOST}; "
                            "'::' or 0.0.0.0 for all interfaces, dual-stack)")
    group.add_argument("--port", type=port_number, default=default_port,
                       help=f"port (default {default_port}; 0 picks a free one)")
    group.add_argument("--model", default=default_model, choices=tuple(models),
                       help=f"concurrency model (default {default_model})")
    return group


def add_tcp_arguments(parser: argparse.ArgumentParser, *, default_port: int,
                      default_model: str, models: Sequence[str] = tuple(MODELS)) -> None:
    """The flags of every TCP ``serve`` command (README: "Common flags")."""
    group = add_listen_arguments(parser, default_port=default_port,
                                 default_model=default_model, models=models)
    for setting in SERVER_SETTINGS.values():
        group.add_argument(setting.flag, type=setting_type(setting), default=setting.default,
                           metavar=setting.metavar, help=setting.help)
    add_metrics_arguments(group)
    add_logging_arguments(parser)


def add_metrics_arguments(group: argparse._ArgumentGroup) -> None:
    """--metrics-port and --metrics-host (TCP services and UDP)."""
    group.add_argument("--metrics-port", type=port_number, metavar="PORT",
                       help="serve Prometheus metrics, /healthz and /readyz over HTTP on PORT "
                            "(needs the 'metrics' extra; default: off)")
    group.add_argument("--metrics-host", default=DEFAULT_HOST,
                       help=f"address of the metrics port (default {DEFAULT_HOST})")


def server_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The parsed values of the common flags, as Server keywords."""
    return {name: getattr(args, name) for name in SERVER_SETTINGS}


def startup_error(message: str) -> int:
    """One line, no traceback: the user can act on it."""
    print(f"sockworks: {message}", file=sys.stderr, flush=True)
    return EXIT_STARTUP


class StartupError(Exception):
    """A flag combination or resource that stops start-up: ``line`` goes to
    stderr as it is, and the process exits with ``status``."""

    def __init__(self, line: str, status: int = EXIT_STARTUP) -> None:
        super().__init__(line)
        self.line = line
        self.status = status


#: What a TCP service's module provides: the endpoints its flags describe.
EndpointsFactory = Callable[[argparse.Namespace], Sequence[Endpoint]]


def build_server(args: argparse.Namespace, endpoints: EndpointsFactory) -> Server:
    """The Server the parsed flags describe (not started). Raises StartupError."""
    made = list(endpoints(args))
    try:
        return Server(endpoints=made, model=args.model, **server_settings(args))
    except BaseException:
        for ep in made:
            ep.service.close()
        raise


def reload_log_level(args: argparse.Namespace) -> Callable[[], None]:
    """The SIGHUP hook: ``log_level`` from the ``--config`` file again (a
    ``--log-level`` flag still wins). A broken file is logged, not fatal."""
    def reload() -> None:
        if args.config is None or "--log-level" in sys.argv:
            return
        from sockworks.cli import build_parser
        from sockworks.cli.settings_file import ConfigError, effective_settings

        try:
            level = effective_settings(build_parser(), args.service, args.config)["log_level"]
        except ConfigError as exc:
            logger.error("SIGHUP: %s; keeping the current settings", exc)
            return
        set_log_level(str(level))
        logger.info("SIGHUP: log level %s", level)

    return reload


def serve(args: argparse.Namespace, endpoints: EndpointsFactory) -> int:
    """``main`` of a TCP service: log, build, serve until SIGINT/SIGTERM."""
    start_logging(args)
    Notifier.from_environment().status("opening the store" if args.service == "kv"
                                       else "starting")
    try:
        server = build_server(args, endpoints)
    except StartupError as exc:
        print(exc.line, file=sys.stderr, flush=True)
        return exc.status
    server.reload_hooks.append(reload_log_level(args))
    try:
        metrics = start_metrics(args, server)
    except StartupError as exc:
        for ep in server.endpoints:
            ep.service.close()
        print(exc.line, file=sys.stderr, flush=True)
        return exc.status
    try:
        server.serve_forever()
    except OSError as exc:
        return startup_error(exc.strerror or str(exc))
    finally:
        if metrics is not None:
            metrics.close()
    return EXIT_OK


def start_metrics(args: argparse.Namespace, server: Server) -> MetricsServer | None:
    """The ``--metrics-port`` endpoint, serving; None without the flag."""
    if args.metrics_port is None:
        return None
    if args.model in FORKING_MODELS and args.model != "prefork":
        raise StartupError(f"sockworks: --metrics-port is not supported with --model "
                           f"{args.model} (a process per connection: its figures are not "
                           "summed); use prefork, asyncio, thread, pool or "
                           "socketserver-thread", 2)
    services = {ep.service.name: ep.service for ep in server.endpoints}
    snapshots = {name: getattr(svc, "snapshot") for name, svc in services.items()  # noqa: B009
                 if callable(getattr(svc, "snapshot", None))}
    stores = [svc.store for svc in services.values() if hasattr(svc, "store")]
    commands: dict[str, CommandStats] = {}
    for name, svc in services.items():
        command_stats = getattr(svc, "command_stats", None)
        if isinstance(command_stats, CommandStats):
            commands[name] = command_stats

    shared = server.stats.shared

    def ready() -> bool:
        listening = shared.ready if shared is not None else server.listening
        return listening and all(store.ready() for store in stores)

    try:
        metrics = MetricsServer(args.metrics_host, args.metrics_port, server.stats,
                                snapshots, ready, commands)
    except MetricsUnavailable as exc:
        raise StartupError(f"sockworks: {exc}", 2) from None
    except OSError as exc:
        raise StartupError(f"sockworks: cannot listen on the metrics port "
                           f"{args.metrics_host}:{args.metrics_port}: {exc.strerror or exc}",
                           1) from None
    if shared is not None:
        metrics.start_process()     # prefork: the parent stays single-threaded
    else:
        metrics.start()
    return metrics


def register(sub: Any) -> None:
    serve = sub.add_parser("serve", help="run a server", description="Run a server.")
    services = serve.add_subparsers(dest="service", metavar="SERVICE", required=True)
    for name, module_name in SERVICES.items():
        module = importlib.import_module(module_name)
        parser = services.add_parser(name, help=module.HELP, description=module.DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(parser)
        parser.add_argument("--config", metavar="PATH",
                            help="read settings from this TOML file first; flags given here "
                                 "override it (docs/configuration.md; default: none)")
        parser.set_defaults(func=module.main, endpoints=getattr(module, "endpoints", None))
