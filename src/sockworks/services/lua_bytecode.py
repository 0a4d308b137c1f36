"""Lua 5.1 bytecode (``string.dump``'s format): tail calls made plain calls.

:func:`untail` rewrites every ``OP_TAILCALL`` of a dumped chunk (its nested
functions too) into ``OP_CALL``. Lua 5.1 compiles ``return f(...)`` as
``TAILCALL A B 0`` followed by ``RETURN A 0``; as ``CALL A B 0`` the same
pair calls ``f`` with the caller's frame kept and returns all its results,
so nothing changes but the frame (services/lua_engine.py says why it
matters). The header gives the sizes of ints, size_t and numbers; any other
format (another Lua version) is returned unchanged.
"""

from __future__ import annotations

from typing import Final

__all__ = ["untail"]

_SIGNATURE: Final = b"\x1bLua\x51\x00"
_OP_MASK: Final = 0x3F
_OP_CALL: Final = 28
_OP_TAILCALL: Final = 29
_OP_SETLIST: Final = 34
#: Constant types in a dump (lua.h): nil, boolean, number, string.
_NIL, _BOOLEAN, _NUMBER, _STRING = 0, 1, 3, 4


class _Reader:
    def __init__(self, data: bytearray, order: str, size_int: int, size_t: int,
                 size_number: int) -> None:
        self.data, self.pos, self.order = data, 12, order
        self.size_int, self.size_t, self.size_number = size_int, size_t, size_number

    def integer(self, size: int) -> int:
        value = int.from_bytes(self.data[self.pos:self.pos + size], self.order)  # type: ignore[arg-type]
        self.pos += size
        return value

    def string(self) -> None:
        size = self.integer(self.size_t)
        self.pos += size

    def function(self) -> None:
        self.string()  # source
        self.pos += 2 * self.size_int + 4  # line defined, last line, nups..maxstack
        count = self.integer(self.size_int)
        index = 0
        while index < count:
            at = self.pos + 4 * index
            word = int.from_bytes(self.data[at:at + 4], self.order)  # type: ignore[arg-type]
            op = word & _OP_MASK
            if op == _OP_TAILCALL:
                word = (word & ~_OP_MASK) | _OP_CALL
                self.data[at:at + 4] = word.to_bytes(4, self.order)  # type: ignore[arg-type]
            elif op == _OP_SETLIST and (word >> 14) & 0x1FF == 0:
                index += 1  # the next word is SETLIST's count, not an instruction
            index += 1
        self.pos += 4 * count
        for _ in range(self.integer(self.size_int)):  # constants
            kind = self.data[self.pos]
            self.pos += 1
            if kind == _BOOLEAN:
                self.pos += 1
            elif kind == _NUMBER:
                self.pos += self.size_number
            elif kind == _STRING:
                self.string()
            elif kind != _NIL:
                raise ValueError(f"unknown constant type {kind}")
        for _ in range(self.integer(self.size_int)):  # nested functions
            self.function()
        lines = self.integer(self.size_int)
        self.pos += self.size_int * lines  # line info
        for _ in range(self.integer(self.size_int)):  # locals: name, start, end
            self.string()
            self.pos += 2 * self.size_int
        for _ in range(self.integer(self.size_int)):  # upvalue names
            self.string()


def untail(code: bytes) -> bytes:
    """``code`` (a Lua 5.1 dump) with its tail calls made plain calls."""
    if not code.startswith(_SIGNATURE) or len(code) < 12 or code[9] != 4:
        return code  # not Lua 5.1's format (or 4-byte instructions): as is
    order = "little" if code[6] == 1 else "big"
    data = bytearray(code)
    reader = _Reader(data, order, code[7], code[8], code[10])
    reader.function()
    if reader.pos != len(data):
        raise ValueError("trailing bytes after the chunk")
    return bytes(data)
