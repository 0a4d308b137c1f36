"""Sans-IO protocol codecs.

Nothing in this package imports socket, asyncio, threading, selectors or time
(tests/protocols/test_sans_io.py enforces it): every codec turns bytes into
events and replies into bytes, so every concurrency model can drive it and the
tests can feed it bytes without a network.
"""
