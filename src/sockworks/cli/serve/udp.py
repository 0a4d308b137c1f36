"""``sockworks serve udp``: the flags and start-up of the JSON datagram service."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Callable
from types import FrameType

from sockworks.cli.args import positive_float, positive_int
from sockworks.cli.serve import (
    EXIT_OK,
    EXIT_STARTUP,
    add_listen_arguments,
    add_logging_arguments,
    add_metrics_arguments,
    reload_log_level,
    start_logging,
    startup_error,
)
from sockworks.core.logs import log_in_signal_handler, reopen_log_files
from sockworks.core.metrics import MetricsServer, MetricsUnavailable
from sockworks.core.net import format_address
from sockworks.protocols import udpjson
from sockworks.services.udp import (
    DEFAULT_BURST,
    DEFAULT_MAX_SOURCES,
    DEFAULT_PORT,
    DEFAULT_RATE,
    UdpJsonService,
    open_udp_socket,
)
from sockworks.services.udp_models import UDP_MODELS, get_udp_model

__all__ = ["DESCRIPTION", "HELP", "add_arguments", "main"]

logger = logging.getLogger(__name__)

HELP = "the chapter's JSON-over-UDP time service, made safe (time/ping/echo/stats)"

DESCRIPTION = """\
The stateless JSON datagram service: time, ping, echo, stats.

    sockworks serve udp [--host 127.0.0.1] [--port 9001] [--model blocking|asyncio]
                        [--rate 100] [--burst 200] [--max-sources 4096]
                        [--max-datagram 1232] [logging flags]

See docs/udp.md for the protocol and why the limits are what they are.
"""

#: The largest UDP payload over IPv4 (65535 - 8 - 20).
MAX_UDP_PAYLOAD = 65507


def _datagram_size(text: str) -> int:
    value = positive_int(text)
    if value > MAX_UDP_PAYLOAD:
        raise argparse.ArgumentTypeError(f"a UDP payload is at most {MAX_UDP_PAYLOAD} bytes")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    models = tuple(UDP_MODELS)
    group = add_listen_arguments(parser, default_port=DEFAULT_PORT, default_model=models[0],
                                 models=models)
    add_metrics_arguments(group)
    limits = parser.add_argument_group("limits")
    limits.add_argument("--rate", type=positive_float, default=DEFAULT_RATE,
                        help=f"requests/s allowed per source address (default {DEFAULT_RATE:g})")
    limits.add_argument("--burst", type=positive_int, default=DEFAULT_BURST,
                        help=f"burst allowed per source address (default {DEFAULT_BURST})")
    limits.add_argument("--max-sources", type=positive_int, default=DEFAULT_MAX_SOURCES,
                        help="sources tracked by the rate limiter, least recently seen "
                             f"evicted first (default {DEFAULT_MAX_SOURCES})")
    limits.add_argument("--max-datagram", type=_datagram_size,
                        default=udpjson.DEFAULT_MAX_DATAGRAM, metavar="BYTES",
                        help="larger requests get 'datagram too large' "
                             f"(default {udpjson.DEFAULT_MAX_DATAGRAM})")
    add_logging_arguments(parser)


def on_sighup(args: argparse.Namespace) -> Callable[[int, FrameType | None], None]:
    """SIGHUP as the TCP services take it: reopen --log-file (logrotate),
    re-read log_level from the --config file."""
    reload = reload_log_level(args)

    def handler(signum: int, frame: FrameType | None) -> None:
        reopen_log_files()
        log_in_signal_handler(logger, logging.INFO,
                              "received SIGHUP: reopened log files, re-reading settings")
        try:
            reload()
        except Exception:
            log_in_signal_handler(logger, logging.ERROR, "SIGHUP failed", exc_info=True)

    return handler


def main(args: argparse.Namespace) -> int:
    start_logging(args)
    if args.rate <= 0:
        return startup_error("--rate must be > 0")
    service = UdpJsonService(max_datagram=args.max_datagram, rate=args.rate,
                             burst=args.burst, max_sources=args.max_sources)
    try:
        sock = open_udp_socket(args.host, args.port)
    except OSError as exc:
        return startup_error(str(exc.strerror or exc))
    with sock:
        server = get_udp_model(args.model)(sock, service)
        metrics = None
        if args.metrics_port is not None:
            try:
                # Bound already: ready from the start (/readyz).
                metrics = MetricsServer(args.metrics_host, args.metrics_port, None, {},
                                        lambda: True, datagrams=service.metrics)
            except MetricsUnavailable as exc:
                print(f"sockworks: {exc}", file=sys.stderr, flush=True)
                return 2
            except OSError as exc:
                return startup_error(f"cannot listen on the metrics port {args.metrics_host}:"
                                     f"{args.metrics_port}: {exc.strerror or exc}")
            metrics.start()
        server.install_signal_handlers()
        signal.signal(signal.SIGHUP, on_sighup(args))
        # With --port 0 this line is how callers learn the real port.
        logger.info("listening on %s (model=%s)", format_address(sock.getsockname()),
                    args.model)
        try:
            server.serve_forever()
        finally:
            if metrics is not None:
                metrics.close()
    if server.failed:
        return EXIT_STARTUP + 1
    logger.info("server stopped: %s", " ".join(
        f"{key}={value}" for key, value in service.snapshot().items()))
    return EXIT_OK
