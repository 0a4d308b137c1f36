"""Argument types shared by every sub-command: checked numbers, ports.

Each factory returns an argparse ``type=`` callable whose error message says
what was expected, so a bad flag is one clear line and exit status 2.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

__all__ = [
    "integer",
    "number",
    "positive_int",
    "non_negative_int",
    "positive_float",
    "seconds",
    "ratio",
    "port_number",
    "client_port",
]


def integer(low: int | None = None, high: int | None = None) -> Callable[[str], int]:
    """An int in [low, high] (either bound optional)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None
        if (low is not None and value < low) or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"must be {_range(low, high)}, got {text!r}")
        return value

    return parse


def number(low: float | None = None, high: float | None = None, *,
           above: float | None = None) -> Callable[[str], float]:
    """A finite float in [low, high], or strictly greater than ``above``."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
        if above is not None and not value > above:
            raise argparse.ArgumentTypeError(f"must be > {above:g}, got {text!r}")
        if (low is not None and value < low) or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"must be {_range(low, high)}, got {text!r}")
        return value

    return parse


def _range(low: float | None, high: float | None) -> str:
    if low is not None and high is not None:
        return f"between {low:g} and {high:g}"
    return f">= {low:g}" if low is not None else f"<= {high:g}"


positive_int = integer(1)
non_negative_int = integer(0)
#: Durations where 0 means "off" (--idle-timeout 0).
positive_float = number(0)
seconds = positive_float
ratio = number(0, 1)
#: A port to bind: 0 asks the kernel for a free one.
port_number = integer(0, 65535)
#: A port to connect to.
client_port = integer(1, 65535)
