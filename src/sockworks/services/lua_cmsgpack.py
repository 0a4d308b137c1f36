"""Redis's ``cmsgpack`` Lua library (lua_cmsgpack.c) as Python functions.

``pack(...)`` encodes each argument and concatenates them: a whole number
that fits int64 is the smallest MessagePack integer, any other number a
float32 when it round-trips through one, else a float64; a string is
fixraw/str8/raw16/raw32; a table whose keys are exactly 1..n an array, any
other a map (in Lua's ``next`` order); tables nested 16 deep, functions
and userdata become nil. ``unpack``/``unpack_one``/``unpack_limit`` decode
a stream back (integers and floats as numbers, arrays as 1..n tables) with
lua_cmsgpack.c's error texts.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any, Final

__all__ = ["functions"]

#: lua_cmsgpack.c's LUACMSGPACK_MAX_NESTING: deeper tables encode as nil.
MAX_NESTING: Final = 16
#: Decoding nests fewer tables than this: where Redis's Lua stack
#: (LUAI_MAXCSTACK slots, two a level) overflows, measured on 7.0.15.
MAX_DECODE_DEPTH: Final = 4000
_INT_MAX: Final = 2**31 - 1


class _Missing(Exception):
    """The input ended inside a value."""


class _BadFormat(Exception):
    """A byte no MessagePack type starts with."""


def _header(length: int, small: int, small_max: int, codes: tuple[int, ...]) -> bytes:
    """fix/16/32 length headers (str8 comes first for raw strings)."""
    if length <= small_max:
        return bytes([small | length])
    if len(codes) == 3 and length <= 0xFF:
        return bytes([codes[0], length])
    if length <= 0xFFFF:
        return bytes([codes[-2]]) + length.to_bytes(2, "big")
    return bytes([codes[-1]]) + length.to_bytes(4, "big")


def _int(n: int) -> bytes:
    if n >= 0:
        if n <= 127:
            return bytes([n])
        for code, size in ((0xCC, 1), (0xCD, 2), (0xCE, 4), (0xCF, 8)):
            if n < 1 << (8 * size):
                return bytes([code]) + n.to_bytes(size, "big")
    if n >= -32:
        return (n & 0xFF).to_bytes(1, "big")
    for code, size in ((0xD0, 1), (0xD1, 2), (0xD2, 4)):
        if n >= -(1 << (8 * size - 1)):
            return bytes([code]) + n.to_bytes(size, "big", signed=True)
    return b"\xd3" + n.to_bytes(8, "big", signed=True)


def _number(value: float) -> bytes:
    if isinstance(value, int) and -(2**63) <= value < 2**63:
        return _int(value)
    number = float(value)
    if number == number and abs(number) != float("inf") and number == int(number) \
            and -(2**63) <= number < 2**63:
        return _int(int(number))
    try:
        single = struct.pack(">f", number)
        if struct.unpack(">f", single)[0] == number or number != number:
            return b"\xca" + single
    except OverflowError:
        pass
    return b"\xcb" + struct.pack(">d", number)


class _Packer:
    def __init__(self, lua_type: Callable[[Any], str | None]) -> None:
        self._type = lua_type

    def encode(self, value: Any, out: list[bytes], level: int) -> None:
        kind = self._type(value)
        if value is True or value is False:
            out.append(b"\xc3" if value else b"\xc2")
        elif isinstance(value, bytes):
            out.append(_header(len(value), 0xA0, 31, (0xD9, 0xDA, 0xDB)))
            out.append(value)
        elif isinstance(value, (int, float)):
            out.append(_number(value))
        elif kind == "table" and level < MAX_NESTING:
            items = list(value.items())
            if self._is_array(items):
                by_index = dict(items)
                out.append(_header(len(items), 0x90, 15, (0xDC, 0xDD)))
                for index in range(1, len(items) + 1):
                    self.encode(by_index.get(index), out, level + 1)
            else:
                out.append(_header(len(items), 0x80, 15, (0xDE, 0xDF)))
                for key, item in items:
                    self.encode(key, out, level + 1)
                    self.encode(item, out, level + 1)
        else:
            out.append(b"\xc0")

    @staticmethod
    def _is_array(items: list[tuple[Any, Any]]) -> bool:
        """table_is_an_array: keys are exactly 1..count (int-sized)."""
        largest = 0
        for key, _ in items:
            if not isinstance(key, (int, float)) or isinstance(key, bool) or key <= 0 \
                    or key != int(key) or key > _INT_MAX:
                return False
            largest = max(largest, int(key))
        return largest == len(items)


_FIXED: Final = {0xCC: (1, ">B"), 0xCD: (2, ">H"), 0xCE: (4, ">I"), 0xCF: (8, ">Q"),
                 0xD0: (1, ">b"), 0xD1: (2, ">h"), 0xD2: (4, ">i"), 0xD3: (8, ">q"),
                 0xCA: (4, ">f"), 0xCB: (8, ">d")}


class _Overflow(Exception):
    """A Lua error while building tables: nesting past what Redis's Lua
    stack holds, a nil or NaN map key (the text is Lua's)."""


class _Unpacker:
    """Decodes one value at a time, iteratively: nesting costs no Python
    stack, and stops where Redis's Lua stack overflows."""

    def __init__(self, lua: Any, data: bytes, pos: int) -> None:
        self._lua = lua
        self.data = data
        self.pos = pos

    def _take(self, size: int) -> bytes:
        if self.pos + size > len(self.data):
            raise _Missing
        chunk = self.data[self.pos:self.pos + size]
        self.pos += size
        return chunk

    def value(self) -> Any:
        # Open containers: [table, is_map, items left, next index, key read].
        stack: list[list[Any]] = []
        while True:
            item, opened = self._scalar_or_open()
            if opened is not None:
                is_map, length = opened
                if len(stack) + 1 >= MAX_DECODE_DEPTH:
                    raise _Overflow("stack overflow (too many return values at once; use "
                                    "unpack_one or unpack_limit instead.)" if is_map else
                                    "stack overflow (in function mp_decode_to_lua_array)")
                stack.append([self._lua.table_from([]), is_map, length * (2 if is_map else 1),
                              1, _NO_KEY])
            else:
                self._store(stack, item)
            while stack and stack[-1][2] == 0:
                done = stack.pop()[0]
                if not stack:
                    return done
                self._store(stack, done)
            if not stack:
                return item

    @staticmethod
    def _store(stack: list[list[Any]], item: Any) -> None:
        if not stack:
            return
        top = stack[-1]
        top[2] -= 1
        if not top[1]:
            top[0][top[3]] = item
            top[3] += 1
        elif top[4] is _NO_KEY:
            top[4] = item
        else:
            key = top[4]
            if key is None:
                raise _Overflow("table index is nil")
            if key != key:
                raise _Overflow("table index is NaN")
            top[0][key] = item
            top[4] = _NO_KEY

    def _scalar_or_open(self) -> tuple[Any, tuple[bool, int] | None]:
        """A scalar, or (is_map, length) of a container just opened."""
        code = self._take(1)[0]
        if code <= 0x7F:
            return code, None
        if code >= 0xE0:
            return code - 0x100, None
        if 0xA0 <= code <= 0xBF:
            return self._take(code & 0x1F), None
        if 0x80 <= code <= 0x9F:
            return None, (code < 0x90, code & 0xF)
        if code in (0xC0, 0xC2, 0xC3):
            return (None if code == 0xC0 else code == 0xC3), None
        if code in _FIXED:
            size, fmt = _FIXED[code]
            return struct.unpack(fmt, self._take(size))[0], None
        if code in (0xD9, 0xDA, 0xDB):
            size = {0xD9: 1, 0xDA: 2, 0xDB: 4}[code]
            return self._take(int.from_bytes(self._take(size), "big")), None
        if code in (0xDC, 0xDD, 0xDE, 0xDF):
            size = 2 if code in (0xDC, 0xDE) else 4
            return None, (code >= 0xDE, int.from_bytes(self._take(size), "big"))
        raise _BadFormat


_NO_KEY: Final = object()


def functions(lua: Any, lua_type: Callable[[Any], str | None],
              error: Callable[[str], Exception]) -> dict[bytes, Callable[..., Any]]:
    """pack, unpack, unpack_one, unpack_limit; ``error(text)`` is raised
    for a Lua error."""
    packer = _Packer(lua_type)

    def pack(*args: Any) -> bytes:
        if not args:
            raise error("bad argument #0 to 'pack' (MessagePack pack needs input.)")
        out: list[bytes] = []
        for value in args:
            packer.encode(value, out, 0)
        return b"".join(out)

    def integer(name: str, value: Any, index: int, default: int | None) -> int:
        if value is None and default is not None:
            return default
        if isinstance(value, bytes):
            try:
                value = float(value)
            except ValueError:
                pass
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            got = "no value" if value is None else (
                "string" if isinstance(value, bytes) else
                "boolean" if isinstance(value, bool) else str(lua_type(value)))
            raise error(f"bad argument #{index} to '{name}' (number expected, got {got})")
        return int(value)

    def full(name: str, args: tuple[Any, ...], limit: int, offset: int) -> tuple[Any, ...]:
        data = args[0] if args else None
        if isinstance(data, (int, float)) and not isinstance(data, bool):
            data = (str(data) if isinstance(data, int) else f"{data:.14g}").encode()
        if not isinstance(data, bytes):
            got = "no value" if not args else (
                "nil" if data is None else "boolean" if isinstance(data, bool)
                else str(lua_type(data)))
            raise error(f"bad argument #1 to '{name}' (string expected, got {got})")
        decode_all = not limit and not offset
        if offset < 0 or limit < 0:
            raise error(f"Invalid request to unpack with offset of {offset} and limit of "
                        f"{len(data)}.")
        if offset > len(data):
            raise error(f"Start offset {offset} greater than input length {len(data)}.")
        if decode_all:
            limit = _INT_MAX
        reader = _Unpacker(lua, data, offset)
        results: list[Any] = []
        try:
            while reader.pos < len(data) and len(results) < limit:
                results.append(reader.value())
        except _Missing:
            raise error("Missing bytes in input.") from None
        except _BadFormat:
            raise error("Bad data format in input.") from None
        except _Overflow as exc:
            raise error(str(exc)) from None
        if not decode_all:
            results.insert(0, -1 if reader.pos == len(data) else reader.pos)
        return tuple(results)

    def unpack(*args: Any) -> tuple[Any, ...]:
        return full("unpack", args, 0, 0)

    def unpack_one(*args: Any) -> tuple[Any, ...]:
        offset = integer("unpack_one", args[1] if len(args) > 1 else None, 2, 0)
        return full("unpack_one", args[:1], 1, offset)

    def unpack_limit(*args: Any) -> tuple[Any, ...]:
        limit = integer("unpack_limit", args[1] if len(args) > 1 else None, 2, None)
        offset = integer("unpack_limit", args[2] if len(args) > 2 else None, 3, 0)
        return full("unpack_limit", args[:1], limit, offset)

    return {b"pack": pack, b"unpack": unpack, b"unpack_one": unpack_one,
            b"unpack_limit": unpack_limit}
