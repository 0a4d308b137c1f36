"""The interface every concurrency model implements, and the shutdown order.

Lifecycle, driven by :func:`sockworks.core.server.run_server`::

    model = SomeModel(endpoints, settings, stats)
    addresses = model.bind()       # listening sockets exist; real ports known
    model.start()                  # workers running (prefork); may be a no-op
    model.serve_forever()          # until SIGINT/SIGTERM, then graceful stop

Shutdown has one order for every model (uvicorn, aiohttp): stop accepting;
close idle connections; let busy ones finish their reply; wait up to
``grace``; force-close the rest; join threads / reap children; close the
services (flushes storage). A second signal exits at once.
"""

from __future__ import annotations

import abc
import ctypes
import logging
import os
import signal
from collections.abc import Callable, Sequence
from types import FrameType

from sockworks.core.config import Endpoint, ServerSettings
from sockworks.core.stats import ServerStats

logger = logging.getLogger(__name__)

__all__ = ["Model", "install_stop_signals", "STOP_SIGNALS", "exit_now", "die_with_parent"]

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Model(abc.ABC):
    name: str = "?"
    #: Default --workers for models that use it.
    default_workers: int | None = None

    def __init__(self, endpoints: Sequence[Endpoint], settings: ServerSettings,
                 stats: ServerStats) -> None:
        self.endpoints = list(endpoints)
        self.settings = settings
        self.stats = stats

    @abc.abstractmethod
    def bind(self) -> list[tuple[object, ...]]:
        """Create the listening sockets; return their real addresses, in
        endpoint order. Raises OSError with a clear message on failure."""

    def start(self) -> None:
        """Start anything that must run before clients are told we listen."""

    @abc.abstractmethod
    def serve_forever(self) -> None:
        """Serve until stopped by a signal (or :meth:`request_stop`), then
        shut down gracefully. Called in the main thread."""

    @abc.abstractmethod
    def request_stop(self) -> None:
        """Begin graceful shutdown. Safe from a signal handler or any thread,
        and before :meth:`serve_forever` has started (it then returns at once)."""

    # -- signals -------------------------------------------------------------
    _signals_received = 0

    def install_signals(self) -> None:
        """Route SIGINT/SIGTERM to :meth:`on_stop_signal`. Called before the
        model binds, so a signal sent the moment ``listening on`` is logged
        is already a graceful stop, never the default "die at once"."""
        for sig in STOP_SIGNALS:
            signal.signal(sig, lambda signum, frame: self.on_stop_signal(signum))

    def on_stop_signal(self, signum: int) -> None:
        """First SIGINT/SIGTERM: graceful shutdown. The second: exit at once."""
        self._signals_received += 1
        if self._signals_received > 1:
            self.on_second_signal()
            exit_now(signum)
        logger.info("received %s: shutting down gracefully", signal.Signals(signum).name)
        self.request_stop()

    def on_second_signal(self) -> None:
        """Last words before an immediate exit (e.g. SIGKILL the children)."""


#: prctl(2) option: the signal a process gets when its parent dies.
PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int) -> None:
    """In a child process: have the kernel SIGTERM it if the parent dies
    (even by SIGKILL), so no worker is left serving on its own.
    Linux's PR_SET_PDEATHSIG; elsewhere the worker outlives its parent."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


def exit_now(signum: int) -> None:
    """The second SIGINT/SIGTERM: the operator wants out, now."""
    logger.warning("second %s: exiting immediately", signal.Signals(signum).name)
    logging.shutdown()
    os._exit(1)


def install_stop_signals(on_stop: Callable[[], None],
                         before_exit: Callable[[], None] | None = None) -> None:
    """First SIGINT/SIGTERM -> ``on_stop()``; the second runs ``before_exit``
    (e.g. SIGKILL the children) and exits at once."""
    received: list[int] = []

    def handler(signum: int, frame: FrameType | None) -> None:
        if received:
            if before_exit is not None:
                before_exit()
            exit_now(signum)
        received.append(signum)
        logger.info("received %s: shutting down gracefully", signal.Signals(signum).name)
        on_stop()

    for sig in STOP_SIGNALS:
        signal.signal(sig, handler)
