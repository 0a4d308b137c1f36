"""Socket plumbing shared by the models: listening sockets, addresses, errors."""

from __future__ import annotations

import errno
import socket
import struct

__all__ = [
    "bind_socket",
    "open_listener",
    "format_address",
    "peer_name",
    "DISCONNECT_ERRORS",
    "ACCEPT_RESOURCE_ERRNOS",
    "ACCEPT_RETRY_DELAY",
    "RECV_SIZE",
    "send_nowait",
    "set_io_timeouts",
    "set_reset_on_close",
]

#: Errors that mean "the peer went away": logged at DEBUG, never as tracebacks.
DISCONNECT_ERRORS = (ConnectionResetError, BrokenPipeError, ConnectionAbortedError)

#: accept() failing with these means the process or system is out of a
#: resource; the listener is healthy. Log (rate-limited), wait, retry — as
#: trio's serve_listeners does (errno list and the 100 ms delay are theirs).
ACCEPT_RESOURCE_ERRNOS = frozenset(
    {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS}
)
ACCEPT_RETRY_DELAY = 0.1

#: Bytes asked of one recv(): Redis's PROTO_IOBUF_LEN (16 KiB). Python
#: allocates the full size for every recv() and then shrinks it, so a larger
#: buffer costs on every call; with 1,000 connection threads 64 KiB made the
#: thread model 40% slower (bench compare, benchmarks/README.md).
RECV_SIZE = 16384


def bind_socket(host: str, port: int, socktype: int, *, reuse_addr: bool,
                reuse_port: bool = False) -> socket.socket:
    """A socket bound to ``host``/``port``, resolved through getaddrinfo.

    ``::`` is bound dual-stack (IPV6_V6ONLY off) so one socket takes IPv4 and
    IPv6 peers; any other address is bound as given. Raises OSError with a
    message that names the address.
    """
    try:
        infos = socket.getaddrinfo(host or None, port, type=socktype, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise OSError(f"cannot resolve {host!r}: {exc.strerror}") from None
    family, socktype, proto, _, sockaddr = infos[0]
    sock = socket.socket(family, socktype, proto)
    try:
        if reuse_addr:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6 and host in ("::", ""):
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        try:
            sock.bind(sockaddr)
        except OSError as exc:
            udp = " (udp)" if socktype == socket.SOCK_DGRAM else ""
            raise OSError(exc.errno, f"cannot listen on {format_address(sockaddr)}{udp}: "
                                     f"{exc.strerror}") from None
    except BaseException:
        sock.close()
        raise
    return sock


def open_listener(host: str, port: int, *, backlog: int, reuse_port: bool = False,
                  listen: bool = True) -> socket.socket:
    """A TCP listening socket (see :func:`bind_socket`). SO_REUSEADDR lets a
    restarted server bind while old connections sit in TIME_WAIT."""
    sock = bind_socket(host, port, socket.SOCK_STREAM, reuse_addr=True, reuse_port=reuse_port)
    if listen:
        try:
            sock.listen(backlog)
        except BaseException:
            sock.close()
            raise
    return sock


def format_address(sockaddr: tuple[object, ...] | str) -> str:
    """``127.0.0.1:9000`` or ``[::1]:9000``."""
    if isinstance(sockaddr, str):
        return sockaddr
    host, port = str(sockaddr[0]), sockaddr[1]
    if ":" in host:
        return f"[{host}]:{port}"
    return f"{host}:{port}"


def peer_name(sock: socket.socket) -> str:
    try:
        return format_address(sock.getpeername())
    except OSError:
        return "?"


def set_io_timeouts(sock: socket.socket, seconds: float, send: float | None = None) -> None:
    """Bound recv() by ``seconds`` and send() by ``send`` (default: the same)
    on a blocking socket; 0 means no bound.

    The kernel enforces it (SO_RCVTIMEO/SO_SNDTIMEO): a call that waits that
    long fails with EAGAIN (BlockingIOError). ``settimeout()`` would do the
    same in Python, at the price of a poll() before every recv and send —
    a syscall per request on the thread models' hot path.
    """
    sock.settimeout(None)
    send = seconds if send is None else send
    if seconds:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, _timeval(seconds))
    if send:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, _timeval(send))


def _timeval(seconds: float) -> bytes:
    whole = int(seconds)
    return struct.pack("ll", whole, int((seconds - whole) * 1_000_000))


def set_reset_on_close(sock: socket.socket) -> None:
    """SO_LINGER 0: close() then sends RST and drops unsent data at once,
    instead of leaving the kernel to push it to a peer that never reads."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass


def send_nowait(sock: socket.socket, data: bytes) -> None:
    """Best-effort send that never blocks (refusal replies): the kernel buffer
    of a fresh connection always has room for one short line."""
    try:
        sock.send(data, socket.MSG_DONTWAIT)
    except OSError:
        pass
