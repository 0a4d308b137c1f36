"""Redis's long double arithmetic for INCRBYFLOAT and HINCRBYFLOAT: parse
as strtold does, add in a 64-bit significand, print as "%.17Lf" with the
trailing zeros cut. Exact rationals (fractions) reproduce Redis's digits.
"""

from __future__ import annotations

import re
from decimal import Decimal
from fractions import Fraction
from typing import Final

__all__ = ["INFINITE", "format_long_double", "long_double", "round_long_double"]

# INCRBYFLOAT computes in C's long double (x87: 64-bit significand) and
# prints "%.17Lf" with trailing zeros removed. Fractions rounded to that
# significand reproduce Redis's digits exactly, e.g. 10.6 + 1e3 ->
# "1005.59999999999999998", where a double would say "1005.6".
_LD_DIGITS: Final = 64
_LD_MIN_EXP: Final = -16382          # smallest normal exponent
_LD_OVERFLOW: Final = 2**16384        # first value that rounds to infinity
_FLOAT_SYNTAX: Final = re.compile(rb"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_INF_SYNTAX: Final = re.compile(rb"[+-]?inf(?:inity)?", re.IGNORECASE)
#: Sentinel results of :func:`_long_double`.
INFINITE: Final = "inf"


def round_long_double(value: Fraction) -> Fraction | None:
    """``value`` rounded (half to even) to a long double; None on overflow."""
    if value == 0:
        return value
    magnitude = abs(value)
    exponent = magnitude.numerator.bit_length() - magnitude.denominator.bit_length()
    if Fraction(2) ** exponent > magnitude:
        exponent -= 1
    shift = _LD_DIGITS - 1 - max(exponent, _LD_MIN_EXP)
    rounded = Fraction(round(magnitude * Fraction(2) ** shift)) / Fraction(2) ** shift
    if rounded >= _LD_OVERFLOW:
        return None
    return rounded if value > 0 else -rounded


def long_double(text: bytes) -> Fraction | str | None:
    """What Redis's strtold-based parsing accepts: a finite value, the
    :data:`INFINITE` marker (``inf``/``infinity``) or None (not a valid
    float: blanks, garbage, NaN, overflow, underflow to zero)."""
    if _INF_SYNTAX.fullmatch(text):
        return INFINITE
    if text[:2].lower() in (b"0x", b"+0", b"-0") and b"x" in text[:3].lower():
        try:
            return round_long_double(Fraction(float.fromhex(text.decode("ascii"))))
        except (ValueError, OverflowError, UnicodeDecodeError):
            return None
    if len(text) > 5000 or not _FLOAT_SYNTAX.fullmatch(text):
        return None
    number = Decimal(text.decode("ascii"))
    if number.is_zero():
        return Fraction(0)
    if number.adjusted() > 4933:
        return None       # ERANGE, HUGE_VAL
    if number.adjusted() < -4952:
        return None       # ERANGE, underflow to zero
    return round_long_double(Fraction(number))


def format_long_double(value: Fraction) -> bytes:
    """C's "%.17Lf", then trailing zeros (and a bare '.') removed."""
    scaled = round(abs(value) * 10**17)
    digits = str(scaled).rjust(18, "0")
    text = digits[:-17] + "." + digits[-17:]
    text = text.rstrip("0").rstrip(".")
    return ("-" + text if value < 0 and text != "0" else text).encode()


