"""The memory figures INFO memory and STATS report, under Redis's names.

``memory_fields(store_info)`` turns the store's own accounting
(``used_memory``, ``maxmemory``, ``maxmemory_policy``: the embedded store
reports them) and this process's resident size (``/proc/self/statm``) into
Redis's INFO fields: ``used_memory``, ``used_memory_human``,
``used_memory_rss``, ``used_memory_rss_human``, ``maxmemory``,
``maxmemory_human``, ``maxmemory_policy``, ``mem_fragmentation_ratio``
(rss / used, as Redis). A store that keeps no accounting (the Redis backend:
Redis's own INFO memory has its figures) gets the RSS fields only.

``cpu_fields()`` is INFO cpu: this process's and its children's CPU time
(``getrusage``), under Redis's names.
"""

from __future__ import annotations

import os
import resource
from collections.abc import Mapping
from typing import Any

from sockworks.storage.eviction import bytes_to_human

__all__ = ["cpu_fields", "memory_fields", "rss_bytes"]

_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def rss_bytes() -> int:
    """This process's resident set size, 0 where /proc is not available."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * _PAGE_SIZE
    except (OSError, ValueError, IndexError):
        return 0


def memory_fields(store_info: Mapping[str, Any],
                  scripting: Mapping[str, object] | None = None) -> dict[str, object]:
    """INFO memory's fields, in Redis's order; ``scripting``: the Lua
    fields (used_memory_lua, number_of_cached_scripts...), placed as Redis
    places them, before maxmemory."""
    rss = rss_bytes()
    fields: dict[str, object] = {}
    used = store_info.get("used_memory")
    if used is not None:
        fields.update(used_memory=used, used_memory_human=bytes_to_human(int(used)))
    fields.update(used_memory_rss=rss, used_memory_rss_human=bytes_to_human(rss))
    fields.update(scripting or {})
    if used is not None:
        maxmemory = int(store_info.get("maxmemory", 0))
        fields.update(
            maxmemory=maxmemory,
            maxmemory_human=bytes_to_human(maxmemory),
            maxmemory_policy=store_info.get("maxmemory_policy", "noeviction"),
            mem_fragmentation_ratio=f"{rss / used:.2f}" if used else "0.00",
        )
    return fields


def cpu_fields() -> dict[str, object]:
    """INFO cpu: seconds of CPU this process (all its threads) and its
    reaped children used, as Redis prints them (``%ld.%06ld``)."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"used_cpu_sys": f"{me.ru_stime:.6f}", "used_cpu_user": f"{me.ru_utime:.6f}",
            "used_cpu_sys_children": f"{children.ru_stime:.6f}",
            "used_cpu_user_children": f"{children.ru_utime:.6f}"}
