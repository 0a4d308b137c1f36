"""A redis-py reply parser that keeps RESP2's status replies apart from bulk strings.

redis-py (and hiredis) return ``+OK`` and ``$2 OK`` alike, as bytes. For
most commands the RESP port knows the reply's type from the command
(redis_replies.py), but not for what passes through untyped: a Lua script
returning ``redis.call('SET', ...)`` or ``redis.status_reply(...)``. The
connections that carry those (the pass-through pools and dedicated
connections of storage/redis_store.py and storage/redis_pinned.py) use this
parser: a status reply, at any depth, comes back as a
:class:`~sockworks.protocols.resp.SimpleString`, which the RESP port sends
as a status again. Everything else is left to redis-py's own RESP2 parser.
"""

from __future__ import annotations

import functools
from typing import Any

from sockworks.protocols.resp import SimpleString

__all__ = ["status_parser"]


@functools.cache
def status_parser() -> type[Any]:
    """The parser class (built on first use: redis-py is an optional extra)."""
    from redis._parsers.resp2 import _RESP2Parser

    class StatusParser(_RESP2Parser):
        """RESP2 with status replies as SimpleString (module docstring)."""

        # override: redis-py 8 passes timeout=, older versions nothing; **kwargs
        # forwards whichever the installed one uses.
        def _read_response(  # type: ignore[override]
                self, disable_decoding: bool = False, **kwargs: Any) -> Any:
            buffer: Any = self._buffer
            start = buffer.get_pos()
            raw = buffer.readline(**kwargs)
            if raw[:1] == b"+":
                return SimpleString(raw[1:].decode("utf-8", "replace"))
            if raw[:1] == b"*" and raw[1:] != b"-1":
                return [self._read_response(disable_decoding, **kwargs)
                        for _ in range(int(raw[1:]))]
            # Any other type: redis-py's parser reads it from the start.
            buffer.rewind(start)
            return super()._read_response(disable_decoding, **kwargs)

    return StatusParser
