"""INFO errorstats and ``total_error_replies``: error replies by error code.

Redis counts every error reply it sends (``afterErrorReply`` in
networking.c): the total, and one counter per error code, the word after the
``-`` when a space ends it within the first 32 bytes, ``ERR`` otherwise.
That includes errors that are not the whole reply (one inside an EXEC's
array) and errors a script's ``redis.call``/``redis.pcall`` got from a
command (counted when the command answered; the script passing the same
error on is not counted again: :class:`PreCounted`).

The codes come from clients (a script's ``redis.error_reply`` makes any
code), so they are bounded as Redis 7.2 bounds them (ERROR_STATS_NUMBER):
at most :data:`MAX_ERROR_CODES` codes; one more replaces them all with
``ERRORSTATS_DISABLED`` (count 1) and nothing more is counted by code until
``CONFIG RESETSTAT``, while the total goes on counting.

Per process (under prefork, the answering worker's), reset by CONFIG
RESETSTAT; the Prometheus counters do not read these.
"""

from __future__ import annotations

import logging
import threading

__all__ = ["DISABLED", "MAX_ERROR_CODES", "ErrorStats", "HoldsErrors", "PreCounted", "error_code",
           "failed_reply"]

logger = logging.getLogger(__name__)

#: Redis's ERROR_STATS_NUMBER.
MAX_ERROR_CODES = 128
#: The one code kept once there were more than MAX_ERROR_CODES.
DISABLED = "ERRORSTATS_DISABLED"
#: Redis looks for the code's end in this many bytes of the reply.
_CODE_SEARCH = 32


class PreCounted(bytes):
    """An error reply already counted where it arose (a script returning
    the error a ``redis.call`` got): sent, but not counted again (Redis's
    ERR_REPLY_FLAG_NO_STATS_UPDATE)."""

    __slots__ = ()


class HoldsErrors(bytes):
    """A reply that is not an error but holds some (a script's array with
    error elements), counted already: its command is a failed call, as
    Redis counts a call failed when it sent any error reply."""

    __slots__ = ()


def failed_reply(reply: bytes) -> bool:
    """Whether a command answering ``reply`` failed (INFO failed_calls)."""
    return reply[:1] == b"-" or type(reply) is HoldsErrors


def error_code(reply: bytes) -> str:
    """The code Redis counts ``reply`` (``-CODE text\\r\\n``) under."""
    space = reply.find(b" ", 0, _CODE_SEARCH)
    if reply[:1] != b"-" or space < 0:
        return "ERR"
    return reply[1:space].decode("latin-1")


class ErrorStats:
    """The total of error replies and their counts by code, bounded."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._codes: dict[str, int] = {}
        self._disabled = False
        self._total = 0

    def note(self, reply: bytes) -> None:
        """One error reply sent (unless it is :class:`PreCounted`)."""
        if type(reply) is PreCounted:
            return
        code = error_code(reply)
        with self._lock:
            self._total += 1
            if self._disabled:
                return
            codes = self._codes
            if code in codes:
                codes[code] += 1
            elif len(codes) < MAX_ERROR_CODES:
                codes[code] = 1
            else:
                logger.warning("Errorstats stopped adding new errors because the number of "
                               "different errors reached %d; new errors are not counted by "
                               "code until CONFIG RESETSTAT. Current errors code list: %s",
                               MAX_ERROR_CODES, " ".join(sorted(codes)))
                self._codes = {DISABLED: 1}
                self._disabled = True

    @property
    def total(self) -> int:
        with self._lock:
            return self._total

    def fields(self) -> dict[str, object]:
        """INFO errorstats' lines (``errorstat_CODE: count=N``), in byte
        order as Redis's radix tree gives them; ``#``, ``:``, CR and LF
        in a code shown as ``_`` (Redis's getSafeInfoString)."""
        with self._lock:
            codes = sorted(self._codes.items(), key=lambda item: item[0].encode("latin-1"))
        return {f"errorstat_{_safe(code)}": f"count={count}" for code, count in codes}

    def reset(self) -> None:
        """CONFIG RESETSTAT."""
        with self._lock:
            self._codes = {}
            self._disabled = False
            self._total = 0


def _safe(code: str) -> str:
    return code.translate(_UNSAFE)


_UNSAFE = str.maketrans("#:\r\n", "____")
