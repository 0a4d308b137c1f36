"""Child process for test_aof.py: the parts that need their own process.

``acked DIR THREADS`` writes keys from THREADS threads with fsync=always; each
thread waits on the durability barrier and only then prints ``key`` to stdout
(one os.write per line, so lines never interleave). It runs until killed (or
a bounded number of writes), which is what the kill -9 test does to it.

``diskfull DIR`` fills the log up to an RLIMIT_FSIZE limit (SIGXFSZ ignored,
so write() fails with EFBIG instead of killing the process) and reports, as
one JSON line, what was acknowledged, what failed and whether reads still
worked; then raises the soft limit again and shows writes recover.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import sys
import threading

from sockworks.storage.base import StoreWriteError
from sockworks.storage.embedded import open_embedded_store

#: Upper bound on writes per thread, so a child nobody kills still ends.
MAX_WRITES_PER_THREAD = 200_000


def acked(data_dir: str, threads: int) -> int:
    store = open_embedded_store(data_dir, "always")
    os.write(1, b"ready\n")

    def writer(t: int) -> None:
        for n in range(MAX_WRITES_PER_THREAD):
            key = b"t%d:%d" % (t, n)
            store.set(key, b"v" * (n % 50))
            counter = store.incrby(b"counter:%d" % t, 1)
            barrier = store.durability_barrier()
            if barrier is None or not barrier.wait(30):
                os.write(2, b"barrier failed\n")
                return
            os.write(1, b"%s %d\n" % (key, counter))

    workers = [threading.Thread(target=writer, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    store.close()
    return 0


def diskfull(data_dir: str) -> int:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    store = open_embedded_store(data_dir, "no", active_expiry=False)
    store.set(b"before", b"x" * 100)
    size = os.path.getsize(os.path.join(data_dir, "sockworks.aof"))
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (size + 1000, hard))
    report: dict[str, object] = {"acked": []}
    acked_keys: list[str] = report["acked"]  # type: ignore[assignment]
    for n in range(1000):
        key = f"k{n}"
        try:
            store.set(key.encode(), b"y" * 100)
        except StoreWriteError as exc:
            report["failed_key"] = key
            report["error"] = str(exc)
            break
        acked_keys.append(key)
    report["failed_key_present"] = store.get(str(report.get("failed_key")).encode()) is not None
    report["read_ok"] = store.get(b"before") == b"x" * 100
    # Still full (an even lower limit): the rewrite's temp file cannot be
    # written either, and must not be left behind.
    resource.setrlimit(resource.RLIMIT_FSIZE, (100, hard))
    try:
        report["compact"] = store.compact()
    except StoreWriteError as exc:
        report["compact_error"] = str(exc)
    info = store.info()
    report["status_while_full"] = info["aof_last_write_status"]
    report["size_while_full"] = os.path.getsize(os.path.join(data_dir, "sockworks.aof"))
    report["logged_size"] = info["aof_size"]
    report["temp_files"] = sorted(n for n in os.listdir(data_dir) if "rewrite" in n)
    resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    store.set(b"after", b"z")  # space is back: writes work again without a restart
    report["status_after"] = store.info()["aof_last_write_status"]
    store.close()
    print(json.dumps(report))
    return 0


def main() -> int:
    mode, data_dir = sys.argv[1], sys.argv[2]
    if mode == "acked":
        return acked(data_dir, int(sys.argv[3]))
    if mode == "diskfull":
        return diskfull(data_dir)
    raise SystemExit(f"unknown mode {mode}")


if __name__ == "__main__":
    sys.exit(main())
