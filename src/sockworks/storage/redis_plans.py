"""How each Store call becomes one Redis command, and how a batch is recorded.

``plan_get(key)``, ``plan_set(key, value, nx=True)``... return a
:class:`RedisPlan`: the command's arguments, redis-py options, and how to
turn Redis's reply into the Store method's result. They are typed like the
Store methods they stand for, so mypy checks every argument.

:class:`BatchRecorder` is a Store that runs nothing: each method records its
plan and returns a placeholder. ``RedisStore.execute_batch`` hands it every
batch call (``lambda st: st.incrby(b"n", 1)``) to learn the commands of one
MULTI/EXEC, the way redis-py's pipeline records calls. A call that does not
make exactly one Store call and return its result cannot be sent that way
and is refused with ValueError.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar, cast

from sockworks.storage.base import BatchCall, SetResult, Store
from sockworks.storage.redis_replies import retag

__all__ = [
    "BatchRecorder", "RedisPlan", "plan_command", "plan_dbsize", "plan_delete", "plan_exists",
    "plan_flushdb", "plan_get", "plan_incrby", "plan_keys", "plan_mget", "plan_mset",
    "plan_persist", "plan_pexpire", "plan_pttl", "plan_scan", "plan_set",
]

T = TypeVar("T")


def _identity(value: Any) -> Any:
    return value


def _to_int(value: Any) -> int:
    return int(value)


def _to_bool(value: Any) -> bool:
    return bool(int(value))


def _to_none(value: Any) -> None:
    return None


def _to_list(value: Any) -> list[Any]:
    return list(value)


def _to_scan(value: Any) -> tuple[int, list[bytes]]:
    cursor, keys = value
    return int(cursor), list(keys)


@dataclass(frozen=True, slots=True)
class RedisPlan(Generic[T]):
    """A Store call as a Redis command: ``args`` and redis-py options for
    ``execute_command`` (on a client or a pipeline) and how to turn the reply
    into the Store method's result. ``args`` empty: nothing to send (DEL of no
    keys), the result is ``convert(None)``."""

    args: tuple[Any, ...]
    convert: Callable[[Any], T]
    options: dict[str, Any] = field(default_factory=dict)


def plan_command(argv: Sequence[bytes]) -> RedisPlan[Any]:
    """A data-model command passed through as it is. The name is sent as
    bytes so redis-py applies none of its reply callbacks (they are keyed
    by str): the reply comes back raw, and redis_replies retags it."""
    name = bytes(argv[0])
    return RedisPlan((name, *argv[1:]), lambda raw: retag(argv, raw))


def plan_get(key: bytes) -> RedisPlan[bytes | None]:
    return RedisPlan(("GET", key), _identity)


def plan_mget(keys: Sequence[bytes]) -> RedisPlan[list[bytes | None]]:
    return RedisPlan(("MGET", *keys), _to_list) if keys else RedisPlan((), lambda _: [])


def plan_exists(keys: Sequence[bytes]) -> RedisPlan[int]:
    return RedisPlan(("EXISTS", *keys), _to_int) if keys else RedisPlan((), lambda _: 0)


def plan_pttl(key: bytes) -> RedisPlan[int]:
    return RedisPlan(("PTTL", key), _to_int)


def plan_dbsize() -> RedisPlan[int]:
    return RedisPlan(("DBSIZE",), _to_int)


def plan_keys(pattern: bytes) -> RedisPlan[list[bytes]]:
    return RedisPlan(("KEYS", pattern), _to_list)


def plan_scan(cursor: int, match: bytes | None, count: int) -> RedisPlan[tuple[int, list[bytes]]]:
    extra: tuple[Any, ...] = ("MATCH", match) if match is not None else ()
    return RedisPlan(("SCAN", cursor, *extra, "COUNT", count), _to_scan)


def _set_written(nx: bool, xx: bool) -> Callable[[Any], SetResult]:
    def convert(reply: Any) -> SetResult:
        # SET ... GET returns the old value whether or not NX/XX let it write:
        # NX wrote iff there was no old value, XX wrote iff there was one.
        if nx:
            return SetResult(reply is None, reply)
        if xx:
            return SetResult(reply is not None, reply)
        return SetResult(True, reply)
    return convert


def plan_set(key: bytes, value: bytes, *, px: int | None = None, nx: bool = False,
             xx: bool = False, get: bool = False, keepttl: bool = False) -> RedisPlan[SetResult]:
    args: list[Any] = ["SET", key, value]
    if px is not None:
        args += ["PX", px]
    if nx:
        args.append("NX")
    if xx:
        args.append("XX")
    if keepttl:
        args.append("KEEPTTL")
    if get:
        args.append("GET")
        # ``get=True`` tells redis-py's SET reply callback to pass the value on.
        return RedisPlan(tuple(args), _set_written(nx, xx), {"get": True})
    return RedisPlan(tuple(args), lambda reply: SetResult(reply not in (None, False)))


def plan_mset(pairs: Sequence[tuple[bytes, bytes]]) -> RedisPlan[None]:
    flat = [part for pair in pairs for part in pair]
    return RedisPlan(("MSET", *flat), _to_none) if flat else RedisPlan((), _to_none)


def plan_delete(keys: Sequence[bytes]) -> RedisPlan[int]:
    return RedisPlan(("DEL", *keys), _to_int) if keys else RedisPlan((), lambda _: 0)


def plan_incrby(key: bytes, delta: int) -> RedisPlan[int]:
    return RedisPlan(("INCRBY", key, delta), _to_int)


def plan_pexpire(key: bytes, ms: int) -> RedisPlan[bool]:
    return RedisPlan(("PEXPIRE", key, ms), _to_bool)


def plan_persist(key: bytes) -> RedisPlan[bool]:
    return RedisPlan(("PERSIST", key), _to_bool)


def plan_flushdb() -> RedisPlan[None]:
    # ASYNC: the keyspace is empty at once for every client, and Redis frees
    # the memory in the background, so flushing millions of keys cannot
    # outlast the read timeout (Redis >= 4.0).
    return RedisPlan(("FLUSHDB", "ASYNC"), _to_none)


class _Pending:
    """What a recorded call returns in place of its (future) result; using it
    (``st.get(k) or b""``) is a mistake, refused like a call of two calls."""

    __slots__ = ()

    def __bool__(self) -> bool:
        raise ValueError("a batched call must make exactly one Store call and return "
                         "its result unchanged (it is not known before EXEC)")


class BatchRecorder(Store):
    """A Store whose methods record their Redis command instead of running it
    (see the module docstring)."""

    def __init__(self) -> None:
        self.plans: list[RedisPlan[Any]] = []
        #: What the last recorded call returned (None for mset/flushdb).
        self._last: _Pending | None = None

    def record(self, call: BatchCall) -> RedisPlan[Any]:
        """The one command ``call`` makes; ValueError if it is not exactly one
        Store call whose result it returns unchanged."""
        before = len(self.plans)
        self._last = None
        returned = call(self)
        if len(self.plans) != before + 1 or returned is not self._last:
            raise ValueError("a batched call must make exactly one Store call and return "
                             "its result (a function of several calls cannot be queued in "
                             "one MULTI/EXEC)")
        return self.plans[-1]

    def _add(self, plan: RedisPlan[T]) -> T:
        self.plans.append(plan)
        self._last = _Pending()
        return cast(T, self._last)

    def execute_command(self, argv: Sequence[bytes]) -> Any:
        return self._add(plan_command(argv))

    def get(self, key: bytes) -> bytes | None:
        return self._add(plan_get(key))

    def mget(self, keys: Sequence[bytes]) -> list[bytes | None]:
        return self._add(plan_mget(keys))

    def exists(self, keys: Sequence[bytes]) -> int:
        return self._add(plan_exists(keys))

    def pttl(self, key: bytes) -> int:
        return self._add(plan_pttl(key))

    def dbsize(self) -> int:
        return self._add(plan_dbsize())

    def keys(self, pattern: bytes) -> list[bytes]:
        return self._add(plan_keys(pattern))

    def scan(self, cursor: int, match: bytes | None, count: int) -> tuple[int, list[bytes]]:
        return self._add(plan_scan(cursor, match, count))

    def set(self, key: bytes, value: bytes, *, px: int | None = None, nx: bool = False,
            xx: bool = False, get: bool = False, keepttl: bool = False) -> SetResult:
        return self._add(plan_set(key, value, px=px, nx=nx, xx=xx, get=get, keepttl=keepttl))

    def mset(self, pairs: Sequence[tuple[bytes, bytes]]) -> None:
        self._add(plan_mset(pairs))
        self._last = None  # what the call returns: None

    def delete(self, keys: Sequence[bytes]) -> int:
        return self._add(plan_delete(keys))

    def incrby(self, key: bytes, delta: int) -> int:
        return self._add(plan_incrby(key, delta))

    def pexpire(self, key: bytes, ms: int) -> bool:
        return self._add(plan_pexpire(key, ms))

    def persist(self, key: bytes) -> bool:
        return self._add(plan_persist(key))

    def flushdb(self) -> None:
        self._add(plan_flushdb())
        self._last = None

    def execute_batch(self, calls: Sequence[BatchCall]) -> list[Any]:
        raise ValueError("a batch cannot contain a batch")

    def run_grouped(self, fn: Callable[[Store], T]) -> T:
        raise ValueError("a batch cannot contain a group of calls")
