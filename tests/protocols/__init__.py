"""Sans-IO protocol tests: bytes in, events and bytes out, no sockets."""
