# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The per-request hot path of the KV text and RESP ports, compiled (Cython).

Optional: the build compiles this when the machine has a C compiler
(setup.py), and :mod:`sockworks.services.accel` hands it to the sessions
unless ``SOCKWORKS_NO_EXTENSIONS=1``. Without it the sessions' own
pure-Python code (``KvSession._run_lines``, ``RespSession._run_commands``) runs every
request: that code is the reference this module must match byte for byte
(tests/services/test_fastpath_differential.py feeds both the same random
streams and compares replies and store contents).

What it does, only in a *plain* session (authenticated as a user who may
run anything, no MULTI, no ``--rename-command``, nothing held from an
earlier read; the session checks): take the received chunk's requests apart
in C -- text lines, or RESP arrays in the canonical ``*N $len`` form every
client writes --, run GET, SET, DEL, INCR and PING straight against the
store's methods (so the store's locking, expiry, memory accounting,
maxmemory and log stay the store's), write the replies, and account for
them as the reference does: the session's counters, calls and errors per
command, bytes in and out, the chunk's processing time.

At the first request it does not handle -- any other command, arguments
the reference would refuse or treat specially, a RESP frame in any other
form, an incomplete tail, the reply budget reached -- it stops and hands
back what it did (a seed). The session's reference code goes on from that
request with those figures, so everything off the fast path (limits,
ACLs, MULTI, HTTP detection, back-pressure, every other command) has one
implementation only.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.string cimport memchr, memcpy

import time

from sockworks.core.service import NOTHING, REPLY_BUDGET, Output
from sockworks.protocols.kvtext import (
    DELETED,
    MAX_KEY_LENGTH,
    NOT_FOUND,
    OK,
    PONG,
    UNFRAMABLE_VALUE_REPLY,
    error_reply,
)
from sockworks.protocols.resp import OK as RESP_OK
from sockworks.protocols.resp import PONG as RESP_PONG
from sockworks.services.resp_commands import OOM_REPLY, store_error
from sockworks.storage.base import OutOfMemory, StoreError, WrongType

_perf_counter = time.perf_counter

# The text port's replies to a failed store call (as KvSession._run).
cdef bytes _TEXT_OOM = b"ERROR: out of memory\n"
cdef bytes _TEXT_WRONG_TYPE = b"ERROR: wrong type\n"
# RESP's null bulk string in RESP2 and RESP3 (protocols.resp.encode_null).
cdef bytes _NULL2 = b"$-1\r\n"
cdef bytes _NULL3 = b"_\r\n"
cdef Py_ssize_t _BUDGET = REPLY_BUDGET
cdef Py_ssize_t _MAX_KEY = MAX_KEY_LENGTH

# Commands, as the word tests below return them.
cdef enum:
    C_OTHER, C_GET, C_SET, C_DEL, C_INCR, C_PING


cdef inline bint _space(unsigned char c) noexcept:
    # bytes.split()/rstrip()'s whitespace (Py_ISSPACE on ASCII).
    return c == 32 or (9 <= c <= 13)


cdef inline Py_ssize_t _spaces_end(const char *p, Py_ssize_t i, Py_ssize_t n) noexcept:
    # Past the whitespace at p[i:n].
    while i < n and _space(p[i]):
        i += 1
    return i


cdef inline Py_ssize_t _word_end(const char *p, Py_ssize_t i, Py_ssize_t n) noexcept:
    # Past the word (non-whitespace) at p[i:n].
    while i < n and not _space(p[i]):
        i += 1
    return i


cdef inline unsigned char _upper(unsigned char c) noexcept:
    return c - 32 if 97 <= c <= 122 else c


cdef int _word(const char *p, Py_ssize_t n) noexcept:
    """Which command ``p[:n]`` names, in any letter case."""
    cdef unsigned char a, b, c, d
    if n == 3:
        a, b, c = _upper(p[0]), _upper(p[1]), _upper(p[2])
        if b == 69 and c == 84:  # ?ET
            if a == 71:
                return C_GET
            if a == 83:
                return C_SET
        elif a == 68 and b == 69 and c == 76:
            return C_DEL
    elif n == 4:
        a, b, c, d = _upper(p[0]), _upper(p[1]), _upper(p[2]), _upper(p[3])
        if a == 73 and b == 78 and c == 67 and d == 82:
            return C_INCR
        if a == 80 and b == 73 and c == 78 and d == 71:
            return C_PING
    return C_OTHER


cdef void _bump(dict table, str name):
    table[name] = table.get(name, 0) + 1


def text_run(session, list lines):
    """Run complete request ``lines`` of a plain text-port session.

    Returns the chunk's ``Output`` when every line was a fast-path request,
    else the seed ``(started, done, replies, size, gets, sets, writes,
    calls, errors)`` from which ``KvSession._run_lines`` goes on at line
    ``done``. ``writes``: the indices in ``replies`` of the replies that
    acknowledge a write, which a failed log batch turns into errors (as the
    reference records them).
    """
    cdef double started = _perf_counter()
    cdef list counts = session.counts
    store = session._store
    store_get = store.get
    cdef list replies = []
    cdef dict calls = {}
    cdef dict errors = {}
    cdef list writes = []
    cdef Py_ssize_t size = 0, done = 0, nlines = len(lines)
    cdef Py_ssize_t gets = 0, sets = 0, commands = 0, hits = 0, misses = 0
    cdef bytes line, key, value, reply
    cdef const char *p
    cdef Py_ssize_t n, w0, w1, k0, k1, v0, v1
    cdef int cmd
    cdef str name
    try:
        while done < nlines:
            if size >= _BUDGET:
                break
            line = <bytes>lines[done]
            p = PyBytes_AS_STRING(line)
            n = PyBytes_GET_SIZE(line)
            # The words as line.split(None, 2) finds them: command, key, rest.
            w0 = _spaces_end(p, 0, n)
            w1 = _word_end(p, w0, n)
            k0 = _spaces_end(p, w1, n)
            k1 = _word_end(p, k0, n)
            v0 = _spaces_end(p, k1, n)
            v1 = n
            while v1 > v0 and _space(p[v1 - 1]):
                v1 -= 1
            if w0 == w1:
                break  # empty: the reference's error
            cmd = _word(p + w0, w1 - w0)
            if k0 == k1:  # one word
                if cmd != C_PING:
                    break
                _bump(calls, "ping")
                commands += 1
                size += len(PONG)
                replies.append(PONG)
                done += 1
                continue
            if k1 - k0 > _MAX_KEY:
                break
            key = PyBytes_FromStringAndSize(p + k0, k1 - k0)
            if v0 < n:  # three words
                if cmd != C_SET:
                    break
                commands += 1
                sets += 1
                try:
                    store.set(key, PyBytes_FromStringAndSize(p + v0, v1 - v0))
                except WrongType:
                    replies.append(_TEXT_WRONG_TYPE)
                except StoreError as exc:
                    _bump(errors, "set")
                    replies.append(_TEXT_OOM if isinstance(exc, OutOfMemory)
                                   else error_reply(str(exc)))
                else:
                    writes.append(len(replies))
                    replies.append(OK)
            elif cmd == C_GET:
                commands += 1
                gets += 1
                try:
                    found = store_get(key)
                except WrongType:
                    replies.append(_TEXT_WRONG_TYPE)
                except StoreError as exc:
                    _bump(errors, "get")
                    replies.append(_TEXT_OOM if isinstance(exc, OutOfMemory)
                                   else error_reply(str(exc)))
                else:
                    if found is None:
                        misses += 1
                        replies.append(NOT_FOUND)
                    else:
                        hits += 1
                        value = <bytes>found
                        n = PyBytes_GET_SIZE(value)
                        p = PyBytes_AS_STRING(value)
                        if memchr(p, 10, n) != NULL or (n and p[n - 1] == 13):
                            replies.append(UNFRAMABLE_VALUE_REPLY)
                        else:
                            size += n
                            reply = PyBytes_FromStringAndSize(NULL, n + 1)
                            memcpy(PyBytes_AS_STRING(reply), p, n)
                            PyBytes_AS_STRING(reply)[n] = 10
                            replies.append(reply)
            elif cmd == C_DEL or cmd == C_INCR:
                name = "del" if cmd == C_DEL else "incr"
                _bump(calls, name)
                commands += 1
                try:
                    if cmd == C_DEL:
                        reply = DELETED if store.delete((key,)) else NOT_FOUND
                    else:
                        reply = b"%d\n" % store.incrby(key, 1)
                except WrongType:
                    replies.append(_TEXT_WRONG_TYPE)
                except StoreError as exc:
                    _bump(errors, name)
                    replies.append(_TEXT_OOM if isinstance(exc, OutOfMemory)
                                   else error_reply(str(exc)))
                else:
                    size += len(reply)
                    writes.append(len(replies))
                    replies.append(reply)
            else:
                break
            done += 1
    finally:
        # Counted as the reference counts them, even if a store call raised
        # something unexpected (the model then drops the connection).
        if commands or hits or misses:
            counts[0] += commands
            counts[1] += hits
            counts[2] += misses
    if done < nlines:
        return (started, done, replies, size, gets, sets, writes, calls, errors)
    if gets:
        calls["get"] = gets
    if sets:
        calls["set"] = sets
    data = replies[0] if len(replies) == 1 else b"".join(replies)
    received = session._received
    session._received = 0
    session._service.command_stats.add(calls, errors, _perf_counter() - started,
                                       received, len(data))
    if not replies:
        return NOTHING
    if not writes:
        return Output(data, False)
    # After the log batch, with the error replies if it fails (the session's).
    return session._written(data, False, replies, writes)


cdef Py_ssize_t _header(const char *p, Py_ssize_t pos, Py_ssize_t end, char mark,
                        Py_ssize_t *after) noexcept:
    """A canonical ``<mark><digits>\\r\\n`` header at ``pos``: its number,
    with ``after`` set past it; -1 when it is anything else or incomplete.
    Digits without a leading zero (but "0"), at most 10 of them."""
    cdef Py_ssize_t i = pos + 1, number = 0
    cdef unsigned char c
    if pos >= end or p[pos] != mark:
        return -1
    while i < end:
        c = p[i]
        if 48 <= c <= 57:
            if i - pos > 10 or (c == 48 and i == pos + 1 and i + 1 < end and p[i + 1] != 13):
                return -1
            number = number * 10 + (c - 48)
            i += 1
        elif c == 13 and i > pos + 1 and i + 1 < end and p[i + 1] == 10:
            after[0] = i + 2
            return number
        else:
            return -1
    return -1


cdef bytes _bulk(bytes value):
    """``$<len>\\r\\n<value>\\r\\n``."""
    cdef Py_ssize_t n = PyBytes_GET_SIZE(value)
    cdef bytes head = b"$%d\r\n" % n
    cdef Py_ssize_t h = PyBytes_GET_SIZE(head)
    cdef bytes out = PyBytes_FromStringAndSize(NULL, h + n + 2)
    cdef char *q = PyBytes_AS_STRING(out)
    memcpy(q, PyBytes_AS_STRING(head), h)
    memcpy(q + h, PyBytes_AS_STRING(value), n)
    q[h + n] = 13
    q[h + n + 1] = 10
    return out


def resp_run(session, bytes data, Py_ssize_t max_bulk):
    """Run the canonical RESP requests at the start of ``data`` (a plain
    session whose parser holds nothing).

    Returns the chunk's ``Output`` when all of ``data`` was fast-path
    requests, else ``(offset, seed)``: the bytes from ``offset`` go to the
    reference parser and ``RespSession._run_commands`` goes on from the seed
    ``(started, replies, executed, errors, size, gets, sets, wrote, calls,
    failed, spent, rejected, timed, writes)``; ``writes``: the indices in
    ``replies`` of the replies that acknowledge a write (SET, DEL and INCR
    that ran), which a failed log batch turns into errors.

    Time per command (INFO commandstats' usec): the reference times the
    commands off its GET/SET path one by one and shares the rest of the
    chunk's time among GETs and SETs; here every command is on the fast
    path, so the time is shared among all of them by count.
    """
    cdef double started = _perf_counter()
    store = session.store
    store_get = store.get
    cdef int proto = session.proto
    cdef list replies = []
    cdef dict calls = {}
    cdef dict failed = {}
    cdef dict rejected = {}
    cdef dict spent
    cdef list writes = []
    cdef Py_ssize_t executed = 0, errors = 0, size = 0, gets = 0, sets = 0, others = 0
    cdef double elapsed, share
    cdef bint wrote = False
    cdef bytes last = b""
    cdef const char *p = PyBytes_AS_STRING(data)
    cdef Py_ssize_t end = PyBytes_GET_SIZE(data)
    cdef Py_ssize_t pos = 0, at = 0, count, j, length
    cdef Py_ssize_t starts[3]
    cdef Py_ssize_t lengths[3]
    cdef int cmd
    cdef bytes reply
    cdef list keys
    while pos < end:
        if size >= _BUDGET:
            break
        count = _header(p, pos, end, 42, &at)  # '*'
        if count < 1:  # not canonical, incomplete, or *0 (the reference's)
            break
        # The elements: canonical bulks, complete. The first three are
        # remembered; a longer command is only ever a DEL.
        j = 0
        keys = None
        while j < count:
            length = _header(p, at, end, 36, &at)  # '$'
            if length < 0 or length > max_bulk or at + length + 2 > end \
                    or p[at + length] != 13 or p[at + length + 1] != 10:
                break
            if j < 3:
                starts[j] = at
                lengths[j] = length
            elif keys is None:
                if _word(p + starts[0], lengths[0]) != C_DEL:
                    break
                keys = [PyBytes_FromStringAndSize(p + starts[1], lengths[1]),
                        PyBytes_FromStringAndSize(p + starts[2], lengths[2])]
            if keys is not None:
                keys.append(PyBytes_FromStringAndSize(p + at, length))
            at += length + 2
            j += 1
        if j < count:
            break
        cmd = _word(p + starts[0], lengths[0])
        if cmd == C_GET and count == 2:
            last = b"get"
            gets += 1
            try:
                found = store_get(PyBytes_FromStringAndSize(p + starts[1], lengths[1]))
            except StoreError as exc:
                errors += 1
                _bump(failed, "get")
                replies.append(store_error(exc))
            else:
                if found is None:
                    replies.append(_NULL3 if proto >= 3 else _NULL2)
                else:
                    size += PyBytes_GET_SIZE(<bytes>found)
                    replies.append(_bulk(<bytes>found))
        elif cmd == C_SET and count == 3:
            last = b"set"
            sets += 1
            if not store.make_room(lengths[0] + lengths[1] + lengths[2]):
                # Redis's denyoom, the request's own bytes counted (Store.make_room).
                errors += 1
                _bump(failed, "set")
                _bump(rejected, "set")
                replies.append(OOM_REPLY)
                executed += 1
                pos = at
                continue
            try:
                store.set(PyBytes_FromStringAndSize(p + starts[1], lengths[1]),
                          PyBytes_FromStringAndSize(p + starts[2], lengths[2]))
            except StoreError as exc:
                errors += 1
                _bump(failed, "set")
                replies.append(store_error(exc))
            else:
                wrote = True
                writes.append(len(replies))
                replies.append(RESP_OK)
        elif cmd == C_PING and count == 1:
            last = b"ping"
            others += 1
            _bump(calls, "ping")
            size += len(RESP_PONG)
            replies.append(RESP_PONG)
        elif (cmd == C_DEL and count >= 2) or (cmd == C_INCR and count == 2):
            name = "del" if cmd == C_DEL else "incr"
            last = name.encode()
            others += 1
            _bump(calls, name)
            if cmd == C_INCR and not store.make_room(lengths[0] + lengths[1]):
                reply = OOM_REPLY  # refused before it ran (Redis's denyoom)
                _bump(rejected, name)
            else:
                try:
                    if cmd == C_DEL:
                        if keys is None:
                            keys = [PyBytes_FromStringAndSize(p + starts[1], lengths[1])]
                            if count == 3:
                                keys.append(PyBytes_FromStringAndSize(p + starts[2], lengths[2]))
                        result = store.delete(keys)
                    else:
                        result = store.incrby(
                            PyBytes_FromStringAndSize(p + starts[1], lengths[1]), 1)
                except StoreError as exc:
                    reply = store_error(exc)
                else:
                    reply = b":%d\r\n" % result
                    wrote = True
                    writes.append(len(replies))
            if PyBytes_AS_STRING(reply)[0] == 45:  # '-'
                errors += 1
                _bump(failed, name)
            size += PyBytes_GET_SIZE(reply)
            replies.append(reply)
        else:
            break
        executed += 1
        pos = at
    if last:
        session.last_command = last
    if wrote:
        session._wrote = True
    if errors:
        # INFO errorstats: each error reply by its code (rare: a loop is fine).
        noted = session.service.error_stats.note
        for reply in replies:
            if PyBytes_AS_STRING(reply)[0] == 45:  # '-'
                noted(reply)
    elapsed = _perf_counter() - started
    share = elapsed / (gets + sets + others) if gets + sets + others else 0.0
    spent = {name: share * count for name, count in calls.items()}
    if pos < end:
        # The reference shares (its elapsed time - timed) among the GETs and
        # SETs: the other commands' share of this part is timed.
        return pos, (started, replies, executed, errors, size, gets, sets, wrote, calls, failed,
                     spent, rejected, share * others, writes)
    service = session.service
    service.count(executed - sum(rejected.values()), errors, 0)  # as the reference
    if gets:
        calls["get"] = gets
        spent["get"] = share * gets
    if sets:
        calls["set"] = sets
        spent["set"] = share * sets
    out = replies[0] if len(replies) == 1 else b"".join(replies)
    received = session._received
    session._received = 0
    service.command_stats.add(calls, failed, elapsed, received, len(out), rejected, spent)
    if not replies:
        return NOTHING
    if not wrote:
        return Output(out, False)
    # After the log batch, with the error replies if it fails (the session's).
    return session._written(out, False, replies, writes)
