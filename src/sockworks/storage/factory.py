"""Opening a store from ``--store URL``; the embedded store's names.

``open_store(url, data_dir, fsync)`` picks the backend from the URL scheme:

* ``None`` or ``memory://`` — the embedded store (in memory; persistent with
  ``--data-dir``), the default;
* ``redis://``, ``rediss://``, ``redis+cluster://``, ``rediss+cluster://`` —
  :class:`sockworks.storage.redis_store.RedisStore`.

Backends are imported only when chosen, so the core needs neither redis-py
nor anything else the embedded store does not use.

``is_embedded(url)`` says whether ``--store url`` names the embedded store;
it and :data:`EMBEDDED_NAMES` are the only place those names are spelled.
(Running a batch of calls as one unit is ``Store.execute_batch``, part of
the store contract in ``base.py``.)
"""

from __future__ import annotations

import logging
import urllib.parse

from sockworks.storage.base import Store, StoreError
from sockworks.storage.eviction import DEFAULT_SAMPLES

__all__ = ["EMBEDDED_NAMES", "is_embedded", "open_store"]

logger = logging.getLogger(__name__)

#: What ``--store`` accepts for the embedded store (the default), in lower
#: case: the one list of its names (``is_embedded`` normalises case and blanks).
EMBEDDED_NAMES = ("memory://", "memory:", "memory")


def is_embedded(url: str | None) -> bool:
    """True when ``--store url`` names the embedded store (None: the default)."""
    return url is None or url.strip().lower() in EMBEDDED_NAMES


def open_store(url: str | None, data_dir: str | None, fsync: str,
               *, max_connections: int | None = None, maxmemory: int = 0,
               maxmemory_policy: str = "noeviction",
               maxmemory_samples: int = DEFAULT_SAMPLES,
               max_pinned: int | None = None) -> Store:
    """The store ``url`` names. ``data_dir``/``fsync`` and the memory limit
    (``maxmemory`` bytes, 0 none; policy; samples) configure the embedded
    store; ``max_connections`` sizes a Redis connection pool (give the model's
    concurrency: worker threads, or connections per process) and
    ``max_pinned`` bounds its dedicated connections (WATCH, subscriptions;
    None: the default). A Redis backend's memory is governed by Redis's own
    maxmemory."""
    if url is None or is_embedded(url):
        from sockworks.storage.embedded import open_embedded_store

        return open_embedded_store(data_dir, fsync, maxmemory=maxmemory,
                                   maxmemory_policy=maxmemory_policy,
                                   maxmemory_samples=maxmemory_samples)
    from sockworks.storage.redis_store import CLUSTER_SCHEMES, REDIS_SCHEMES, RedisStore

    scheme = urllib.parse.urlsplit(url).scheme.lower()
    if scheme in REDIS_SCHEMES or scheme in CLUSTER_SCHEMES:
        if data_dir:
            logger.warning("--data-dir is ignored with --store %s: Redis keeps the data",
                           scheme + "://")
        if maxmemory or maxmemory_policy != "noeviction":
            logger.warning("--maxmemory/--maxmemory-policy are ignored with --store %s: "
                           "set Redis's own maxmemory and maxmemory-policy", scheme + "://")
        if max_pinned is None:
            return RedisStore(url, max_connections=max_connections)
        return RedisStore(url, max_connections=max_connections, max_pinned=max_pinned)
    shown = url.split("@")[-1]
    raise StoreError(f"unsupported store URL {shown!r}: use memory://, redis://HOST:PORT/DB, "
                     "rediss://HOST:PORT/DB or redis+cluster://HOST:PORT")
