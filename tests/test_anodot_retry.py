"""Tests of mlwatcher_exporter.bridge.retry: backoff and Retry-After."""

from __future__ import annotations

import pytest

from mlwatcher_exporter.bridge.retry import Backoff, parse_retry_after


def test_exponential_and_capped() -> None:
    backoff = Backoff(0.5, 10, multiplier=3, jitter=0)
    assert [backoff.delay(a) for a in range(5)] == [0.5, 1.5, 4.5, 10, 10]
    assert backoff.delay(100000) == 10


def test_jitter_is_seeded_and_bounded() -> None:
    a = [Backoff(1, 1, jitter=1, random_state=4).delay(0) for _ in range(2)]
    assert a[0] == a[1]
    delays = [Backoff(4, 4, jitter=0.25, random_state=i).delay(3) for i in range(50)]
    assert all(3.0 <= d <= 4.0 for d in delays) and len(set(delays)) > 40


@pytest.mark.parametrize("kwargs, match", [
    ({"initial": -1, "maximum": 1}, "initial == -1"),
    ({"initial": 2, "maximum": 1}, "maximum == 1, must be >= initial"),
    ({"initial": 1, "maximum": 2, "multiplier": 0.5}, "multiplier == 0.5"),
    ({"initial": 1, "maximum": 2, "jitter": 1.5}, "jitter == 1.5"),
])
def test_bad_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Backoff(**kwargs)


@pytest.mark.parametrize("header, expected", [
    ("5", 5.0), ("0.25", 0.25), ("-3", 0.0), (None, None), ("", None), ("soon", None),
    ("nan", None), ("Thu, 01 Jan 1970 00:01:40 GMT", 40.0),
])
def test_parse_retry_after(header: object, expected: object) -> None:
    assert parse_retry_after(header, now=60.0) == expected  # type: ignore[arg-type]
