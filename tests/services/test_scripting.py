"""Lua scripting (EVAL, EVALSHA, EVAL_RO, EVALSHA_RO, SCRIPT) on the RESP port.

Differential: the same scripts go to a real redis-server and to a
RespSession on the embedded store, in RESP2 and RESP3, and the replies must
be byte-identical: conversions both ways, the sandbox, errors raised and
caught, read-only scripts that write, every SCRIPT subcommand. Then real
servers: redis-py's Lock (the acceptance test), a busy script seen as BUSY
by other clients (RESP and text port) and stopped by SCRIPT KILL on the
asyncio and thread models, UNKILLABLE after a write, and the log: a
script's writes replay together or not at all.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hiredis
import pytest

from sockworks.core.stats import ServerStats
from sockworks.protocols.resp import encode_command
from sockworks.services import lua_engine, resp_scripting
from sockworks.services.resp import RespService, RespSession
from sockworks.storage import records
from sockworks.storage.embedded import AOF_FILENAME, PersistentStore
from sockworks.storage.factory import open_store
from sockworks.storage.memory import MemoryStore
from tests.conftest import ServerProcess, spawn_server
from tests.redis_support import (  # noqa: F401 (fixtures)
    RedisServer,
    shared_redis_server_fixture,
)
from tests.support import SHARED_MEMORY_MODELS, require_lua

redis = pytest.importorskip("redis")

require_lua()

#: How long a test waits for a script to be reported busy, or to stop.
DEADLINE = 10.0


#: What hiredis returns for an incomplete reply (its default, False, is
#: also RESP3's #f).
_INCOMPLETE = object()


def raw_reply(sock: socket.socket) -> bytes:
    reader = hiredis.Reader(notEnoughData=_INCOMPLETE)
    raw = b""
    while True:
        chunk = sock.recv(65536)
        assert chunk, "the server closed the connection"
        raw += chunk
        reader.feed(chunk)
        if reader.gets() is not _INCOMPLETE:
            return raw


def ask(sock: socket.socket, *argv: bytes | str) -> bytes:
    sock.sendall(encode_command([a.encode() if isinstance(a, str) else a for a in argv]))
    return raw_reply(sock)


class Ours:
    """A RespSession driven like a model drives it (barrier, then resume)."""

    def __init__(self, store: Any = None) -> None:
        self.service = RespService(store if store is not None else MemoryStore(),
                                   ServerStats(), owns_store=True)
        self.session: RespSession = self.service.new_session("127.0.0.1:1")

    def send(self, argv: list[bytes]) -> bytes:
        out = self.session.on_data(encode_command(argv))
        data = out.data
        while out.barrier is not None:
            assert out.barrier.wait(DEADLINE)
            if not self.session.backlog:
                break
            out = self.session.resume()
            data += out.data
        return data

    def close(self) -> None:
        self.session.on_close()
        self.service.close()


#: Scripts run with KEYS = {k1, k2} and ARGV = {a1, a2}; every reply is
#: compared with Redis's. (Redis 7.0.15 crashes on error({1,2}): left out.)
SCRIPTS = [
    # conversions, Lua -> Redis
    "return 1", "return 3.99", "return -3.99", "return 'x'", "return true", "return false",
    "return nil", "return {1, 2, 3.5, 'x', false, 4}", "return {1, 2, nil, 4}",
    "return {1, {2, {3, 'x'}}, 'y'}", "return {1, 2, k='v'}", "return {k='v'}",
    "return {ok='fine'}", "return {err='bad thing'}", "return {err='-bad thing'}",
    "return {ok='a', err='b'}", "return {ok=1}", "return {err=1}", "return {1,2,{},3}",
    "return {1, {err='inner'}, 3}", "return {1, {ok='inner'}, 3}", "return math.huge",
    "return 0/0", "return 1e20", "return -1e20", "return 12345678901234",
    "return {double=1.5}", "return {double=3}", "return {map={a=1}}", "return {set={a=true}}",
    "return {big_number='123'}", "return {err=''}", "return {err='a b'}",
    "local t = {} for i=1,100 do t[i]=i end return t",
    "return KEYS", "return ARGV", "return #KEYS", "return {KEYS[1], ARGV[2]}",
    # conversions, Redis -> Lua
    "return redis.call('set', KEYS[1], ARGV[1])", "return redis.call('get', KEYS[1])",
    "return redis.call('get', 'nokey')", "return type(redis.call('get', 'nokey'))",
    "return redis.call('ping')", "local ok = redis.call('set','a','b'); return {type(ok), ok.ok}",
    "return redis.call('hgetall', 'nohash')", "return redis.call('lrange', 'nolist', 0, -1)",
    "redis.call('rpush', 'L', 'a', 'b'); return redis.call('lrange', 'L', 0, -1)",
    "return redis.call('set', 'k', 1.9)", "redis.call('set', 'k', 0.1); return redis.call('get', 'k')",
    "redis.call('set', 'k', 1e22); return redis.call('get', 'k')",
    "return redis.call('get', 1)", "return redis.call('ping', 'x')",
    "redis.call('zadd','Z',1.5,'m'); return redis.call('zscore', 'Z', 'm')",
    "return redis.call('time')[1] ~= nil", "return redis.call('dbsize')",
    "return redis.call('keys', 'nomatch*')", "return redis.call('exists', KEYS[1], KEYS[2])",
    # RESP3 inside the script
    "return redis.setresp(3)", "redis.setresp(3); return redis.call('get', 'nokey')",
    "redis.setresp(3); return type(redis.call('get', 'nokey'))",
    "redis.call('hset','H','f','v'); redis.setresp(3); local r = redis.call('hgetall', 'H');"
    " return {type(r), type(r.map), r.map.f}",
    "redis.call('hset','H','f','v'); redis.setresp(3); return redis.call('hgetall', 'H')",
    "redis.setresp(3); local r = redis.call('smembers', 'nos'); return {type(r), type(r.set)}",
    "redis.setresp(3); return type(redis.call('zscore', 'nz', 'm'))",
    "redis.call('zadd','Z',1.5,'m'); redis.setresp(3); local r = redis.call('zscore', 'Z',"
    " 'm'); return {type(r), type(r.double), tostring(r.double)}",
    "redis.call('zadd','Z',1.5,'m'); redis.setresp(3); return redis.call('zscore', 'Z', 'm')",
    "redis.setresp(3); return true", "redis.setresp(3); return false",
    "redis.setresp(3); return redis.call('exists', 'nokey')",
    # errors raised and caught
    "return redis.call('nosuch')", "return redis.call('get')", "return redis.call()",
    "return redis.call(1)", "return redis.call({})", "return redis.call('get', {})",
    "return redis.call('set', 'k', true)", "return redis.call('incr', 'str')",
    "redis.call('set', 'str', 'x'); return redis.call('incr', 'str')",
    "redis.call('set', 'str', 'x'); return redis.pcall('incr', 'str')",
    "redis.call('set', 'str', 'x'); local r = redis.pcall('incr', 'str');"
    " return type(r) .. ' ' .. r.err",
    "redis.call('set', 'str', 'x'); return redis.call('lpush', 'str', 'x')",
    "redis.call('set', 'str', 'x'); return redis.pcall('lpush', 'str', 'x')",
    "return redis.pcall('nosuch')", "return redis.call('set', 'k', '1', 'ex', 'bad')",
    "return redis.call('multi')", "return redis.call('eval', 'return 1', 0)",
    "return redis.call('watch', 'x')", "return redis.call('script', 'kill')",
    "return redis.call('client', 'list')", "return redis.call('config', 'get', 'maxmemory')",
    "return redis.call('auth', 'x')", "return redis.call('hello')", "return redis.call('quit')",
    "return redis.call('reset')", "return redis.call('bgrewriteaof')",
    "error('boom')", "error({err='my err'})", "error('boom', 0)", "error(123)",
    "error({err=123})", "local a = nil; return a.b",
    "return pcall(function() return redis.call('nosuch') end)",
    "local ok, e = pcall(function() return redis.call('nosuch') end); return e",
    "local ok, e = pcall(function() return redis.call('nosuch') end); return type(e)",
    "local ok, e = pcall(function() error('x') end); return e",
    "local ok, e = pcall(function() local a = nil; return a.b end); return e",
    "local ok, e = pcall(redis.call, 'nosuch'); return {tostring(ok), e}",
    "local ok, e = xpcall(function() redis.call('nosuch') end, function(e) return e end);"
    " return type(e)",
    "local ok, e = pcall(error, {err='x'}); return type(e)",
    "local ok, e = pcall(error, {foo='x'}); return type(e)",
    "return 1 +",
    # the redis library
    "return redis.error_reply('My Error')", "return redis.error_reply('-My Error')",
    "return redis.error_reply('ERR x')", "return redis.error_reply('nospace')",
    "return redis.error_reply('')", "return redis.error_reply()", "return redis.error_reply(1)",
    "return redis.status_reply('FINE')", "return redis.status_reply()",
    "return redis.status_reply('a', 'b')", "return redis.sha1hex('')",
    "return redis.sha1hex(1)", "return redis.sha1hex()",
    "return {redis.LOG_DEBUG, redis.LOG_VERBOSE, redis.LOG_NOTICE, redis.LOG_WARNING}",
    "return redis.log(redis.LOG_WARNING, 'hello from a test')", "return redis.log(99, 'x')",
    "redis.setresp(4)", "return redis.replicate_commands()",
    "return redis.set_repl(redis.REPL_ALL)",
    "return {redis.REPL_NONE, redis.REPL_AOF, redis.REPL_SLAVE, redis.REPL_REPLICA,"
    " redis.REPL_ALL}", "return redis.breakpoint()", "return redis.debug('x')",
    # the sandbox
    "return type(os)", "return type(io)", "return type(loadfile)", "return type(dofile)",
    "return type(require)", "return type(module)", "return type(print)",
    "return type(debug)", "return type(setfenv)", "return type(getfenv)",
    "return type(newproxy)", "return {type(load), type(loadstring), type(collectgarbage),"
    " type(coroutine), type(pcall), type(gcinfo), type(unpack), type(rawset)}",
    "return {type(string), type(table), type(math), type(tostring), type(tonumber),"
    " type(select), type(next), type(ipairs), type(pairs), type(error), type(assert),"
    " type(xpcall), type(rawget), type(rawequal), type(setmetatable), type(getmetatable)}",
    "x = 1", "return x", "_G.x = 1", "rawset(_G, 'x', 1); return x", "redis.call = 1",
    "redis.x = 1", "string.x = 1", "local s = string; s.x = 1", "KEYS = 1",
    "KEYS[1] = 'z'; return KEYS[1]", "return type(math.x)", "return type(_G._G)",
    "local f = function() return y end; return f()", "local t = {} ; t.x = 1; return t.x",
    "return loadstring('return 1')()", "return _VERSION", "return string.rep('x', 3)",
    "return tostring(math.huge)", "return string.format('%d', 5)",
    # the bit and cjson libraries
    "return {bit.band(0xff, 0x0f), bit.tohex(65535), bit.bnot(0), bit.lshift(1, 31),"
    " bit.tohex(-1, -4)}",
    "return {bit.bor(1, 2, 4), bit.bxor(5, 3), bit.rshift(-1, 28), bit.arshift(-256, 4),"
    " bit.rol(0x12345678, 8), bit.ror(0x12345678, 8), bit.bswap(0x12345678),"
    " bit.tobit(2^32 + 5), bit.tobit(1.5), bit.tobit(2.5)}",
    "return type(bit)", "bit.x = 1", "cjson.x = 1", "return type(cjson.null)",
    "return cjson.encode({1,2,3,'sdf',{1,2}})", "return cjson.encode({a=1})",
    "return cjson.encode({})", "return cjson.encode(3.5)", "return cjson.encode(12345678901234)",
    "return cjson.encode(0.1)", "return cjson.encode('a\\nb/c\\\\\"')",
    "return cjson.encode({true, false, cjson.null})",
    "return table.concat(cjson.decode('[0.0, -5e3, -1, 0.3e-3, 1023.2, 0e10]'), ' ')",
    "local d = cjson.decode('{\"keya\": \"a\", \"keyb\": \"b\"}') return {d.keya, d.keyb}",
    "return cjson.encode(cjson.decode('[1,null,\"x/y\",{\"k\":[true]}]'))",
    "return cjson.decode('null') == cjson.null",
    "local ok, e = pcall(cjson.encode, 1/0) return e",
    "local ok, e = pcall(cjson.encode, {[1]=1,[100]=2}) return e",
    "local ok, e = pcall(cjson.encode, function() end) return e",
    # cjson's configuration functions (each script restores the defaults:
    # the settings last in the Lua state until SCRIPT FLUSH, in Redis too)
    "return {cjson.encode_keep_buffer(false), cjson.encode_keep_buffer(true)}",
    "local r = {cjson.encode_max_depth(1), pcall(cjson.encode, {{1}})} "
    "cjson.encode_max_depth(1000) return r",
    "local r = {cjson.decode_max_depth(1), pcall(cjson.decode, '{\"o\": {\"a\": [1]}}')} "
    "cjson.decode_max_depth(1000) return r",
    "local r = {cjson.encode_max_depth(2), cjson.encode({{1}}), pcall(cjson.encode, {{{1}}})} "
    "cjson.encode_max_depth(1000) return r",
    "local r = {cjson.encode_invalid_numbers(true), cjson.encode({0/0, 1/0, -1/0})} "
    "cjson.encode_invalid_numbers('null') r[3] = cjson.encode({1/0, 2}) "
    "r[4] = cjson.encode_invalid_numbers() cjson.encode_invalid_numbers(false) "
    "r[5] = tostring(r[1]) return r",
    "local r = {cjson.encode_number_precision(3), cjson.encode({3.14159, 123456})} "
    "cjson.encode_number_precision(14) return r",
    "local r = {cjson.encode_sparse_array(true), cjson.encode({[1]=1, [100]=2})} "
    "cjson.encode_sparse_array(false) return r",
    "return cjson.encode_max_depth()",
    # cmsgpack
    "return cmsgpack.pack(0.1, 0.5, -1099511627776, 1, 200, 70000, 5000000000, -5, -100, "
    "-1000, -100000, 'abc', string.rep('x', 40), string.rep('y', 300), true, false, nil)",
    "return cmsgpack.pack({1, 2, 3}, {}, {a=1}, {[1]=1, [3]=3})",
    "local a = {y=5} a.x = a return cmsgpack.pack(a)",
    "return {cmsgpack.unpack(cmsgpack.pack(1, 'two', {3, {4}}, 0.25, -7, 2^40))}",
    "local t = cmsgpack.unpack(cmsgpack.pack({k='v', n=3})) return {t.k, t.n}",
    "local s = cmsgpack.pack('a', 'b', 'c') return {cmsgpack.unpack_one(s), "
    "cmsgpack.unpack_limit(s, 2, 2), cmsgpack.unpack_one(s, 4)}",
    "return {pcall(cmsgpack.unpack, '\\205')}",
    "return {pcall(cmsgpack.unpack, '\\193')}",
    "return {pcall(cmsgpack.unpack_one, 'a', -1)}",
    "return {pcall(cmsgpack.unpack_one, 'a', 5)}",
    "return cmsgpack.pack(function() end, 3)",
    "cmsgpack.pack = 1",
    "local ok, t = pcall(cmsgpack.unpack, string.rep('\\145', 3999) .. '\\1') "
    "for _ = 1, 3999 do t = t[1] end return {ok, t}",
    "return {pcall(cmsgpack.unpack, string.rep('\\145', 4000) .. '\\1')}",
    "return {pcall(cmsgpack.unpack, string.rep('\\129\\1', 4000) .. '\\1')}",
    "return {pcall(cmsgpack.unpack, '\\130\\1\\2\\192\\3')}",
    # unpack's count overflowed a C int in lupa's Lua and crashed the process.
    "return {unpack({1,2,3}, -2, 2147483647)}", "return {pcall(unpack, {1,2,3}, -2, 2147483647)}",
    "local ok, e = pcall(unpack, {1,2,3}, 1, 1e7) return e", "return {unpack({1,2,3}, 2)}",
    "return {unpack({1,2,3}, 3, 1)}", "return {unpack({1,2,3}, '2', '3')}",
    "local a = {} for i = 1, 7999 do a[i] = i end return select('#', unpack(a))",
    "local a = {} for i = 1, 7998 do a[i] = i end return select('#', unpack(a, 1))",
    "local a = {} for i = 1, 8000 do a[i] = i end return {pcall(unpack, a)}",
    "local a = {} for i = 1, 7998 do a[i] = i end return {pcall(unpack, a, 1, 7998)}",
    "return {pcall(unpack, 'x')}", "return {pcall(unpack)}", "return {pcall(unpack, {1}, 'x')}",
    "return {pcall(unpack, {1}, 1, {})}", "unpack('x')", "unpack({1}, 1, 'y')",
    # read-only globals, libraries and metatables ("Try trick ..." in Redis's
    # unit); the strings' metatable is shared: a script must not change it
    "setmetatable(_G, {})", "local g = getmetatable(_G)\ng.__index = {}",
    "redis = function() return 1 end", "_G = {}", "redis.call = function() return 1 end",
    "cjson.encode = function() return 1 end", "cmsgpack.pack = function() return 1 end",
    "bit.lshift = function() return 1 end", "getmetatable(nil).__index = function() end",
    "getmetatable('').__index = function() return 1 end", "getmetatable(1.5).__index = 1",
    "getmetatable(true).__index = 1", "getmetatable(function() end).__index = 1",
    "getmetatable(coroutine.create(function() end)).__index = 1",
    "return type(getmetatable(''))", "return getmetatable('').__index == string",
    "getmetatable('').x = 1", "rawset(getmetatable(''), 'x', 1)", "return ('abc'):upper()",
    "return {pcall(setmetatable, string, {})}",
    "local t = setmetatable({}, {__index = function() return 5 end}) return t.x",
    "return getmetatable(setmetatable({}, {__metatable = 'locked'}))",
    "loadfile('some file')", "dofile('some file')", "print('x')",
    "return loadstring(string.dump(function() return 1 end))()",
    # SORT BY a constant sorts a set ALPHA inside a script (not a list)
    "redis.call('sadd', 'S', 'b', 'azz', 'a', 'c', 'aa') return redis.call('sort', 'S', 'by', '_')",
    "redis.call('sadd', 'S', 'b', 'a', 'c') return redis.call('sort', 'S', 'by', '_', 'get', '#',"
    " 'get', '_:*')",
    "redis.call('sadd', 'S', 'b', 'a', 'c', 'd') return redis.call('sort_ro', 'S', 'by', 'x',"
    " 'desc', 'limit', '1', '2')",
    "redis.call('rpush', 'L', 'c', 'a', 'b') return redis.call('sort', 'L', 'by', '_')",
    # an error raised by redis.call in tail position names the script's line
    "redis.call('set', 'k', 'v')\nreturn redis.call('incr', 'k')",
    "redis.call('set', 'k', 'v')\n\nreturn redis.call('incr', 'k')",
    "local function f()\n  return redis.call('nosuch')\nend\nreturn f()",
    "return redis.pcall('nosuch')", "return redis.call()",
    # as many arguments as unpack gives: lupa alone refuses about 7996
    "local a = {} for i = 1, 7999 do a[i] = i end return redis.call('rpush', 'l', unpack(a))",
    "local a = {} for i = 1, 7999 do a[i] = i end return redis.pcall('rpush', 'l', unpack(a))",
    "local a = {'rpush', 'l'} for i = 3, 7999 do a[i] = 'x' end a[5000] = {}"
    " return redis.pcall(unpack(a))",
    "local a = {} for i = 1, 7999 do a[i] = i end\nreturn redis.call('incr', unpack(a))",
]

#: Raw commands (arguments split on '|'), compared the same way.
COMMANDS = [
    "EVAL|return 1|-1", "EVAL|return 1|x", "EVAL|return 1|3|a", "EVAL|return 1|1", "EVAL",
    "EVAL|return 1", "EVALSHA|abc|0", "EVALSHA|ffffffffffffffffffffffffffffffffffffffff|0",
    "SCRIPT|LOAD|return 'hi'", "EVALSHA|2f31ba2bb6d6a0f42cc159d2e2dad55440778de3|0",
    "EVALSHA|2F31BA2BB6D6A0F42CC159D2E2DAD55440778DE3|0",
    "EVALSHA|2f31ba2bb6d6a0f42cc159d2e2dad55440778de3",
    "EVALSHA|2f31ba2bb6d6a0f42cc159d2e2dad55440778de3|x",
    "EVALSHA_RO|2f31ba2bb6d6a0f42cc159d2e2dad55440778de3|0",
    "SCRIPT|EXISTS|2f31ba2bb6d6a0f42cc159d2e2dad55440778de3|abc"
    "|2F31BA2BB6D6A0F42CC159D2E2DAD55440778DE3",
    "SCRIPT|EXISTS", "SCRIPT|LOAD", "SCRIPT|LOAD|return(", "SCRIPT|LOAD|a|b",
    "SCRIPT|FLUSH|bad", "SCRIPT|FLUSH|SYNC|x", "SCRIPT|KILL|x", "SCRIPT|KILL", "SCRIPT",
    "SCRIPT|nosuch", "SCRIPT|HELP", "SCRIPT|FLUSH|ASYNC",
    "EVALSHA|2f31ba2bb6d6a0f42cc159d2e2dad55440778de3|0", "SCRIPT|FLUSH",
    "EVAL_RO|return redis.call('set','k1','x')|1|k1",
    "EVAL_RO|return redis.call('get','k1')|1|k1",
    "EVAL_RO|return redis.pcall('set','k1','x')|1|k1",
    "EVAL_RO|return redis.call('incr','k1')|1|k1", "EVAL_RO|return redis.call('flushall')|0",
    "SCRIPT|LOAD|return redis.call('set', KEYS[1], 'v')",
    "EVALSHA_RO|b0e7bbc2efc136be74cdebcb73a106ad46ea881b|1|k1",
    "EVAL|#!lua flags=no-writes\nreturn redis.call('set','k1','x')|1|k1",
    "EVAL|#!lua\nreturn redis.call('set','k1','x')|1|k1",
    "EVAL|#!lua flags=bad\nreturn 1|0", "EVAL|#!lua name=x\nreturn 1|0",
    "EVAL|#!luax\nreturn 1|0", "EVAL|#!lua\nreturn x|0",
    "EVAL|return redis.call('incr', KEYS[1])|1|k1", "EVAL|error('x')|0",
    "MULTI", "EVAL|return redis.call('incr', 'n')|0", "EVAL|return redis.call('get', 'n')|0",
    "EXEC",
    # cjson's settings last from script to script until SCRIPT FLUSH
    "EVAL|return cjson.encode_max_depth(1)|0", "EVAL|return {pcall(cjson.encode, {{1}})}|0",
    "SCRIPT|FLUSH", "EVAL|return {cjson.encode_max_depth(), cjson.encode({{1}})}|0",
]


@pytest.fixture(params=[2, 3], ids=["resp2", "resp3"])
def proto(request: pytest.FixtureRequest) -> int:
    return int(request.param)


@pytest.fixture
def sides(proto: int, shared_redis_server: RedisServer) -> Iterator[tuple[Any, Ours]]:
    sock = socket.create_connection(("127.0.0.1", shared_redis_server.port), timeout=10)
    ours = Ours()
    for argv in ([b"FLUSHALL"], [b"SCRIPT", b"FLUSH"], [b"HELLO", b"%d" % proto]):
        ask(sock, *argv)
        ours.send(argv)
    yield sock, ours
    sock.close()
    ours.close()


def compare(sides: tuple[Any, Ours], argv: list[bytes]) -> None:
    sock, ours = sides
    expected, got = ask(sock, *argv), ours.send(argv)
    assert got == expected, (argv, expected, got)


@pytest.mark.redis
@pytest.mark.parametrize("script", SCRIPTS)
def test_scripts_match_redis(script: str, sides: tuple[Any, Ours]) -> None:
    compare(sides, [b"EVAL", script.encode(), b"2", b"k1", b"k2", b"a1", b"a2"])


@pytest.mark.redis
def test_commands_match_redis(sides: tuple[Any, Ours]) -> None:
    sha = lua_engine.sha1hex(b"return redis.call('set', KEYS[1], 'v')")
    assert sha == b"b0e7bbc2efc136be74cdebcb73a106ad46ea881b"
    for line in COMMANDS:
        compare(sides, [part.encode() for part in line.split("|")])


@pytest.mark.redis
def test_config_busy_reply_threshold_matches_redis(sides: tuple[Any, Ours]) -> None:
    for line in ("CONFIG|SET|busy-reply-threshold|200", "CONFIG|GET|busy-reply-threshold",
                 "CONFIG|GET|lua-time-limit", "CONFIG|SET|lua-time-limit|x",
                 "CONFIG|SET|lua-time-limit|5000", "CONFIG|GET|busy-reply-threshold"):
        compare(sides, [part.encode() for part in line.split("|")])


@pytest.mark.redis
def test_a_script_started_over_maxmemory_may_not_write_until_it_has(
        sides: tuple[Any, Ours]) -> None:
    # Redis's scriptVerifyOOM: memory over the limit when the script starts
    # refuses its denyoom calls until it has written (DEL is no denyoom).
    lines = ["CONFIG|SET|maxmemory|1", "EVAL|redis.call('set', 'x', 1)|0",
             "EVAL|return redis.call('get', 'x')|0", "EVAL|return redis.pcall('set', 'x', 1)|0",
             "EVAL|#!lua flags=allow-oom\nreturn redis.call('set', 'x', 1)|0",
             "EVAL|redis.call('del', 'x') return redis.call('set', 'x', 1)|0",
             "EVAL|return redis.call('set', 'x', 1)|0"]
    try:
        for line in lines:
            compare(sides, [part.encode() for part in line.split("|")])
    finally:
        for side in ([b"CONFIG", b"SET", b"maxmemory", b"0"], [b"FLUSHALL"]):
            ask(sides[0], *side)
            sides[1].send(side)
    compare(sides, [b"EVAL", b"return redis.call('set', 'x', 1)", b"0"])


# -- without lupa, on the Redis backend, bounds ------------------------------------

def test_without_lupa_scripting_says_how_to_get_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(resp_scripting, "LUA_AVAILABLE", False)
    ours = Ours()
    try:
        for argv in ([b"EVAL", b"return 1", b"0"], [b"SCRIPT", b"LOAD", b"return 1"],
                     [b"EVALSHA", b"a" * 40, b"0"]):
            assert ours.send(argv) == resp_scripting.NO_LUA
        assert b"sockworks[lua]" in resp_scripting.NO_LUA
    finally:
        ours.close()


@pytest.mark.redis
def test_scripting_is_passed_to_the_redis_backend(shared_redis_server: RedisServer) -> None:
    # More in test_redis_passthrough.py: the script runs in that Redis.
    ours = Ours(open_store(shared_redis_server.url, None, "no"))
    try:
        assert ours.send([b"EVAL", b"return redis.call('SET', KEYS[1], 'v')", b"1",
                          b"script:k"]) == b"+OK\r\n"    # a status, as Redis
        assert ours.send([b"GET", b"script:k"]) == b"$1\r\nv\r\n"
        assert ours.send([b"EVAL", b"return redis.error_reply('MINE x')", b"0"]) == (
            b"-MINE x\r\n")
    finally:
        ours.close()


def test_script_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(resp_scripting, "MAX_CACHED_SCRIPTS", 3)
    ours = Ours()
    try:
        shas = [ours.send([b"SCRIPT", b"LOAD", b"return %d" % n])[5:45] for n in range(5)]
        exists = ours.send([b"SCRIPT", b"EXISTS", *shas])
        # The least recently used went first; EVALSHA of it says NOSCRIPT
        # (clients then send the script again).
        assert exists == b"*5\r\n:0\r\n:0\r\n:1\r\n:1\r\n:1\r\n"
        assert ours.send([b"EVALSHA", shas[0], b"0"]) == resp_scripting.NOSCRIPT
        assert ours.send([b"EVALSHA", shas[4], b"0"]) == b":4\r\n"
        assert ours.service.scripts.counters()["evicted_scripts"] == 2
    finally:
        ours.close()


def test_lua_memory_is_bounded() -> None:
    service = RespService(MemoryStore(), ServerStats(), owns_store=True)
    service.scripts = resp_scripting.Scripts(lua_memory=8 * 1024 * 1024)
    ours = Ours.__new__(Ours)
    ours.service, ours.session = service, service.new_session("127.0.0.1:1")
    try:
        reply = ours.send([b"EVAL", b"local t = {} for i = 1, 1e8 do t[i] = ('x'):rep(100) .. i"
                           b" end return #t", b"0"])
        assert reply.startswith(b"-ERR ") and b"not enough memory" in reply, reply
        # The state survives: the next script runs.
        assert ours.send([b"EVAL", b"return 7", b"0"]) == b":7\r\n"
    finally:
        ours.close()


def test_msgpack_nesting_is_bounded() -> None:
    # A hostile string of nested one-element arrays fails cleanly instead
    # of recursing without end; a self-referencing table packs 16 deep.
    ours = Ours()
    try:
        reply = ours.send([b"EVAL", b"return {pcall(cmsgpack.unpack, string.rep('\\145', "
                           b"100000) .. '\\1')}", b"0"])
        assert reply == (b"*2\r\n$-1\r\n$51\r\n"
                         b"stack overflow (in function mp_decode_to_lua_array)\r\n")
        reply = ours.send([b"EVAL", b"local a = {} a[1] = a return #cmsgpack.pack(a)", b"0"])
        assert reply == b":17\r\n"
    finally:
        ours.close()


def test_self_referencing_table_is_bounded() -> None:
    ours = Ours()
    try:
        reply = ours.send([b"EVAL", b"local t = {} t[1] = t return t", b"0"])
        assert reply.startswith(b"*1\r\n" * 10) and reply.endswith(
            b"-ERR reached lua stack limit\r\n")
    finally:
        ours.close()


def test_loading_bytecode_is_refused() -> None:
    ours = Ours()
    try:
        reply = ours.send([b"EVAL", b"local f = loadstring(string.dump(function() return 1 end))"
                           b" return f == nil", b"0"])
        assert reply == b":1\r\n"
    finally:
        ours.close()


# -- the log: a script's writes are one record -----------------------------------------

def records_in(path: Path) -> int:
    return len(records.scan_log(path.read_bytes()).records)


def test_a_script_is_logged_as_one_record_and_replays(tmp_path: Path) -> None:
    store = PersistentStore(str(tmp_path), "always")
    ours = Ours(store)
    log = tmp_path / AOF_FILENAME
    try:
        assert ours.send([b"SET", b"before", b"1"]) == b"+OK\r\n"
        count = records_in(log)
        script = (b"redis.call('set', 'a', '1') redis.call('rpush', 'l', 'x', 'y')"
                  b" redis.call('incr', 'n') redis.call('hset', 'h', 'f', 'v') return 1")
        assert ours.send([b"EVAL", script, b"0"]) == b":1\r\n"
        assert records_in(log) == count + 1
        # A script that fails half way keeps what it wrote (Redis does not
        # roll back); that part is logged too.
        reply = ours.send([b"EVAL", b"redis.call('set', 'b', '2') error('stop')", b"0"])
        assert reply.startswith(b"-ERR user_script:1: stop")
        assert records_in(log) == count + 2
    finally:
        ours.close()
    reopened = PersistentStore(str(tmp_path), "always")
    try:
        assert reopened.mget([b"before", b"a", b"n", b"b"]) == [b"1", b"1", b"1", b"2"]
        assert reopened.execute_command([b"LRANGE", b"l", b"0", b"-1"]) == [b"x", b"y"]
        assert reopened.execute_command([b"HGET", b"h", b"f"]) == b"v"
    finally:
        reopened.close()


def test_a_crash_during_the_scripts_record_replays_none_of_it(tmp_path: Path) -> None:
    store = PersistentStore(str(tmp_path), "always")
    ours = Ours(store)
    try:
        ours.send([b"SET", b"before", b"1"])
        ours.send([b"EVAL", b"for i = 1, 20 do redis.call('set', 'k' .. i, i) end", b"0"])
    finally:
        ours.close()
    log = tmp_path / AOF_FILENAME
    # The record was being written when the power went: cut it short.
    with open(log, "r+b") as f:
        f.truncate(os.path.getsize(log) - 7)
    reopened = PersistentStore(str(tmp_path), "always")
    try:
        assert reopened.get(b"before") == b"1"
        assert reopened.exists([b"k%d" % i for i in range(1, 21)]) == 0
    finally:
        reopened.close()


def test_exec_is_logged_as_one_record(tmp_path: Path) -> None:
    store = PersistentStore(str(tmp_path), "always")
    ours = Ours(store)
    log = tmp_path / AOF_FILENAME
    try:
        count = records_in(log)
        for argv in ([b"MULTI"], [b"SET", b"x", b"1"], [b"INCR", b"y"], [b"RPUSH", b"z", b"a"]):
            ours.send(argv)
        assert ours.send([b"EXEC"]) == b"*3\r\n+OK\r\n:1\r\n:1\r\n"
        assert records_in(log) == count + 1
    finally:
        ours.close()


def commandstat(ours: Ours, name: bytes) -> dict[str, float]:
    info = ours.send([b"INFO", b"commandstats"])
    line = next(line for line in info.split(b"\r\n") if line.startswith(b"cmdstat_" + name + b":"))
    return {k.decode(): float(v) for k, v in
            (field.split(b"=") for field in line.split(b":", 1)[1].split(b","))}


def test_commandstats_count_a_script_with_its_run_time_and_its_error() -> None:
    # The script runs on the runner thread, after its EVAL was handed over:
    # its call, its time and its error are counted when its reply is.
    ours = Ours()
    try:
        started = time.monotonic()
        assert ours.send([b"EVAL", b"for i = 1, 3000000 do end return 1", b"0"]) == b":1\r\n"
        wall = time.monotonic() - started
        assert ours.send([b"EVAL", b"error('x')", b"0"]).startswith(b"-ERR user_script:1: x")
        stat = commandstat(ours, b"eval")
        assert (stat["calls"], stat["failed_calls"], stat["rejected_calls"]) == (2, 1, 0)
        assert stat["usec"] >= 0.3 * wall * 1e6, (stat, wall)
    finally:
        ours.close()


# -- real servers ------------------------------------------------------------------------

def resp_port(server: ServerProcess) -> int:
    assert len(server.addresses) == 2, server.addresses
    return server.addresses[1][1]


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    proc = spawn_server("serve", "kv", "--resp-port", "0", expect_listeners=2)
    yield proc
    proc.stop()


@pytest.mark.parametrize("protocol", [2, 3])
def test_redis_py_lock(server: ServerProcess, protocol: int) -> None:
    """The acceptance test: acquire, extend, release, blocking acquire with
    a timeout, and a blocked acquire that gets the lock once it is freed."""
    r = redis.Redis(host="127.0.0.1", port=resp_port(server), socket_timeout=10,
                    protocol=protocol)
    try:
        r.delete("resource")
        lock = r.lock("resource", timeout=10)
        assert lock.acquire(blocking=False)
        assert r.get("resource") == lock.local.token
        assert lock.owned() and lock.locked()
        assert 0 < r.pttl("resource") <= 10_000
        assert lock.extend(20)
        assert 10_000 < r.pttl("resource") <= 30_000
        assert lock.reacquire()  # back to the lock's own timeout
        assert 0 < r.pttl("resource") <= 10_000
        other = r.lock("resource", timeout=10, blocking_timeout=0.3, sleep=0.05)
        started = time.monotonic()
        assert not other.acquire()  # held: retries, then gives up after blocking_timeout
        assert 0.1 <= time.monotonic() - started < DEADLINE
        lock.release()
        assert r.get("resource") is None
        # The server-side checks (the scripts): a lock whose key someone else
        # now holds can neither be extended nor released.
        stolen = r.lock("resource", timeout=10)
        assert stolen.acquire(blocking=False)
        r.set("resource", "someone else")
        with pytest.raises(redis.exceptions.LockNotOwnedError):
            stolen.extend(5)
        with pytest.raises(redis.exceptions.LockNotOwnedError):
            stolen.release()
        assert r.get("resource") == b"someone else"
        r.delete("resource")
        # A blocked acquire gets the lock when its holder lets go.
        holder = r.lock("resource", timeout=10, thread_local=False)
        assert holder.acquire(blocking=False)
        waiting = threading.Event()

        def release_when_waited_on() -> None:
            waiting.wait(DEADLINE)
            holder.release()
        thread = threading.Thread(target=release_when_waited_on)
        thread.start()
        waiter = r.lock("resource", timeout=10, blocking_timeout=DEADLINE, sleep=0.01)
        waiting.set()
        assert waiter.acquire()
        thread.join(DEADLINE)
        assert r.get("resource") == waiter.local.token
        waiter.release()
    finally:
        r.close()


def test_scripts_through_redis_py(server: ServerProcess) -> None:
    r = redis.Redis(host="127.0.0.1", port=resp_port(server), socket_timeout=10)
    try:
        r.delete("counter")
        bump = r.register_script("return redis.call('incrby', KEYS[1], ARGV[1])")
        assert bump(keys=["counter"], args=[5]) == 5
        r.script_flush()  # Script objects load it again on NOSCRIPT
        assert bump(keys=["counter"], args=[2]) == 7
        assert r.eval("return {1, 'two', {ok='three'}}", 0) == [1, b"two", b"three"]
        with pytest.raises(redis.exceptions.ResponseError, match="Script attempted to access"):
            r.eval("return nope", 0)
        with pytest.raises(redis.exceptions.ResponseError, match="read-only scripts"):
            r.eval_ro("return redis.call('del', KEYS[1])", 1, "counter")
    finally:
        r.close()


LOOP = b"local i = 0 while true do i = i + 1 end"


def wait_busy(sock: socket.socket) -> None:
    """PING until the answer is BUSY (each PING waits at most the threshold)."""
    deadline = time.monotonic() + DEADLINE
    while ask(sock, "PING") != resp_scripting.BUSY_SCRIPT:
        assert time.monotonic() < deadline, "the script was never reported busy"


@pytest.mark.parametrize("model", SHARED_MEMORY_MODELS)
def test_pipelined_scripts_each_get_their_reply_in_order(model: str) -> None:
    # Redis's "EVAL does not leak in the Lua stack" pipelines 10000 EVALs:
    # an event loop reads on while a script runs on the runner, and the
    # requests read then must wait for its reply, not take its place.
    proc = spawn_server("serve", "kv", "--resp-port", "0", "--model", model,
                        expect_listeners=2)
    r = redis.Redis(host="127.0.0.1", port=resp_port(proc), socket_timeout=30)
    try:
        pipe = r.pipeline(transaction=False)
        for _ in range(3000):
            pipe.eval("return redis.call('incr', KEYS[1])", 1, "x")
        assert pipe.execute() == list(range(1, 3001))
    finally:
        r.close()
        proc.stop()


@pytest.mark.parametrize("model", SHARED_MEMORY_MODELS)
def test_script_kill_stops_a_busy_script(model: str) -> None:
    proc = spawn_server("serve", "kv", "--resp-port", "0", "--model", model,
                        "--busy-reply-threshold", "100", expect_listeners=2)
    try:
        port = resp_port(proc)
        with socket.create_connection(("127.0.0.1", port), timeout=DEADLINE) as runner, \
                socket.create_connection(("127.0.0.1", port), timeout=DEADLINE) as other:
            runner.sendall(encode_command([b"EVAL", LOOP, b"0"]))
            wait_busy(other)
            # Everything but the allowed few is refused meanwhile, on both ports.
            assert ask(other, "GET", "k") == resp_scripting.BUSY_SCRIPT
            assert ask(other, "EVAL", "return 1", "0") == resp_scripting.BUSY_SCRIPT
            assert ask(other, "NOSUCH") .startswith(b"-ERR unknown command")
            host, text_port = proc.addresses[0]
            with socket.create_connection((host, text_port), timeout=DEADLINE) as text:
                assert text.recv(100).startswith(b"READY")
                text.sendall(b"GET k\n")
                assert text.recv(100).startswith(b"ERROR: busy running a script")
            assert ask(other, "SCRIPT", "KILL") == b"+OK\r\n"
            sha = lua_engine.sha1hex(LOOP)
            assert raw_reply(runner) == (b"-ERR Script killed by user with SCRIPT KILL... "
                                         b"script: " + sha + b", on @user_script:1.\r\n")
            assert ask(other, "PING") == b"+PONG\r\n"
            assert ask(runner, "SCRIPT", "KILL") == resp_scripting.NOTBUSY
    finally:
        proc.stop()


def test_exec_refused_while_busy_aborts_the_transaction() -> None:
    # Redis's unit/multi "EXEC and script timeout": EXEC refused with BUSY
    # discards the transaction with EXECABORT (execCommandAbort), so after
    # SCRIPT KILL the connection is out of MULTI and nothing queued ran.
    proc = spawn_server("serve", "kv", "--resp-port", "0", "--busy-reply-threshold", "50",
                        expect_listeners=2)
    try:
        port = resp_port(proc)
        with socket.create_connection(("127.0.0.1", port), timeout=DEADLINE) as runner, \
                socket.create_connection(("127.0.0.1", port), timeout=DEADLINE) as other:
            assert ask(other, "SET", "xx", "1") == b"+OK\r\n"
            assert ask(other, "MULTI") == b"+OK\r\n"
            assert ask(other, "INCR", "xx") == b"+QUEUED\r\n"
            runner.sendall(encode_command([b"EVAL", LOOP, b"0"]))
            deadline = time.monotonic() + DEADLINE
            while (reply := ask(other, "INCR", "xx")) == b"+QUEUED\r\n":
                assert time.monotonic() < deadline, "the script was never reported busy"
            assert reply == resp_scripting.BUSY_SCRIPT
            assert ask(other, "EXEC") == (b"-EXECABORT Transaction discarded because of: "
                                          + resp_scripting.BUSY_SCRIPT[1:])
            with socket.create_connection(("127.0.0.1", port), timeout=DEADLINE) as killer:
                assert ask(killer, "SCRIPT", "KILL") == b"+OK\r\n"
            raw_reply(runner)
            assert ask(other, "PING", "asdf") == b"$4\r\nasdf\r\n"  # not in MULTI
            assert ask(other, "GET", "xx") == b"$1\r\n1\r\n"  # nothing queued ran
    finally:
        proc.stop()


def test_a_script_that_wrote_cannot_be_killed_and_shutdown_stops_it() -> None:
    # A busy connection holds up shutdown for --grace; then the script is
    # stopped (written or not) and the server exits.
    proc = spawn_server("serve", "kv", "--resp-port", "0", "--busy-reply-threshold", "100",
                        "--grace", "1", expect_listeners=2)
    try:
        port = resp_port(proc)
        with socket.create_connection(("127.0.0.1", port), timeout=DEADLINE) as runner, \
                socket.create_connection(("127.0.0.1", port), timeout=DEADLINE) as other:
            runner.sendall(encode_command([b"EVAL", b"redis.call('set', 'x', 'y') " + LOOP,
                                           b"0"]))
            wait_busy(other)
            assert ask(other, "SCRIPT", "KILL") == resp_scripting.UNKILLABLE
        proc.signal()
        assert proc.wait(DEADLINE) == 0
    finally:
        proc.stop()


# -- access control ------------------------------------------------------------------

def test_acl_scripting_category_and_calls_inside_scripts(tmp_path: Path) -> None:
    from sockworks.services.auth import AccessControl
    aclfile = tmp_path / "users.acl"
    aclfile.write_text("user default on nopass ~* +@all\n"
                       "user noscripts on >pw ~* +@all -@scripting\n"
                       "user reader on >pw ~* +@scripting +get\n")
    service = RespService(MemoryStore(), ServerStats(), owns_store=True,
                          access=AccessControl(aclfile=str(aclfile)))
    ours = Ours.__new__(Ours)
    ours.service, ours.session = service, service.new_session("127.0.0.1:1")
    try:
        assert ours.send([b"AUTH", b"noscripts", b"pw"]) == b"+OK\r\n"
        assert ours.send([b"EVAL", b"return 1", b"0"]).startswith(
            b"-NOPERM this user has no permissions to run the 'eval' command")
        assert ours.send([b"SCRIPT", b"LOAD", b"return 1"]).startswith(
            b"-NOPERM this user has no permissions to run the 'script|load' command")
        assert ours.send([b"AUTH", b"reader", b"pw"]) == b"+OK\r\n"
        assert ours.send([b"EVAL", b"return redis.call('get', 'k')", b"0"]) == b"$-1\r\n"
        # A script runs its commands as its caller: what the user may not
        # run, the script may not either.
        reply = ours.send([b"EVAL", b"return redis.call('set', 'k', 'v')", b"0"])
        assert reply.startswith(b"-NOPERM this user has no permissions to run the 'set' "
                                b"command script: "), reply
        assert service.store.get(b"k") is None
    finally:
        ours.close()


def _lua_memory(ours: Ours) -> int:
    info = ours.send([b"INFO", b"memory"])
    return int(info.split(b"used_memory_lua:")[1].split(b"\r\n")[0])


def test_lua_garbage_is_collected_as_scripts_run() -> None:
    # Redis's unit "EVAL does not leak in the Lua stack": used_memory_lua
    # under 100 KB after 10,000 scripts (a FUNCTION LOAD REPLACE before each
    # in its FCALL pass), which an incremental collector step every
    # GC_CYCLE_PERIOD scripts keeps (without it: 115 KB after 20,000 EVALs,
    # left to Lua's own threshold; with it, about 35 KB throughout).
    ours = Ours()
    library = (b"#!lua name=test\nredis.register_function('test', function(KEYS, ARGV)\n"
               b" return redis.call('incr', KEYS[1])\nend)")
    try:
        peak = 0
        for i in range(20_000):
            assert ours.send([b"EVAL", b"return redis.call('incr', KEYS[1])", b"1", b"x"])[:1] == b":"
            if i % 500 == 499:
                peak = max(peak, _lua_memory(ours))
        for i in range(3_000):
            assert ours.send([b"FUNCTION", b"LOAD", b"REPLACE", library]) == b"$4\r\ntest\r\n"
            assert ours.send([b"FCALL", b"test", b"1", b"x"])[:1] == b":"
            if i % 500 == 499:
                peak = max(peak, _lua_memory(ours))
        assert 0 < peak < 100 * 1024
    finally:
        ours.close()


def test_info_memory_counts_cached_scripts_and_lua_memory() -> None:
    # Redis's unit reads number_of_cached_scripts around SCRIPT FLUSH ASYNC.
    ours = Ours()
    try:
        for j in range(5):
            assert ours.send([b"SCRIPT", b"LOAD", b"return %d" % j]).startswith(b"$40\r\n")
        info = ours.send([b"INFO", b"memory"])
        assert b"\r\nnumber_of_cached_scripts:5\r\n" in info
        assert b"\r\nused_memory_scripts_eval:" in info
        lua = int(info.split(b"used_memory_lua:")[1].split(b"\r\n")[0])
        assert lua > 0
        assert info.index(b"used_memory_lua:") < info.index(b"maxmemory:")
        assert ours.send([b"SCRIPT", b"FLUSH", b"ASYNC"]) == b"+OK\r\n"
        assert b"\r\nnumber_of_cached_scripts:0\r\n" in ours.send([b"INFO", b"memory"])
    finally:
        ours.close()
