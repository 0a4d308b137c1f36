"""Libraries Redis's Lua has and lupa's does not: ``bit``, ``cjson``, ``cmsgpack``.

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
  for the common cases, not for every malformed document;
* lua-cjson's configuration functions (``encode_max_depth``,
  ``decode_max_depth``, ``encode_invalid_numbers``, ``encode_keep_buffer``,
  ``encode_number_precision``, ``encode_sparse_array``,
  ``decode_invalid_numbers``): settings live as long as Redis's Lua state,
  i.e. until SCRIPT FLUSH;
* ``cmsgpack``: :mod:`sockworks.services.lua_cmsgpack`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any, Final

from sockworks.services import lua_cmsgpack

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


def _number(value: float, precision: int = 14, invalid: int = 0) -> str:
    """lua-cjson's number text: ``%.<precision>g``; NaN/Inf per
    ``encode_invalid_numbers`` (0 refuse, 1 ``nan``/``inf``, 2 ``null``)."""
    if isinstance(value, float) and not math.isfinite(value):
        if invalid == 0:
            raise LibError("Cannot serialise number: must not be NaN or Inf")
        if invalid == 2:
            return "null"
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, int) and precision == 14 and abs(value) < 10**14:
        return str(value)
    return f"{float(value):.{precision}g}"


_INT_MAX: Final = 2**31 - 1
_BOOL_OPTIONS: Final = ("off", "on")


class _Config:
    """lua-cjson's settings: per Lua state, so they last from script to
    script until SCRIPT FLUSH (which in Redis makes a new Lua state)."""

    def __init__(self) -> None:
        self.sparse_convert = 0
        self.sparse_ratio = SPARSE_RATIO
        self.sparse_safe = SPARSE_SAFE
        self.encode_max_depth = MAX_DEPTH
        self.decode_max_depth = MAX_DEPTH
        self.encode_invalid_numbers = 0
        self.decode_invalid_numbers = 1
        self.encode_keep_buffer = 1
        self.precision = 14


def _check_args(name: str, args: tuple[Any, ...], most: int) -> None:
    if len(args) > most:
        raise LibError(f"bad argument #{most + 1} to '{name}' (found too many arguments)")


def _integer_option(name: str, args: tuple[Any, ...], index: int, current: int,
                    low: int, high: int) -> int:
    """json_integer_option: the new value (nil keeps ``current``)."""
    value = args[index] if index < len(args) else None
    if value is None:
        return current
    if isinstance(value, bytes):
        try:
            value = float(value)
        except ValueError:
            value = None
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        got = "no value" if index >= len(args) else _lua_kind(value)
        raise LibError(f"bad argument #{index + 1} to '{name}' (number expected, got {got})")
    number = int(value)
    if not low <= number <= high:
        raise LibError(f"bad argument #1 to '{name}' (expected integer between {low} and "
                       f"{high})")
    return number


def _enum_option(name: str, args: tuple[Any, ...], index: int, current: int,
                 options: tuple[str, ...] = _BOOL_OPTIONS) -> int:
    """json_enum_option: a boolean or one of ``options`` by name."""
    value = args[index] if index < len(args) else None
    if value is None:
        return current
    if value is True or value is False:
        return int(value)
    if isinstance(value, (int, float)):
        value = _number(value).encode()
    if not isinstance(value, bytes):
        raise LibError(f"bad argument #{index + 1} to '{name}' (string expected, got "
                       f"{_lua_kind(value)})")
    text = value.decode("latin-1")
    if text not in options:
        raise LibError(f"bad argument #{index + 1} to '{name}' (invalid option '{text}')")
    return options.index(text)


def _lua_kind(value: Any) -> str:
    if value is True or value is False:
        return "boolean"
    if isinstance(value, bytes):
        return "string"
    if isinstance(value, (int, float)):
        return "number"
    return "table" if hasattr(value, "items") else "userdata"


def _enum_result(setting: int, options: tuple[str, ...] = _BOOL_OPTIONS) -> Any:
    return bool(setting) if setting in (0, 1) else options[setting].encode()


class _Json:
    """cjson.encode/decode over one Lua state (its table API, its null)."""

    def __init__(self, lua: Any, lua_type: Callable[[Any], str | None]) -> None:
        self._lua = lua
        self._type = lua_type
        self.null: Any = lua.eval("newproxy()")
        self._rawequal = lua.globals().rawequal
        self.config = _Config()

    def reset(self) -> None:
        """SCRIPT FLUSH: lua-cjson's defaults again (Redis's new Lua state)."""
        self.config = _Config()

    def functions(self) -> dict[bytes, Callable[..., Any]]:
        """The configuration functions lua-cjson has, by name."""
        def integer(attr: str, name: str, low: int, high: int) -> Callable[..., int]:
            def run(*args: Any) -> int:
                _check_args(name, args, 1)
                value = _integer_option(name, args, 0, getattr(self.config, attr), low, high)
                setattr(self.config, attr, value)
                return value
            return run

        def enum(attr: str, name: str,
                 options: tuple[str, ...] = _BOOL_OPTIONS) -> Callable[..., Any]:
            def run(*args: Any) -> Any:
                _check_args(name, args, 1)
                value = _enum_option(name, args, 0, getattr(self.config, attr), options)
                setattr(self.config, attr, value)
                return _enum_result(value, options)
            return run

        def sparse(*args: Any) -> tuple[Any, int, int]:
            name, cfg = "encode_sparse_array", self.config
            _check_args(name, args, 3)
            cfg.sparse_convert = _enum_option(name, args, 0, cfg.sparse_convert)
            cfg.sparse_ratio = _integer_option(name, args, 1, cfg.sparse_ratio, 0, _INT_MAX)
            cfg.sparse_safe = _integer_option(name, args, 2, cfg.sparse_safe, 0, _INT_MAX)
            return bool(cfg.sparse_convert), cfg.sparse_ratio, cfg.sparse_safe

        return {
            b"encode_sparse_array": sparse,
            b"encode_max_depth": integer("encode_max_depth", "encode_max_depth", 1, _INT_MAX),
            b"decode_max_depth": integer("decode_max_depth", "decode_max_depth", 1, _INT_MAX),
            b"encode_number_precision": integer("precision", "encode_number_precision", 1, 14),
            b"encode_keep_buffer": enum("encode_keep_buffer", "encode_keep_buffer"),
            b"encode_invalid_numbers": enum("encode_invalid_numbers", "encode_invalid_numbers",
                                            ("off", "on", "null")),
            b"decode_invalid_numbers": enum("decode_invalid_numbers", "decode_invalid_numbers"),
        }

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
            parts.append(_number(value, self.config.precision,
                                 self.config.encode_invalid_numbers))
        elif isinstance(value, bytes):
            parts.append('"' + value.decode("latin-1").translate(_ESCAPES) + '"')
        elif self._type(value) == "table":
            if depth >= self.config.encode_max_depth:
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
                    parts.append('"' + _number(key, self.config.precision,
                                                   self.config.encode_invalid_numbers) + '":')
                else:
                    raise LibError("Cannot serialise table: table key must be a number or "
                                   "string")
                self._encode(item, parts, depth + 1)
            parts.append("}")
        else:
            kind = self._type(value) or type(value).__name__
            raise LibError(f"Cannot serialise {kind}: type not supported")

    def _array_size(self, items: list[tuple[Any, Any]]) -> int:
        """lua-cjson's rule: > 0 array length, 0 not an array (an object)."""
        largest = 0
        for key, _ in items:
            if not isinstance(key, (int, float)) or isinstance(key, bool) or key < 1 \
                    or key != int(key):
                return 0
            largest = max(largest, int(key))
        cfg = self.config
        if cfg.sparse_ratio > 0 and largest > cfg.sparse_ratio * len(items) \
                and largest > cfg.sparse_safe:
            if not cfg.sparse_convert:
                raise LibError("Cannot serialise table: excessively sparse array")
            return 0
        return largest

    def decode(self, *args: Any) -> Any:
        if len(args) != 1 or not isinstance(args[0], bytes):
            raise LibError("bad argument #1 to 'decode' (string expected)")
        self._check_depth(args[0])
        try:
            document = json.loads(args[0].decode("utf-8"), parse_constant=_no_constant)
        except (ValueError, RecursionError) as exc:
            raise LibError(f"Expected value but found invalid token: {exc}") from None
        return self._to_lua(document)

    def _check_depth(self, document: bytes) -> None:
        """decode_max_depth: lua-cjson's error names the depth reached and
        the character after the bracket that went past it."""
        limit, depth, in_string, escaped = self.config.decode_max_depth, 0, False, False
        for position, char in enumerate(document):
            if in_string:
                if escaped:
                    escaped = False
                elif char == 0x5C:
                    escaped = True
                elif char == 0x22:
                    in_string = False
            elif char == 0x22:
                in_string = True
            elif char in (0x5B, 0x7B):
                depth += 1
                if depth > limit:
                    raise LibError(f"Found too many nested data structures ({depth}) at "
                                   f"character {position + 1}")
            elif char in (0x5D, 0x7D):
                depth -= 1

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
            wrap: Callable[[Callable[..., Any]], Callable[..., Any]]) -> Callable[[], None]:
    """Put ``bit``, ``cjson`` and ``cmsgpack`` (read-only) into the script
    environment; ``wrap`` turns a LibError into a Lua error. Returns what
    SCRIPT FLUSH calls (cjson's settings back to their defaults)."""
    bit = lua.table_from({name: wrap(fn) for name, fn in _bit_functions().items()})
    codec = _Json(lua, lua_type)
    functions = {b"encode": codec.encode, b"decode": codec.decode, **codec.functions()}
    cjson = lua.table_from({**{name: wrap(fn) for name, fn in functions.items()},
                            b"null": codec.null})
    env[b"bit"] = protect(bit)
    env[b"cjson"] = protect(cjson)
    msgpack = lua_cmsgpack.functions(lua, lua_type, LibError)
    env[b"cmsgpack"] = protect(lua.table_from({name: wrap(fn) for name, fn in msgpack.items()}))
    return codec.reset
