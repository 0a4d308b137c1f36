"""Multicast done right: :class:`MulticastSender` and :class:`MulticastReceiver`.

The library behind ``sockworks mcast send|recv``. What the chapter's version
gets wrong, and what this module does instead:

* ``struct.pack("4sL", group, INADDR_ANY)`` only works by accident on 64-bit
  Linux (``L`` is 8 bytes there, and the kernel reads the first 8 of them as
  ``struct ip_mreq``). We pack the kernel's structs exactly: ``ip_mreqn``
  ("4s4si": group, interface address, interface index) on Linux,
  ``ip_mreq`` ("4s4s") elsewhere, ``ipv6_mreq`` ("16sI": group, index).
* The interface is chosen explicitly, by address or by name, for joining
  *and* for sending (``IP_MULTICAST_IF`` / ``IPV6_MULTICAST_IF``); without
  it the kernel picks the interface of the default route, which is rarely
  what a multicast application on a multi-homed host wants.
* IPv6 groups (``ff0X::...``) join with ``IPV6_JOIN_GROUP`` and an interface
  index; link-scope groups (``ff02::``) get the index as the scope id.
* Source-specific multicast (RFC 4607): ``source=`` joins with
  ``IP_ADD_SOURCE_MEMBERSHIP`` (IPv4) or ``MCAST_JOIN_SOURCE_GROUP`` (IPv6),
  so only that sender's datagrams arrive. Python's socket module may lack the
  constants: we use Linux's values (39 and 46, from <linux/in.h>) and refuse
  on other platforms, whose struct layouts differ.
* A group outside 224.0.0.0/4 or ff00::/8 raises :class:`NotMulticastError`
  (a ValueError).
* Receivers bind to the group address, not INADDR_ANY, on Linux, and turn
  off ``IP_MULTICAST_ALL``: otherwise a socket receives every group any
  socket on the host joined, on that port.
* TTL defaults to 1, not the chapter's 2: datagrams stay on the local link
  unless the caller asks for more (a multicast leak across routers is hard
  to notice and hard to take back). Loopback delivery is on by default, so a
  sender and receivers on one host just work.
"""

from __future__ import annotations

import fcntl
import ipaddress
import logging
import socket
import struct
import sys
from dataclasses import dataclass
from types import TracebackType
from typing import Self

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_GROUP",
    "DEFAULT_PORT",
    "DEFAULT_TTL",
    "Interface",
    "InterfaceError",
    "Message",
    "MulticastError",
    "MulticastReceiver",
    "MulticastSender",
    "NotMulticastError",
    "UnsupportedError",
    "parse_group",
    "resolve_interface",
]

#: The chapter's group and port. 239.0.0.0/8 is administratively scoped
#: (RFC 2365): never routed onto the Internet.
DEFAULT_GROUP = "239.1.1.1"
DEFAULT_PORT = 5007

#: Hop limit: 1 keeps datagrams on the local link (see the module docstring).
DEFAULT_TTL = 1

#: Largest datagram a receiver accepts whole (the IPv4 UDP payload maximum
#: is 65507; IPv6 without jumbograms 65527).
RECV_SIZE = 65535

LINUX = sys.platform.startswith("linux")

# Linux values from <linux/in.h> / <linux/in6.h>, for Pythons built without
# the names. Only used on Linux: other systems number (and lay out) them
# differently.
IP_ADD_SOURCE_MEMBERSHIP = getattr(socket, "IP_ADD_SOURCE_MEMBERSHIP", 39)
IP_MULTICAST_ALL = getattr(socket, "IP_MULTICAST_ALL", 49)
IPV6_MULTICAST_ALL = 29
MCAST_JOIN_SOURCE_GROUP = getattr(socket, "MCAST_JOIN_SOURCE_GROUP", 46)
SIOCGIFADDR = 0x8915

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class MulticastError(Exception):
    """Base of this module's errors."""


class NotMulticastError(MulticastError, ValueError):
    """The group is not a multicast address."""


class InterfaceError(MulticastError, ValueError):
    """The interface does not exist or cannot be used for this family."""


class UnsupportedError(MulticastError):
    """The platform lacks a feature asked for (source-specific membership)."""


@dataclass(frozen=True, slots=True)
class Interface:
    """An interface as the socket options need it: IPv4 uses the address or
    the index, IPv6 always the index. None/0 leave the choice to the kernel."""

    address: str | None = None
    index: int = 0
    name: str | None = None

    def __str__(self) -> str:
        return self.name or self.address or (str(self.index) if self.index else "default")


@dataclass(frozen=True, slots=True)
class Message:
    """One datagram received by a :class:`MulticastReceiver`."""

    data: bytes
    sender: tuple[str, int]
    group: str
    port: int


def parse_group(group: str) -> IPAddress:
    """The group as an address; NotMulticastError if it is not multicast."""
    try:
        address = ipaddress.ip_address(group.partition("%")[0])
    except ValueError:
        raise NotMulticastError(f"not a multicast group: {group!r} is not an IP address"
                                ) from None
    if not address.is_multicast:
        raise NotMulticastError(
            f"{group} is not a multicast group (IPv4 224.0.0.0/4, IPv6 ff00::/8)")
    return address


def _ipv6_index_of(address: str) -> int:
    """The index of the interface holding IPv6 ``address`` (Linux /proc)."""
    wanted = socket.inet_pton(socket.AF_INET6, address).hex()
    try:
        with open("/proc/net/if_inet6", encoding="ascii") as table:
            for line in table:
                fields = line.split()
                if len(fields) >= 6 and fields[0] == wanted:
                    return int(fields[1], 16)
    except OSError:
        pass
    raise InterfaceError(f"no interface has the IPv6 address {address}; "
                         "give the interface by name")


def _ipv4_address_of(name: str) -> str:
    """The IPv4 address of interface ``name`` (Linux SIOCGIFADDR)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            result = fcntl.ioctl(probe.fileno(), SIOCGIFADDR,
                                 struct.pack("256s", name.encode()[:15]))
        except OSError:
            raise InterfaceError(f"interface {name} has no IPv4 address") from None
    return socket.inet_ntoa(result[20:24])


def resolve_interface(spec: str | None, family: int) -> Interface:
    """``spec`` is an address, an interface name (``lo``, ``eth0``), an index,
    or None (the kernel's choice)."""
    if spec is None or spec == "":
        return Interface()
    try:
        address = ipaddress.ip_address(spec)
    except ValueError:
        address = None
    if address is not None:
        if family == socket.AF_INET:
            if address.version != 4:
                raise InterfaceError(f"{spec} is not an IPv4 address (the group is IPv4)")
            return Interface(address=spec)
        if address.version != 6:
            raise InterfaceError(f"{spec} is not an IPv6 address (the group is IPv6)")
        return Interface(address=spec, index=_ipv6_index_of(spec))
    try:
        if spec.isdigit():
            index = int(spec)
            name = socket.if_indextoname(index)
        else:
            name = spec
            index = socket.if_nametoindex(spec)
    except OSError:
        raise InterfaceError(f"no such interface: {spec}") from None
    return Interface(index=index, name=name)


def _family(group: IPAddress) -> int:
    return socket.AF_INET if group.version == 4 else socket.AF_INET6


def _scope_id(group: IPAddress, interface: Interface) -> int:
    """Interface- and link-scope IPv6 groups (ff01::/16, ff02::/16; RFC 4291
    section 2.7 scop field) only mean something with an interface index."""
    return interface.index if group.packed[1] & 0x0F in (1, 2) else 0


def _ipv4_interface_request(interface: Interface) -> bytes:
    """The IP_MULTICAST_IF argument: ip_mreqn on Linux (address or index),
    a bare in_addr elsewhere (address only)."""
    if LINUX:
        return struct.pack("4s4si", b"\0\0\0\0",
                           socket.inet_aton(interface.address or "0.0.0.0"), interface.index)
    if interface.index and not interface.address:
        raise UnsupportedError("choose the interface by address on this platform")
    return socket.inet_aton(interface.address or "0.0.0.0")


class _SocketOwner:
    """Owns ``self.sock``: close() and use as a context manager."""

    sock: socket.socket

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class MulticastSender(_SocketOwner):
    """Send datagrams to ``group``:``port`` through a chosen interface.

    ``source`` binds the socket to that local address first, so datagrams
    carry it (what a source-specific receiver filters on).
    """

    def __init__(self, group: str = DEFAULT_GROUP, port: int = DEFAULT_PORT, *,
                 interface: str | None = None, ttl: int = DEFAULT_TTL, loop: bool = True,
                 source: str | None = None) -> None:
        self.group = parse_group(group)
        self.port = port
        if not 0 <= ttl <= 255:
            raise ValueError(f"ttl must be 0-255, got {ttl}")
        family = _family(self.group)
        self.interface = resolve_interface(interface, family)
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            self._configure(family, ttl, loop, source)
        except BaseException:
            self.sock.close()
            raise
        if family == socket.AF_INET:
            self._destination: tuple[object, ...] = (str(self.group), port)
        else:
            self._destination = (str(self.group), port, 0, _scope_id(self.group, self.interface))

    def _configure(self, family: int, ttl: int, loop: bool, source: str | None) -> None:
        sock = self.sock
        if family == socket.AF_INET:
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, ttl)
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, int(loop))
            if self.interface.address or self.interface.index:
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF,
                                _ipv4_interface_request(self.interface))
        else:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, ttl)
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP, int(loop))
            if self.interface.index:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF,
                                self.interface.index)
        if source:
            try:
                sock.bind((source, 0))
            except OSError as exc:
                raise InterfaceError(f"cannot send from {source}: {exc.strerror}") from None

    def send(self, data: bytes) -> int:
        """Send one datagram; returns the bytes sent."""
        return self.sock.sendto(data, self._destination)



class MulticastReceiver(_SocketOwner):
    """Join ``group`` on a chosen interface and receive its datagrams.

    Several receivers (in one process or many) may share a group and port:
    each gets every datagram (SO_REUSEADDR). With ``source``, only
    datagrams from that sender arrive (source-specific membership, Linux).
    """

    def __init__(self, group: str = DEFAULT_GROUP, port: int = DEFAULT_PORT, *,
                 interface: str | None = None, source: str | None = None) -> None:
        self.group = parse_group(group)
        family = _family(self.group)
        self.interface = resolve_interface(interface, family)
        self.source = source
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            self._bind(family, port)
            self._join(family)
        except BaseException:
            self.sock.close()
            raise
        self.port: int = self.sock.getsockname()[1]

    def _bind(self, family: int, port: int) -> None:
        sock = self.sock
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Linux: binding the group address makes the kernel deliver only that
        # group's datagrams to us. (Windows refuses it; BSDs accept it.)
        host = str(self.group) if LINUX else ""
        if family == socket.AF_INET:
            sock.bind((host, port))
            if LINUX:
                sock.setsockopt(socket.IPPROTO_IP, IP_MULTICAST_ALL, 0)
        else:
            sock.bind((host, port, 0, _scope_id(self.group, self.interface)))
            if LINUX:
                try:
                    sock.setsockopt(socket.IPPROTO_IPV6, IPV6_MULTICAST_ALL, 0)
                except OSError:
                    pass  # Linux < 4.20: the group-address bind still filters

    def _join(self, family: int) -> None:
        sock = self.sock
        group = self.group.packed
        if self.source is not None:
            self._join_source(family)
        elif family == socket.AF_INET:
            if LINUX:
                mreq = struct.pack("4s4si", group,
                                   socket.inet_aton(self.interface.address or "0.0.0.0"),
                                   self.interface.index)
            else:
                mreq = struct.pack("4s4s", group, _ipv4_interface_request(self.interface))
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
        else:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP,
                            struct.pack("16sI", group, self.interface.index))
        logger.debug("joined %s on %s", self.group, self.interface)

    def _join_source(self, family: int) -> None:
        if not LINUX:
            raise UnsupportedError("source-specific membership is implemented for Linux only")
        assert self.source is not None
        try:
            source = ipaddress.ip_address(self.source)
        except ValueError:
            raise InterfaceError(f"source must be an IP address, got {self.source!r}") from None
        if source.version != self.group.version:
            raise InterfaceError(f"source {source} and group {self.group} differ in IP version")
        if family == socket.AF_INET:
            address = self.interface.address
            if address is None and self.interface.name is not None:
                address = _ipv4_address_of(self.interface.name)
            # struct ip_mreq_source, Linux order: multiaddr, interface, sourceaddr
            # (BSD and macOS put the source second).
            mreq = struct.pack("4s4s4s", self.group.packed,
                               socket.inet_aton(address or "0.0.0.0"), source.packed)
            self.sock.setsockopt(socket.IPPROTO_IP, IP_ADD_SOURCE_MEMBERSHIP, mreq)
        else:
            # struct group_source_req: u32 interface, then two sockaddr_storage
            # (128 bytes, aligned like a long: padding after the index).
            def sockaddr_in6(addr: bytes) -> bytes:
                return struct.pack("=HHI16sI", socket.AF_INET6, 0, 0, addr, 0).ljust(128, b"\0")

            padding = b"\0" * (struct.calcsize("P") - 4)  # 4 on 64-bit, 0 on 32-bit
            request = (struct.pack("=I", self.interface.index) + padding
                       + sockaddr_in6(self.group.packed) + sockaddr_in6(source.packed))
            self.sock.setsockopt(socket.IPPROTO_IPV6, MCAST_JOIN_SOURCE_GROUP, request)

    def fileno(self) -> int:
        return self.sock.fileno()

    def recv(self, timeout: float | None = None) -> Message | None:
        """The next datagram, or None after ``timeout`` seconds without one."""
        self.sock.settimeout(timeout)
        try:
            data, sender = self.sock.recvfrom(RECV_SIZE)
        except TimeoutError:
            return None
        return Message(data, (str(sender[0]), int(sender[1])), str(self.group), self.port)

