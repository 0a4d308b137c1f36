"""The one way to run TCP services: :class:`Server`, for programs, tests and the CLI.

::

    server = Server(EchoService(), model="thread", port=0)
    server.start()                  # binds, serves in a background thread
    host, port = server.addresses[0]
    server.stop()                   # graceful, the SIGTERM order

    with Server(KvService(), port=0, resp_port=0) as srv: ...

    Server(EchoService(), port=9000).serve_forever()   # main thread, signals

A Server owns one concurrency model (``sockworks.models``), the endpoints it
listens on and the counters they share. ``start()`` installs no signal
handlers, so every non-forking model runs from any thread and several servers
run in one process. The forking models (``socketserver-fork``, ``prefork``)
fork children while serving; forking a process that runs other threads can
leave a child holding a lock no thread will ever release, so they run only
through ``serve_forever()`` in the main thread, and ``start()`` refuses them.

It sits above ``models`` (and below ``services`` and ``cli``) so that
``core`` never imports a model.
"""

from __future__ import annotations

import logging
import os
import signal
import ssl
import threading
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Protocol, Self, runtime_checkable

from sockworks.core import activation
from sockworks.core.config import DEFAULT_HOST, Endpoint, ServerSettings
from sockworks.core.logs import log_in_signal_handler, reopen_log_files
from sockworks.core.net import format_address, remove_unix_socket
from sockworks.core.notify import Notifier
from sockworks.core.rlimits import raise_fd_limit
from sockworks.core.service import Service
from sockworks.core.stats import ServerStats
from sockworks.core.tls import TlsContext, TlsSettings
from sockworks.core.worker_sums import WorkerSums
from sockworks.models import FORKING_MODELS, MODELS, Model, get_model

__all__ = ["Server", "HasRespFrontEnd"]

logger = logging.getLogger(__name__)

_NEW, _RUNNING, _STOPPED = "new", "running", "stopped"


@runtime_checkable
class HasRespFrontEnd(Protocol):
    """A service that can also be served over RESP (the KV store): what
    ``Server(..., resp_port=N)`` asks of its service."""

    def resp_service(self) -> Service:
        """A service serving the same data over RESP."""
        ...


class Server:
    """TCP endpoints served by one concurrency model.

    ``service`` is served on ``host``:``port`` (0: a free port, read it from
    :attr:`addresses`); ``resp_port`` adds the service's RESP front end (the
    KV store's) on the same host; ``endpoints`` lists ``(host, port,
    service)`` triples instead, for any other combination. ``model`` defaults
    to the service's own choice (``Service.default_model``). The other
    keywords are the command line's flags with underscores
    (``max_connections``, ``idle_timeout``, ``grace``, ``workers``), with the
    same defaults and the same checks: a bad value is a ValueError.
    """

    def __init__(self, service: Service | None = None, *, host: str = DEFAULT_HOST,
                 port: int = 0, resp_port: int | None = None,
                 tls_port: int | None = None, tls_resp_port: int | None = None,
                 tls: TlsSettings | ssl.SSLContext | None = None,
                 unixsocket: str | None = None, unixsocket_resp: str | None = None,
                 unixsocketperm: int | None = None,
                 endpoints: Sequence[Endpoint | tuple[str, int, Service]] | None = None,
                 model: str | None = None, **settings: object) -> None:
        self.endpoints = self._endpoints(service, host, port, resp_port, endpoints)
        self.endpoints += _extra_endpoints(
            service, self.endpoints[1].service if resp_port is not None else None,
            host, tls_port, tls_resp_port, tls, unixsocket, unixsocket_resp,
            unixsocketperm, given=endpoints is not None)
        _check_ports(self.endpoints)
        model = model or self.endpoints[0].service.default_model
        if model not in MODELS:
            raise ValueError(f"model must be one of {', '.join(MODELS)}, got {model!r}")
        self.settings = ServerSettings.checked(model, **settings)
        self.stats = ServerStats()
        self._services: list[Service] = list(
            {id(ep.service): ep.service for ep in self.endpoints}.values())
        for svc in self._services:
            svc.attach(self.stats, self.settings)
        if self.settings.model == "prefork":
            # Before any fork (workers, the metrics process): STATS, INFO and
            # metrics report the sums over the workers (core/worker_sums.py).
            self.stats.shared = WorkerSums(self.settings.workers or os.cpu_count() or 2,
                                           self.stats.local_counters())
        self._state = _NEW
        self._lock = threading.Lock()
        self._model: Model | None = None
        self._thread: threading.Thread | None = None
        self._addresses: list[tuple[str, int]] = []
        self._error: BaseException | None = None
        #: Run on SIGHUP (serve_forever only), in order: the log files are
        #: reopened first, then the TLS certificates re-read; the command line
        #: adds re-reading its config file.
        self.reload_hooks: list[Callable[[], object]] = [reopen_log_files, self.reload_tls]
        #: sd_notify(3) to systemd (a no-op without NOTIFY_SOCKET).
        self.notifier = Notifier(None)

    @staticmethod
    def _endpoints(service: Service | None, host: str, port: int, resp_port: int | None,
                   given: Sequence[Endpoint | tuple[str, int, Service]] | None
                   ) -> list[Endpoint]:
        if given is not None:
            if service is not None or resp_port is not None:
                raise TypeError("give either endpoints= or a service (and resp_port=)")
            endpoints = [ep if isinstance(ep, Endpoint) else Endpoint(*ep) for ep in given]
            if not endpoints:
                raise ValueError("endpoints must not be empty")
        elif service is None:
            raise TypeError("Server() needs a service (or endpoints=)")
        else:
            endpoints = [Endpoint(host, port, service)]
            if resp_port is not None:
                if not isinstance(service, HasRespFrontEnd):
                    raise TypeError(f"{type(service).__name__} has no RESP front end "
                                    "(resp_port=)")
                endpoints.append(Endpoint(host, resp_port, service.resp_service()))
        for ep in endpoints:
            if not isinstance(ep.service, Service):
                raise TypeError(f"not a sockworks Service: {ep.service!r}")
        return endpoints

    # -- what it listens on ----------------------------------------------------
    @property
    def addresses(self) -> list[tuple[str, int]]:
        """``(host, port)`` of each endpoint, in order, with the real ports
        (a UNIX socket's: ``(path, 0)``). Empty until the server has bound
        its sockets."""
        return list(self._addresses)

    def reload_tls(self) -> bool:
        """Re-read every TLS endpoint's certificate and key (SIGHUP does);
        a pair that does not load leaves the old one serving. True if all
        loaded."""
        contexts = {id(ep.tls): ep.tls for ep in self.endpoints if ep.tls is not None}
        return all([tls.reload() for tls in contexts.values()])

    @property
    def model(self) -> str:
        """The concurrency model's name."""
        return self.settings.model

    @property
    def listening(self) -> bool:
        """True from the moment ``listening on`` is logged until the server
        has stopped (readiness: /readyz)."""
        return bool(self._addresses) and self._state != _STOPPED

    @property
    def running(self) -> bool:
        """True from a successful start until the server has stopped."""
        return self._state == _RUNNING

    # -- embedded: a background thread ---------------------------------------
    def start(self) -> Self:
        """Bind and serve in a background thread; return once listening.

        Raises OSError when an address cannot be bound (nothing is left
        open), RuntimeError when called twice or for a forking model.
        """
        with self._lock:
            if self._state != _NEW:
                raise RuntimeError(f"Server.start(): this server is already {self._state} "
                                   "(a Server runs once; make a new one)")
            if self.settings.model in FORKING_MODELS:
                raise RuntimeError(
                    f"model {self.settings.model!r} forks worker processes, which is unsafe "
                    "from a process running other threads: run it with serve_forever() in "
                    "the main thread (as `sockworks serve` does), or use a threaded model")
            model = self._bind()
            self._state = _RUNNING
            self._thread = threading.Thread(target=self._run, args=(model,), daemon=True,
                                            name=f"sockworks-{self.settings.model}")
            self._thread.start()
        return self

    def stop(self, timeout: float | None = None) -> None:
        """Shut down gracefully (the SIGTERM order) and wait until every
        connection, thread and service is closed. A no-op unless running."""
        with self._lock:
            model, thread = self._model, self._thread
            if self._state != _RUNNING or model is None:
                return
        model.request_stop()
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                raise TimeoutError(f"server did not stop within {timeout}s")

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # -- the command line's way: main thread, signals --------------------------
    def serve_forever(self) -> None:
        """Serve in this thread until SIGINT/SIGTERM (or :meth:`stop` from
        another thread), then shut down gracefully. Installs the signal
        handlers, so it must run in the main thread. Raises OSError when an
        address cannot be bound."""
        if threading.current_thread() is not threading.main_thread():
            raise RuntimeError("Server.serve_forever() installs SIGINT/SIGTERM handlers, which "
                               "only the main thread may do: use start()/stop() from other "
                               "threads")
        with self._lock:
            if self._state != _NEW:
                raise RuntimeError(f"Server.serve_forever(): this server is already "
                                   f"{self._state}")
            model = get_model(self.settings.model)(self.endpoints, self.settings, self.stats)
            notifier = self.notifier = Notifier.from_environment()
            # Before binding: a signal sent the moment `listening on` is
            # logged is already a graceful stop, never "die at once".
            model.install_signals(before_stop=notifier.stopping)
            signal.signal(signal.SIGHUP, self._on_sighup)
            model = self._bind(model)
            self._state = _RUNNING
        where = ", ".join(format_address(a) for a in self._addresses)
        notifier.ready(f"listening on {where} (model={self.settings.model})")
        notifier.start_watchdog()
        try:
            self._run(model)
        finally:
            notifier.stop_watchdog()
            notifier.close()
        if self._error is not None:
            raise self._error

    def _on_sighup(self, signum: int, frame: object) -> None:
        """SIGHUP: run :attr:`reload_hooks` (docs/operations.md lists what
        changes at run time); a failing hook is logged, never fatal."""
        reopen_log_files()      # first, so the lines below go to the new file
        log_in_signal_handler(logger, logging.INFO,
                              "received SIGHUP: reopened log files, re-reading settings")
        for hook in self.reload_hooks:
            try:
                hook()
            except Exception:
                log_in_signal_handler(logger, logging.ERROR, "SIGHUP: %s failed",
                                      getattr(hook, "__name__", hook), exc_info=True)
        if self._model is not None:
            self._model.on_reload()
        self.notifier.status(f"reloaded (model={self.settings.model})")

    # -- shared steps -------------------------------------------------------
    def _bind(self, model: Model | None = None) -> Model:
        raise_fd_limit(self.settings.max_connections)
        # systemd socket activation: serve the sockets we were given.
        activation.adopt(self.endpoints, activation.inherited_sockets())
        if model is None:
            model = get_model(self.settings.model)(self.endpoints, self.settings, self.stats)
        try:
            addresses = model.bind()
            model.start()
        except BaseException:
            model.close_listeners()
            self._state = _STOPPED
            self._close_services()
            raise
        self._model = model
        self._addresses = [(ep.unix_path, 0) if ep.unix_path is not None
                           else (str(a[0]), int(a[1]))  # type: ignore[call-overload]
                           for ep, a in zip(self.endpoints, addresses, strict=True)]
        if self.stats.shared is not None:
            self.stats.shared.ready = True
        for ep, bound in zip(self.endpoints, self._addresses, strict=True):
            ep.service.bound_endpoint(ep, bound)
            # With port 0 this line is how a separate process learns the port.
            where = f"unix:{ep.unix_path}" if ep.unix_path is not None else \
                format_address(bound)
            logger.info("listening on %s (model=%s)%s", where, self.settings.model,
                        " over TLS" if ep.tls is not None else "")
        return model

    def _run(self, model: Model) -> None:
        try:
            model.serve_forever()
        except BaseException as exc:  # the one place that keeps the caller informed
            logger.exception("server failed")
            self._error = exc
        finally:
            for ep in self.endpoints:
                if ep.unix_path is not None and ep.listener is None:
                    remove_unix_socket(ep.unix_path)
            self._close_services()
            with self._lock:
                self._state = _STOPPED

    def _close_services(self) -> None:
        for svc in self._services:
            try:
                svc.close()
            except Exception:
                logger.exception("error closing %s service", svc.name)


def _extra_endpoints(service: Service | None, resp: Service | None, host: str,
                     tls_port: int | None,
                     tls_resp_port: int | None, tls: TlsSettings | ssl.SSLContext | None,
                     unixsocket: str | None, unixsocket_resp: str | None,
                     unixsocketperm: int | None, *, given: bool) -> list[Endpoint]:
    """The TLS and UNIX socket endpoints the keywords ask for, in that order."""
    wanted = {"tls_port": tls_port, "tls_resp_port": tls_resp_port,
              "unixsocket": unixsocket, "unixsocket_resp": unixsocket_resp}
    asked = [name for name, value in wanted.items() if value is not None]
    if given and asked:
        raise TypeError(f"give {', '.join(asked)} as Endpoint objects in endpoints= "
                        "(or drop endpoints=)")
    if (tls_port is not None or tls_resp_port is not None) and tls is None:
        raise TypeError("tls_port= and tls_resp_port= need tls= (a TlsSettings or an "
                        "ssl.SSLContext)")
    if unixsocketperm is not None and not 0 <= unixsocketperm <= 0o777:
        raise ValueError(f"unixsocketperm must be a file mode between 0 and 0o777, "
                         f"got {unixsocketperm!r}")
    made: list[Endpoint] = []
    if not asked or service is None:
        return made
    context = None
    if tls_port is not None or tls_resp_port is not None:
        context = TlsContext(context=tls) if isinstance(tls, ssl.SSLContext) else \
            TlsContext(tls)
    if resp is None and (tls_resp_port is not None or unixsocket_resp is not None):
        if not isinstance(service, HasRespFrontEnd):
            raise TypeError(f"{type(service).__name__} has no RESP front end "
                            "(tls_resp_port=, unixsocket_resp=)")
        resp = service.resp_service()
    if tls_port is not None:
        made.append(Endpoint(host, tls_port, service, tls=context))
    if tls_resp_port is not None and resp is not None:
        made.append(Endpoint(host, tls_resp_port, resp, tls=context))
    if unixsocket is not None:
        made.append(Endpoint(host, 0, service, unix_path=unixsocket, unix_perm=unixsocketperm))
    if unixsocket_resp is not None and resp is not None:
        made.append(Endpoint(host, 0, resp, unix_path=unixsocket_resp,
                             unix_perm=unixsocketperm))
    return made


def _check_ports(endpoints: Sequence[Endpoint]) -> None:
    for ep in endpoints:
        if ep.unix_path is not None:
            continue
        if isinstance(ep.port, bool) or not isinstance(ep.port, int) \
                or not 0 <= ep.port <= 65535:
            raise ValueError(f"port must be between 0 and 65535, got {ep.port!r}")
    nonzero = [ep.port for ep in endpoints if ep.port and ep.unix_path is None]
    if len(nonzero) != len(set(nonzero)):
        raise ValueError(f"two endpoints on one port: {nonzero}")
    paths = [ep.unix_path for ep in endpoints if ep.unix_path is not None]
    if len(paths) != len(set(paths)):
        raise ValueError(f"two endpoints on one UNIX socket: {paths}")
