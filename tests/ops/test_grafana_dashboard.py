"""deploy/grafana-sockworks.json names only metrics the server exports.

Every ``expr`` of every panel is read from the dashboard; each metric name
in it must be among the sample names scraped from real servers (a KV server
with its RESP port after some traffic, errors included, and a UDP server).
"""

from __future__ import annotations

import json
import re
import socket
from pathlib import Path

import pytest

from tests.conftest import spawn_server
from tests.ops.test_metrics import metrics_url
from tests.ops.test_metrics_commands import read_until, samples

pytestmark = pytest.mark.timeout(90)

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana-sockworks.json"
METRIC = re.compile(r"\bsockworks_[A-Za-z0-9_]+")


def exported() -> set[str]:
    kv = spawn_server("serve", "kv", "--resp-port", "0", "--maxmemory", "10mb",
                      "--metrics-port", "0", expect_listeners=2)
    udp = spawn_server("serve", "udp", "--metrics-port", "0")
    try:
        with kv.connect() as conn:                       # a command and an error
            read_until(conn, b"\n")
            conn.sendall(b"SET k v\nFROB\nQUIT\n")
            read_until(conn, b"BYE\n")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(10)
            sock.sendto(b'{"type":"ping"}', (udp.host, udp.port))
            sock.recvfrom(65536)
        return {name for base in (metrics_url(kv), metrics_url(udp))
                for name, _ in samples(base)}
    finally:
        kv.stop()
        udp.stop()


def test_every_expr_names_an_exported_metric() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    assert len(dashboard["panels"]) >= 7 and exprs
    names = exported()
    for expr in exprs:
        used = METRIC.findall(expr)
        assert used, expr
        missing = [name for name in used if name not in names]
        assert not missing, f"{expr!r} uses {missing}, not exported"
