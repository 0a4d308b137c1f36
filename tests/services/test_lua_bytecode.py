"""services/lua_bytecode.py: tail calls made plain calls in Lua 5.1 dumps.

The rewritten chunk must load (Lua's verifier checks it) and compute what
the original does; every other byte stays; a dump of another format is
returned as is."""

from __future__ import annotations

import pytest

from sockworks.services import lua_bytecode, lua_engine
from tests.support import require_lua

require_lua()
if lua_engine.LUA_VERSION != "Lua 5.1":
    pytest.skip("needs lupa's Lua 5.1 runtime", allow_module_level=True)

#: Every constant kind, nested closures with upvalues, varargs, a table
#: constructor long enough for SETLIST's extra count word (C = 0: more than
#: 511 x 50 items), and tail calls at two depths.
CHUNK = "local big = {" + ", ".join(str(i) for i in range(30000)) + """}
local function count(n, acc) if n == 0 then return acc end return count(n - 1, acc + 1) end
local function pick(...) return select('#', ...), ... end
local k = {true, false, nil, 1.5, 'text', -3}
local function outer()
  local up = #big
  return function(x) return up + x end
end
return (function() return count(100, 0), #big, outer()(2), pick(1, nil, 3), k[5], k[1] end)()
"""


def results(fn: object) -> tuple[object, ...]:
    out = fn()  # type: ignore[operator]
    return out if isinstance(out, tuple) else (out,)


def test_untail_keeps_results_and_removes_tail_calls() -> None:
    runtime = lua_engine.LuaEngine().runtime
    dump = runtime.eval("string.dump")
    load = runtime.eval("loadstring")
    original = load(CHUNK.encode(), b"=chunk")
    code = dump(original)
    patched = lua_bytecode.untail(code)
    assert patched != code and len(patched) == len(code)
    assert lua_bytecode.untail(patched) == patched  # no tail call left
    rebuilt = load(patched)
    assert rebuilt is not None
    assert results(rebuilt) == results(original) == (
        100, 30000, 30002, 3, b"text", True)


def test_untail_leaves_other_formats_alone() -> None:
    assert lua_bytecode.untail(b"return 1") == b"return 1"
    assert lua_bytecode.untail(b"\x1bLua\x52\x00rest") == b"\x1bLua\x52\x00rest"


def test_a_truncated_dump_is_refused_not_misread() -> None:
    runtime = lua_engine.LuaEngine().runtime
    code = runtime.eval("string.dump(loadstring('return 1'))")
    with pytest.raises((ValueError, IndexError)):
        lua_bytecode.untail(code + b"\x00")
