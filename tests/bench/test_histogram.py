"""The latency histogram against a sorted-list oracle: percentiles within the
bucket error, exact max/min, merging, and the JSON round trip."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sockworks.bench.histogram import MAX_TRACKABLE, PRECISION_BITS, Histogram

# The reported value is the middle of the sample's bucket; a bucket is at most
# 1/2**(PRECISION_BITS-1) of its lower bound wide.
RELATIVE_ERROR = 1.0 / (1 << (PRECISION_BITS - 1))

values = st.integers(min_value=0, max_value=10**12)
percents = st.floats(min_value=0.0, max_value=100.0, allow_nan=False)


def oracle(samples: list[int], percent: float) -> int:
    ordered = sorted(samples)
    rank = max(1, math.ceil(percent / 100.0 * len(ordered)))
    return ordered[rank - 1]


def close_enough(reported: int, truth: int) -> bool:
    return abs(reported - truth) <= truth * RELATIVE_ERROR / 2 + 1


@settings(max_examples=300, deadline=None)
@given(st.lists(values, min_size=1, max_size=400), percents)
def test_percentile_matches_sorted_oracle(samples: list[int], percent: float) -> None:
    histogram = Histogram()
    for value in samples:
        histogram.record(value)
    truth = oracle(samples, percent)
    reported = histogram.percentile(percent)
    assert close_enough(reported, truth), (reported, truth)
    assert histogram.count == len(samples)
    assert histogram.max == max(samples)
    assert histogram.min == min(samples)
    assert histogram.percentile(100.0) == max(samples)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=MAX_TRACKABLE), min_size=1, max_size=300))
def test_percentiles_in_one_pass_agree_with_percentile(samples: list[int]) -> None:
    histogram = Histogram()
    for value in samples:
        histogram.record(value)
    wanted = [0.0, 50.0, 90.0, 99.0, 99.9, 100.0]
    together = histogram.percentiles(wanted)
    for p in wanted:
        assert together[p] == histogram.percentile(p)
        assert close_enough(together[p], oracle(samples, p))


@settings(max_examples=200, deadline=None)
@given(st.lists(values, max_size=200), st.lists(values, max_size=200), percents)
def test_merge_equals_recording_everything_in_one(a: list[int], b: list[int],
                                                  percent: float) -> None:
    left, right, whole = Histogram(), Histogram(), Histogram()
    for value in a:
        left.record(value)
        whole.record(value)
    for value in b:
        right.record(value)
        whole.record(value)
    left.merge(right)
    assert left.count == whole.count
    assert left.total == whole.total
    assert (left.min, left.max) == (whole.min, whole.max)
    assert left.percentile(percent) == whole.percentile(percent)
    assert left.to_dict() == whole.to_dict()


@given(st.lists(values, max_size=100))
def test_json_round_trip(samples: list[int]) -> None:
    histogram = Histogram()
    for value in samples:
        histogram.record(value)
    copy = Histogram.from_dict(json.loads(json.dumps(histogram.to_dict())))
    assert copy.to_dict() == histogram.to_dict()
    assert copy.percentiles() == histogram.percentiles()


def test_weighted_record_counts_every_sample() -> None:
    histogram = Histogram()
    histogram.record(1000, 16)
    histogram.record(5000)
    assert histogram.count == 17
    assert histogram.total == 16 * 1000 + 5000
    assert close_enough(histogram.percentile(90), 1000)
    assert histogram.percentile(99) == 5000


def test_small_values_are_exact_and_buckets_are_bounded() -> None:
    histogram = Histogram()
    for value in range(1 << PRECISION_BITS):
        assert histogram.bucket_bounds(value) == (value, value)
    for value in (1000, 123_456, 10**9, 10**11):
        low, high = histogram.bucket_bounds(value)
        assert low <= value <= high
        assert (high - low + 1) <= low * RELATIVE_ERROR


def test_empty_histogram_reports_zeros() -> None:
    histogram = Histogram()
    assert histogram.percentile(99) == 0
    assert histogram.percentiles() == {50.0: 0, 90.0: 0, 99.0: 0, 99.9: 0}
    assert histogram.mean == 0.0


def test_values_beyond_the_range_are_clamped_but_max_is_exact() -> None:
    histogram = Histogram()
    histogram.record(MAX_TRACKABLE * 4)
    histogram.record(-5)  # a clock stepping back counts as zero
    assert histogram.max == MAX_TRACKABLE * 4
    assert histogram.min == 0
    assert histogram.percentile(100) == MAX_TRACKABLE * 4


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError):
        Histogram().percentile(101)
    with pytest.raises(ValueError):
        Histogram(precision=1)
    with pytest.raises(ValueError, match="different layouts"):
        Histogram().merge(Histogram(precision=6))
    broken = Histogram().to_dict()
    broken["count"] = 3
    with pytest.raises(ValueError, match="add up"):
        Histogram.from_dict(broken)
