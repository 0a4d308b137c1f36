"""A latency histogram: log-linear buckets with a bounded relative error.

The layout is HdrHistogram's (Gil Tene): values below ``2**PRECISION_BITS``
get a bucket each; above that, every power-of-two range is cut into
``2**(PRECISION_BITS - 1)`` equal buckets. A bucket's width is therefore at
most ``1 / 2**(PRECISION_BITS - 1)`` of its lower bound, and a percentile,
reported as the middle of its bucket, is within half of that (0.39% with the
default 8 bits) of the true sample. Recording is O(1) with no allocation,
memory is a few thousand integers whatever the sample count, and two
histograms with the same layout merge by adding counts, which is how the
client processes of ``sockworks bench --procs`` combine their results.

Values are non-negative integers (the bench records nanoseconds). The exact
minimum, maximum and sum are tracked as well, so ``max`` is exact.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["DEFAULT_PERCENTILES", "MAX_TRACKABLE", "PRECISION_BITS", "Histogram"]

#: 8 bits: 128 buckets per power of two, at most 0.78% bucket width (the
#: relative error wrk2 and lineload also accept), 0.39% reported error.
PRECISION_BITS = 8

#: Largest value kept in its own bucket: 2**40 ns is about 18 minutes, longer
#: than any request a benchmark should wait for. Larger values are clamped
#: into the last bucket (``max`` stays exact).
MAX_TRACKABLE = (1 << 40) - 1

#: What the bench reports: the tail matters more than the mean.
DEFAULT_PERCENTILES = (50.0, 90.0, 99.0, 99.9)


def _bucket_count(precision: int, max_value: int) -> int:
    return _index_of(max_value, precision) + 1


def _index_of(value: int, precision: int) -> int:
    shift = value.bit_length() - precision
    if shift <= 0:
        return value
    # The top `precision` bits select the bucket: mantissa is in
    # [2**(precision-1), 2**precision), so consecutive shifts tile the indexes.
    return (shift << (precision - 1)) + (value >> shift)


def _bounds_of(index: int, precision: int) -> tuple[int, int]:
    """Lowest and highest value recorded into bucket ``index``."""
    if index < (1 << precision):
        return index, index
    # index = (shift << (precision-1)) + mantissa with the mantissa's top bit
    # set, so index >> (precision-1) == shift + 1.
    shift = (index >> (precision - 1)) - 1
    mantissa = index - (shift << (precision - 1))
    low = mantissa << shift
    return low, low + (1 << shift) - 1


class Histogram:
    """Counts of non-negative integer samples in log-linear buckets."""

    __slots__ = ("_counts", "count", "max", "max_trackable", "min", "precision", "total")

    def __init__(self, precision: int = PRECISION_BITS, max_trackable: int = MAX_TRACKABLE) -> None:
        if not 2 <= precision <= 16:
            raise ValueError(f"precision must be 2..16 bits, got {precision}")
        if max_trackable < 1:
            raise ValueError("max_trackable must be >= 1")
        self.precision = precision
        self.max_trackable = max_trackable
        self._counts = [0] * _bucket_count(precision, max_trackable)
        self.count = 0
        self.total = 0
        self.min = 0
        self.max = 0

    # -- recording -------------------------------------------------------

    def record(self, value: int, count: int = 1) -> None:
        """Add ``count`` samples of ``value`` (negative values count as 0:
        a clock that stepped back must not crash a benchmark)."""
        value = max(value, 0)
        if self.count == 0 or value < self.min:
            self.min = value
        self.max = max(self.max, value)
        self.count += count
        self.total += value * count
        clamped = min(value, self.max_trackable)
        shift = clamped.bit_length() - self.precision
        if shift <= 0:
            self._counts[clamped] += count
        else:
            self._counts[(shift << (self.precision - 1)) + (clamped >> shift)] += count

    def merge(self, other: Histogram) -> None:
        """Add ``other``'s samples to this histogram (same layout required)."""
        if (other.precision, other.max_trackable) != (self.precision, self.max_trackable):
            raise ValueError("cannot merge histograms with different layouts")
        if other.count == 0:
            return
        counts = self._counts
        for index, n in enumerate(other._counts):
            if n:
                counts[index] += n
        self.min = other.min if self.count == 0 else min(self.min, other.min)
        self.max = max(self.max, other.max)
        self.count += other.count
        self.total += other.total

    # -- reading ---------------------------------------------------------

    @property
    def mean(self) -> float:
        return self.total / self.count if self.count else 0.0

    def percentile(self, percent: float) -> int:
        """The value below or at which ``percent`` % of the samples lie.

        Rank ``ceil(percent/100 * count)`` (the nearest-rank definition, as
        HdrHistogram); the result is the middle of that sample's bucket,
        clamped to the exact min and max, and the exact max for the last
        rank. 0 for an empty histogram.
        """
        if not 0.0 <= percent <= 100.0:
            raise ValueError(f"percentile must be in [0, 100], got {percent}")
        if self.count == 0:
            return 0
        rank = max(1, math.ceil(percent / 100.0 * self.count))
        if rank >= self.count:
            return self.max  # the largest sample is known exactly
        seen = 0
        for index, n in enumerate(self._counts):
            if n:
                seen += n
                if seen >= rank:
                    low, high = _bounds_of(index, self.precision)
                    middle = (low + high) // 2
                    return min(max(middle, self.min), self.max)
        return self.max  # pragma: no cover - counts always sum to count

    def percentiles(self, percents: Iterable[float] = DEFAULT_PERCENTILES) -> dict[float, int]:
        """Several percentiles in one pass over the buckets."""
        wanted = sorted(percents)
        result: dict[float, int] = {}
        if self.count == 0:
            return {p: 0 for p in wanted}
        for p in wanted:
            if not 0.0 <= p <= 100.0:
                raise ValueError(f"percentile must be in [0, 100], got {p}")
        ranks = [(p, max(1, math.ceil(p / 100.0 * self.count))) for p in wanted]
        position = 0
        seen = 0
        for index, n in enumerate(self._counts):
            if not n:
                continue
            seen += n
            while position < len(ranks) and seen >= ranks[position][1]:
                percent, rank = ranks[position]
                if rank >= self.count:
                    result[percent] = self.max
                else:
                    low, high = _bounds_of(index, self.precision)
                    result[percent] = min(max((low + high) // 2, self.min), self.max)
                position += 1
            if position == len(ranks):
                break
        return result

    def bucket_bounds(self, value: int) -> tuple[int, int]:
        """The range of values that share ``value``'s bucket (for tests and docs)."""
        clamped = min(max(value, 0), self.max_trackable)
        return _bounds_of(_index_of(clamped, self.precision), self.precision)

    # -- transport (between processes, into JSON) -----------------------

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able, sparse form: only non-empty buckets are kept."""
        return {
            "precision": self.precision,
            "max_trackable": self.max_trackable,
            "count": self.count,
            "total": self.total,
            "min": self.min,
            "max": self.max,
            "buckets": {str(i): n for i, n in enumerate(self._counts) if n},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Histogram:
        histogram = cls(int(data["precision"]), int(data["max_trackable"]))
        for key, n in dict(data["buckets"]).items():
            index = int(key)
            if not 0 <= index < len(histogram._counts) or int(n) < 0:
                raise ValueError(f"bucket {key!r} out of range")
            histogram._counts[index] = int(n)
        histogram.count = int(data["count"])
        histogram.total = int(data["total"])
        histogram.min = int(data["min"])
        histogram.max = int(data["max"])
        if sum(histogram._counts) != histogram.count:
            raise ValueError("bucket counts do not add up to count")
        return histogram

    def __repr__(self) -> str:
        return f"Histogram(count={self.count}, min={self.min}, max={self.max})"
