"""Two network namespaces of the test's own, joined by a veth pair.

The ``netns_pair`` fixture gives tests non-loopback addresses (10.213.0.1
and 10.213.0.2) that exist only between two namespaces it creates and always
tears down: traffic never leaves the machine or touches a real interface.
Needs root and iproute2; skipped otherwise.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator

import pytest

__all__ = ["ip", "netns_pair", "ADDRESS_A", "ADDRESS_B"]

ADDRESS_A, ADDRESS_B = "10.213.0.1", "10.213.0.2"


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


@pytest.fixture
def netns_pair() -> Iterator[tuple[str, str, str, str]]:
    """Two namespaces joined by a veth pair (10.213.0.1/24 <-> 10.213.0.2/24).
    Needs root and iproute2; skipped otherwise. Always torn down."""
    if shutil.which("ip") is None or os.geteuid() != 0:
        pytest.skip("needs root and the ip command")
    tag = uuid.uuid4().hex[:6]
    ns_a, ns_b = f"swmc-a-{tag}", f"swmc-b-{tag}"
    if_a, if_b = f"swa{tag}", f"swb{tag}"
    created: list[str] = []
    try:
        for ns in (ns_a, ns_b):
            try:
                ip("netns", "add", ns)
            except subprocess.CalledProcessError as exc:
                pytest.skip(f"cannot create a network namespace: {exc.stderr!r}")
            created.append(ns)
        # Created in our namespace, moved out at once: it never carries traffic here.
        ip("link", "add", if_a, "type", "veth", "peer", "name", if_b)
        ip("link", "set", if_a, "netns", ns_a)
        ip("link", "set", if_b, "netns", ns_b)
        for ns, ifname, address in ((ns_a, if_a, f"{ADDRESS_A}/24"),
                                   (ns_b, if_b, f"{ADDRESS_B}/24")):
            ip("-n", ns, "addr", "add", address, "dev", ifname)
            ip("-n", ns, "link", "set", "lo", "up")
            ip("-n", ns, "link", "set", ifname, "up")
        yield ns_a, ns_b, if_a, if_b
    finally:
        for ns in created:
            subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True,
                           timeout=30)
        # If moving the veth failed half-way, it is still here: remove it.
        subprocess.run(["ip", "link", "del", if_a], check=False, capture_output=True,
                       timeout=30)
