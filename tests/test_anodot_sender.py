"""Tests of mlwatcher_exporter.bridge.sender: backoff, rate limits, sending to the fake Anodot."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List

import pytest
from prometheus_client import CollectorRegistry

from conftest import ManualClock
from fake_anodot import FakeAnodot
from mlwatcher_exporter.bridge.config import SendOptions
from mlwatcher_exporter.bridge.metrics import BridgeMetrics
from mlwatcher_exporter.bridge.sender import (
    AnodotClient, Backoff, RateLimiter, Response, Sender, TokenBucket, parse_retry_after,
)
from mlwatcher_exporter.bridge.spool import DeadLetter

FAST = SendOptions(backoff_initial_seconds=0.001, backoff_max_seconds=0.01,
                   points_per_second=1e6, requests_per_minute=1e7, timeout_seconds=5)


def pts(n: int, **extra: Any) -> List[Dict[str, Any]]:
    now = int(time.time())
    return [{"properties": {"what": "x", "i": str(i), **extra}, "tags": {}, "timestamp": now,
             "value": float(i)} for i in range(n)]


@pytest.fixture
def fake() -> Iterator[FakeAnodot]:
    with FakeAnodot() as server:
        yield server


def make(fake: FakeAnodot, registry: CollectorRegistry, tmp_path: Path,
         options: SendOptions = FAST, token: str = "") -> Sender:
    client = AnodotClient(fake.url, token or fake.token, options.timeout_seconds)
    return Sender(client, options, BridgeMetrics(registry), DeadLetter(tmp_path / "dead.jsonl"),
                  random_state=0)


class Waits:
    def __init__(self) -> None:
        self.delays: List[float] = []

    def __call__(self, seconds: float) -> bool:
        self.delays.append(seconds)
        return True


def test_all_points_accepted(fake: FakeAnodot, registry: CollectorRegistry, tmp_path: Path) -> None:
    sender = make(fake, registry, tmp_path)
    result = sender.deliver(pts(3))
    assert result is not None and (result.kind, result.accepted) == ("ok", 3)
    assert len(fake.accepted) == 3
    assert registry.get_sample_value("mlwatcher_anodot_points_sent_total") == 3
    assert registry.get_sample_value("mlwatcher_anodot_responses_total", {"status": "200"}) == 1
    assert registry.get_sample_value("mlwatcher_anodot_last_success_timestamp_seconds") > 0


def test_indexed_errors_drop_only_those_points(
    fake: FakeAnodot, registry: CollectorRegistry, tmp_path: Path
) -> None:
    points = pts(4)
    points[1]["properties"]["bad key"] = "v"  # space in a key: code 2004
    points[3]["timestamp"] = int(time.time()) + 7200  # too far in the future: code 2006
    sender = make(fake, registry, tmp_path)
    result = sender.deliver(points)
    assert result is not None and (result.kind, result.accepted, result.rejected) == ("ok", 2, 2)
    assert [p["value"] for p in fake.accepted] == [0.0, 2.0]
    rejected = "mlwatcher_anodot_points_rejected_total"
    assert registry.get_sample_value(rejected, {"code": "2004"}) == 1
    assert registry.get_sample_value(rejected, {"code": "2006"}) == 1
    assert registry.get_sample_value("mlwatcher_anodot_points_sent_total") == 2
    dead = [json.loads(x) for x in (tmp_path / "dead.jsonl").read_text().splitlines()]
    assert [(d["reason"], d["error"], d["point"]["value"]) for d in dead] == [
        ("rejected", 2004, 1.0), ("rejected", 2006, 3.0)]
    assert registry.get_sample_value("mlwatcher_anodot_retries_total",
                                     {"reason": "server_error"}) == 0


@pytest.mark.parametrize("fault, reason", [
    ("500", "server_error"), ("503", "server_error"), ("429", "rate_limited"),
    ("rate_limit_body", "rate_limited"), ("drop", "connection_error"),
])
def test_transient_failures_are_retried(
    fake: FakeAnodot, registry: CollectorRegistry, tmp_path: Path, fault: str, reason: str
) -> None:
    fake.retry_after = "0"
    fake.fail_next(fault, count=2)
    waits = Waits()
    result = make(fake, registry, tmp_path).deliver(pts(2), wait=waits)
    assert result is not None and result.kind == "ok"
    assert [p["value"] for p in fake.accepted] == [0.0, 1.0]
    assert registry.get_sample_value("mlwatcher_anodot_retries_total", {"reason": reason}) == 2
    assert len(waits.delays) == 2


def test_retry_after_is_honoured(fake: FakeAnodot, registry: CollectorRegistry,
                                 tmp_path: Path) -> None:
    fake.retry_after = "7"
    fake.fail_next("429")
    waits = Waits()
    make(fake, registry, tmp_path).deliver(pts(1), wait=waits)
    assert waits.delays == [7.0]


def test_retry_after_is_capped(fake: FakeAnodot, registry: CollectorRegistry,
                               tmp_path: Path) -> None:
    fake.retry_after = "99999"
    fake.fail_next("503")
    waits = Waits()
    options = SendOptions(max_retry_after_seconds=30, points_per_second=1e6)
    make(fake, registry, tmp_path, options).deliver(pts(1), wait=waits)
    assert waits.delays == [30.0]


def test_backoff_grows_and_is_capped_without_retry_after() -> None:
    answers = iter([Response(500)] * 6 + [Response(200, b'{"errors":[]}')])
    options = SendOptions(backoff_initial_seconds=1, backoff_max_seconds=4, backoff_jitter=0,
                          points_per_second=1e6)
    waits = Waits()
    result = Sender(lambda body: next(answers), options).deliver(pts(1), wait=waits)
    assert result is not None and result.kind == "ok"
    assert waits.delays == [1, 2, 4, 4, 4, 4]


def test_jitter_stays_within_bounds() -> None:
    answers = iter([Response(None, error="x")] * 50 + [Response(200)])
    options = SendOptions(backoff_initial_seconds=2, backoff_max_seconds=2, backoff_jitter=0.5,
                          points_per_second=1e6)
    waits = Waits()
    Sender(lambda body: next(answers), options, random_state=1).deliver(pts(1), wait=waits)
    assert all(1.0 <= d <= 2.0 for d in waits.delays)
    assert len(set(waits.delays)) > 1


@pytest.mark.parametrize("status, reason", [(400, "bad_request"), (401, "unauthorized"),
                                            (403, "unauthorized"), (404, "client_error")])
def test_permanent_errors_go_to_dead_letter_without_retry(
    registry: CollectorRegistry, tmp_path: Path, status: int, reason: str
) -> None:
    calls: List[bytes] = []

    def post(body: bytes) -> Response:
        calls.append(body)
        return Response(status, b'{"errors":[{"description":"no"}]}')

    dead = DeadLetter(tmp_path / "dead.jsonl")
    sender = Sender(post, FAST, BridgeMetrics(registry), dead)
    result = sender.deliver(pts(3), wait=lambda s: pytest.fail("must not wait"))
    assert result is not None and (result.kind, result.reason) == ("dead_letter", reason)
    assert (result.accepted, result.rejected) == (0, 3)
    assert len(calls) == 1
    lines = (tmp_path / "dead.jsonl").read_text().splitlines()
    assert len(lines) == 3 and all(json.loads(x)["status"] == status for x in lines)
    assert registry.get_sample_value("mlwatcher_anodot_points_dead_lettered_total",
                                     {"reason": reason}) == 3


def test_bad_token_is_refused_and_never_logged(
    fake: FakeAnodot, registry: CollectorRegistry, tmp_path: Path,
    caplog: pytest.LogCaptureFixture
) -> None:
    wrong = "wrong-token-SECRET-42"
    sender = make(fake, registry, tmp_path, token=wrong)
    result = sender.deliver(pts(1))
    assert result is not None and result.reason == "unauthorized"
    assert fake.accepted == []
    text = caplog.text + (tmp_path / "dead.jsonl").read_text()
    assert wrong not in text and fake.token not in text


def test_unindexed_other_error_dead_letters_the_batch(registry: CollectorRegistry) -> None:
    body = b'{"errors":[{"error":9999,"description":"something"}]}'
    result = Sender(lambda b: Response(200, body), FAST, BridgeMetrics(registry)).deliver(pts(2))
    assert result is not None and (result.kind, result.rejected) == ("dead_letter", 2)
    assert registry.get_sample_value("mlwatcher_anodot_points_dead_lettered_total",
                                     {"reason": "client_error"}) == 2


def test_max_attempts_gives_up() -> None:
    calls: List[int] = []

    def post(body: bytes) -> Response:
        calls.append(1)
        return Response(503)

    result = Sender(post, FAST).deliver(pts(1), wait=lambda s: True, max_attempts=3)
    assert result is not None and result.kind == "retry" and len(calls) == 3


def test_stop_during_wait_returns_none() -> None:
    result = Sender(lambda b: Response(503), FAST).deliver(pts(1), wait=lambda s: False)
    assert result is None


def test_rate_limiter_paces_requests() -> None:
    clock = [0.0]
    options = SendOptions(points_per_second=10, requests_per_minute=6000, batch_size=10)
    sender = Sender(lambda b: Response(200), options, _monotonic=lambda: clock[0])
    waits = Waits()
    for _ in range(3):
        sender.deliver(pts(10), wait=waits)
    assert waits.delays == [1.0, 2.0]


def test_error_codes_label_is_bounded(registry: CollectorRegistry) -> None:
    metrics = BridgeMetrics(registry)
    for code in range(100):
        metrics.rejected(code)
    codes = {s.labels["code"] for m in registry.collect() if m.name.endswith("points_rejected")
             for s in m.samples if s.name.endswith("_total")}
    assert len(codes) <= 31 and "other" in codes


def test_batch_larger_than_batch_size_is_refused() -> None:
    with pytest.raises(ValueError, match="len\\(points\\) == 3, must be <= batch_size \\(2\\)"):
        Sender(lambda b: Response(200), SendOptions(batch_size=2)).send_once(pts(3))


def test_options_type_is_checked() -> None:
    with pytest.raises(TypeError, match="options =="):
        Sender(lambda b: Response(200), {"batch_size": 1})  # type: ignore[arg-type]


# ---------------------------------------------------------------------- backoff and Retry-After
def test_exponential_and_capped() -> None:
    backoff = Backoff(backoff_initial_seconds=0.5, backoff_max_seconds=10, backoff_multiplier=3,
                      backoff_jitter=0)
    assert [backoff.delay(a) for a in range(5)] == [0.5, 1.5, 4.5, 10, 10]
    assert backoff.delay(100000) == 10


def test_jitter_is_seeded_and_bounded() -> None:
    one = SendOptions(backoff_initial_seconds=1, backoff_max_seconds=1, backoff_jitter=1)
    a = [Backoff(one, random_state=4).delay(0) for _ in range(2)]
    assert a[0] == a[1]
    four = SendOptions(backoff_initial_seconds=4, backoff_max_seconds=4, backoff_jitter=0.25)
    delays = [Backoff(four, random_state=i).delay(3) for i in range(50)]
    assert all(3.0 <= d <= 4.0 for d in delays) and len(set(delays)) > 40


# The backoff takes its timing from SendOptions, which checks it once.
@pytest.mark.parametrize("kwargs, match", [
    ({"backoff_initial_seconds": -1, "backoff_max_seconds": 1}, "initial_seconds == -1"),
    ({"backoff_initial_seconds": 2, "backoff_max_seconds": 1},
     "max_seconds == 1, must be >= backoff_initial"),
    ({"backoff_initial_seconds": 1, "backoff_max_seconds": 2, "backoff_multiplier": 0.5},
     "multiplier == 0.5"),
    ({"backoff_initial_seconds": 1, "backoff_max_seconds": 2, "backoff_jitter": 1.5},
     "jitter == 1.5"),
])
def test_bad_backoff_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Backoff(**kwargs)


@pytest.mark.parametrize("header, expected", [
    ("5", 5.0), ("0.25", 0.25), ("-3", 0.0), (None, None), ("", None), ("soon", None),
    ("nan", None), ("Thu, 01 Jan 1970 00:01:40 GMT", 40.0),
])
def test_parse_retry_after(header: object, expected: object) -> None:
    assert parse_retry_after(header, now=60.0) == expected  # type: ignore[arg-type]


# ---------------------------------------------------------------------- token buckets
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
def test_bad_token_bucket_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises((TypeError, ValueError), match=match):
        TokenBucket(**kwargs)


def test_negative_reservation_is_refused() -> None:
    with pytest.raises(ValueError, match="tokens == -1"):
        TokenBucket(1, 1).reserve(-1)
