"""RESTORE checks (CRC64) and decodes its payload before the store lock:
while that runs, another thread can take the lock, so a big or bad payload
stalls no other client; a value decoded with thresholds CONFIG SET changed
meanwhile is decoded again under the lock."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from sockworks.protocols import rdb
from sockworks.storage.base import OutOfMemory
from sockworks.storage.memory import MemoryStore
from sockworks.storage.model import dump as D
from sockworks.storage.model.common import CommandError
from sockworks.storage.model.values import Encodings, SetValue


def _free_elsewhere(lock: Any) -> bool:
    """Whether another thread can take ``lock`` now (bounded wait)."""
    got: list[bool] = []

    def probe() -> None:
        ok = bool(lock.acquire(timeout=5))
        if ok:
            lock.release()
        got.append(ok)

    thread = threading.Thread(target=probe)
    thread.start()
    thread.join(10)
    assert got, "the probe thread did not finish"
    return got[0]


def _spy(store: MemoryStore, monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    seen: list[bool] = []
    real = rdb.crc64

    def crc64(data: bytes, crc: int = 0) -> int:
        seen.append(_free_elsewhere(store._lock))
        return real(data, crc)

    monkeypatch.setattr(rdb, "crc64", crc64)
    return seen


@pytest.mark.parametrize("good", [True, False])
def test_the_payload_is_checked_without_the_lock(monkeypatch: pytest.MonkeyPatch,
                                                 good: bool) -> None:
    store = MemoryStore()
    store.execute_command([b"RPUSH", b"src", *[b"%d" % i for i in range(100)]])
    payload = store.execute_command([b"DUMP", b"src"])
    if not good:
        payload = payload[:-1] + bytes((payload[-1] ^ 1,))
    seen = _spy(store, monkeypatch)
    if good:
        assert store.execute_command([b"RESTORE", b"dst", b"0", payload]) == "OK"
        assert store.execute_command([b"LRANGE", b"dst", b"0", b"-1"]) == [
            b"%d" % i for i in range(100)]
    else:
        with pytest.raises(CommandError, match=D.BAD_PAYLOAD):
            store.execute_command([b"RESTORE", b"dst", b"0", payload])
        assert store.lookup(b"dst") is None
    assert seen == [True]  # checked once, and with the lock free


def test_earlier_errors_keep_redis_order_with_a_bad_payload() -> None:
    store = MemoryStore()
    store.set(b"k", b"v")
    with pytest.raises(CommandError, match="BUSYKEY"):
        store.execute_command([b"RESTORE", b"k", b"0", b"junk"])
    with pytest.raises(CommandError, match="Invalid TTL"):
        store.execute_command([b"RESTORE", b"new", b"-1", b"junk"])
    with pytest.raises(CommandError, match=D.BAD_PAYLOAD):
        store.execute_command([b"RESTORE", b"new", b"0", b"junk"])


def test_thresholds_changed_after_decoding_are_applied() -> None:
    """A set decoded as small, then set-max-intset-entries lowered before
    the lock: the value is decoded again with the thresholds in force."""
    store = MemoryStore()
    store.execute_command([b"SADD", b"src", b"1", b"2", b"3"])
    payload = store.execute_command([b"DUMP", b"src"])
    run = D.prepare_restore([b"RESTORE", b"dst", b"0", payload], store.encodings)
    store.encodings.set_max_intset_entries = 2
    run(store, [b"RESTORE", b"dst", b"0", payload])
    value = store.lookup(b"dst")
    assert isinstance(value, SetValue) and value.big
    fresh = D.decode(payload, Encodings())
    assert isinstance(fresh.value, SetValue) and not fresh.value.big


def test_over_maxmemory_the_payload_is_not_even_read(monkeypatch: pytest.MonkeyPatch) -> None:
    """Refused for memory (noeviction) before the lock: nothing decoded
    first, as Redis refuses a denyoom command before it runs."""
    source = MemoryStore()
    source.execute_command([b"RPUSH", b"src", *[b"%d" % i for i in range(100)]])
    payload = source.execute_command([b"DUMP", b"src"])
    store = MemoryStore(maxmemory=20_000)
    with pytest.raises(OutOfMemory):
        for i in range(1000):
            store.set(b"k%05d" % i, b"x" * 100)
    seen = _spy(store, monkeypatch)
    with pytest.raises(OutOfMemory):
        store.execute_command([b"RESTORE", b"dst", b"0", payload])
    assert seen == []
