"""Tests of tests/fake_anodot.py itself: the fake must refuse what Anodot refuses."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any, Iterator, Tuple

import pytest

from fake_anodot import FakeAnodot, SequenceExporter


@pytest.fixture
def fake() -> Iterator[FakeAnodot]:
    with FakeAnodot() as server:
        yield server


def post(url: str, payload: Any) -> Tuple[int, Any]:
    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    request = urllib.request.Request(url, data=data, method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def good(**changes: Any) -> dict:
    point = {"properties": {"what": "x", "model": "m", "target_type": "gauge"}, "tags": {},
             "timestamp": int(time.time()), "value": 1.0}
    point.update(changes)
    return point


def endpoint(fake: FakeAnodot, token: str = "", protocol: str = "anodot20") -> str:
    return f"{fake.url}/api/v1/metrics?token={token or fake.token}&protocol={protocol}"


def test_token_and_protocol_are_checked(fake: FakeAnodot) -> None:
    assert post(endpoint(fake, token="wrong"), [good()])[0] == 401
    assert post(endpoint(fake, protocol="anodot30"), [good()])[0] == 400
    assert post(endpoint(fake), b"not json")[0] == 400
    assert post(endpoint(fake), [good()] * 1001)[0] == 400
    assert fake.accepted == []


@pytest.mark.parametrize("point, code", [
    (good(properties={"model": "m"}), 2001),
    (good(properties={"what": "x", "a.b": "c"}), 2004),
    (good(properties={"what": "x", "a": "b=c"}), 2004),
    (good(properties={"what": "x", "a": ""}), 2004),
    (good(properties={"what": "x", "k" * 51: "v"}), 2004),
    (good(properties={"what": "x", "k": "v" * 151}), 2004),
    (good(properties={"what": "x", **{f"p{i}": "v" for i in range(20)}}), 2005),
    (good(timestamp=int(time.time()) + 7200), 2006),
    (good(timestamp=1.5), 2006),
    (good(value="1"), 2007),
    (good(tags={"t": "not-a-list"}), 2008),
])
def test_invalid_points_are_refused_by_index(fake: FakeAnodot, point: dict, code: int) -> None:
    status, answer = post(endpoint(fake), [good(), point, good(value=2.0)])
    assert status == 200
    assert answer["errors"] == [{"index": "1", "error": code,
                                 "description": answer["errors"][0]["description"]}]
    assert [p["value"] for p in fake.accepted] == [1.0, 2.0]


def test_nan_value_is_refused(fake: FakeAnodot) -> None:
    body = json.dumps([good()]).replace("1.0", "NaN").encode()
    status, answer = post(endpoint(fake), body)
    assert status == 200 and answer["errors"][0]["error"] == 2007


def test_duplicates_and_order_violations_are_told_apart(fake: FakeAnodot) -> None:
    now = int(time.time())
    post(endpoint(fake), [good(timestamp=now), good(timestamp=now + 1, value=2.0)])
    post(endpoint(fake), [good(timestamp=now, value=1.0)])  # an exact re-send
    post(endpoint(fake), [good(timestamp=now - 5, value=9.0)])  # genuinely out of order
    assert len(fake.duplicates) == 1 and fake.duplicates[0]["value"] == 1.0
    assert len(fake.order_violations) == 1 and fake.order_violations[0]["value"] == 9.0


def test_rate_limit_body_and_retry_after(fake: FakeAnodot) -> None:
    fake.fail_next("rate_limit_body")
    status, answer = post(endpoint(fake), [good()])
    assert status == 200 and answer["errors"] == [
        {"error": 1004, "description": "requests per minute limit exceeded"}]
    fake.fail_next("429")
    request = urllib.request.Request(endpoint(fake), data=json.dumps([good()]).encode(),
                                     method="POST")
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request, timeout=5)
    assert info.value.code == 429 and info.value.headers["Retry-After"] == "1"
    assert fake.accepted == []


def test_random_faults_are_seeded() -> None:
    draws = []
    for _ in range(2):
        with FakeAnodot(fault_rate=0.5, seed=9, faults=("500", "503")) as fake:
            draws.append([post(endpoint(fake), [good()])[0] for _ in range(10)])
    assert draws[0] == draws[1] and set(draws[0]) == {200, 500, 503}


def test_unknown_fault_is_refused() -> None:
    with pytest.raises(ValueError, match="faults =="):
        FakeAnodot(faults=("boom",))


def test_sequence_exporter_counts_scrapes() -> None:
    with SequenceExporter(models=("a",)) as exporter:
        for n in (1, 2):
            with urllib.request.urlopen(exporter.url, timeout=5) as response:
                text = response.read().decode()
            assert f'mlwatcher_test_sequence{{model="a"}} {n}' in text
        assert exporter.pause() == 2
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(exporter.url, timeout=5)
