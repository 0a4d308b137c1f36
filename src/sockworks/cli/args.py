"""Argument types shared by every sub-command: checked numbers, ports.

Each factory returns an argparse ``type=`` callable whose error message says
what was expected, so a bad flag is one clear line and exit status 2. The
checks themselves are the core's (:mod:`sockworks.core.config`), so the
library's ``Server(max_connections=0)`` and ``--max-connections 0`` say the
same thing.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TypeVar

from sockworks.core.config import Setting, parse_int, parse_number

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
    "setting_type",
]


T = TypeVar("T")


def _argparse_type(parse: Callable[[str], T]) -> Callable[[str], T]:
    def checked(text: str) -> T:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return checked


def integer(low: int | None = None, high: int | None = None) -> Callable[[str], int]:
    """An int in [low, high] (either bound optional)."""
    return _argparse_type(lambda text: parse_int(text, low, high))


def number(low: float | None = None, high: float | None = None, *,
           above: float | None = None) -> Callable[[str], float]:
    """A finite float in [low, high], or strictly greater than ``above``."""
    return _argparse_type(lambda text: parse_number(text, low, high, above=above))


def setting_type(setting: Setting) -> Callable[[str], object]:
    """The argparse type of a server setting from the core's table."""
    return _argparse_type(setting.parse)


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
