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


#: Descriptors kept for listeners, log files, storage, pipes — beyond one per
#: client (Redis reserves 32 for the same reason: CONFIG_MIN_RESERVED_FDS).
RESERVED_FDS = 64


def raise_fd_limit(max_connections: int) -> None:
    """Raise the soft RLIMIT_NOFILE toward what --max-connections needs.

    Distributions default the soft limit to 1024 while the hard limit is far
    higher; like Redis (adjustOpenFilesLimit) we take what we need up to the
    hard limit, and say so when even that is not enough, instead of letting
    clients meet EMFILE at accept time.
    """
    try:
        import resource
    except ImportError:  # not on this platform
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = max_connections + RESERVED_FDS
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:
            logger.debug("cannot raise RLIMIT_NOFILE to %d: %s", target, exc)
    if soft != resource.RLIM_INFINITY and soft < needed:
        logger.warning("--max-connections %d needs about %d file descriptors but the limit "
                       "is %d: connections beyond ~%d will fail to be accepted (raise the "
                       "limit with ulimit -n)", max_connections, needed, soft,
                       max(0, soft - RESERVED_FDS))


def run_server(endpoints: Sequence[Endpoint], settings: ServerSettings,
               stats: ServerStats) -> int:
    raise_fd_limit(settings.max_connections)
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
