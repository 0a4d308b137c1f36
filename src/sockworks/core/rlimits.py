"""The open-file limit: raised toward what a server or load generator needs.

Distributions default the soft RLIMIT_NOFILE to 1024 while the hard limit is
far higher; like Redis (adjustOpenFilesLimit) we take what we need up to the
hard limit, and say so when even that is not enough, instead of letting
connections meet EMFILE at accept or connect time.
"""

from __future__ import annotations

import logging

__all__ = ["RESERVED_FDS", "raise_fd_limit"]

logger = logging.getLogger(__name__)

#: Descriptors kept for listeners, log files, storage, pipes — beyond one per
#: connection (Redis reserves 32 for the same reason: CONFIG_MIN_RESERVED_FDS).
RESERVED_FDS = 64


def raise_fd_limit(connections: int, *, flag: str = "--max-connections") -> int:
    """Raise the soft limit toward ``connections`` + :data:`RESERVED_FDS`;
    return the soft limit in force. Warns, naming ``flag``, when the hard
    limit is too low."""
    try:
        import resource
    except ImportError:  # not on this platform
        return -1
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = connections + RESERVED_FDS
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:
            logger.debug("cannot raise RLIMIT_NOFILE to %d: %s", target, exc)
    if soft != resource.RLIM_INFINITY and soft < needed:
        logger.warning("%s %d needs about %d file descriptors but the limit is %d: "
                       "connections beyond ~%d will fail (raise the limit with ulimit -n)",
                       flag, connections, needed, soft, max(0, soft - RESERVED_FDS))
    return int(soft)
