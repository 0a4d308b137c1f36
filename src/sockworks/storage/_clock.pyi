"""Types of the compiled CLOCK run (_clock.pyx), for mypy."""

from typing import Any

def run(keys: list[bytes | None], seqs: list[int], hand: int, end: int, data: dict[bytes, Any],
        referenced: set[bytes], aggregates: set[bytes], kept_keys: list[bytes],
        kept_seqs: list[int], expires: dict[bytes, int], raw: set[bytes], overhead: int,
        expiry_overhead: int) -> tuple[int, int, list[tuple[bytes, Any]] | None]: ...
