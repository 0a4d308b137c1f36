"""Socket plumbing shared by the models: listening sockets, addresses, errors."""

from __future__ import annotations

import errno
import os
import socket
import stat
import struct

__all__ = [
    "bind_socket",
    "open_listener",
    "open_unix_listener",
    "remove_unix_socket",
    "set_nodelay",
    "format_address",
    "format_peer",
    "peer_name",
    "DISCONNECT_ERRORS",
    "ACCEPT_RESOURCE_ERRNOS",
    "ACCEPT_RETRY_DELAY",
    "RECV_SIZE",
    "send_nowait",
    "discard_input",
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


def open_unix_listener(path: str, *, backlog: int, perm: int | None = None,
                       listen: bool = True) -> socket.socket:
    """A listening UNIX stream socket at ``path``, mode ``perm`` (None: the
    umask's). A socket file left by a dead server is replaced; one a live
    server still answers on is refused (OSError EADDRINUSE), as is any
    other kind of file."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        pass
    else:
        if not stat.S_ISSOCK(mode):
            raise OSError(errno.EEXIST, f"cannot listen on unix:{path}: the path exists and "
                                        "is not a socket")
        if _unix_socket_live(path):
            raise OSError(errno.EADDRINUSE, f"cannot listen on unix:{path}: another server "
                                            "is listening on it")
        os.unlink(path)  # stale: nobody accepts on it any more
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        try:
            sock.bind(path)
        except OSError as exc:
            raise OSError(exc.errno, f"cannot listen on unix:{path}: {exc.strerror}") from None
        if perm is not None:
            os.chmod(path, perm)
        if listen:
            sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    return sock


def _unix_socket_live(path: str) -> bool:
    """True when something accepts connections on the socket file ``path``."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(path)
    except (ConnectionRefusedError, FileNotFoundError):
        return False
    except OSError:
        return True  # e.g. a full backlog (EAGAIN): someone owns it
    finally:
        probe.close()
    return True


def remove_unix_socket(path: str) -> None:
    """Unlink our UNIX socket file at shutdown (nothing if it is gone)."""
    try:
        if stat.S_ISSOCK(os.lstat(path).st_mode):
            os.unlink(path)
    except OSError:
        pass


def set_nodelay(sock: socket.socket) -> None:
    """TCP_NODELAY on a TCP socket (replies are not held back); a no-op for
    UNIX sockets."""
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def format_address(sockaddr: tuple[object, ...] | str) -> str:
    """``127.0.0.1:9000``, ``[::1]:9000``; a UNIX socket's path as it is."""
    if isinstance(sockaddr, str):
        return sockaddr
    host, port = str(sockaddr[0]), sockaddr[1]
    if ":" in host:
        return f"[{host}]:{port}"
    return f"{host}:{port}"


def format_peer(addr: object, unix_path: str | None = None) -> str:
    """A peer as logs and CLIENT LIST show it: ``host:port``, or for a
    connection on the UNIX socket ``unix_path``, ``PATH:0`` (as Redis)."""
    if unix_path is not None:
        return f"{unix_path}:0"
    return format_address(addr)  # type: ignore[arg-type]


def local_name(sock: socket.socket) -> str:
    """The address ``sock`` is connected to on this side, shown as a peer is
    (``host:port``, ``PATH:0`` on a UNIX socket), "?" if it is gone."""
    try:
        name = sock.getsockname()
    except OSError:
        return "?"
    if sock.family == getattr(socket, "AF_UNIX", None):
        return f"{name}:0"
    return format_address(name)


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


def discard_input(sock: socket.socket, limit: int = 1 << 20) -> None:
    """Read and drop what the peer has already sent (up to ``limit`` bytes),
    without waiting, so that closing sends a FIN rather than the reset that
    unread data causes (a plaintext client on a TLS port gets a clean close).
    Works on a TLS socket's descriptor too (the plain socket's call)."""
    read = 0
    try:
        sock.setblocking(False)  # a timeout would make recv wait first
    except OSError:
        return
    while read < limit:
        try:
            chunk = socket.socket.recv(sock, 65536, socket.MSG_DONTWAIT)
        except OSError:
            return
        if not chunk:
            return
        read += len(chunk)
