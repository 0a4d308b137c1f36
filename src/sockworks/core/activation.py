"""systemd socket activation: serve the listening sockets the process was given.

With ``LISTEN_PID`` (this process), ``LISTEN_FDS`` (a count) and optionally
``LISTEN_FDNAMES`` (colon-separated names) in the environment, descriptors
3, 4, ... are listening sockets opened for us (``sd_listen_fds(3)``) — by
systemd from a ``.socket`` unit, by ``systemd-socket-activate``, or by any
parent that follows the protocol. :func:`adopt` hands them to the endpoints
so that the models serve them instead of binding (:func:`listener_for`).

Matching, per endpoint in order:

1. by name: a socket whose name (``FileDescriptorName=`` in the unit,
   ``--fdname=`` for systemd-socket-activate) is the endpoint's service name
   (``kv`` for the KV text port, ``resp`` for its RESP port, ``echo``);
2. otherwise by order: the next socket whose name matches no endpoint
   (systemd's default name is the unit's, e.g. ``sockworks-kv.socket``).

An endpoint left without a socket binds as usual; a socket left without an
endpoint is an error (it was meant for something), as is one that is not a
TCP stream socket. The variables are removed from the environment once read,
so a child never mistakes them for its own.
"""

from __future__ import annotations

import os
import socket
from collections.abc import MutableMapping, Sequence

from sockworks.core.config import Endpoint
from sockworks.core.net import open_listener, open_unix_listener

__all__ = ["SD_LISTEN_FDS_START", "adopt", "inherited_sockets", "listener_for"]

#: The first passed descriptor (sd-daemon.h).
SD_LISTEN_FDS_START = 3
_VARIABLES = ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES")


def inherited_sockets(environ: MutableMapping[str, str] | None = None
                      ) -> list[tuple[str, socket.socket]]:
    """``(name, socket)`` for each descriptor passed to this process; empty
    without socket activation. Consumes the variables (unsets them)."""
    env = os.environ if environ is None else environ
    count_text, pid_text = env.get("LISTEN_FDS"), env.get("LISTEN_PID")
    names_text = env.get("LISTEN_FDNAMES", "")
    for name in _VARIABLES:
        env.pop(name, None)
    if not count_text or (pid_text is not None and pid_text != str(os.getpid())):
        return []
    try:
        count = int(count_text)
    except ValueError:
        raise OSError(f"socket activation: LISTEN_FDS is not a number: {count_text!r}") from None
    names = names_text.split(":") if names_text else []
    found: list[tuple[str, socket.socket]] = []
    for index in range(count):
        fd = SD_LISTEN_FDS_START + index
        os.set_inheritable(fd, False)
        sock = socket.socket(fileno=fd)
        if sock.type != socket.SOCK_STREAM:
            raise OSError(f"socket activation: descriptor {fd} is not a TCP socket")
        found.append((names[index] if index < len(names) else "unknown", sock))
    return found


def adopt(endpoints: Sequence[Endpoint], given: list[tuple[str, socket.socket]]) -> None:
    """Give each endpoint its socket from ``given`` (see the module docstring)."""
    if not given:
        return
    endpoints = [ep for ep in endpoints if ep.unix_path is None]  # TCP sockets only
    wanted = {ep.service.name for ep in endpoints}
    pool = list(given)
    for ep in endpoints:
        named = next((item for item in pool if item[0] == ep.service.name), None)
        if named is None:
            named = next((item for item in pool if item[0] not in wanted), None)
        if named is not None:
            pool.remove(named)
            ep.listener = named[1]
    if pool:
        for _, sock in given:
            sock.close()
        names = ", ".join(name for name, _ in pool)
        raise OSError(f"socket activation: {len(pool)} socket(s) not matched to an endpoint "
                      f"({names}); name them after the services "
                      f"({', '.join(sorted(wanted))}) or pass one per endpoint")


def listener_for(ep: Endpoint, *, backlog: int, reuse_port: bool = False,
                 listen: bool = True) -> socket.socket:
    """The endpoint's listening socket: the one it was given, else a new one."""
    if ep.listener is None and ep.unix_path is not None:
        return open_unix_listener(ep.unix_path, backlog=backlog, perm=ep.unix_perm,
                                  listen=listen)
    if ep.listener is None:
        return open_listener(ep.host, ep.port, backlog=backlog, reuse_port=reuse_port,
                             listen=listen)
    sock = ep.listener
    # Its blocking mode is left alone: every model accepts in non-blocking
    # mode and sets it itself, and the mode belongs to the open file, which
    # prefork workers share. A worker that set it blocking here stalled a
    # sibling's event loop in accept() on the shared UNIX listener.
    if listen and backlog:
        sock.listen(backlog)
    return sock
