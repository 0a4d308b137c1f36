"""Opening a store from ``--store URL``, and running a batch of calls on any store.

``open_store(url, data_dir, fsync)`` picks the backend from the URL scheme:

* ``None`` or ``memory://`` — the embedded store (in memory; persistent with
  ``--data-dir``), the default;
* ``redis://``, ``rediss://``, ``redis+cluster://``, ``rediss+cluster://`` —
  :class:`sockworks.storage.redis_store.RedisStore`.

Backends are imported only when chosen, so the core needs neither redis-py
nor anything else the embedded store does not use.

``execute_batch(store, calls)`` is what a RESP ``EXEC`` calls: it runs the
queued calls as one unit on every backend (``Store.atomic()`` on the embedded
store, one MULTI/EXEC on Redis, whose ``atomic()`` cannot return results) and
returns each call's result, or the StoreError that call raised, in order.
"""

from __future__ import annotations

import logging
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sockworks.storage.base import Store, StoreError, StoreUnavailable

__all__ = ["BATCH_METHODS", "EMBEDDED_NAMES", "StoreCall", "execute_batch", "is_embedded",
           "open_store"]

logger = logging.getLogger(__name__)

#: What ``--store`` accepts for the embedded store (the default), in lower
#: case: the one list of its names (``is_embedded`` normalises case and blanks).
EMBEDDED_NAMES = ("memory://", "memory:", "memory")


def is_embedded(url: str | None) -> bool:
    """True when ``--store url`` names the embedded store (None: the default)."""
    return url is None or url.strip().lower() in EMBEDDED_NAMES

#: Store methods a batch may contain (the data commands of MULTI/EXEC).
BATCH_METHODS = frozenset({
    "get", "mget", "exists", "pttl", "dbsize", "keys", "scan",
    "set", "mset", "delete", "incrby", "pexpire", "persist", "flushdb",
})


def open_store(url: str | None, data_dir: str | None, fsync: str,
               *, max_connections: int | None = None) -> Store:
    """The store ``url`` names. ``data_dir``/``fsync`` configure the embedded
    store; ``max_connections`` sizes a Redis connection pool (give the model's
    concurrency: worker threads, or connections per process)."""
    if url is None or is_embedded(url):
        from sockworks.storage.embedded import open_embedded_store

        return open_embedded_store(data_dir, fsync)
    from sockworks.storage.redis_store import CLUSTER_SCHEMES, REDIS_SCHEMES, RedisStore

    scheme = urllib.parse.urlsplit(url).scheme.lower()
    if scheme in REDIS_SCHEMES or scheme in CLUSTER_SCHEMES:
        if data_dir:
            logger.warning("--data-dir is ignored with --store %s: Redis keeps the data",
                           scheme + "://")
        return RedisStore(url, max_connections=max_connections)
    shown = url.split("@")[-1]
    raise StoreError(f"unsupported store URL {shown!r}: use memory://, redis://HOST:PORT/DB, "
                     "rediss://HOST:PORT/DB or redis+cluster://HOST:PORT")


@dataclass(frozen=True, slots=True)
class StoreCall:
    """One queued call: ``Store.<method>(*args, **kwargs)``, e.g.
    ``StoreCall("set", (b"k", b"v"), {"nx": True})``."""

    method: str
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.method not in BATCH_METHODS:
            raise ValueError(f"not a Store data method: {self.method!r}")


def execute_batch(store: Store, calls: Sequence[StoreCall]) -> list[Any]:
    """Run ``calls`` as one unit; a list of results / StoreError instances.

    A call that fails on its own (INCR of a non-integer) gives its error in
    its slot and the others still run, as in Redis's EXEC. StoreUnavailable
    is raised for the whole batch.
    """
    batch = getattr(store, "execute_batch", None)
    if batch is not None:
        results: list[Any] = batch(calls)
        return results
    results = []
    with store.atomic():
        for call in calls:
            try:
                results.append(getattr(store, call.method)(*call.args, **call.kwargs))
            except StoreUnavailable:
                raise
            except StoreError as exc:
                results.append(exc)
    return results
