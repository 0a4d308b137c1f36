"""Libraries Redis's Lua has and lupa's does not: ``bit`` and ``cjson``.

Redis links LuaBitOp (``bit.band`` ...) and lua-cjson into its Lua; scripts
use them (JSON documents in keys, flags in integers). Here they are Python
functions with the same semantics as far as scripts can see:

* ``bit``: 32-bit two's complement results, a number first rounded to the
  nearest integer (ties to even, as LuaBitOp's double trick) and taken
  modulo 2^32; ``tohex(x [, n])`` (n < 0: upper case);
* ``cjson.encode``: numbers as ``%.14g`` (Redis's precision), ``/``
  escaped as ``\\/`` (lua-cjson's habit), a table with only positive integer
  keys is an array (holes become ``null``; too sparse is an error, as
  lua-cjson's defaults), an empty table ``{}``; ``cjson.decode`` gives
  tables, and ``cjson.null`` for JSON's null. Error texts are lua-cjson's
  for the common cases, not for every malformed document.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any, Final

__all__ = ["install"]

#: lua-cjson's default limits (Redis keeps them).
MAX_DEPTH: Final = 1000
SPARSE_RATIO: Final = 2
SPARSE_SAFE: Final = 10


class LibError(Exception):
    """A library call failed: Lua raises ``message`` (a string error)."""


def _int32(value: Any) -> int:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise LibError("bad argument to bit operation (number expected)")
    number = value
    if isinstance(number, float):
        if not math.isfinite(number):
            return 0
        number = round(number)
    bits = int(number) & 0xFFFFFFFF
    return bits - (1 << 32) if bits & 0x80000000 else bits


def _bit_functions() -> dict[bytes, Callable[..., Any]]:
    def fold(op: Callable[[int, int], int]) -> Callable[..., int]:
        def run(first: Any, *rest: Any) -> int:
            result = _int32(first)
            for value in rest:
                result = _int32(op(result, _int32(value)))
            return result
        return run

    def shift(op: Callable[[int, int], int]) -> Callable[[Any, Any], int]:
        return lambda x, n: _int32(op(_int32(x) & 0xFFFFFFFF, _int32(n) & 31))

    def tohex(x: Any, n: Any = 8) -> bytes:
        value, count = _int32(x) & 0xFFFFFFFF, _int32(n)
        digits = "%X" if count < 0 else "%x"
        count = min(abs(count), 8)
        text = (digits % value).rjust(8, "0")[-count:] if count else ""
        return text.encode()

    def arshift(x: Any, n: Any) -> int:
        return _int32(_int32(x) >> (_int32(n) & 31))

    def rol(x: Any, n: Any) -> int:
        value, count = _int32(x) & 0xFFFFFFFF, _int32(n) & 31
        return _int32((value << count) | (value >> (32 - count)))

    def ror(x: Any, n: Any) -> int:
        value, count = _int32(x) & 0xFFFFFFFF, _int32(n) & 31
        return _int32((value >> count) | (value << (32 - count)))

    def bswap(x: Any) -> int:
        return _int32(int.from_bytes((_int32(x) & 0xFFFFFFFF).to_bytes(4, "little"), "big"))

    return {
        b"tobit": lambda x: _int32(x),
        b"tohex": tohex,
        b"bnot": lambda x: _int32(~_int32(x)),
        b"band": fold(lambda a, b: a & b),
        b"bor": fold(lambda a, b: a | b),
        b"bxor": fold(lambda a, b: a ^ b),
        b"lshift": shift(lambda a, n: a << n),
        b"rshift": shift(lambda a, n: a >> n),
        b"arshift": arshift,
        b"rol": rol,
        b"ror": ror,
        b"bswap": bswap,
    }


_ESCAPES: Final = {i: f"\\u{i:04x}" for i in range(32)}
_ESCAPES.update({ord("\b"): "\\b", ord("\f"): "\\f", ord("\n"): "\\n", ord("\r"): "\\r",
                 ord("\t"): "\\t", ord('"'): '\\"', ord("\\"): "\\\\", ord("/"): "\\/",
                 127: "\\u007f"})


def _number(value: float) -> str:
    if isinstance(value, float) and not math.isfinite(value):
        raise LibError("Cannot serialise number: must not be NaN or Inf")
    if isinstance(value, int):
        return str(value) if abs(value) < 10**14 else f"{value:.14g}"
    return f"{value:.14g}"


class _Json:
    """cjson.encode/decode over one Lua state (its table API, its null)."""

    def __init__(self, lua: Any, lua_type: Callable[[Any], str | None]) -> None:
        self._lua = lua
        self._type = lua_type
        self.null: Any = lua.eval("newproxy()")
        self._rawequal = lua.globals().rawequal

    def encode(self, *args: Any) -> bytes:
        if len(args) != 1:
            raise LibError("bad argument #1 to 'encode' (expected 1 argument)")
        parts: list[str] = []
        self._encode(args[0], parts, 0)
        return "".join(parts).encode("latin-1")

    def _encode(self, value: Any, parts: list[str], depth: int) -> None:
        if value is None or (self._type(value) == "userdata"
                             and self._rawequal(value, self.null)):
            parts.append("null")
        elif value is True or value is False:
            parts.append("true" if value else "false")
        elif isinstance(value, (int, float)):
            parts.append(_number(value))
        elif isinstance(value, bytes):
            parts.append('"' + value.decode("latin-1").translate(_ESCAPES) + '"')
        elif self._type(value) == "table":
            if depth >= MAX_DEPTH:
                raise LibError(f"Cannot serialise, excessive nesting ({depth + 1})")
            items = list(value.items())
            size = self._array_size(items)
            if size > 0:
                by_index = dict(items)
                parts.append("[")
                for index in range(1, size + 1):
                    if index > 1:
                        parts.append(",")
                    self._encode(by_index.get(index), parts, depth + 1)
                parts.append("]")
                return
            parts.append("{")
            for n, (key, item) in enumerate(items):
                if n:
                    parts.append(",")
                if isinstance(key, bytes):
                    parts.append('"' + key.decode("latin-1").translate(_ESCAPES) + '":')
                elif isinstance(key, (int, float)) and not isinstance(key, bool):
                    parts.append('"' + _number(key) + '":')
                else:
                    raise LibError("Cannot serialise table: table key must be a number or "
                                   "string")
                self._encode(item, parts, depth + 1)
            parts.append("}")
        else:
            kind = self._type(value) or type(value).__name__
            raise LibError(f"Cannot serialise {kind}: type not supported")

    @staticmethod
    def _array_size(items: list[tuple[Any, Any]]) -> int:
        """lua-cjson's rule: > 0 array length, 0 not an array (an object)."""
        largest = 0
        for key, _ in items:
            if not isinstance(key, (int, float)) or isinstance(key, bool) or key < 1 \
                    or key != int(key):
                return 0
            largest = max(largest, int(key))
        if largest > SPARSE_SAFE and largest > SPARSE_RATIO * len(items):
            raise LibError("Cannot serialise table: excessively sparse array")
        return largest

    def decode(self, *args: Any) -> Any:
        if len(args) != 1 or not isinstance(args[0], bytes):
            raise LibError("bad argument #1 to 'decode' (string expected)")
        try:
            document = json.loads(args[0].decode("utf-8"), parse_constant=_no_constant)
        except (ValueError, RecursionError) as exc:
            raise LibError(f"Expected value but found invalid token: {exc}") from None
        return self._to_lua(document)

    def _to_lua(self, value: Any) -> Any:
        if value is None:
            return self.null
        if isinstance(value, str):
            return value.encode("utf-8")
        if isinstance(value, list):
            return self._lua.table_from([self._to_lua(item) for item in value])
        if isinstance(value, dict):
            return self._lua.table_from({key.encode("utf-8"): self._to_lua(item)
                                         for key, item in value.items()})
        return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"invalid token {name}")


def install(lua: Any, env: Any, protect: Any, lua_type: Callable[[Any], str | None],
            wrap: Callable[[Callable[..., Any]], Callable[..., Any]]) -> None:
    """Put ``bit`` and ``cjson`` (read-only) into the script environment;
    ``wrap`` turns a LibError into a Lua error."""
    bit = lua.table_from({name: wrap(fn) for name, fn in _bit_functions().items()})
    codec = _Json(lua, lua_type)
    cjson = lua.table_from({b"encode": wrap(codec.encode), b"decode": wrap(codec.decode),
                            b"null": codec.null})
    env[b"bit"] = protect(bit)
    env[b"cjson"] = protect(cjson)
