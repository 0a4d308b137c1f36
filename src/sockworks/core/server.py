"""Run TCP endpoints under a concurrency model: the one entry point services use.

``run_server`` binds, tells the truth about where it listens (one line per
endpoint: ``listening on HOST:PORT (model=NAME)`` with the real port), serves
until SIGINT/SIGTERM, shuts down in the common order and closes the services.
Start-up errors are one clear line on stderr and a non-zero exit code.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from sockworks.core.config import Endpoint, ServerSettings
from sockworks.core.net import format_address
from sockworks.core.stats import ServerStats
from sockworks.models import get_model

logger = logging.getLogger(__name__)

__all__ = ["run_server", "settings_from_args", "EXIT_OK", "EXIT_STARTUP"]

EXIT_OK = 0
EXIT_STARTUP = 1


def settings_from_args(args: argparse.Namespace) -> ServerSettings:
    return ServerSettings(
        model=args.model,
        workers=args.workers,
        max_connections=args.max_connections,
        idle_timeout=args.idle_timeout,
        grace=args.grace,
    )


def startup_error(message: str) -> int:
    """One line, no traceback: the user can act on it."""
    print(f"sockworks: {message}", file=sys.stderr, flush=True)
    return EXIT_STARTUP


def run_server(endpoints: Sequence[Endpoint], settings: ServerSettings,
               stats: ServerStats) -> int:
    model = get_model(settings.model)(endpoints, settings, stats)
    model.install_signals()
    try:
        try:
            addresses = model.bind()
            model.start()
        except OSError as exc:
            return startup_error(exc.strerror or str(exc))
        for address in addresses:
            # With --port 0 this line is how callers learn the real port.
            logger.info("listening on %s (model=%s)", format_address(address), settings.model)
        model.serve_forever()
        return EXIT_OK
    finally:
        for service in {id(ep.service): ep.service for ep in endpoints}.values():
            try:
                service.close()
            except Exception:
                logger.exception("error closing %s service", service.name)
