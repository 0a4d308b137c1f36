"""Prometheus metrics, ``/healthz`` and ``/readyz`` over HTTP (``--metrics-port``).

``prometheus_client`` is optional (the ``metrics`` extra): it is imported
when the endpoint starts, and its absence is one clear error
(:class:`MetricsUnavailable`). Nothing here runs on the request path: the
figures are read at scrape time from what the server already counts — the
connection counters in :class:`~sockworks.core.stats.ServerStats` and each
service's ``snapshot()`` (the fields of ``STATS``: commands, hits, the
store's keys, expiries, log size, last fsync...), so serving metrics costs
a request nothing.

The HTTP server is a ``ThreadingHTTPServer`` in a daemon thread; under
prefork, whose parent must stay single-threaded to fork its workers, it runs
in a child process of its own (:meth:`MetricsServer.start_process`) and
reports the workers' sums (:mod:`sockworks.core.worker_sums`).
``socketserver-fork`` refuses it (one short-lived process per connection;
the command line says so). Paths:

* ``/metrics`` — the Prometheus text format;
* ``/healthz`` — 200 while the process is alive;
* ``/readyz`` — 200 once the server listens (after the log replay) and while
  its backend answers; 503 otherwise (e.g. a Redis backend that is down).
"""

from __future__ import annotations

import contextlib
import http.server
import logging
import os
import re
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from sockworks.core.command_stats import BUCKETS, CommandStats
from sockworks.core.net import format_address
from sockworks.core.stats import ServerStats

__all__ = ["INSTALL_HINT", "MetricsServer", "MetricsUnavailable"]

logger = logging.getLogger(__name__)

INSTALL_HINT = ("--metrics-port needs prometheus_client: pip install 'sockworks[metrics]'")

#: Snapshot fields that only grow: exported as counters (``_total``).
_COUNTER_FIELDS = frozenset({
    "commands_processed", "get_hits", "get_misses", "protocol_errors", "expired_keys",
    "evicted_keys", "requests", "errors", "rate_limited", "too_large", "bad_json",
    "write_errors", "fsync_errors", "rewrites",
})
#: Not figures: left out.
_SKIPPED_FIELDS = frozenset({"version", "pid", "uptime_seconds", "connections_current",
                             "connections_total", "connections_rejected",
                             "connections_idle_closed"})
_NAME = re.compile(r"[^a-zA-Z0-9_]")


class MetricsUnavailable(RuntimeError):
    """``--metrics-port`` without prometheus_client installed."""


Snapshot = Callable[[], Mapping[str, object]]


class _Collector:
    """A prometheus_client collector reading the server's figures at scrape time."""

    def __init__(self, stats: ServerStats | None, snapshots: Mapping[str, Snapshot],
                 commands: Mapping[str, CommandStats],
                 datagrams: Snapshot | None = None) -> None:
        self.stats = stats
        self.snapshots = snapshots
        self.commands = commands
        self.datagrams = datagrams

    def _summed(self, source: str, values: dict[str, float]) -> dict[str, float]:
        """``values`` (counter source ``source``) plus the other workers' (prefork)."""
        if self.stats is not None and self.stats.shared is not None:
            others = self.stats.shared.others()
            for key in values:
                values[key] += others.get(f"{source}.{key}", 0.0)
        return values

    def _command_families(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily

        calls = CounterMetricFamily("sockworks_commands", "Commands run, by service and name",
                                    labels=["service", "cmd"])
        errors = CounterMetricFamily("sockworks_command_errors",
                                     "Commands answered with an error, by service and name",
                                     labels=["service", "cmd"])
        duration = HistogramMetricFamily(
            "sockworks_command_duration_seconds",
            "Processing time of each received chunk of commands (one request, or one "
            "pipelined batch)", labels=["service"])
        received = CounterMetricFamily("sockworks_received_bytes",
                                       "Bytes received from clients", labels=["service"])
        sent = CounterMetricFamily("sockworks_sent_bytes",
                                   "Reply bytes produced for clients", labels=["service"])
        for service, command_stats in self.commands.items():
            flat = self._summed(f"{service}.cmd", command_stats.flat())
            for name in command_stats.names:
                if flat[f"calls.{name}"]:
                    calls.add_metric([service, name], flat[f"calls.{name}"])
                if flat[f"errors.{name}"]:
                    errors.add_metric([service, name], flat[f"errors.{name}"])
            cumulative, buckets = 0.0, []
            for index, bound in enumerate((*BUCKETS, float("inf"))):
                cumulative += flat[f"bucket.{index}"]
                buckets.append((repr(bound) if bound != float("inf") else "+Inf",
                                cumulative))
            duration.add_metric([service], buckets, flat["sum"])
            received.add_metric([service], flat["bytes_in"])
            sent.add_metric([service], flat["bytes_out"])
        yield received
        yield sent
        yield calls
        yield errors
        yield duration

    def collect(self) -> Iterator[Any]:
        if self.datagrams is not None:
            yield from _datagram_families(self.datagrams())
        shared = self.stats.shared if self.stats is not None else None
        # prefork: every family from one read of the workers' rows.
        with shared.held() if shared is not None else contextlib.nullcontext():
            families = list(self._connection_families(self.stats)) \
                if self.stats is not None else []
            families += self._command_families()
            families += self._snapshot_families()
        yield from families

    def _connection_families(self, stats: ServerStats) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        conn = {name: float(value) for name, value in stats.server_wide({
            "connections_current": stats.connections_current,
            "connections_total": stats.connections_total,
            "connections_rejected": stats.connections_rejected,
            "idle_closed": stats.idle_closed,
            "evicted_clients": stats.clients.evicted,
            "deadline_closed": stats.deadline_closed,
            "output_limit_closed": stats.output_limit_closed,
            "send_timeout_aborted": stats.send_timeout_aborted,
        }).items() if isinstance(value, int | float)}
        yield GaugeMetricFamily("sockworks_connections_current", "Open client connections",
                                value=conn["connections_current"])
        yield CounterMetricFamily("sockworks_connections_accepted",
                                  "Connections accepted", value=conn["connections_total"])
        refused = CounterMetricFamily("sockworks_connections_refused",
                                      "Connections refused, by reason", labels=["reason"])
        refused.add_metric(["max_connections"], conn["connections_rejected"])
        yield refused
        yield CounterMetricFamily("sockworks_connections_closed_idle",
                                  "Connections closed by --idle-timeout",
                                  value=conn["idle_closed"])
        yield CounterMetricFamily("sockworks_connections_closed_deadline",
                                  "Connections closed at --idle-timeout holding part of a "
                                  "request", value=conn["deadline_closed"])
        yield CounterMetricFamily("sockworks_connections_closed_output_limit",
                                  "Connections closed over --client-output-buffer-limit",
                                  value=conn["output_limit_closed"])
        yield CounterMetricFamily("sockworks_connections_aborted_send_timeout",
                                  "Connections aborted: the peer stopped reading for "
                                  "--send-timeout", value=conn["send_timeout_aborted"])
        yield CounterMetricFamily("sockworks_clients_evicted",
                                  "Clients closed by --maxmemory-clients",
                                  value=conn["evicted_clients"])
        yield GaugeMetricFamily("sockworks_uptime_seconds", "Seconds since start",
                                value=stats.uptime)

    def _snapshot_families(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        for service, snapshot in self.snapshots.items():
            try:
                fields = snapshot()
            except Exception:       # a backend down must not break the scrape
                logger.debug("metrics: %s snapshot failed", service, exc_info=True)
                continue
            for field, value in fields.items():
                if field in _SKIPPED_FIELDS or isinstance(value, bool) \
                        or not isinstance(value, int | float):
                    continue
                name = f"sockworks_{service}_{_NAME.sub('_', field)}"
                if field in _COUNTER_FIELDS:
                    yield CounterMetricFamily(name, f"{service} {field} (STATS)", value=value)
                else:
                    yield GaugeMetricFamily(name, f"{service} {field} (STATS)", value=value)


#: UDP counters (services/udp.py UdpCounters) that are a datagram's fate.
_DATAGRAM_OUTCOMES = ("replied", "rate_limited", "unanswered", "send_failed")


def _datagram_families(fields: Mapping[str, object]) -> Iterator[Any]:
    """The UDP service's figures (its ``snapshot()`` plus ``limited_sources``)."""
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    def number(name: str) -> float:
        value = fields.get(name, 0)
        return float(value) if isinstance(value, int | float) else 0.0

    yield CounterMetricFamily("sockworks_udp_datagrams_received", "Datagrams received",
                              value=number("received"))
    outcomes = CounterMetricFamily(
        "sockworks_udp_datagrams", "Datagrams by outcome (they add up to those received)",
        labels=["outcome"])
    for outcome in _DATAGRAM_OUTCOMES:
        outcomes.add_metric([outcome], number(outcome))
    yield outcomes
    errors = CounterMetricFamily("sockworks_udp_errors", "Requests answered with an error",
                                 labels=["reason"])
    errors.add_metric(["too_large"], number("too_large"))
    errors.add_metric(["other"], number("errors") - number("too_large"))
    yield errors
    yield GaugeMetricFamily("sockworks_udp_sources", "Source addresses the rate limiter tracks",
                            value=number("sources"))
    yield GaugeMetricFamily("sockworks_udp_sources_limited",
                            "Tracked sources out of tokens now (being rate-limited)",
                            value=number("limited_sources"))
    yield CounterMetricFamily("sockworks_udp_sources_evicted",
                              "Sources the rate limiter forgot (--max-sources)",
                              value=number("sources_evicted"))
    yield GaugeMetricFamily("sockworks_uptime_seconds", "Seconds since start",
                            value=number("uptime_s"))


class MetricsServer:
    """``/metrics``, ``/healthz`` and ``/readyz`` on ``host``:``port`` (0: free)."""

    def __init__(self, host: str, port: int, stats: ServerStats | None,
                 snapshots: Mapping[str, Snapshot], ready: Callable[[], bool],
                 commands: Mapping[str, CommandStats] | None = None,
                 datagrams: Snapshot | None = None) -> None:
        try:
            from prometheus_client import CollectorRegistry
        except ImportError:
            raise MetricsUnavailable(INSTALL_HINT) from None
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_Collector(stats, snapshots, commands or {}, datagrams))
        self.ready = ready
        self._httpd = http.server.ThreadingHTTPServer((host, port), self._handler())
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None
        self._pid: int | None = None

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._httpd.server_address[:2]
        return (str(host), int(port))

    def _handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    self._reply(200, generate_latest(owner.registry), CONTENT_TYPE_LATEST)
                elif path == "/healthz":
                    self._reply(200, b"ok\n")
                elif path == "/readyz":
                    try:
                        ready = owner.ready()
                    except Exception:
                        ready = False
                    self._reply(200 if ready else 503,
                                b"ready\n" if ready else b"not ready\n")
                else:
                    self._reply(404, b"not found: try /metrics, /healthz or /readyz\n")

            def _reply(self, status: int, body: bytes,
                       content_type: str = "text/plain; charset=utf-8") -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                logger.debug("metrics: " + format, *args)

        return Handler

    def start(self) -> None:
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True,
                                        name="sockworks-metrics")
        self._thread.start()
        logger.info("metrics on http://%s/metrics", format_address(self.address))

    def start_process(self) -> None:
        """Serve from a child process instead of a thread: for prefork, whose
        parent must stay single-threaded to fork workers. The child reads the
        workers' sums from shared memory; it exits when its parent does."""
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:
            status = 0
            try:
                signal.signal(signal.SIGINT, signal.SIG_IGN)
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.signal(signal.SIGHUP, signal.SIG_IGN)

                def orphaned() -> None:
                    while os.getppid() == parent:
                        time.sleep(0.5)
                    os._exit(0)

                threading.Thread(target=orphaned, daemon=True).start()
                self._httpd.serve_forever()
            except BaseException:
                status = 1
            finally:
                os._exit(status)
        self._pid = pid
        self._httpd.socket.close()      # the child serves it
        logger.info("metrics on http://%s/metrics (process %d)", format_address(self.address),
                    pid)

    def close(self) -> None:
        if self._pid is not None:
            try:
                os.kill(self._pid, signal.SIGTERM)
                os.waitpid(self._pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass    # already reaped (prefork reaps every child)
            return
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(10)
        self._httpd.server_close()
