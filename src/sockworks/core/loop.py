"""The event loop every asyncio part of sockworks runs on (servers, bench)."""

from __future__ import annotations

import asyncio

__all__ = ["new_event_loop", "loop_name"]


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop's loop when installed (2-4x faster I/O), else the standard one."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def loop_name(loop: asyncio.AbstractEventLoop) -> str:
    return "uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio"
