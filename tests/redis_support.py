"""Real ``redis-server`` processes for tests: one server, or a 3-master cluster.

Every server runs in its own temporary directory with persistence off
(``--save '' --appendonly no``), bound to 127.0.0.1 only, and is killed when
the test (or session) that started it ends. Nothing here ever talks to a
system-wide Redis.

Choosing the port. The rest of the suite never guesses a free port: servers
bind port 0 and report the real one. redis-server cannot do that (``--port 0``
means "no TCP listener at all", and it takes no inherited socket), so for
Redis alone we ask the kernel for a free port by binding port 0, close that
socket and start redis-server on the number. Another process could take the
port in between; redis-server then exits at start-up ("Address already in
use") and we try again with a new port, a bounded number of times
(:data:`START_ATTEMPTS`). Readiness is the server's own "Ready to accept
connections" log line, never a sleep.

:func:`redis_call` sends one command on a socket to such a server and reads
its one reply, within a deadline: the differential tests' half that talks to
the real thing.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import hiredis
import pytest

from sockworks.protocols.resp import encode_command
from tests.support import require_binary

#: Attempts at starting a server when the probed port was taken meanwhile.
START_ATTEMPTS = 5
#: How long a server may take to log "Ready to accept connections".
READY_TIMEOUT = 15.0
#: How long a freshly created cluster may take to report cluster_state:ok
#: (gossip between three local nodes converges in well under a second).
CLUSTER_OK_TIMEOUT = 20.0
#: Attempts at building a cluster from scratch (see start_cluster).
CLUSTER_ATTEMPTS = 2

READY_LINE = b"Ready to accept connections"
#: Seconds a differential test waits for one reply from redis-server: every
#: command they send is answered in microseconds, so this only bounds a hang.
REPLY_TIMEOUT = 10.0


def redis_call(sock: socket.socket, argv: list[bytes],
               timeout: float = REPLY_TIMEOUT) -> bytes:
    """Send ``argv`` on ``sock`` and return the raw bytes of the one reply.

    Fails (AssertionError) if the server closes the connection or the reply
    is not complete within ``timeout`` seconds.
    """
    return redis_pipeline(sock, [argv], 1, timeout)


def redis_pipeline(sock: socket.socket, commands: list[list[bytes]], replies: int,
                   timeout: float = REPLY_TIMEOUT) -> bytes:
    """Send ``commands`` at once and return the raw bytes of ``replies``
    replies (fewer than commands when some are silenced: CLIENT REPLY)."""
    sock.sendall(b"".join(encode_command(argv) for argv in commands))
    incomplete = object()  # not False: RESP3 has a false reply
    reader = hiredis.Reader(notEnoughData=incomplete)
    raw = b""
    got = 0
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            break
        assert chunk, f"redis-server closed the connection after {commands!r}"
        raw += chunk
        reader.feed(chunk)
        while reader.gets() is not incomplete:
            got += 1
        if got >= replies:
            return raw
    raise AssertionError(f"not {replies} replies to {commands!r} within {timeout}s")


def probe_free_port() -> int:
    """A loopback port that was free a moment ago (see the module docstring)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class RedisServer:
    """One redis-server process; :meth:`stop` and :meth:`start` keep the port."""

    binary: str
    workdir: Path
    port: int = 0
    extra_args: list[str] = field(default_factory=list)
    #: TLS files from :func:`make_tls_files`: then the port speaks TLS only.
    tls: dict[str, Path] | None = None
    proc: subprocess.Popen[bytes] | None = None
    output: bytearray = field(default_factory=bytearray)
    _cond: threading.Condition = field(default_factory=threading.Condition)
    _reader: threading.Thread | None = None

    @property
    def url(self) -> str:
        if self.tls:
            return f"rediss://127.0.0.1:{self.port}/0?ssl_ca_certs={self.tls['ca']}"
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    def argv(self) -> list[str]:
        if self.tls:
            ports = ["--port", "0", "--tls-port", str(self.port),
                     "--tls-cert-file", str(self.tls["cert"]),
                     "--tls-key-file", str(self.tls["key"]),
                     "--tls-ca-cert-file", str(self.tls["ca"]),
                     "--tls-auth-clients", "no"]
        else:
            ports = ["--port", str(self.port)]
        return [
            self.binary,
            *ports,
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.workdir),
            "--logfile", "",          # log to stdout, which we read
            "--daemonize", "no",
            "--protected-mode", "yes",
            *self.extra_args,
        ]

    def start(self) -> None:
        """Start on ``self.port`` (which must already be chosen) and wait for
        the ready line; raises if the server exits first."""
        assert self.proc is None or self.proc.poll() is not None, "already running"
        with self._cond:
            self.output = bytearray()
        self.proc = subprocess.Popen(
            self.argv(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, cwd=self.workdir,
        )
        # Drain stdout on a thread: redis-server must never block on a full
        # pipe, and waiting for a log line needs no polling.
        self._reader = threading.Thread(target=self._drain, args=(self.proc,), daemon=True)
        self._reader.start()
        if not self.wait_for_log(READY_LINE, READY_TIMEOUT):
            self.kill()
            raise RuntimeError(f"redis-server on port {self.port} did not start:\n"
                               + self.output.decode(errors="replace"))

    def _drain(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        while True:
            chunk = os.read(fd, 65536)
            with self._cond:
                if chunk:
                    self.output += chunk
                else:
                    self._cond.notify_all()
                    break
                self._cond.notify_all()
        proc.stdout.close()

    def wait_for_log(self, pattern: bytes, timeout: float) -> bool:
        """True once ``pattern`` was logged; False if the server exited or
        ``timeout`` passed first."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while pattern not in self.output:
                remaining = deadline - time.monotonic()
                reader_done = self._reader is not None and not self._reader.is_alive()
                if remaining <= 0 or reader_done:
                    return pattern in self.output
                self._cond.wait(min(remaining, 0.5))
            return True

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def kill(self) -> None:
        """Stop the server at once (SIGKILL: an outage, not a clean shutdown)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)   # in case a test paused it
            self.proc.kill()
        self.proc.wait(10)
        if self._reader is not None:
            self._reader.join(10)

    stop = kill

    def restart(self) -> None:
        """Start again on the same port (Redis sets SO_REUSEADDR)."""
        self.kill()
        self.start()


def start_redis(binary: str, workdir: Path, extra_args: list[str] | None = None,
                ports_needed: int = 1, tls: dict[str, Path] | None = None) -> RedisServer:
    """Start a server on a probed port, retrying on a lost race (bounded).

    With ``ports_needed=2`` a second probed port is passed as
    ``--cluster-port`` (the cluster bus), so the default port+10000 (which may
    be taken, or beyond 65535) is never used.
    """
    last_error: Exception | None = None
    for _ in range(START_ATTEMPTS):
        port = probe_free_port()
        args = list(extra_args or [])
        if ports_needed == 2:
            args += ["--cluster-port", str(probe_free_port())]
        server = RedisServer(binary, workdir, port, args, tls)
        try:
            server.start()
            return server
        except RuntimeError as exc:
            last_error = exc
    raise RuntimeError(f"could not start redis-server in {START_ATTEMPTS} attempts") from last_error


def make_tls_files(openssl: str, directory: Path) -> dict[str, Path]:
    """A throw-away CA and a server certificate for 127.0.0.1 (IP SAN, so
    clients can verify the host name)."""
    ca, ca_key = directory / "ca.pem", directory / "ca.key"
    cert, key, csr = directory / "server.pem", directory / "server.key", directory / "server.csr"
    ext = directory / "san.cnf"
    ext.write_text("subjectAltName=IP:127.0.0.1\n")
    for argv in (
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca_key,
         "-out", ca, "-days", "2", "-subj", "/CN=sockworks test CA"],
        [openssl, "req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr,
         "-subj", "/CN=127.0.0.1"],
        [openssl, "x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key,
         "-CAcreateserial", "-out", cert, "-days", "2", "-extfile", ext],
    ):
        subprocess.run([str(a) for a in argv], check=True, capture_output=True,
                       stdin=subprocess.DEVNULL, timeout=60)
    return {"ca": ca, "cert": cert, "key": key}


@dataclass
class RedisCluster:
    servers: list[RedisServer]

    @property
    def url(self) -> str:
        return f"redis+cluster://127.0.0.1:{self.servers[0].port}"

    def stop(self) -> None:
        for server in self.servers:
            server.kill()


def cluster_info(port: int) -> dict[str, str]:
    import redis

    client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=2,
                         socket_connect_timeout=2, protocol=2)
    try:
        # redis-py leaves Redis.execute_command unannotated; the reply is checked below.
        text = client.execute_command("CLUSTER", "INFO")  # type: ignore[no-untyped-call]
    finally:
        client.close()
    if isinstance(text, bytes):
        text = text.decode()
    if isinstance(text, dict):        # some redis-py versions parse it already
        return {str(k): str(v) for k, v in text.items()}
    fields = (line.split(":", 1) for line in str(text).splitlines() if ":" in line)
    return {k: v.strip() for k, v in fields}


def start_cluster(redis_server: str, redis_cli: str, workdir: Path, masters: int = 3) -> RedisCluster:
    """Start ``masters`` cluster nodes and join them with ``redis-cli --cluster
    create``. A failed attempt (a port lost to a race, redis-cli killed from
    outside on a busy machine) is torn down and retried once, on fresh nodes."""
    errors: list[str] = []
    for attempt in range(CLUSTER_ATTEMPTS):
        try:
            return _start_cluster_once(redis_server, redis_cli, workdir / f"try{attempt}", masters)
        except (RuntimeError, subprocess.SubprocessError) as exc:
            detail = getattr(exc, "stderr", None) or getattr(exc, "stdout", None) or b""
            errors.append(f"{exc} {detail.decode(errors='replace') if detail else ''}".strip())
    raise RuntimeError("could not create a Redis Cluster:\n" + "\n".join(errors))


def _start_cluster_once(redis_server: str, redis_cli: str, workdir: Path,
                        masters: int) -> RedisCluster:
    servers: list[RedisServer] = []
    try:
        workdir.mkdir()
        for i in range(masters):
            node_dir = workdir / f"node{i}"
            node_dir.mkdir()
            servers.append(start_redis(
                redis_server, node_dir, ports_needed=2,
                extra_args=["--cluster-enabled", "yes",
                            "--cluster-config-file", str(node_dir / "nodes.conf"),
                            "--cluster-node-timeout", "5000"]))
        subprocess.run(
            [redis_cli, "--cluster", "create",
             *(f"127.0.0.1:{s.port}" for s in servers),
             "--cluster-replicas", "0", "--cluster-yes"],
            check=True, stdin=subprocess.DEVNULL, capture_output=True, timeout=60,
        )
        # The nodes learn about each other by gossip; like Redis's own
        # tests (wait_for_cluster_state), poll until every node says ok.
        deadline = time.monotonic() + CLUSTER_OK_TIMEOUT
        while True:
            states = [cluster_info(s.port).get("cluster_state") for s in servers]
            if all(state == "ok" for state in states):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"cluster did not reach cluster_state:ok: {states}")
            time.sleep(0.05)
    except BaseException:
        for server in servers:
            server.kill()
        raise
    return RedisCluster(servers)


# -- fixtures ------------------------------------------------------------------

# Fixtures carry explicit names so a test module can import them (the
# functions) without its parameters shadowing the imported names.

@pytest.fixture(name="redis_server")
def redis_server_fixture() -> Iterator[RedisServer]:
    """A fresh redis-server of the test's own (stop/restart it freely)."""
    binary = require_binary("redis-server")
    with tempfile.TemporaryDirectory(prefix="sockworks-redis-") as tmp:
        server = start_redis(binary, Path(tmp))
        try:
            yield server
        finally:
            server.kill()


@pytest.fixture(name="tls_redis_server")
def tls_redis_server_fixture() -> Iterator[RedisServer]:
    """A redis-server that speaks TLS only; ``.url`` is rediss:// with the CA."""
    binary = require_binary("redis-server")
    openssl = require_binary("openssl")
    with tempfile.TemporaryDirectory(prefix="sockworks-redis-tls-") as tmp:
        tls = make_tls_files(openssl, Path(tmp))
        server = start_redis(binary, Path(tmp), tls=tls)
        try:
            yield server
        finally:
            server.kill()


@pytest.fixture(name="shared_redis_server", scope="session")
def shared_redis_server_fixture() -> Iterator[RedisServer]:
    """One redis-server for tests that only read and write (flush it first)."""
    binary = require_binary("redis-server")
    with tempfile.TemporaryDirectory(prefix="sockworks-redis-") as tmp:
        server = start_redis(binary, Path(tmp))
        try:
            yield server
        finally:
            server.kill()


@pytest.fixture(name="redis_cluster", scope="session")
def redis_cluster_fixture() -> Iterator[RedisCluster]:
    """A 3-master Redis Cluster (no replicas), shared by the session."""
    server_bin = require_binary("redis-server")
    cli_bin = require_binary("redis-cli")
    with tempfile.TemporaryDirectory(prefix="sockworks-cluster-") as tmp:
        cluster = start_cluster(server_bin, cli_bin, Path(tmp))
        try:
            yield cluster
        finally:
            cluster.stop()
