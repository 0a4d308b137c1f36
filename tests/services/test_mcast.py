"""Multicast sender/receivers on loopback, the mcast CLI, and a veth pair
between two network namespaces of the test's own.

Safety: every datagram here goes to a 239.0.0.0/8 (administratively scoped)
group with TTL 1 through an interface pinned to 127.0.0.1 / ``lo``, or
through a veth pair that exists only between two namespaces this file
creates and always deletes. Nothing can leave through a real interface.
"""

from __future__ import annotations

import json
import os
import select
import socket
import subprocess
import sys
import time

import pytest

from sockworks.services.mcast import (
    InterfaceError,
    MulticastError,
    MulticastReceiver,
    MulticastSender,
    NotMulticastError,
)
from tests.netns_support import ip

LOOPBACK = "127.0.0.1"
TIMEOUT = 5.0


def group_for_test(n: int = 1) -> str:
    """A group per test and process: parallel runs never hear each other."""
    return f"239.255.{os.getpid() % 250}.{n}"


def receivers(group: str, count: int, interface: str = LOOPBACK) -> list[MulticastReceiver]:
    first = MulticastReceiver(group, 0, interface=interface)
    rest = [MulticastReceiver(group, first.port, interface=interface) for _ in range(count - 1)]
    return [first, *rest]


def test_every_receiver_gets_every_message() -> None:
    group = group_for_test()
    members = receivers(group, 3)
    try:
        with MulticastSender(group, members[0].port, interface=LOOPBACK, ttl=1) as sender:
            messages = [f"message {i}".encode() for i in range(5)]
            for message in messages:
                assert sender.send(message) == len(message)
        for receiver in members:
            got = []
            for _ in messages:
                received = receiver.recv(TIMEOUT)
                assert received is not None, "a datagram was lost on loopback"
                got.append(received.data)
                assert received.sender[0] == LOOPBACK
                assert received.group == group and received.port == members[0].port
            assert got == messages
    finally:
        for receiver in members:
            receiver.close()


def test_interface_by_name_for_join_and_send() -> None:
    group = group_for_test(2)
    with MulticastReceiver(group, 0, interface="lo") as receiver:
        assert receiver.interface.name == "lo" and receiver.interface.index > 0
        with MulticastSender(group, receiver.port, interface="lo") as sender:
            sender.send(b"by name")
        message = receiver.recv(TIMEOUT)
        assert message is not None and message.data == b"by name"


def test_receiver_bound_to_its_group_ignores_other_groups_on_the_port() -> None:
    mine, other = group_for_test(3), group_for_test(4)
    with MulticastReceiver(mine, 0, interface=LOOPBACK) as receiver, \
            MulticastReceiver(other, receiver.port, interface=LOOPBACK) as neighbour:
        with MulticastSender(other, receiver.port, interface=LOOPBACK) as to_other, \
                MulticastSender(mine, receiver.port, interface=LOOPBACK) as to_mine:
            to_other.send(b"not for you")
            to_mine.send(b"for you")
        message = receiver.recv(TIMEOUT)
        assert message is not None and message.data == b"for you"   # first and only
        heard = neighbour.recv(TIMEOUT)
        assert heard is not None and heard.data == b"not for you"


def test_sender_socket_options_are_what_was_asked() -> None:
    # Loop on/off cannot be observed on lo itself (sending on lo *is* local
    # delivery), so check the socket: TTL 1 by default, interface pinned.
    with MulticastSender(group_for_test(), 5007, interface=LOOPBACK, loop=False) as sender:
        sock = sender.sock
        assert sock.getsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL) == 1
        assert sock.getsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP) == 0
        pinned = sock.getsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, 4)
        assert socket.inet_ntoa(pinned) == LOOPBACK
    with MulticastSender(group_for_test(), 5007, interface=LOOPBACK, ttl=4) as sender:
        assert sender.sock.getsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL) == 4
        assert sender.sock.getsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP) == 1


def test_source_specific_membership_filters_senders() -> None:
    group = group_for_test(6)
    try:
        receiver = MulticastReceiver(group, 0, interface=LOOPBACK, source="127.0.0.1")
    except OSError as exc:
        pytest.skip(f"source-specific membership unavailable: {exc}")
    with receiver:
        with MulticastSender(group, receiver.port, interface=LOOPBACK,
                             source="127.0.0.2") as stranger, \
                MulticastSender(group, receiver.port, interface=LOOPBACK,
                                source="127.0.0.1") as expected:
            stranger.send(b"from 127.0.0.2")
            expected.send(b"from 127.0.0.1")
        message = receiver.recv(TIMEOUT)
        assert message is not None
        assert message.data == b"from 127.0.0.1" and message.sender[0] == "127.0.0.1"


@pytest.mark.parametrize("group", ["10.0.0.1", "127.0.0.1", "255.255.255.255", "fe80::1",
                                   "::1", "240.0.0.1", "not-an-address"])
def test_non_multicast_group_is_a_clear_value_error(group: str) -> None:
    with pytest.raises(NotMulticastError) as info:
        MulticastReceiver(group, 0, interface=LOOPBACK)
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, MulticastError)
    with pytest.raises(NotMulticastError, match="multicast"):
        MulticastSender(group, 5007, interface=LOOPBACK)


def test_unknown_interface_and_mismatched_families() -> None:
    with pytest.raises(InterfaceError, match="no such interface"):
        MulticastReceiver(group_for_test(), 0, interface="nosuchif0")
    with pytest.raises(InterfaceError):
        MulticastSender(group_for_test(), 5007, interface="::1")
    with pytest.raises(ValueError):
        MulticastSender(group_for_test(), 5007, interface=LOOPBACK, ttl=256)


def test_ipv6_on_loopback() -> None:
    group = "ff05::239:4242"
    try:
        receiver = MulticastReceiver(group, 0, interface="lo")
    except OSError as exc:
        pytest.skip(f"IPv6 multicast join on lo not allowed: {exc}")
    with receiver:
        try:
            with MulticastSender(group, receiver.port, interface="lo", ttl=1) as sender:
                sender.send(b"v6")
        except OSError as exc:
            pytest.skip(f"kernel does not route IPv6 multicast on lo: {exc}")
        message = receiver.recv(TIMEOUT)
        assert message is not None and message.data == b"v6"


# --- the CLI --------------------------------------------------------------

def sockworks(*args: str, prefix: tuple[str, ...] = ()) -> list[str]:
    return [*prefix, sys.executable, "-m", "sockworks", *args]


def wait_for_stderr(proc: subprocess.Popen[bytes], needle: bytes, timeout: float = 20) -> bytes:
    assert proc.stderr is not None
    fd = proc.stderr.fileno()
    output = b""
    deadline = time.monotonic() + timeout
    while needle not in output:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"{needle!r} not in {output!r}")
        ready, _, _ = select.select([fd], [], [], remaining)
        if ready:
            chunk = os.read(fd, 65536)
            if not chunk:
                raise AssertionError(f"exited before {needle!r}: {output!r}")
            output += chunk
    return output


def start_recv(*args: str, prefix: tuple[str, ...] = ()) -> tuple[subprocess.Popen[bytes], int]:
    proc = subprocess.Popen(sockworks("mcast", "recv", *args, prefix=prefix),
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        output = wait_for_stderr(proc, b"joined ")
    except BaseException:
        proc.kill()
        proc.communicate()
        raise
    port = int(output.split(b" port ")[1].split()[0])
    return proc, port


def test_cli_send_and_recv_json() -> None:
    group = group_for_test(7)
    proc, port = start_recv("--group", group, "--port", "0", "--interface", LOOPBACK,
                            "--count", "3", "--timeout", "20", "--json")
    try:
        sent = subprocess.run(sockworks("mcast", "send", "--group", group, "--port", str(port),
                                        "--interface", LOOPBACK, "--ttl", "1", "hello", "wörld"),
                              check=False, capture_output=True, timeout=30)
        assert sent.returncode == 0, sent.stderr
        with MulticastSender(group, port, interface=LOOPBACK) as sender:
            sender.send(b"\xff\xfe binary")
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    lines = [json.loads(line) for line in out.decode().splitlines()]
    assert [line["data"] for line in lines[:2]] == ["hello", "wörld"]
    assert lines[0]["encoding"] == "utf-8" and lines[0]["size"] == 5
    assert lines[1]["size"] == len("wörld".encode())
    assert lines[2]["encoding"] == "base64" and lines[2]["size"] == 9
    for line in lines:
        assert line["group"] == group and line["port"] == port
        assert line["sender"].startswith("127.0.0.1:")


def test_cli_recv_text_and_timeout() -> None:
    group = group_for_test(8)
    proc, port = start_recv("--group", group, "--port", "0", "--interface", "lo",
                            "--count", "2", "--timeout", "1")
    try:
        with MulticastSender(group, port, interface=LOOPBACK) as sender:
            sender.send(b"plain text")
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert out.decode().startswith("127.0.0.1:") and ": plain text" in out.decode()
    assert proc.returncode == 1                      # 1 of 2 messages, then silence
    assert b"timed out" in err and b"1 of 2" in err


def test_cli_recv_source_accepts_only_what_send_bind_address_sends_from() -> None:
    group = group_for_test(9)
    try:
        proc, port = start_recv("--group", group, "--port", "0", "--interface", LOOPBACK,
                                "--source", "127.0.0.1", "--count", "1", "--timeout", "20",
                                "--json")
    except AssertionError as exc:
        pytest.skip(f"source-specific membership unavailable: {exc}")
    try:
        for source, text in (("127.0.0.2", "filtered"), ("127.0.0.1", "wanted")):
            sent = subprocess.run(
                sockworks("mcast", "send", "--group", group, "--port", str(port),
                          "--interface", LOOPBACK, "--bind-address", source, text),
                check=False, capture_output=True, timeout=30)
            assert sent.returncode == 0, sent.stderr
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert [json.loads(line)["data"] for line in out.decode().splitlines()] == ["wanted"]


def test_cli_send_source_names_its_new_spelling() -> None:
    # send --source meant the opposite of recv --source; it is --bind-address now.
    result = subprocess.run(sockworks("mcast", "send", "--source", "127.0.0.1", "x"),
                            check=False, capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert result.stderr.startswith("usage: sockworks mcast send")
    assert "--source was renamed --bind-address" in result.stderr


def test_cli_rejects_a_unicast_group() -> None:
    for action in (["send", "x"], ["recv", "--count", "1", "--timeout", "1"]):
        result = subprocess.run(sockworks("mcast", *action[:1], "--group", "192.0.2.1",
                                          "--interface", LOOPBACK, *action[1:]),
                                check=False, capture_output=True, text=True, timeout=30)
        assert result.returncode == 1
        assert "not a multicast group" in result.stderr
        assert "Traceback" not in result.stderr


# --- a veth pair between two namespaces of our own (tests/netns_support.py) --

def exchange_across(receiver_ns: str, sender_ns: str, recv_args: list[str],
                    sends: list[list[str]]) -> list[dict[str, object]]:
    """Run ``mcast recv RECV_ARGS --json`` in one namespace and each
    ``mcast send --port PORT SEND`` in the other; the JSON lines received."""
    proc, port = start_recv(*recv_args, "--timeout", "20", "--json",
                            prefix=("ip", "netns", "exec", receiver_ns))
    try:
        for send in sends:
            sent = subprocess.run(
                sockworks("mcast", "send", "--port", str(port), *send,
                          prefix=("ip", "netns", "exec", sender_ns)),
                check=False, capture_output=True, timeout=60)
            assert sent.returncode == 0, sent.stderr
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    return [json.loads(line) for line in out.decode().splitlines()]


@pytest.mark.netns
def test_delivery_across_a_veth_pair_between_namespaces(
        netns_pair: tuple[str, str, str, str]) -> None:
    ns_a, ns_b, if_a, if_b = netns_pair
    group = "239.255.213.1"
    lines = exchange_across(
        ns_b, ns_a, ["--group", group, "--port", "5007", "--interface", if_b, "--count", "3"],
        [["--group", group, "--interface", if_a, "--ttl", "1", "--no-loop",
          "one", "two", "three"]])
    assert [line["data"] for line in lines] == ["one", "two", "three"]
    assert all(str(line["sender"]).startswith("10.213.0.1:") for line in lines)


@pytest.mark.netns
def test_source_specific_membership_across_namespaces(
        netns_pair: tuple[str, str, str, str]) -> None:
    ns_a, ns_b, if_a, if_b = netns_pair
    ip("-n", ns_a, "addr", "add", "10.213.0.3/24", "dev", if_a)
    group = "232.1.1.1"   # the SSM range, RFC 4607
    lines = exchange_across(
        ns_b, ns_a, ["--group", group, "--port", "5008", "--interface", if_b,
                     "--source", "10.213.0.3", "--count", "1"],
        [["--group", group, "--interface", if_a, "--bind-address", source, text]
         for source, text in (("10.213.0.1", "filtered"), ("10.213.0.3", "wanted"))])
    assert [line["data"] for line in lines] == ["wanted"]
    assert str(lines[0]["sender"]).startswith("10.213.0.3:")


def add_ipv6(ns_a: str, ns_b: str, if_a: str, if_b: str) -> None:
    # nodad: usable at once, no duplicate-address-detection wait.
    ip("-n", ns_a, "-6", "addr", "add", "fd13::1/64", "dev", if_a, "nodad")
    ip("-n", ns_b, "-6", "addr", "add", "fd13::2/64", "dev", if_b, "nodad")


@pytest.mark.netns
@pytest.mark.parametrize("group", ["ff05::213:1", "ff02::213:2"])
def test_ipv6_delivery_across_namespaces(netns_pair: tuple[str, str, str, str],
                                         group: str) -> None:
    ns_a, ns_b, if_a, if_b = netns_pair
    add_ipv6(*netns_pair)
    lines = exchange_across(
        ns_b, ns_a, ["--group", group, "--port", "5009", "--interface", if_b, "--count", "2"],
        [["--group", group, "--interface", if_a, "--ttl", "1", "six", "vi"]])
    assert [line["data"] for line in lines] == ["six", "vi"]
    assert all(line["group"] == group for line in lines)


@pytest.mark.netns
def test_ipv6_source_specific_membership_across_namespaces(
        netns_pair: tuple[str, str, str, str]) -> None:
    ns_a, ns_b, if_a, if_b = netns_pair
    add_ipv6(*netns_pair)
    ip("-n", ns_a, "-6", "addr", "add", "fd13::3/64", "dev", if_a, "nodad")
    group = "ff35::213:3"   # the IPv6 SSM range ff3x::/32, RFC 4607
    lines = exchange_across(
        ns_b, ns_a, ["--group", group, "--port", "5010", "--interface", if_b,
                     "--source", "fd13::3", "--count", "1"],
        [["--group", group, "--interface", if_a, "--bind-address", source, text]
         for source, text in (("fd13::1", "filtered"), ("fd13::3", "wanted"))])
    assert [line["data"] for line in lines] == ["wanted"]
    assert str(lines[0]["sender"]).startswith("[fd13::3]:")
