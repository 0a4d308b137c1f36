"""The Redis backend: every Store call is one atomic Redis command (redis-py).

URLs (see :func:`sockworks.storage.factory.open_store`):

* ``redis://[user:password@]HOST:PORT/DB`` — one Redis server;
* ``rediss://...`` — the same over TLS; redis-py's ``from_url`` query options
  pass through (``?ssl_cert_reqs=required&ssl_ca_certs=/path/ca.pem``);
* ``redis+cluster://HOST:PORT`` (and ``rediss+cluster://``) — Redis Cluster,
  HOST:PORT being one startup node; the database must be 0 (Redis Cluster has
  only database 0).

Mapping. ``get`` GET, ``mget`` MGET, ``exists`` EXISTS k..., ``pttl`` PTTL,
``dbsize`` DBSIZE, ``keys`` KEYS, ``scan`` SCAN, ``set`` SET with
PX/NX/XX/GET/KEEPTTL (SET ... GET needs Redis >= 6.2, NX together with GET
>= 7.0), ``mset`` MSET, ``delete`` DEL, ``incrby`` INCRBY, ``pexpire``
PEXPIRE, ``persist`` PERSIST, ``flushdb`` FLUSHDB ASYNC, and
``execute_command`` (hashes, lists, sets, sorted sets, bitmaps, keyspace
commands) sends the command as it is and retags the raw reply
(redis_replies.py). Each is one command, so
each is atomic across every sockworks server sharing the Redis, and expiry is
Redis's own.

Redis Cluster. Single-key calls go to the key's primary. Multi-key calls are
split by hash slot, as Redis Cluster requires: MGET/MSET/EXISTS/DEL run as one
command per slot — atomic within a slot, **not** across slots (use hash tags,
``{user1}:a`` and ``{user1}:b``, to keep keys in one slot). DBSIZE, KEYS and
FLUSHDB run on every primary (DBSIZE is the sum). SCAN walks the primaries one
after another, sorted by ``host:port``; its cursor packs both positions::

    cursor = node_cursor * CLUSTER_SCAN_FANOUT + node_index

so cursor 0 still means "start" and "done", node 0's cursor 0 is the start,
and moving to node ``i > 0`` yields the non-zero cursor ``i``. The guarantee
"a key present for the whole scan is returned" holds while the set of
primaries is unchanged; a resharding during a scan can skip keys that moved.

Transactions. A group of calls cannot be isolated over Redis (inside MULTI,
Redis answers QUEUED, so a function reading a value could not use it), so
``isolates_groups`` is False: :meth:`Store.run_grouped` runs the calls one
after another. :meth:`RedisStore.execute_batch` (a RESP ``MULTI ... EXEC``)
records each call's command (``redis_plans.BatchRecorder``) and sends them
as one MULTI/EXEC; each call's result or :class:`StoreError` comes back in
order. On Redis Cluster every key of the batch must be in one slot
(CROSSSLOT otherwise, as in Redis Cluster itself).

Failures. Connect and read timeouts (:data:`DEFAULT_SOCKET_TIMEOUT`) bound
every call; a refused connection, a timeout or an exhausted pool raise
:class:`StoreUnavailable` ("redis unavailable: ..."). Nothing is retried: a
retried INCR whose first reply was lost would count twice, so every command is
sent at most once. Service resumes by itself: the pool drops dead connections
when it hands them out and opens new ones, so the first call after Redis comes
back succeeds.

Fork safety. The fork and prefork models fork after the store exists. redis-py
pools record the pid that created them and, when used from another pid, drop
the inherited connections (without shutting down the parent's sockets) and
connect afresh, so parent and children never share a socket. Fork only from a
thread that is not in the middle of a store call (the models fork from their
main thread before serving, or per connection from the accept loop).

Thread-safety: redis-py clients with a connection pool are thread-safe; a
:class:`~redis.BlockingConnectionPool` of ``max_connections`` makes a burst
wait up to :data:`DEFAULT_POOL_TIMEOUT` for a free connection instead of
failing at once.

Pass-through (``passthrough``). WATCH, pub/sub and blocking pops need a
connection that belongs to one client: ``pinned()`` (a
:class:`PinnedRedisStore`, at the end of this module), ``open_subscriber()``
and ``open_blocking()`` give one (storage/redis_pinned.py), at most
``max_pinned`` at a time (``--store-pinned-connections``). On Redis Cluster
the commands passed through as they are (bytes names, which redis-py's
cluster client cannot route) are routed here by their keys' slot, alone and
in MULTI/EXEC. Scripting and pub/sub commands go through
``execute_command`` as they are; on Redis Cluster it routes them: EVAL,
EVALSHA, FCALL (and their _RO forms) to the primary of their keys' slot
(keys in several slots: CROSSSLOT; no keys: the cluster client's default
node), SCRIPT LOAD/FLUSH and FUNCTION LOAD/DELETE/FLUSH/RESTORE to every
primary (so EVALSHA and FCALL work on any slot), SCRIPT EXISTS to every
primary (1 only where all have it), SCRIPT KILL and FUNCTION KILL to every
primary (OK if one stopped a script), SPUBLISH and PUBSUB SHARDNUMSUB by the
shard channel's slot, PUBSUB SHARDCHANNELS to every primary (merged), and
PUBLISH, PUBSUB CHANNELS/NUMSUB/NUMPAT and the rest of SCRIPT/FUNCTION to the
default node, which is also where subscriber connections for plain channels
and patterns go (Redis Cluster forwards PUBLISH to every node, and PUBSUB
reports the node's own subscribers).
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final, TypeVar

from sockworks.storage.base import (
    BackendError,
    BatchCall,
    IntegerOverflow,
    NotAnInteger,
    SetResult,
    Store,
    StoreError,
    StoreUnavailable,
    StoreWriteError,
    TransactionAborted,
    WatchSet,
)
from sockworks.storage.redis_parser import status_parser
from sockworks.storage.redis_pinned import (
    CROSSSLOT,
    Pin,
    PinBudget,
    RedisBlockedCall,
    RedisSubscriber,
)
from sockworks.storage.redis_plans import (
    BatchRecorder,
    RedisPlan,
    plan_command,
    plan_dbsize,
    plan_delete,
    plan_exists,
    plan_flushdb,
    plan_get,
    plan_incrby,
    plan_keys,
    plan_mget,
    plan_mset,
    plan_persist,
    plan_pexpire,
    plan_pttl,
    plan_scan,
    plan_set,
)
from sockworks.storage.redis_replies import retag

if TYPE_CHECKING:
    import types
    from collections.abc import Callable

    from sockworks.storage.base import BlockedCall, Subscriber

__all__ = ["CLUSTER_SCHEMES", "DEFAULT_MAX_PINNED", "REDIS_SCHEMES", "PinnedRedisStore",
           "RedisStore"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: Schemes of a single Redis server (plain and TLS).
REDIS_SCHEMES = ("redis", "rediss")
#: Schemes of a Redis Cluster (plain and TLS).
CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")

#: Connect and read timeout per command. Redis answers these O(1) commands in
#: microseconds; 2 s is far beyond a healthy round trip even across a WAN and
#: short enough that an outage never looks like a hang to a client.
DEFAULT_SOCKET_TIMEOUT = 2.0
#: How long a call waits for a free pooled connection before giving up. A
#: burst of more clients than connections queues instead of failing; past
#: this, Redis is too slow to keep up and the caller gets StoreUnavailable.
DEFAULT_POOL_TIMEOUT = 5.0
#: Pool size when the caller does not size it to its concurrency (the thread
#: pool model's default of 50 workers, plus headroom for admin calls).
DEFAULT_MAX_CONNECTIONS = 64
#: Dedicated connections (WATCH, subscriptions) one sockworks process may
#: hold on its backend (--store-pinned-connections). A client holds at most
#: one for a WATCH or a blocking command and one per node it subscribes on; Redis's default
#: maxclients is 10000, so 256 per process leaves room for dozens of
#: sockworks processes and their pools.
DEFAULT_MAX_PINNED = 256
#: Read timeout of EVAL/EVALSHA/FCALL passed to the backend. Redis bounds no
#: script (past busy-reply-threshold, 5 s by default, it answers everybody
#: else BUSY until SCRIPT KILL); a sockworks thread waits on it meanwhile, so
#: it is bounded here, far past any script that is not stuck.
SCRIPT_TIMEOUT = 300.0
#: Clean dedicated connections kept per node for the next WATCH, so a WATCH
#: need not connect (idle ones are not counted against max_pinned: this
#: bounds them).
IDLE_PINS = 8
#: SCAN over a cluster: node index multiplier in the packed cursor. Redis
#: Cluster's documented upper bound is 1000 primaries.
CLUSTER_SCAN_FANOUT = 1024

INSTALL_HINT = "the Redis backend needs redis-py: pip install 'sockworks[redis]'"


def _import_redis() -> types.ModuleType:
    """redis-py, imported on first use so the core runs without the extra."""
    try:
        import redis
        import redis.backoff
        import redis.cluster
        import redis.exceptions
        import redis.retry
    except ImportError as exc:
        raise StoreError(INSTALL_HINT) from exc
    return redis


def redact_url(url: str) -> str:
    """The URL without its password and query (which may hold secrets)."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host + (f":{parts.port}" if parts.port else "")
    if parts.username:
        netloc = f"{parts.username}:***@{netloc}"
    elif parts.password:
        netloc = f":***@{netloc}"
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


# -- error mapping -----------------------------------------------------------

#: Addresses in redis-py's messages ("Error 111 connecting to 10.0.0.5:6379.")
#: are for the log, not for clients of a sockworks server.
_ADDRESS = re.compile(r"\s+(?:connecting to|to|from|at)\s+\[?[\w.:-]+\]?:\d+\s*[.:]?")


def _client_text(exc: BaseException) -> str:
    """A short reason for an outage, without backend addresses."""
    redis = _import_redis()
    errors = redis.exceptions
    text = str(exc)
    if text == "No connection available.":
        return "no free connection in the pool (all busy); Redis is not keeping up"
    if isinstance(exc, errors.TimeoutError):
        return "timed out"
    if isinstance(exc, errors.BusyLoadingError):
        return "Redis is loading its dataset"
    if isinstance(exc, errors.AuthenticationError | errors.AuthorizationError):
        return "authentication failed"
    if isinstance(exc, errors.RedisClusterException) and "cannot be connected" in text:
        return "no cluster node reachable"
    text = _ADDRESS.sub(":", text).strip(" .")
    return text or type(exc).__name__


def translate_error(exc: BaseException) -> StoreError:
    """The StoreError a redis-py exception means to a sockworks client."""
    if isinstance(exc, StoreError):
        return exc
    redis = _import_redis()
    errors = redis.exceptions
    text = str(exc)
    if isinstance(exc, errors.CrossSlotTransactionError | errors.ClusterCrossSlotError):
        return StoreError("CROSSSLOT Keys in request don't hash to the same slot")
    if isinstance(exc, errors.ConnectionError | errors.TimeoutError | errors.ClusterDownError
                  | errors.TryAgainError | errors.RedisClusterException):
        return StoreUnavailable(f"redis unavailable: {_client_text(exc)}")
    if isinstance(exc, errors.OutOfMemoryError | errors.ReadOnlyError):
        # Redis refused the write and changed nothing, like a full disk.
        code = getattr(exc, "status_code", None) or ""
        return StoreWriteError(f"redis refused the write: {code} {text}".replace("  ", " "))
    if isinstance(exc, errors.ResponseError):
        if text.startswith("value is not an integer or out of range"):
            return NotAnInteger()
        if text.startswith("increment or decrement would overflow"):
            return IntegerOverflow()
        # redis-py strips a known error code (ERR, NOSCRIPT, EXECABORT...) off
        # the text: the line keeps it, so the RESP port sends Redis's reply.
        code = getattr(exc, "status_code", None)
        return BackendError(text, f"{code} {text}" if code else text)
    if isinstance(exc, errors.RedisError):
        return StoreError(f"redis error: {text}")
    raise exc


# -- the store ---------------------------------------------------------------

class RedisStore(Store):
    """A Store on a Redis server or Redis Cluster (see the module docstring)."""

    shared_across_processes = True
    #: Calls wait on the network: event-loop models must run them in threads.
    blocking = True
    #: WATCH on a pinned connection (pinned()), pub/sub and scripts in Redis.
    supports_watch = True
    passthrough = True

    def __init__(
        self,
        url: str,
        *,
        max_connections: int | None = None,
        socket_timeout: float = DEFAULT_SOCKET_TIMEOUT,
        pool_timeout: float = DEFAULT_POOL_TIMEOUT,
        max_pinned: int = DEFAULT_MAX_PINNED,
    ) -> None:
        redis = _import_redis()
        #: Dedicated connections open now, against max_pinned.
        self.pins: PinBudget = PinBudget(max_pinned)
        #: How to open dedicated connections, and clean idle ones, by node
        #: ("" on one server); ``pins`` bounds how many are open.
        self._pin_sources: dict[str, tuple[Any, dict[str, Any], Any]] = {}
        self._idle_pins: dict[str, list[Any]] = {}
        #: Clients for commands passed through untyped, by node (_typed).
        self._typed_clients: dict[str, Any] = {}
        self._redis = redis
        self.url = url
        self.max_connections = max_connections or DEFAULT_MAX_CONNECTIONS
        self._socket_timeout = socket_timeout
        self._pool_timeout = pool_timeout
        self._closed = False
        self._lock = threading.Lock()
        self._healthy = True
        self._client: Any = None        # redis.Redis (single server)
        self._cluster: Any = None       # redis.RedisCluster, made on first use
        parts = urllib.parse.urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme in CLUSTER_SCHEMES:
            self.is_cluster = True
            db = parts.path.strip("/")
            if db not in ("", "0"):
                raise StoreError(
                    f"Redis Cluster has only database 0, not {db!r}: {redact_url(url)}")
            # redis-py parses the rest of the URL as redis:// or rediss://.
            self._redis_url = urllib.parse.urlunsplit(
                (scheme.split("+")[0], parts.netloc, "", parts.query, ""))
            self._connect_cluster(quiet=True)
        elif scheme in REDIS_SCHEMES:
            self.is_cluster = False
            self._redis_url = url
            try:
                pool = redis.BlockingConnectionPool.from_url(
                    url, **self._connection_options(), timeout=pool_timeout)
            except ValueError as exc:
                raise StoreError(f"bad Redis URL {redact_url(url)}: {exc}") from None
            self._client = redis.Redis(connection_pool=pool)
            self._probe()
        else:
            raise StoreError(f"not a Redis URL: {redact_url(url)}")

    def _probe(self) -> None:
        """PING once at start so a wrong URL or a down Redis shows in the log
        at start-up; the store is usable either way (calls fail with
        StoreUnavailable until Redis answers)."""
        try:
            with self._translated():
                self._client.ping()
        except StoreUnavailable:
            pass        # _translated logged it
        except StoreError as exc:      # e.g. "DB index is out of range"
            logger.warning("redis at %s: %s", redact_url(self.url), exc)

    def wait_ready(self, timeout: float, interval: float = 0.2) -> None:
        """Block until Redis answers PING, for start-up (``--store-timeout``).

        A misconfiguration (bad credentials, a database index out of range)
        raises StoreError at once; an unreachable server is retried every
        ``interval`` seconds until ``timeout`` and then raises
        StoreUnavailable. Either message names the redacted URL.
        """
        errors = self._redis.exceptions
        where = redact_url(self.url)
        deadline = time.monotonic() + timeout
        last: BaseException | None = None
        # Bounded by time and by count (a clock that stalls cannot loop forever).
        for _ in range(int(timeout / interval) + 2):
            try:
                with self._translated():
                    target = self._target()
                    target.ping()
                return
            except StoreUnavailable as exc:
                cause = exc.__context__ or exc
                if isinstance(cause, errors.AuthenticationError | errors.AuthorizationError):
                    raise StoreError(f"redis at {where}: authentication failed "
                                     f"({_ADDRESS.sub(':', str(cause)).strip(' .')})") from None
                last = exc
            except StoreError as exc:
                raise StoreError(f"redis at {where}: {exc}") from None
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            time.sleep(min(interval, remaining))
        raise StoreUnavailable(f"redis at {where} unreachable for {timeout:g}s "
                               f"({str(last).removeprefix('redis unavailable: ')})")

    def ready(self) -> bool:
        """Whether Redis answers a PING now (a readiness probe, not the hot
        path: one round trip, bounded by the socket timeout)."""
        if self._closed:
            return False
        try:
            with self._translated():
                self._target().ping()
        except StoreError:
            return False
        return True

    def _connection_options(self) -> dict[str, Any]:
        redis = self._redis
        return {
            "max_connections": self.max_connections,
            "socket_timeout": self._socket_timeout,
            "socket_connect_timeout": self._socket_timeout,
            # RESP2: plain replies, and the pool's check for dead connections
            # stays on (redis-py skips it when RESP3 push notifications are on).
            "protocol": 2,
            # Never resend: a lost INCR reply must not become two increments.
            "retry": redis.retry.Retry(redis.backoff.NoBackoff(), 0),
        }

    def _connect_cluster(self, quiet: bool = False) -> Any:
        """The cluster client; made on first use so the server can start
        before the cluster is reachable (it then answers 'unavailable')."""
        with self._lock:
            if self._cluster is not None:
                return self._cluster
            redis = self._redis
            options = self._connection_options()
            retry = options.pop("retry")
            try:
                self._cluster = redis.RedisCluster.from_url(
                    self._redis_url, **options, retry=retry,
                    connection_pool_class=redis.BlockingConnectionPool,
                    timeout=self._pool_timeout)
            except ValueError as exc:
                raise StoreError(f"bad Redis URL {redact_url(self.url)}: {exc}") from None
            except (redis.exceptions.RedisError, redis.exceptions.RedisClusterException) as exc:
                if not quiet:
                    raise translate_error(exc) from None
                logger.warning("redis cluster at %s unreachable (%s); will retry on first use",
                               redact_url(self.url), exc)
                return None
            return self._cluster

    # -- plumbing ------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError("store is closed")

    @staticmethod
    def translate(exc: BaseException) -> StoreError:
        """The StoreError a redis-py exception means (:func:`translate_error`)."""
        return translate_error(exc)

    @staticmethod
    def outage_text(exc: BaseException) -> str:
        """A short reason for an outage, without backend addresses."""
        return _client_text(exc)

    @contextlib.contextmanager
    def _translated(self) -> Iterator[None]:
        """Map redis-py errors to StoreErrors; log outages once, and recovery."""
        redis = self._redis
        try:
            yield
        except (redis.exceptions.RedisError, redis.exceptions.RedisClusterException) as exc:
            error = translate_error(exc)
            if isinstance(error, StoreUnavailable):
                self._mark(False, exc)
            raise error from None
        self._mark(True)

    def _mark(self, healthy: bool, cause: BaseException | None = None) -> None:
        """Log the outage once when it starts (with redis-py's full message)
        and once when it ends, however many calls fail in between."""
        if healthy == self._healthy:
            return
        self._healthy = healthy
        if healthy:
            logger.info("redis reachable again at %s", redact_url(self.url))
        else:
            logger.warning("redis unavailable at %s: %s", redact_url(self.url), cause)

    def _target(self) -> Any:
        self._check_open()
        if not self.is_cluster:
            return self._client
        cluster = self._cluster if self._cluster is not None else self._connect_cluster()
        return cluster

    def _run(self, plan: RedisPlan[T]) -> T:
        target = self._target()
        if not plan.args:
            return plan.convert(None)
        with self._translated():
            if self.is_cluster and isinstance(plan.args[0], bytes):
                # A command passed through as it is: redis-py's cluster
                # client cannot route a bytes name (and a str one would get
                # its reply callbacks), so route it by its keys' slot here.
                slot = self.command_slot(plan.args)
                node = (target.get_default_node() if slot is None
                        else target.nodes_manager.get_node_from_slot(slot))
                return plan.convert(self._typed(str(node.name)).execute_command(*plan.args))
            return plan.convert(target.execute_command(*plan.args, **plan.options))

    def _primaries(self) -> list[Any]:
        """Cluster: one redis.Redis per primary, sorted by host:port."""
        cluster = self._target()
        nodes = sorted(cluster.get_primaries(), key=lambda node: node.name)
        return [cluster.get_redis_connection(node) for node in nodes]

    # -- reads ---------------------------------------------------------------

    def execute_command(self, argv: Sequence[bytes]) -> Any:
        """Passed through to Redis (its semantics are Redis's own); the raw
        reply retagged (redis_replies.py). On Redis Cluster scripting and
        pub/sub commands are routed as the module docstring says."""
        if bytes(argv[0]).upper() in _ROUTED:
            with self._translated():
                return retag(argv, self._route(argv))
        return self._run(plan_command(argv))

    def get(self, key: bytes) -> bytes | None:
        return self._run(plan_get(key))

    def mget(self, keys: Sequence[bytes]) -> list[bytes | None]:
        if self.is_cluster and keys:
            target = self._target()
            with self._translated():
                return list(target.mget_nonatomic(list(keys)))
        return self._run(plan_mget(keys))

    def exists(self, keys: Sequence[bytes]) -> int:
        if self.is_cluster and keys:
            target = self._target()
            with self._translated():
                return int(target.exists(*keys))     # one EXISTS per slot, summed
        return self._run(plan_exists(keys))

    def pttl(self, key: bytes) -> int:
        return self._run(plan_pttl(key))

    def dbsize(self) -> int:
        if self.is_cluster:
            with self._translated():
                return sum(int(node.dbsize()) for node in self._primaries())
        return self._run(plan_dbsize())

    def keys(self, pattern: bytes) -> list[bytes]:
        if self.is_cluster:
            with self._translated():
                return [key for node in self._primaries() for key in node.keys(pattern)]
        return self._run(plan_keys(pattern))

    def scan(self, cursor: int, match: bytes | None, count: int) -> tuple[int, list[bytes]]:
        if not self.is_cluster:
            return self._run(plan_scan(cursor, match, count))
        node_cursor, index = divmod(cursor, CLUSTER_SCAN_FANOUT)
        with self._translated():
            nodes = self._primaries()
            if index >= len(nodes):     # the cluster shrank under the scan
                return 0, []
            plan = plan_scan(node_cursor, match, count)
            next_cursor, keys = plan.convert(nodes[index].execute_command(*plan.args))
        if next_cursor != 0:
            return next_cursor * CLUSTER_SCAN_FANOUT + index, keys
        if index + 1 < len(nodes):
            return index + 1, keys
        return 0, keys

    # -- writes --------------------------------------------------------------

    def set(self, key: bytes, value: bytes, *, px: int | None = None, nx: bool = False,
            xx: bool = False, get: bool = False, keepttl: bool = False) -> SetResult:
        return self._run(plan_set(key, value, px=px, nx=nx, xx=xx, get=get,
                                      keepttl=keepttl))

    def mset(self, pairs: Sequence[tuple[bytes, bytes]]) -> None:
        if self.is_cluster and pairs:
            target = self._target()
            with self._translated():
                # One MSET per hash slot: atomic within a slot only. A dict
                # keeps the last value of a repeated key, as MSET does.
                target.mset_nonatomic(dict(pairs))
            return
        self._run(plan_mset(pairs))

    def delete(self, keys: Sequence[bytes]) -> int:
        if self.is_cluster and keys:
            target = self._target()
            with self._translated():
                # DEL a a removes one key: count distinct keys, per slot.
                return int(target.delete(*dict.fromkeys(keys)))
        return self._run(plan_delete(keys))

    def incrby(self, key: bytes, delta: int) -> int:
        return self._run(plan_incrby(key, delta))

    def pexpire(self, key: bytes, ms: int) -> bool:
        return self._run(plan_pexpire(key, ms))

    def persist(self, key: bytes) -> bool:
        return self._run(plan_persist(key))

    def flushdb(self) -> None:
        if self.is_cluster:
            with self._translated():
                for node in self._primaries():
                    node.flushdb(asynchronous=True)
            return
        self._run(plan_flushdb())

    # -- pass-through: pinned connections, routing on Redis Cluster ----------------
    def pinned(self) -> RedisStore:
        self._check_open()
        return PinnedRedisStore(self)

    def open_subscriber(self, shard_channel: bytes | None,
                        on_message: Callable[[list[bytes]], bool],
                        on_lost: Callable[[str], None]) -> tuple[str, Subscriber]:
        self._check_open()
        node = self.subscriber_node(shard_channel)
        return node, RedisSubscriber(self, node, on_message, on_lost, self._socket_timeout)

    def open_blocking(self, argv: Sequence[bytes], keys: Sequence[bytes],
                      retag_as: Sequence[bytes],
                      on_done: Callable[[Any, StoreError | None], None]) -> BlockedCall:
        self._check_open()
        node = ""
        if self.is_cluster:
            slots = {self.key_slot(key) for key in keys}
            if len(slots) > 1:
                raise StoreError("CROSSSLOT Keys in request don't hash to the same slot")
            node = self.slot_node(slots.pop())
        return RedisBlockedCall(self, node, argv, retag_as, on_done)

    def subscriber_node(self, shard_channel: bytes | None) -> str:
        if not self.is_cluster:
            return ""
        if shard_channel is None:
            with self._translated():
                return str(self._target().get_default_node().name)
        return self.slot_node(self.key_slot(shard_channel))

    def _node_source(self, node: str) -> Any:
        """The redis.Redis of ``node`` ("" on one server): its pool's
        connection settings are copied for the extra pools."""
        if not node:
            return self._client
        with self._translated():
            cluster = self._target()
            return cluster.get_redis_connection(cluster.get_node(node_name=node))

    def pin_source(self, node: str) -> tuple[Any, dict[str, Any], Any]:
        """How to open a dedicated connection to ``node`` ("" on one
        server): its connection class and settings (the pool's, with the
        parser that keeps status replies, storage/redis_parser.py), and the
        redis.Redis whose reply callbacks parse its replies."""
        with self._lock:
            found = self._pin_sources.get(node)
        if found is not None:
            return found
        client = self._node_source(node)
        source = client.connection_pool
        options = {**source.connection_kwargs, "parser_class": status_parser()}
        with self._lock:
            return self._pin_sources.setdefault(
                node, (source.connection_class, options, client))

    def take_idle_pin(self, node: str) -> Any:
        """A dedicated connection handed back clean (UNWATCH answered), or None."""
        with self._lock:
            idle = self._idle_pins.get(node)
            return idle.pop() if idle else None

    def keep_idle_pin(self, node: str, conn: Any) -> bool:
        """Keep a clean dedicated connection for the next WATCH (at most
        :data:`IDLE_PINS` per node); False: the caller closes it."""
        with self._lock:
            idle = self._idle_pins.setdefault(node, [])
            if self._closed or len(idle) >= IDLE_PINS:
                return False
            idle.append(conn)
            return True

    def _typed(self, node: str, *, script: bool = False) -> Any:
        """A client of ``node`` for the commands passed through untyped
        (scripts, pub/sub), whose status replies must stay statuses: its
        own pool, sized like the main one, filled only as they are used.
        ``script``: for EVAL/FCALL, whose read timeout is
        :data:`SCRIPT_TIMEOUT` (a script may run long; meanwhile Redis
        answers everybody else BUSY, as it would its own clients)."""
        key = f"{node}#script" if script else node
        with self._lock:
            found = self._typed_clients.get(key)
        if found is not None:
            return found
        source = self._node_source(node).connection_pool
        options = {**source.connection_kwargs, "parser_class": status_parser(),
                   "max_connections": self.max_connections}
        if script:
            options["socket_timeout"] = SCRIPT_TIMEOUT
        pool = self._redis.BlockingConnectionPool(
            connection_class=source.connection_class, timeout=self._pool_timeout, **options)
        client = self._redis.Redis(connection_pool=pool)
        with self._lock:
            return self._typed_clients.setdefault(key, client)

    def key_slot(self, key: bytes) -> int:
        from redis.crc import key_slot

        return int(key_slot(key))

    def slot_node(self, slot: int) -> str:
        """The name (host:port) of the primary serving ``slot``."""
        with self._translated():
            node = self._target().nodes_manager.get_node_from_slot(slot)
        return str(node.name)

    def command_slot(self, args: Sequence[Any]) -> int | None:
        """The slot of a command's keys (redis-py's key finder, which knows
        command names as str only); CROSSSLOT when they span slots; None
        for a command without keys."""
        redis = self._redis
        name = args[0].decode("latin-1") if isinstance(args[0], bytes) else str(args[0])
        try:
            return int(self._target().determine_slot(name.upper(), *args[1:]))
        except redis.exceptions.RedisClusterException as exc:
            if "same slot" in str(exc) or "CROSSSLOT" in str(exc):
                raise StoreError("CROSSSLOT Keys in request don't hash to the same slot") from None
            if "Missing key" in str(exc):
                return None
            raise translate_error(exc) from None

    def _node_client(self, node: Any) -> Any:
        return self._typed(str(node.name))

    def _route(self, argv: Sequence[bytes]) -> Any:
        """A scripting or pub/sub command: on one server through the typed
        pool, on Redis Cluster routed (module docstring)."""
        script = bytes(argv[0]).upper() in _BY_KEYS
        if not self.is_cluster:
            return self._typed("", script=script).execute_command(*argv)
        cluster = self._target()
        name = bytes(argv[0]).upper()
        sub = bytes(argv[1]).upper() if len(argv) > 1 else b""
        args = list(argv)
        if name in _BY_KEYS:
            try:
                numkeys = max(0, int(argv[2]))
            except ValueError:
                numkeys = 0     # Redis answers the error, from any node
            slots = {self.key_slot(key) for key in argv[3:3 + numkeys]}
            if len(slots) > 1:
                raise StoreError("CROSSSLOT Keys in request don't hash to the same slot")
            node = (cluster.nodes_manager.get_node_from_slot(slots.pop()) if slots
                    else cluster.get_default_node())
            return self._typed(str(node.name), script=True).execute_command(*args)
        if name == b"SPUBLISH":
            node = cluster.nodes_manager.get_node_from_slot(self.key_slot(argv[1]))
            return self._node_client(node).execute_command(*args)
        primaries = [self._node_client(node) for node in
                     sorted(cluster.get_primaries(), key=lambda node: node.name)]
        if (name, sub) in _EVERY_PRIMARY:
            replies = [client.execute_command(*args) for client in primaries]
            if sub == b"EXISTS":
                return [int(all(flags)) for flags in zip(*replies)]
            return replies[0]
        if sub == b"KILL":
            killed: Any = None
            first_error: BaseException | None = None
            for client in primaries:
                try:
                    killed = client.execute_command(*args)
                except self._redis.exceptions.ResponseError as exc:
                    first_error = first_error or exc
            if killed is None and first_error is not None:
                raise first_error
            return killed
        if name == b"PUBSUB" and sub == b"SHARDCHANNELS":
            names: dict[bytes, None] = {}
            for client in primaries:
                names.update(dict.fromkeys(client.execute_command(*args)))
            return list(names)
        if name == b"PUBSUB" and sub == b"SHARDNUMSUB":
            flat: list[Any] = []
            for channel in argv[2:]:
                node = cluster.nodes_manager.get_node_from_slot(self.key_slot(channel))
                flat += self._node_client(node).execute_command(b"PUBSUB", b"SHARDNUMSUB",
                                                                channel)
            return flat
        return self._node_client(cluster.get_default_node()).execute_command(*args)

    # -- transactions ----------------------------------------------------------

    def execute_batch(self, calls: Sequence[BatchCall]) -> list[Any]:
        """Run ``calls`` as one MULTI/EXEC; each result or StoreError in order.

        Raises StoreUnavailable when Redis cannot be reached (then none or all
        of the calls ran: EXEC is all or nothing), and StoreError for a batch
        Redis Cluster cannot run atomically (keys in several slots, or a
        call without keys such as DBSIZE). ValueError: a call that is not one
        Store call (see ``redis_plans.BatchRecorder``).
        """
        recorder = BatchRecorder()
        plans = [recorder.record(call) for call in calls]
        sent = [plan for plan in plans if plan.args]
        target = self._target()
        if self.is_cluster and any(plan.args[0] in _KEYLESS for plan in sent):
            raise StoreError("on Redis Cluster, MULTI/EXEC cannot run DBSIZE, KEYS, SCAN "
                             "or FLUSHDB")
        if self.is_cluster and sent:
            # One slot for the whole batch, then a plain MULTI/EXEC on its
            # primary: redis-py's cluster pipeline cannot route the commands
            # passed through as they are (bytes names).
            with self._translated():
                slots = {self.command_slot(plan.args) for plan in sent} - {None}
                if len(slots) > 1:
                    raise StoreError("CROSSSLOT Keys in request don't hash to the same slot")
                node = (target.nodes_manager.get_node_from_slot(slots.pop()) if slots
                        else target.get_default_node())
                target = self._typed(str(node.name))
        replies: list[Any] = []
        if sent:
            try:
                with self._translated(), target.pipeline(transaction=True) as pipe:
                    for plan in sent:
                        pipe.execute_command(*plan.args, **plan.options)
                    replies = pipe.execute(raise_on_error=False)
            except StoreError as exc:
                raise _exec_abort(exc) from None
        return self._batch_results(plans, replies)

    def _batch_results(self, plans: Sequence[RedisPlan[Any]], replies: Sequence[Any],
                       callbacks: Mapping[str, Callable[..., Any]] | None = None
                       ) -> list[Any]:
        """Each recorded call's result from EXEC's replies (a call that sent
        nothing gets None converted; an error reply, the StoreError it stands
        for). ``callbacks``: redis-py's response callbacks, for replies read
        off a raw connection rather than through a redis-py pipeline."""
        results: list[Any] = []
        reply_iter = iter(replies)
        for plan in plans:
            reply = next(reply_iter) if plan.args else None
            if isinstance(reply, Exception):
                results.append(self._reply_error(reply))
                continue
            if callbacks is not None:
                name = plan.args[0] if plan.args else None
                if isinstance(name, str) and name in callbacks:
                    reply = callbacks[name](reply, **plan.options)
            results.append(plan.convert(reply))
        return results

    def _reply_error(self, exc: Exception) -> StoreError:
        error = translate_error(exc)
        if isinstance(error, StoreUnavailable):
            self._mark(False, exc)
            raise error
        return error

    # -- administration ------------------------------------------------------

    def info(self) -> dict[str, Any]:
        """Backend, URL (no password) and Redis's keyspace figures; when Redis
        is down, ``store_status`` says so instead of raising."""
        info: dict[str, Any] = {
            "store_backend": "redis-cluster" if self.is_cluster else "redis",
            "store_url": redact_url(self.url),
            "store_max_connections": self.max_connections,
        }
        try:
            with self._translated():
                nodes = self._primaries() if self.is_cluster else [self._target()]
                keys = expires = 0
                version = ""
                # Redis's own memory and keyspace counters, under its names
                # (summed over a cluster's primaries): INFO shows them as the
                # store's, since the data lives there.
                totals: dict[str, int] = dict.fromkeys(_REDIS_FIGURES, 0)
                policy = "noeviction"
                for node in nodes:
                    section = node.info("keyspace")
                    server = node.info("server")
                    version = str(server.get("redis_version", ""))
                    for part in (node.info("memory"), node.info("stats")):
                        for name in _REDIS_FIGURES:
                            totals[name] += int(part.get(name, 0))
                        policy = str(part.get("maxmemory_policy", policy))
                    for name, figures in section.items():
                        if str(name) == f"db{self._db_index(node)}" and isinstance(figures, dict):
                            keys += int(figures.get("keys", 0))
                            expires += int(figures.get("expires", 0))
        except StoreError as exc:
            info["store_status"] = str(exc)
            return info
        info.update(store_status="ok", store_keys=keys, store_expires=expires,
                    store_redis_version=version, store_nodes=len(nodes), **totals,
                    maxmemory_policy=policy)
        return info

    @staticmethod
    def _db_index(node: Any) -> int:
        return int(node.connection_pool.connection_kwargs.get("db", 0) or 0)

    def compact(self) -> str:
        return "nothing to compact: Redis manages its own persistence"

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        redis = self._redis
        # Closing only drops sockets; a Redis that is down cannot make it fail
        # in a way the caller could act on.
        with contextlib.suppress(redis.exceptions.RedisError, OSError):
            if self._client is not None:
                self._client.close()
                self._client.connection_pool.disconnect()
            if self._cluster is not None:
                self._cluster.close()
            with self._lock:
                idle = [conn for conns in self._idle_pins.values() for conn in conns]
                self._idle_pins.clear()
            for conn in idle:
                conn.disconnect()
            for client in self._typed_clients.values():
                client.connection_pool.disconnect()


#: How redis-py prefixes the error of a command Redis refused to queue.
_ANNOTATION: Final = re.compile(r"Command # \d+ \(.*\) of pipeline caused error: ", re.S)


def _exec_abort(error: StoreError) -> StoreError:
    """A batch Redis refused a command of (BUSY, OOM...: nothing ran): the
    sockworks client saw QUEUED for it, so EXEC says why, as Redis's
    EXECABORT of a refused EXEC does; CROSSSLOT is left as it is."""
    text = str(getattr(error, "line", error))
    stripped = _ANNOTATION.sub("", text)
    if stripped == text or stripped.startswith("CROSSSLOT"):
        return error
    return BackendError(stripped, f"EXECABORT Transaction discarded because of: {stripped}")


#: INFO memory and INFO stats figures of Redis that the RESP port's INFO
#: reports as the store's (redis-cli --stat reads used_memory).
_REDIS_FIGURES: Final = ("used_memory", "maxmemory", "expired_keys", "evicted_keys",
                         "keyspace_hits", "keyspace_misses")

#: Commands execute_command routes itself on Redis Cluster (_route).
_BY_KEYS: Final = frozenset({b"EVAL", b"EVALSHA", b"EVAL_RO", b"EVALSHA_RO", b"FCALL",
                             b"FCALL_RO"})
_ROUTED: Final = _BY_KEYS | {b"SCRIPT", b"FUNCTION", b"PUBLISH", b"SPUBLISH", b"PUBSUB",
                             b"CONFIG"}
#: (command, subcommand) run on every primary, so any node can serve them after.
_EVERY_PRIMARY: Final = frozenset({(b"SCRIPT", b"LOAD"), (b"SCRIPT", b"FLUSH"),
                                   (b"SCRIPT", b"EXISTS"), (b"FUNCTION", b"LOAD"),
                                   (b"FUNCTION", b"DELETE"), (b"FUNCTION", b"FLUSH"),
                                   (b"FUNCTION", b"RESTORE"), (b"CONFIG", b"SET")})

#: Commands with no key: they cannot be routed inside a cluster transaction.
_KEYLESS = frozenset({"DBSIZE", "KEYS", "SCAN", "FLUSHDB"})


# -- one client's WATCH connection ---------------------------------------------

class _Channel:
    """What ``RedisStore._run`` sends a command to: the pinned connection."""

    def __init__(self, store: PinnedRedisStore) -> None:
        self._store = store

    def execute_command(self, *args: Any, **options: Any) -> Any:
        return self._store.run_pinned(args, options)


class PinnedRedisStore(RedisStore):
    """``parent`` with one client's WATCH connection: every call on it on one
    server; WATCH, MULTI/EXEC and UNWATCH on it on Redis Cluster (the rest
    through the cluster pool). See storage/redis_pinned.py's docstring."""

    def __init__(self, parent: RedisStore) -> None:  # pylint: disable=super-init-not-called
        # Shares the parent's clients and pools; opens only its own pin.
        self._parent = parent
        self._redis = parent._redis
        self.url = parent.url
        self.max_connections = parent.max_connections
        self.is_cluster = parent.is_cluster
        self._client = parent._client
        self._cluster = None
        self._closed = False
        self._lock = threading.Lock()
        self._healthy = True
        self.pins = parent.pins
        self._pin: Pin | None = None
        self._slot: int | None = None
        self._lost: str | None = None
        self._channel = _Channel(self)

    # -- routing ---------------------------------------------------------------
    def _target(self) -> Any:
        self._check_open()
        if self.is_cluster:
            return self._parent._target()
        return self._channel

    def _connection(self, slot: int | None) -> Pin:
        if self._lost is not None:
            raise StoreUnavailable(self._lost)
        if self._pin is None:
            node = self._parent.slot_node(slot) if slot is not None else ""
            self._pin = Pin(self._parent, node)
            self._slot = slot
        return self._pin

    def _fail(self, exc: BaseException) -> StoreError:
        error = translate_error(exc)
        if isinstance(error, StoreUnavailable) and self._pin is not None:
            self._lost = (f"{error}; the connection that held this client's WATCH was "
                          "lost, so its transaction is discarded")
            self._pin.release(reusable=False)
            return StoreUnavailable(self._lost)
        return error

    def run_pinned(self, args: Sequence[Any], options: dict[str, Any]) -> Any:
        """One command on the pinned connection, parsed as redis-py parses
        it for the pool (its reply callbacks)."""
        pin = self._connection(None)
        errors = self._redis.exceptions
        try:
            pin.conn.send_command(*args)
            return pin.client.parse_response(pin.conn, args[0], **options)
        except (errors.ConnectionError, errors.TimeoutError, OSError) as exc:
            raise self._fail(exc) from None

    # -- WATCH -----------------------------------------------------------------
    def watch(self, watch: WatchSet, keys: Sequence[bytes]) -> None:
        slot = None
        if self.is_cluster:
            slots = {self._parent.key_slot(key) for key in keys}
            if len(slots) > 1 or (self._slot is not None and slots != {self._slot}):
                raise StoreError(CROSSSLOT)
            slot = slots.pop()
        pin = self._connection(slot)
        errors = self._redis.exceptions
        try:
            pin.conn.send_command("WATCH", *keys)
            pin.conn.read_response()
        except (errors.ConnectionError, errors.TimeoutError, OSError) as exc:
            raise self._fail(exc) from None
        except errors.RedisError as exc:
            raise translate_error(exc) from None
        for key in keys:
            watch.keys[key] = False

    def watch_broken(self, watch: WatchSet) -> bool:
        if self._lost is not None:
            raise StoreUnavailable(self._lost)
        return False  # Redis decides, at EXEC

    def unwatch(self, watch: WatchSet) -> None:
        watch.keys.clear()
        watch.dirty = False
        pin, self._pin = self._pin, None
        if pin is None:
            return
        reusable = self._lost is None
        if reusable:
            try:
                pin.conn.send_command("UNWATCH")
                pin.conn.read_response()
            except (self._redis.exceptions.RedisError, OSError):
                reusable = False
        pin.release(reusable=reusable)

    def execute_batch(self, calls: Sequence[BatchCall]) -> list[Any]:
        """MULTI, the calls, EXEC on the pinned connection; EXEC's null
        reply raises TransactionAborted."""
        if self._pin is None and self._lost is None:
            return self._parent.execute_batch(calls)
        recorder = BatchRecorder()
        plans = [recorder.record(call) for call in calls]
        sent = [plan for plan in plans if plan.args]
        if self.is_cluster:
            self._check_slots([plan.args for plan in sent])
        pin = self._connection(self._slot)
        errors = self._redis.exceptions
        commands = [("MULTI",), *[plan.args for plan in sent], ("EXEC",)]
        refused: list[BaseException] = []
        replies: Any = None
        try:
            pin.conn.send_packed_command(pin.conn.pack_commands(commands))
            for index in range(len(commands)):
                try:
                    reply = pin.conn.read_response()
                except errors.ResponseError as exc:
                    if index == len(commands) - 1:
                        # EXECABORT: say which command Redis refused.
                        raise translate_error(refused[0] if refused else exc) from None
                    refused.append(exc)
                    continue
                if index == len(commands) - 1:
                    replies = reply
        except (errors.ConnectionError, errors.TimeoutError, OSError) as exc:
            raise self._fail(exc) from None
        if replies is None:
            raise TransactionAborted()
        return self._batch_results(plans, replies, pin.client.response_callbacks)

    def _check_slots(self, commands: Sequence[Sequence[Any]]) -> None:
        """Redis Cluster: every queued key in the watched keys' slot."""
        for args in commands:
            if str(args[0]).upper() in ("DBSIZE", "KEYS", "SCAN", "FLUSHDB"):
                raise StoreError("on Redis Cluster, MULTI/EXEC cannot run DBSIZE, KEYS, "
                                 "SCAN or FLUSHDB")
            slot = self._parent.command_slot(args)
            if slot is not None and slot != self._slot:
                raise StoreError(CROSSSLOT)

    def pinned(self) -> RedisStore:
        return self

    def close(self) -> None:
        """Hand the connection back (UNWATCH first); the parent stays open."""
        if self._pin is not None:
            self.unwatch(WatchSet())
        self._closed = True
