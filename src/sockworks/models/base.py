"""The interface every concurrency model implements, and the shutdown order.

Lifecycle, driven by :class:`sockworks.server.Server`::

    model = SomeModel(endpoints, settings, stats)
    addresses = model.bind()       # listening sockets exist; real ports known
    model.start()                  # workers running (prefork); may be a no-op
    model.serve_forever()          # until request_stop(), then graceful stop

``Server.serve_forever`` also routes SIGINT/SIGTERM to the model
(:meth:`Model.install_signals`); ``Server.start`` runs ``serve_forever`` in a
thread and installs no handlers, so every non-forking model runs in any thread.

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
import socket
from collections.abc import Callable, Sequence
from types import FrameType

from sockworks.core.config import Endpoint, ServerSettings
from sockworks.core.logs import log_in_signal_handler
from sockworks.core.net import remove_unix_socket
from sockworks.core.stats import ServerStats

logger = logging.getLogger(__name__)

__all__ = ["Model", "install_stop_signals", "STOP_SIGNALS", "exit_now", "die_with_parent",
           "kill_quietly"]

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Model(abc.ABC):
    name: str = "?"
    #: Serves connections in child processes (see models.FORKING_MODELS).
    forks: bool = False

    def __init__(self, endpoints: Sequence[Endpoint], settings: ServerSettings,
                 stats: ServerStats) -> None:
        self.endpoints = list(endpoints)
        self.settings = settings
        self.stats = stats
        #: The listening sockets :meth:`bind` opened, in endpoint order.
        self.listeners: list[socket.socket] = []

    @abc.abstractmethod
    def bind(self) -> list[tuple[object, ...]]:
        """Create the listening sockets; return their real addresses, in
        endpoint order. Raises OSError with a clear message on failure."""

    def start(self) -> None:
        """Start anything that must run before clients are told we listen."""

    def close_listeners(self) -> None:
        """Close what :meth:`bind` opened (a failed start leaves nothing open,
        not even a UNIX socket file)."""
        for sock, ep in zip(self.listeners, self.endpoints):
            sock.close()
            if ep.unix_path is not None and ep.listener is None:
                remove_unix_socket(ep.unix_path)
        for sock in self.listeners[len(self.endpoints):]:
            sock.close()

    @abc.abstractmethod
    def serve_forever(self) -> None:
        """Serve until stopped by a signal (or :meth:`request_stop`), then
        shut down gracefully. Called in the main thread."""

    @abc.abstractmethod
    def request_stop(self) -> None:
        """Begin graceful shutdown. Safe from a signal handler or any thread,
        and before :meth:`serve_forever` has started (it then returns at once)."""

    # -- signals -------------------------------------------------------------
    def install_signals(self, before_stop: Callable[[], None] | None = None) -> None:
        """Route SIGINT/SIGTERM to a graceful stop (the second: exit at once).
        Called before the model binds, so a signal sent the moment
        ``listening on`` is logged is already a graceful stop, never the
        default "die at once". Main thread only (a Python rule).
        ``before_stop`` runs first (the Server tells systemd STOPPING=1)."""
        def stop() -> None:
            if before_stop is not None:
                before_stop()
            self.request_stop()

        install_stop_signals(stop, self.on_second_signal)

    def on_reload(self) -> None:
        """SIGHUP reached the server (its own hooks have run): pass it on to
        anything that must reload too (prefork's workers)."""

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


def kill_quietly(pid: int, sig: int) -> None:
    """Signal a child that may already be gone (reaped): not an error."""
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def exit_now(signum: int) -> None:
    """The second SIGINT/SIGTERM: the operator wants out, now."""
    log_in_signal_handler(logger, logging.WARNING, "second %s: exiting immediately",
                          signal.Signals(signum).name)
    try:
        logging.shutdown()
    finally:
        os._exit(1)


def install_stop_signals(on_stop: Callable[[], None],
                         before_exit: Callable[[], None] | None = None, *,
                         signals: Sequence[int] = STOP_SIGNALS,
                         escalate: bool = True) -> None:
    """First stop signal -> ``on_stop()``; the second runs ``before_exit``
    (e.g. SIGKILL the children) and exits at once, unless ``escalate`` is
    False (a supervised worker: its parent escalates, with SIGKILL)."""
    received: list[int] = []

    def handler(signum: int, frame: FrameType | None) -> None:
        if received:
            if not escalate:
                return
            if before_exit is not None:
                before_exit()
            exit_now(signum)
        received.append(signum)
        # Guarded: this may interrupt the main thread mid-log-line, and the
        # stop request must never be lost to a logging error.
        log_in_signal_handler(logger, logging.INFO, "received %s: shutting down gracefully",
                              signal.Signals(signum).name)
        on_stop()

    for sig in signals:
        signal.signal(sig, handler)
