"""Tests of mlwatcher_exporter.bridge.ratelimit: token buckets."""

from __future__ import annotations

import pytest

from conftest import ManualClock
from mlwatcher_exporter.bridge.ratelimit import RateLimiter, TokenBucket


def test_bucket_allows_a_burst_then_paces() -> None:
    clock = ManualClock(0.0)
    bucket = TokenBucket(rate=100, capacity=100, _clock=clock)
    assert bucket.reserve(100) == 0
    assert bucket.reserve(50) == pytest.approx(0.5)
    clock.now = 0.5
    assert bucket.reserve(0) == 0
    clock.now = 10
    assert bucket.reserve(100) == 0, "refills up to capacity only"
    assert bucket.reserve(1) == pytest.approx(0.01)


def test_sustained_rate_matches_the_limit() -> None:
    clock = ManualClock(0.0)
    limiter = RateLimiter(points_per_second=2000, requests_per_minute=5000, batch_size=1000,
                          _clock=clock)
    for _ in range(20):  # 20 000 points: the caller sleeps as told
        clock.now += limiter.reserve(1000)
    assert clock.now == pytest.approx((20_000 - 2000) / 2000)


def test_requests_per_minute_limit() -> None:
    clock = ManualClock(0.0)
    limiter = RateLimiter(points_per_second=1e9, requests_per_minute=60, _clock=clock)
    waits = [limiter.reserve(1) for _ in range(3)]
    assert waits == [0, pytest.approx(1.0), pytest.approx(2.0)]


@pytest.mark.parametrize("kwargs, match", [
    ({"rate": 0, "capacity": 1}, "rate == 0, must be > 0"),
    ({"rate": 1, "capacity": -1}, "capacity == -1, must be > 0"),
    ({"rate": "1", "capacity": 1}, "rate == '1', must be a number"),
])
def test_bad_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises((TypeError, ValueError), match=match):
        TokenBucket(**kwargs)


def test_negative_reservation_is_refused() -> None:
    with pytest.raises(ValueError, match="tokens == -1"):
        TokenBucket(1, 1).reserve(-1)
