"""sd_notify(3) without libsystemd: readiness, status, stopping, watchdog.

systemd (``Type=notify``) passes ``NOTIFY_SOCKET``, an AF_UNIX datagram
socket path; a name starting with ``@`` is in the abstract namespace (a NUL
byte in its place). Each message is one datagram of ``KEY=value`` lines.
Without the variable every call is a no-op, so the server calls these
unconditionally.

The watchdog (``WATCHDOG_USEC``, for this process when ``WATCHDOG_PID`` is
set) is pinged at half the interval from a SIGALRM timer, not a thread: the
forking models must fork from a process without other threads, and a timer
is not inherited by a forked child. A ping therefore also proves the main
thread still runs Python code.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
from types import FrameType

__all__ = ["Notifier"]

logger = logging.getLogger(__name__)


class Notifier:
    """Messages to the service manager at ``address`` (None: do nothing)."""

    def __init__(self, address: str | None, watchdog_usec: int | None = None) -> None:
        self.address = address
        self.watchdog_usec = watchdog_usec
        self._sock: socket.socket | None = None
        #: Only the process that was started speaks (a forked worker that
        #: inherited this object stays silent: systemd's NotifyAccess=main).
        self._pid = os.getpid()

    @classmethod
    def from_environment(cls) -> Notifier:
        """From ``NOTIFY_SOCKET``/``WATCHDOG_USEC``/``WATCHDOG_PID``; the
        variables stay set (children are told apart by ``MAINPID``)."""
        address = os.environ.get("NOTIFY_SOCKET") or None
        usec: int | None = None
        pid = os.environ.get("WATCHDOG_PID")
        if os.environ.get("WATCHDOG_USEC") and (pid is None or pid == str(os.getpid())):
            try:
                usec = int(os.environ["WATCHDOG_USEC"]) or None
            except ValueError:
                logger.warning("ignoring WATCHDOG_USEC=%r: not a number",
                               os.environ["WATCHDOG_USEC"])
        return cls(address, usec)

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, *lines: str) -> bool:
        """One datagram; False (and a debug line) if it could not be sent."""
        if self.address is None or os.getpid() != self._pid:
            return False
        target = self.address
        if target.startswith("@"):
            target = "\0" + target[1:]
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto("\n".join(lines).encode(), target)
        except OSError as exc:
            logger.debug("sd_notify to %s failed: %s", self.address, exc)
            return False
        return True

    def ready(self, status: str) -> None:
        self.send("READY=1", f"STATUS={status}", f"MAINPID={os.getpid()}")

    def status(self, status: str) -> None:
        self.send(f"STATUS={status}")

    def stopping(self, status: str = "shutting down") -> None:
        self.send("STOPPING=1", f"STATUS={status}")

    # -- watchdog ------------------------------------------------------------
    def start_watchdog(self) -> None:
        """Ping every WATCHDOG_USEC/2 (main thread only: a signal handler)."""
        if self.address is None or not self.watchdog_usec:
            return
        interval = self.watchdog_usec / 2 / 1_000_000
        signal.signal(signal.SIGALRM, self._ping)
        signal.setitimer(signal.ITIMER_REAL, interval, interval)
        self.send("WATCHDOG=1")

    def _ping(self, signum: int, frame: FrameType | None) -> None:
        self.send("WATCHDOG=1")

    def stop_watchdog(self) -> None:
        if self.address is None or not self.watchdog_usec:
            return
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, signal.SIG_DFL)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
